"""Spec strings → objects: one registry per kind of plug-in (backends, assessors, embedders,
judges), filled by a decorator on a factory.

A spec is `NAME` or `NAME:ARGUMENT` (`openai:gpt-4o-mini@http://127.0.0.1:8000/v1`,
`local:heads.npz`, `llm:embedded`). The registry finds the factory registered under NAME and
calls it with ARGUMENT (when its spec takes one) and whatever the caller passes along (a
policy, a timeout...). Factories import their implementation inside, so naming every built-in costs
no import until one is built. An unknown name gets an error listing what can be chosen.

Packages outside Oyster add their own through the `oyster.plugins` entry-point group: each
entry point names a module whose import registers its factories. They are loaded the first time
a spec names something not registered here (or `names()` lists everything).

    from oyster.assess import ASSESSORS, Assessor
    @ASSESSORS.register("my-assessor")          # `oyster decide --assessor my-assessor`
    class MyAssessor(Assessor): ...             # built as MyAssessor(policy)

    @ASSESSORS.register("mine:PATH")            # `--assessor mine:rules.yaml`
    def mine(path: str, policy: Policy) -> Assessor: ...

    # pyproject.toml of the other package
    [project.entry-points."oyster.plugins"]
    my_plugin = "my_package.oyster_plugin"
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Generic, Literal, TypeVar

from oyster.errors import OysterError

ENTRY_POINT_GROUP = "oyster.plugins"

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
Argument = Literal["none", "optional", "required"]

_USAGE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)(?P<arg>\[:[^\]]+\]|:.+)?$")
_plugins_loaded = False


def load_plugins() -> None:
    """Import every module of the `oyster.plugins` entry-point group (once per process)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:  # name the broken plug-in rather than skip it silently
            raise OysterError(f"plug-in {ep.name!r} ({ep.value}) failed to load: "
                              f"{type(e).__name__}: {e}") from e


@dataclass(frozen=True)
class Entry:
    """One registered factory: its name, how its spec is written, and whether it takes an
    argument after the colon."""

    name: str
    usage: str
    argument: Argument
    factory: Callable[..., Any]


class Registry(Generic[T]):
    """The factories of one kind of plug-in, by spec name."""

    def __init__(self, kind: str, error: type[OysterError]) -> None:
        self.kind = kind  # names the thing in errors: "unknown {kind} spec ..."
        self.error = error
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}

    def register(self, usage: str, *, aliases: tuple[str, ...] = ()) -> Callable[[F], F]:
        """Register the decorated factory under the name in `usage`, which shows how the
        spec is written: `NAME` (no argument), `NAME[:ARG]` (optional) or `NAME:ARG`
        (required). The factory is called as `factory(argument, *args, **kwargs)`, or as
        `factory(*args, **kwargs)` when the spec takes no argument: a class can register
        itself."""
        m = _USAGE.match(usage)
        if m is None:
            raise ValueError(f"usage {usage!r}: write NAME, NAME[:ARG] or NAME:ARG")
        name, arg = m["name"], m["arg"]
        argument: Argument = "none" if not arg else "optional" if arg.startswith("[") else \
            "required"

        def decorate(factory: F) -> F:
            self._entries[name] = Entry(name, usage, argument, factory)
            self._aliases.update(dict.fromkeys(aliases, name))
            return factory

        return decorate

    def names(self) -> list[str]:
        """Every registered name, plug-ins included."""
        load_plugins()
        return list(self._entries)

    def usages(self) -> list[str]:
        load_plugins()
        return [e.usage for e in self._entries.values()]

    def entry(self, spec: str) -> tuple[Entry, str]:
        """The entry a spec names and the argument it gives; raises the registry's error."""
        spec = spec.strip()
        whole = self._aliases.get(spec, spec)
        name, colon, argument = whole.partition(":")
        if name not in self._entries:
            load_plugins()
        found = self._entries.get(name)
        if found is None or (found.argument == "none" and colon) or (
                found.argument == "required" and not argument):
            usages = ", ".join(e.usage for e in self._entries.values())
            raise self.error(f"unknown {self.kind} spec {spec!r}; choose from: {usages}")
        return found, argument

    def build(self, spec: str, *args: Any, **kwargs: Any) -> T:
        """The object `spec` names, made by its factory with `args` and `kwargs`."""
        found, argument = self.entry(spec)
        if found.argument == "none":
            result: T = found.factory(*args, **kwargs)
        else:
            result = found.factory(argument, *args, **kwargs)
        return result
