"""The layout's two import rules, checked on the source of every module of ``hw`` and ``sw``:

(a) no module under ``hw/`` imports ``sw`` (any import statement anywhere in the file: at the top, inside
    a function, under ``if TYPE_CHECKING``);
(b) the graph of the project's modules has no cycle.

The graph is built from every import statement of every module (an AST walk, so imports inside
functions count too): ``import a.b`` is an edge to ``a.b``; ``from a import b`` is an edge to
``a.b`` if that is a module of the project, else to ``a``; relative imports are resolved against the
importing module's package. A package's ``__init__`` is its own node (``sw.cli`` is
``sw/cli/__init__.py``), and ``import a.b.c`` is an edge to ``a.b.c`` only (not to the packages
``a`` and ``a.b`` whose ``__init__`` Python runs first). No edge is ignored: a package's ``__init__``
that imports its own submodules (``sw/cli/__init__.py``) makes no cycle as long as the submodules
import their siblings (``sw.cli.common``), not the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hw", "sw")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """``{dotted name: file}`` of every module of the project's packages."""
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports(name: str, path: Path, modules) -> list[tuple[str, int]]:
    """``(imported module, line)`` of every import statement of module ``name`` (see the docstring)."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.append((sub if sub in modules else mod, node.lineno))
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """``{module: {imported project module: first line}}``."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        edges = {}
        for target, line in imports(name, path, modules):
            if target in modules and target != name:
                edges.setdefault(target, line)
        graph[name] = edges
    return graph


def find_cycle(graph) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state = dict.fromkeys(graph, 0)    # 0 new, 1 on the current path, 2 done
    for start in sorted(graph):
        if state[start]:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_hw_never_imports_sw():
    modules = project_modules()
    bad = [f"{path.relative_to(ROOT)}:{line}: imports {target}"
           for name, path in modules.items() if name.split(".")[0] == "hw"
           for target, line in imports(name, path, modules)
           if target == "sw" or target.startswith("sw.")]
    assert not bad, "hw imports sw:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        where = [f"{a} -> {b} ({project_modules()[a].relative_to(ROOT)}:{graph[a][b]})"
                 for a, b in zip(cycle, cycle[1:])]
        print("import cycle:\n  " + "\n  ".join(where))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_cycles():
    """The search itself: a cycle is found with its members, a DAG has none."""
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b": 1, "c": 1}, "b": {"c": 1}, "c": {}}) is None
