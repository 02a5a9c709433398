"""The import structure of ``cxrbench``: no import cycles, and no module imports from a layer above its own.

Every import of a ``cxrbench`` module counts: at the top of a file, inside a function, and inside an
``if TYPE_CHECKING:`` block. A type-only import still means the module knows the other's names, and a
cycle through one is a cycle for every reader and type checker, so it counts like any other.

The layers of the flow are :data:`LAYERS`, lowest first (docs/architecture.md describes them). A module
may import modules of its own layer and of the layers below it; every module of the package must belong
to a layer, so a new module is placed on purpose.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cxrbench"

#: (layer, module prefixes), lowest layer first. A prefix names a module or a package and everything in it;
#: the bare package ``cxrbench`` (its ``__init__``) is matched exactly.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("cxrbench", "cxrbench.errors", "cxrbench.environment", "cxrbench.hookspecs", "cxrbench.metric",
                    "cxrbench.model", "cxrbench.data.schema", "cxrbench.protocol", "cxrbench.registry",
                    "cxrbench.results", "cxrbench.result_schema", "cxrbench.distributed", "cxrbench.pretrained")),
    ("metrics", ("cxrbench.metrics",)),
    ("models", ("cxrbench.attention", "cxrbench.diffusion", "cxrbench.box_prior", "cxrbench.real_images",
                "cxrbench.nearest_report")),
    ("data", ("cxrbench.data",)),
    ("plugins", ("cxrbench.builtins",)),
    ("stages", ("cxrbench.plan", "cxrbench.artifacts", "cxrbench.scoring")),
    ("flows", ("cxrbench.runner", "cxrbench.rescore", "cxrbench.rederive", "cxrbench.compare")),
    ("outputs", ("cxrbench.leaderboard", "cxrbench.report", "cxrbench.browser")),
    ("commands", ("cxrbench.cli", "cxrbench.__main__", "cxrbench.bench", "cxrbench.testing")),
)


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (a package is its ``__init__``)."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _known(name: str, modules: dict[str, Path]) -> str | None:
    """``name`` or the closest package above it that is a module of ``modules``."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported_names(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The names an import statement imports: ``from a import b`` gives ``a.b`` when that is a module, else ``a``."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([base] if base else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def import_edges(modules: dict[str, Path]) -> dict[str, dict[str, int]]:
    """module -> {imported cxrbench module: line of its first import}, counting every import statement."""
    edges: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        found: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            for name in _imported_names(node, module, path.name == "__init__.py", modules):
                target = _known(name, modules) if name.split(".")[0] == "cxrbench" else None
                if target is not None and target != module:
                    found[target] = min(found.get(target, node.lineno), node.lineno)
        edges[module] = found
    return edges


def import_cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return cycles


def layer_of(module: str) -> int | None:
    """Position in :data:`LAYERS` of the layer whose longest prefix matches ``module``; None: no layer."""
    best: tuple[int, int] | None = None
    for position, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or (prefix != "cxrbench" and module.startswith(prefix + "."))
            if matches and (best is None or len(prefix) > best[0]):
                best = (len(prefix), position)
    return None if best is None else best[1]


def upward_imports(edges: dict[str, dict[str, int]], modules: dict[str, Path]) -> list[str]:
    """One line per import of a module of a higher layer than the importer's."""
    problems = []
    for module, targets in sorted(edges.items()):
        for target, line in sorted(targets.items()):
            own, other = layer_of(module), layer_of(target)
            if own is not None and other is not None and other > own:
                problems.append(f"{_shown(modules[module])}:{line}: {module} ({LAYERS[own][0]}) "
                                f"imports {target} ({LAYERS[other][0]})")
    return problems


def _shown(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent)) if path.is_relative_to(PACKAGE.parent) else str(path)


def _describe(cycle: list[str], edges: dict[str, dict[str, int]], modules: dict[str, Path]) -> str:
    inside = [f"{_shown(modules[a])}:{line} imports {b}"
              for a in cycle for b, line in sorted(edges[a].items()) if b in cycle]
    return " <-> ".join(cycle) + "\n    " + "\n    ".join(inside)


def test_no_import_cycles() -> None:
    modules = module_files()
    edges = import_edges(modules)
    cycles = import_cycles(edges)
    assert not cycles, "import cycles among cxrbench modules:\n  " + "\n  ".join(
        _describe(c, edges, modules) for c in cycles)


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in module_files() if layer_of(m) is None)
    assert not unplaced, f"modules in no layer (add them to LAYERS in {Path(__file__).name}): {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own() -> None:
    modules = module_files()
    problems = upward_imports(import_edges(modules), modules)
    assert not problems, "imports from a higher layer:\n  " + "\n  ".join(problems)


def _write_package(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / "cxrbench" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_files(root / "cxrbench")


@pytest.mark.parametrize("importer", [
    "def f():\n    from cxrbench.b import y\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from cxrbench.b import y\n",
    "from . import b\n",
])
def test_a_cycle_through_a_function_a_type_only_or_a_relative_import_is_found(tmp_path: Path, importer: str) -> None:
    modules = _write_package(tmp_path, {"__init__.py": "", "a.py": importer, "b.py": "from cxrbench.a import x\n"})
    assert import_cycles(import_edges(modules)) == [["cxrbench.a", "cxrbench.b"]]


def test_an_import_from_a_higher_layer_is_named(tmp_path: Path) -> None:
    modules = _write_package(tmp_path, {"__init__.py": "", "errors.py": "def f():\n    import cxrbench.cli\n",
                                        "cli.py": "from cxrbench.errors import E\n"})
    problems = upward_imports(import_edges(modules), modules)
    assert len(problems) == 1 and "cxrbench.errors (foundation) imports cxrbench.cli (commands)" in problems[0]


#: The longest a function of cxrbench/ or plugins/ may be, from its ``def`` line to its last line.
MAX_FUNCTION_LINES = 60


def long_functions(paths: list[Path], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``file:line name (n lines)`` of every function in ``paths`` longer than ``limit`` lines."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    found.append(f"{path}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_function_of_the_core_or_the_plugins_is_over_60_lines() -> None:
    root = Path(__file__).resolve().parent.parent
    paths = sorted((root / "cxrbench").rglob("*.py")) + sorted((root / "plugins").glob("*/*.py"))
    assert len(paths) > 50
    problems = long_functions(paths)
    assert not problems, "functions over 60 lines:\n  " + "\n  ".join(problems)


def test_a_long_function_is_found(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("def short():\n    pass\n\n\ndef long():\n" + "    x = 1\n" * 60)
    assert long_functions([path]) == [f"{path}:5 long (61 lines)"]
