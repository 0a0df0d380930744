"""The package's imports run one way: format/errors ← engine ← query ← api ← plot ← cli.

Every module under bamstore/ is parsed (not imported), and every import in it is checked,
module-level and inside functions alike (a lazy import is still a dependency). A module may
import its own layer or a lower one; an import of a higher layer fails, naming the module, the
line and the import. The package root's lazy `BamStore` attribute (`bamstore/__init__.py`
imports `bamstore.api` on first use) is the one exception: `from bamstore import BamStore` is
QuantNado's import, and everything below the API imports the root for `__version__` only.
Imports between the subpackages (layout, engine, query, ...) must also not form a cycle.
"""

from __future__ import annotations

import ast
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bamstore"
LAYERS = {"format": 0, "engine": 1, "query": 2, "api": 3, "plot": 4, "cli": 5}
# the first part of a module's name below `bamstore`, and its layer
UNITS = {
    "errors": "format",
    "options": "format",
    "extras": "format",
    "storage": "format",
    "http_ranges": "format",
    "layout": "format",
    "simulate": "format",
    "engine": "engine",
    "query": "query",
    "api": "api",
    "plot": "plot",
    "cli": "cli",
}
ALLOWED = {("bamstore", "bamstore.api")}  # the root's lazy `BamStore` (see above)
PYX_IMPORT = re.compile(
    r"^\s*(?:from\s+(bamstore[\w.]*)\s+c?import|c?import\s+(bamstore[\w.]*))", re.M
)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {
        module_name(path, root): path
        for path in sorted(root.rglob("*"))
        if path.suffix in (".py", ".pyx") and "__pycache__" not in path.parts
    }


def imports(path: Path, modules: dict[str, Path], root: Path) -> Iterator[tuple[int, str, str]]:
    """(line, the import as written, the bamstore module it loads) for every import in `path`."""
    if path.suffix == ".pyx":  # Cython: not Python syntax, but its imports are plain lines
        text = path.read_text()
        for match in PYX_IMPORT.finditer(text):
            target = match.group(1) or match.group(2)
            yield text.count("\n", 0, match.start()) + 1, match.group(0).strip(), target
        return
    package = module_name(path if path.name == "__init__.py" else path.parent, root)
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bamstore":
                    yield node.lineno, f"import {alias.name}", alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            if base.split(".")[0] != "bamstore":
                continue
            for alias in node.names:
                written = f"from {'.' * node.level}{node.module or ''} import {alias.name}"
                submodule = f"{base}.{alias.name}"  # `from bamstore import layout`: a module
                yield node.lineno, written, submodule if submodule in modules else base


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "format"  # the package root: __version__ (and the lazy BamStore)
    assert parts[1] in UNITS, f"{module}: no layer; add bamstore.{parts[1]} to UNITS"
    return UNITS[parts[1]]


def unit_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def upward_imports(root: Path = PACKAGE) -> list[str]:
    modules = all_modules(root)
    problems = []
    for module, path in modules.items():
        mine = layer_of(module)
        for line, written, target in imports(path, modules, root):
            theirs = layer_of(target)
            if LAYERS[theirs] > LAYERS[mine] and (module, target) not in ALLOWED:
                problems.append(
                    f"{path.relative_to(root.parent)}:{line}: {module} ({mine}) imports "
                    f"{target} ({theirs}): `{written}`"
                )
    return problems


def unit_cycles(root: Path = PACKAGE) -> list[list[str]]:
    """Cycles in the graph of subpackages (bamstore.layout, bamstore.engine, ...)."""
    modules = all_modules(root)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        for _, _, target in imports(path, modules, root):
            if (module, target) not in ALLOWED and unit_of(target) != unit_of(module):
                graph.setdefault(unit_of(module), set()).add(unit_of(target))
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(unit: str, trail: list[str]) -> None:
        state[unit] = 1
        for nxt in sorted(graph.get(unit, ())):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[unit] = 2

    for unit in sorted(graph):
        if unit not in state:
            visit(unit, [unit])
    return cycles


def test_every_module_has_a_layer() -> None:
    modules = all_modules()
    assert "bamstore.engine.kernel" in modules and "bamstore.engine._coverage" in modules
    for module in modules:
        layer_of(module)


def test_no_module_imports_a_higher_layer() -> None:
    problems = upward_imports()
    assert not problems, "imports that run up the layers:\n" + "\n".join(problems)


def test_no_import_cycle_between_subpackages() -> None:
    cycles = unit_cycles()
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _copy_with(tmp_path: Path, module: str, source: str) -> Path:
    """A copy of the package whose `module` is replaced by `source`."""
    copy = tmp_path / "bamstore"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    (copy / module).write_text(source)
    return copy


@pytest.mark.parametrize(
    ("module", "source", "expected"),
    [
        (
            "query/source.py",
            "def f():\n    from bamstore.api import BamStore\n",
            "bamstore/query/source.py:2: bamstore.query.source (query) imports bamstore.api "
            "(api): `from bamstore.api import BamStore`",
        ),
        (
            "layout/model.py",
            "from bamstore.engine import shard\n",
            "bamstore/layout/model.py:1: bamstore.layout.model (format) imports "
            "bamstore.engine.shard (engine): `from bamstore.engine import shard`",
        ),
        (
            "engine/merge.py",
            "from ..query import reduce\n",
            "bamstore/engine/merge.py:1: bamstore.engine.merge (engine) imports "
            "bamstore.query.reduce (query): `from ..query import reduce`",
        ),
    ],
)
def test_an_upward_import_is_named(tmp_path: Path, module: str, source: str, expected: str):
    """The check can fail: a copy of the package with one bad import in it."""
    assert upward_imports(_copy_with(tmp_path, module, source)) == [expected]


def test_a_cycle_between_subpackages_is_named(tmp_path: Path) -> None:
    copy = _copy_with(tmp_path, "errors.py", "from bamstore.options import ReadFilter\n")
    assert ["bamstore.errors", "bamstore.options", "bamstore.errors"] in unit_cycles(copy)
