"""The package's layout: dependencies point one way (data <- models <- training/evaluation <- reporting),
no import cycle between modules, no module far over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "petseg"
# A package and the top-level modules or packages it must never import, not even inside a function.
# ``config`` checks whole experiment configs with the training and model code, so it sits above them; the
# layers below read and check their settings through ``config_files``.
LAYERS = {
    "data": ("config", "models", "training", "evaluation", "reporting", "experiment", "demo"),
    "models": ("config", "training", "evaluation", "reporting", "experiment", "demo"),
    "evaluation": ("config", "training", "reporting", "experiment", "demo"),
    "training": ("config", "reporting", "experiment", "demo"),
}
MAX_LINES = 520


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """petseg modules imported by ``path``, at module level or inside a function."""
    nodes = ast.walk(ast.parse(path.read_text()))
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("petseg"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("petseg"):
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            found.update(submodules or {node.module})  # ``from petseg import book`` is petseg.book
    return {name for name in found if name in modules and name != _module(path)}


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_dependencies_point_one_way(layer: str) -> None:
    offending = []
    for path in (PACKAGE / layer).rglob("*.py"):
        for name in _imports(path):
            if name.split(".")[1] in LAYERS[layer]:
                offending.append(f"{_module(path)} -> {name}")
    assert not offending


def test_config_files_stands_on_the_foundation_only() -> None:
    """The settings every layer reads are checked without any layer above them (species names: data.labels)."""
    assert _imports(PACKAGE / "config_files.py") <= {"petseg.errors", "petseg.profiles"}


def test_no_import_cycle_between_modules() -> None:
    graph = {_module(path): _imports(path) for path in _sources()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue  # a package and its own modules
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_no_module_is_far_over_500_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _sources() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long


def test_old_flat_modules_are_gone() -> None:
    old = ["train", "metrics", "report", "reference", "reference_runs", "interactive", "calibration", "analysis",
           "robustness", "prompts", "checkpoints"]
    assert not [name for name in old if (PACKAGE / f"{name}.py").exists()]
