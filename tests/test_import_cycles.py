"""scripts/import_cycles.py, the check `make lint` runs: it finds a cycle through deferred and
relative imports, leaves out imports that only type checkers run, and finds none in Oyster."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("import_cycles", ROOT / "scripts/import_cycles.py")
assert spec and spec.loader
import_cycles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_cycles)


def test_cycles_through_deferred_and_relative_imports_are_found(tmp_path: Path) -> None:
    pkg = tmp_path / "oyster"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from oyster.sub import b\n")  # deferred
    (pkg / "sub" / "b.py").write_text("from .. import a\n")  # relative, back to a
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from oyster import a\n")
    (pkg / "d.py").write_text("from oyster import c\n")
    graph = import_cycles.import_graph(tmp_path)
    assert graph["oyster.a"] == {"oyster.sub.b"} and graph["oyster.sub.b"] == {"oyster.a"}
    assert graph["oyster.c"] == set() and graph["oyster.d"] == {"oyster.c"}
    assert import_cycles.cycles(graph) == [["oyster.a", "oyster.sub.b"]]


def test_oyster_has_no_import_cycle() -> None:
    assert import_cycles.cycles(import_cycles.import_graph(ROOT / "src")) == []
