"""Checking an edited policy file in the page: the same loader (and so the same file /
field / reason errors) as `oyster policy validate`, and what the file would change."""

from __future__ import annotations

from typing import Any

from oyster.taxonomy.policy import Policy

MAX_CHANGES = 200


def _flatten(value: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{path}.{k}" if path else str(k), out)
    elif isinstance(value, list) and value and all(isinstance(v, dict) and "id" in v
                                                   for v in value):
        for v in value:  # lists of things with ids (categories) compare by id
            _flatten({k: x for k, x in v.items() if k != "id"}, f"{path}[{v['id']}]", out)
    else:
        out[path] = value


def policy_changes(current: Policy, edited: Policy) -> list[tuple[str, str, str]]:
    """(field, value in force, edited value) for each field that differs; at most
    `MAX_CHANGES`, the last row saying how many more."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten(current.model_dump(mode="json"), "", before)
    _flatten(edited.model_dump(mode="json"), "", after)
    changed = [(k, _show(before.get(k)), _show(after.get(k)))
               for k in list(before) + [k for k in after if k not in before]
               if before.get(k, _MISSING) != after.get(k, _MISSING)]
    if len(changed) > MAX_CHANGES:
        extra = len(changed) - MAX_CHANGES
        changed = [*changed[:MAX_CHANGES], (f"… and {extra} more", "", "")]
    return changed


_MISSING = object()


def _show(value: Any) -> str:
    if value is None:
        return "—"
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "…"
