"""The package's shape: no import cycles, no private name used across modules, a public API.

Both checks read the source with ``ast`` (every import, also those inside functions: a
deferred import only hides a cycle), so they fail on the commit that adds the defect.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "skilldistill"
PACKAGE = "skilldistill"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_ROOT.rglob("*.py"))}


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def resolve_from(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package(path):
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def with_parents(name: str, modules: dict[str, Path]) -> list[str]:
    """Importing ``a.b.c`` runs ``a/__init__``, ``a/b/__init__`` and ``a/b/c``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in modules]


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules ``module`` imports, anywhere in its body.

    A module's own ancestor packages are left out: Python has run their ``__init__`` before
    the module itself, so ``from .app import x`` inside ``cli/`` adds no edge to ``cli``.
    """
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                out.update(with_parents(alias.name, modules))
        elif isinstance(node, ast.ImportFrom):
            source = resolve_from(module, path, node)
            out.update(with_parents(source, modules))
            for alias in node.names:  # ``from . import submodule``
                if f"{source}.{alias.name}" in modules:
                    out.add(f"{source}.{alias.name}")
    own_ancestors = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)}
    return {m for m in out if m.startswith(PACKAGE) and m != module and m not in own_ancestors}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    return {m: imported_modules(m, p, modules) for m, p in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))
    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (each line: modules that import each other, directly or around a loop):\n" + \
        "\n".join(" <-> ".join(c) for c in cycles)


def test_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def private_uses(module: str, path: Path, modules: dict[str, Path]) -> list[str]:
    """``from other import _name`` and ``other_module._name`` inside ``module``."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = resolve_from(module, path, node)
            if not source.startswith(PACKAGE) or source == module:
                continue
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    module_aliases[alias.asname or alias.name] = f"{source}.{alias.name}"
                elif alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.name}:{node.lineno} imports {alias.name} from {source}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PACKAGE) and alias.asname:
                    module_aliases[alias.asname] = alias.name
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in module_aliases and module_aliases[node.value.id] != module
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            found.append(f"{path.name}:{node.lineno} uses {module_aliases[node.value.id]}.{node.attr}")
    return found


def test_no_private_name_used_across_modules():
    modules = package_modules()
    found = [use for m, p in modules.items() for use in private_uses(m, p, modules)]
    assert not found, "private names used from another module:\n" + "\n".join(found)


def test_private_use_finder_finds_one(tmp_path):
    pkg = tmp_path / "skilldistill"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def _helper():\n    pass\n")
    (pkg / "b.py").write_text("from .a import _helper\nfrom . import a\na._helper()\n")
    modules = {"skilldistill": pkg / "__init__.py", "skilldistill.a": pkg / "a.py", "skilldistill.b": pkg / "b.py"}
    assert len(private_uses("skilldistill.b", pkg / "b.py", modules)) == 2
