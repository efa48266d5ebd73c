"""The package's layers: no module imports a layer above its own, no import cycles, each library in its layer.

Read from the source (every import, at the top, inside functions and under TYPE_CHECKING), so a
wrong-way import fails here before anyone has to find it in a traceback.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src" / "specks"

# Lowest first: a module may import its own layer and the ones before it, never one after.
LAYERS = (
    ("specks", "specks.errors"),  # the version, the exception tree
    ("specks.logs",),  # the log format
    ("specks.core",),  # image bytes -> Detections: options, planning, decoding, the Detector
    ("specks.config",),  # Settings read once from SPECKS_*
    ("specks.models",),  # model files: ONNX Runtime sessions, conversion, profiles
    ("specks.service",),  # one process serving models: the door every front-end calls
    ("specks.web",),  # HTTP: Flask, the compatible APIs, gunicorn, Ray Serve
    ("specks.tools",),  # offline work: evaluation, tuning, benchmarks, training
    ("specks.cli", "specks.__main__"),  # the command line
)
# Third-party libraries only some layers may import (the core runs anywhere: no web, no runtime).
ONLY_IN = {
    "flask": ("specks.web",),
    "gunicorn": ("specks.web",),
    "onnxruntime": ("specks.models", "specks.tools"),
    "onnx": ("specks.models", "specks.tools"),
    "torch": ("specks.tools.training", "specks.cli"),  # the CLI only checks that the train extra is there
    "ray": ("specks.web", "specks.cli"),
}
MAX_TOP_LEVEL_MODULES = 8


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports (a module of the package, or any other module by its name)
    line: int
    type_checking: bool = False  # under ``if TYPE_CHECKING:``, for annotations only


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[Import]:
    """Every import of one module: at the top, inside functions and under TYPE_CHECKING."""
    is_package = path.name == "__init__.py"

    def walk(node: ast.AST, type_checking: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            inner = type_checking or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(module, alias.name, child.lineno, inner)
            elif isinstance(child, ast.ImportFrom):
                base = _absolute(module, is_package, child)
                for alias in child.names:
                    submodule = f"{base}.{alias.name}"
                    yield Import(module, submodule if submodule in known else base, child.lineno, inner)
            yield from walk(child, inner)

    yield from walk(ast.parse(path.read_text()), False)


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[: len(parts) - (node.level - 1)]
    return ".".join([*parts, *([node.module] if node.module else [])])


def layer_of(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "specks") or module == "specks":
            return rank
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def all_imports() -> list[Import]:
    found = modules()
    known = set(found)
    return [i for module, path in sorted(found.items()) for i in imports_of(module, path, known)]


def package_imports() -> list[Import]:
    return [i for i in all_imports() if i.target == "specks" or i.target.startswith("specks.")]


def upward(imports: list[Import]) -> set[tuple[str, str]]:
    return {(i.module, i.target) for i in imports if layer_of(i.target) > layer_of(i.module)}


def cycles(imports: list[Import]) -> list[list[str]]:
    """Strongly connected groups of modules in the import graph (TYPE_CHECKING-only imports aside)."""
    graph: dict[str, set[str]] = {}
    for i in imports:
        graph.setdefault(i.module, set()).add(i.target)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return groups


# -- the package as it is ---------------------------------------------------------------------------
def test_no_module_imports_a_layer_above_its_own() -> None:
    found = sorted(upward(package_imports()))
    assert not found, "imports pointing up the layers: " + ", ".join(f"{m} -> {t}" for m, t in found)


def test_there_is_no_import_cycle() -> None:
    assert cycles([i for i in package_imports() if not i.type_checking]) == []


def test_libraries_stay_in_their_layers() -> None:
    misplaced = [
        f"{i.module}:{i.line} imports {i.target}"
        for i in all_imports()
        if i.target.split(".")[0] in ONLY_IN
        and not any(i.module.startswith(p) for p in ONLY_IN[i.target.split(".")[0]])
    ]
    assert not misplaced


def test_the_top_level_is_a_short_list() -> None:
    top_level = sorted(p.stem for p in PACKAGE_ROOT.glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level
    for package in ("core", "models", "service", "web", "tools", "cli"):
        assert (PACKAGE_ROOT / package / "__init__.py").is_file()


# -- the checks themselves ------------------------------------------------------------------------
def test_a_wrong_way_import_and_a_cycle_are_found() -> None:
    """The checks on made-up imports: the core importing the service, and two modules importing each other."""
    made_up = [
        Import("specks.core.pipeline", "specks.service.holder", 1),
        Import("specks.service.holder", "specks.core.pipeline", 1),
        Import("specks.web.app", "specks.service.holder", 1),
    ]
    assert upward(made_up) == {("specks.core.pipeline", "specks.service.holder")}
    assert cycles(made_up) == [["specks.core.pipeline", "specks.service.holder"]]


@pytest.mark.parametrize(
    ("module", "rank"),
    [("specks", 0), ("specks.errors", 0), ("specks.core.planning", 2), ("specks.config", 3), ("specks.cli", 8)],
)
def test_layers_are_found_by_package(module: str, rank: int) -> None:
    assert layer_of(module) == rank


def test_relative_imports_resolve_from_the_module_s_package(tmp_path: Path) -> None:
    source = tmp_path / "pipeline.py"
    source.write_text("from ..config import Settings\nfrom .planning import plan_request\n")
    known = {"specks.config", "specks.core.planning", "specks.core.pipeline"}
    found = {i.target for i in imports_of("specks.core.pipeline", source, known)}
    assert found == {"specks.config", "specks.core.planning"}
