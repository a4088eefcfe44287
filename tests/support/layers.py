"""The import graph of the common layer (``shared/okyaku``), read from the source with ``ast``.

Every ``import``/``from ... import`` of an ``okyaku`` module is an edge, of one of three kinds:

- ``module``: at module level (class bodies and module-level ``try`` included);
- ``deferred``: inside a function; it runs later, but it runs, so it is a run-time edge too
  (a deferred import hides a cycle from Python, not from the design);
- ``type_checking``: under ``if TYPE_CHECKING:``; never runs.

Cycles are counted over the run-time edges (module + deferred). ``tests/unit/test_layers.py``
holds the layer order and fails on a new cycle or an upward import.

    python -m tests.support.layers                 # counts and lists the cycles of this checkout
    python -m tests.support.layers --root PATH     # ... of another okyaku package folder
    python -m tests.unit.test_layers               # cycles and upward imports (the test's rules)
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "shared" / "okyaku"
ImportKind = Literal["module", "deferred", "type_checking"]
RUNTIME_KINDS: frozenset[str] = frozenset({"module", "deferred"})
ALL_KINDS: frozenset[str] = RUNTIME_KINDS | {"type_checking"}


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. "okyaku.crm.api"
    target: str  # the imported okyaku module (a package means its __init__)
    line: int
    kind: ImportKind

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}, {self.kind})"


def module_files(root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """``okyaku.x.y`` -> its file, for every .py file under ``root``."""
    modules: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root.parent).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, kind: ImportKind) -> Iterator[tuple[ast.Import | ast.ImportFrom, ImportKind]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, kind
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.body:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), "type_checking")
            for statement in child.orelse:
                yield from _walk(ast.Module(body=[statement], type_ignores=[]), kind)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, "type_checking" if kind == "type_checking" else "deferred")
        else:
            yield from _walk(child, kind)


def _resolve(name: str, known: Mapping[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, path: Path, known: Mapping[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: list[Import] = []
    for node, kind in _walk(tree, "module"):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # "from okyaku.crm import schemas" names the module okyaku.crm.schemas.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        for name in names:
            if name != "okyaku" and not name.startswith("okyaku."):
                continue
            target = _resolve(name, known)
            if target is not None and target != module:
                found.append(Import(module, target, node.lineno, kind))
    return found


def all_imports(root: Path = PACKAGE_ROOT) -> list[Import]:
    """Every okyaku import under ``root`` (once per statement and target)."""
    known = module_files(root)
    found = {i: None for module, path in known.items() for i in imports_of(module, path, known)}
    return list(found)


def import_graph(imports: Iterable[Import], kinds: Iterable[str] = RUNTIME_KINDS) -> dict[str, set[str]]:
    """module -> the modules it imports by an edge of one of ``kinds`` (every module is a key)."""
    wanted = frozenset(kinds)
    graph: dict[str, set[str]] = {}
    for found in imports:
        graph.setdefault(found.source, set())
        graph.setdefault(found.target, set())
        if found.kind in wanted:
            graph[found.source].add(found.target)
    return graph


def strongly_connected(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); groups of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def elementary_cycles(graph: Mapping[str, set[str]], limit: int = 1000) -> list[tuple[str, ...]]:
    """Every simple cycle (up to ``limit``), each rotated to start at its smallest module."""
    cycles: set[tuple[str, ...]] = set()
    for group in strongly_connected(graph):
        members = set(group)
        for start in group:
            # Cycles through ``start`` that use only members not smaller than it: each cycle once.
            allowed = {m for m in members if m >= start}
            path = [start]
            work: list[Iterator[str]] = [iter(sorted(graph[start] & allowed))]
            while work and len(cycles) < limit:
                successor = next(work[-1], None)
                if successor is None:
                    work.pop()
                    path.pop()
                elif successor == start:
                    cycles.add(tuple(path))
                elif successor not in path:
                    path.append(successor)
                    work.append(iter(sorted(graph[successor] & allowed)))
    return sorted(cycles, key=lambda cycle: (len(cycle), cycle))


def cycle_text(cycle: Iterable[str]) -> str:
    members = list(cycle)
    return " -> ".join([*members, members[0]])


def edge_of(imports: Iterable[Import], source: str, target: str, kinds: Iterable[str]) -> Import:
    wanted = frozenset(kinds)
    return next(i for i in imports if i.source == source and i.target == target and i.kind in wanted)


def print_cycles(imports: list[Import]) -> tuple[int, int]:
    """Prints the cycles (run-time ones, then those a TYPE_CHECKING import closes); returns both counts."""
    runtime = elementary_cycles(import_graph(imports))
    every = elementary_cycles(import_graph(imports, ALL_KINDS))
    type_only = [cycle for cycle in every if cycle not in set(runtime)]
    print(f"{len(runtime)} run-time import cycles; {len(type_only)} more through TYPE_CHECKING imports")
    for title, cycles, kinds in (("run-time", runtime, RUNTIME_KINDS), ("type-checking", type_only, ALL_KINDS)):
        for cycle in cycles:
            print(f"  {title} cycle: {cycle_text(cycle)}")
            for source, target in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
                print(f"      {edge_of(imports, source, target, kinds)}")
    return len(runtime), len(type_only)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=PACKAGE_ROOT, help="the okyaku package folder to read")
    arguments = parser.parse_args(argv)
    imports = all_imports(arguments.root)
    print(f"{len(module_files(arguments.root))} modules, {len(imports)} okyaku imports")
    runtime, type_only = print_cycles(imports)
    return 1 if runtime or type_only else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
