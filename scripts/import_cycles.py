"""Import cycles between the modules of src/oyster, found by walking the source (no imports run).

An edge A → B is an `import` in A that names B (a module, or the package whose `__init__` it
runs), at module level or inside a function: a deferred import is still a dependency, only a
later one. Imports under `if TYPE_CHECKING:` are left out: they never run. Prints each group of
modules that reach each other (a strongly connected component of more than one module) and
the count; `--json` writes the same as JSON. Exit status 1 when there is any cycle.

    python scripts/import_cycles.py [--src src] [--json]
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path


def module_names(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every module of `package` under `src`."""
    out: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_names(tree: ast.AST, module: str, is_package: bool,
                   modules: set[str]) -> set[str]:
    """The modules of `modules` that an import in `tree` loads (relative imports resolved).
    `from pkg import sub` names the submodule only, as `import pkg.sub` does: running the
    parent package's `__init__` on the way is not an arrow of its own."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            subs = {f"{base}.{alias.name}" for alias in node.names}
            names.update(subs & modules)
            if subs - modules:
                names.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def import_graph(src: Path, package: str = "oyster") -> dict[str, set[str]]:
    modules = module_names(src, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text("utf-8"), str(path))
        targets = imported_names(tree, name, path.name == "__init__.py", set(modules))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1] / "src")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    graph = import_graph(args.src)
    found = cycles(graph)
    edges = sum(len(v) for v in graph.values())
    if args.json:
        print(json.dumps({"modules": len(graph), "edges": edges, "cycles": found}, indent=2))
    else:
        for component in found:
            inner = {m: sorted(graph[m] & set(component)) for m in component}
            print(f"cycle of {len(component)} modules:")
            for m, targets in inner.items():
                print(f"  {m} -> {', '.join(targets)}")
        print(f"{len(graph)} modules, {edges} import edges, {len(found)} cycles "
              f"({sum(len(c) for c in found)} modules in them)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
