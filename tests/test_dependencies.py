"""Every core dependency in pyproject.toml is one bertc imports; peers measured against are extras."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where the installed `bertc` lives, plus the example `bertc demo` loads to build its model.
SOURCES = [ROOT / "compiler", ROOT / "passes", ROOT / "runtime", ROOT / "examples" / "minilm.py"]
# Distribution name -> the module it installs, where the two differ.
IMPORT_NAME = {"tensorflow-cpu": "tensorflow", "ai-edge-litert": "ai_edge_litert"}


def core_dependencies() -> list[str]:
    """Distribution names of ``[project] dependencies`` (what ``pip install .`` brings)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [spec.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower()
            for spec in project["dependencies"]]


def imported_top_levels() -> set[str]:
    """Top-level module names imported anywhere in SOURCES (at module level or inside functions)."""
    files = [f for src in SOURCES for f in ([src] if src.is_file() else src.rglob("*.py"))]
    names: set[str] = set()
    for f in files:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_peers_are_not_core_dependencies():
    assert "tf2onnx" not in core_dependencies()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(s.startswith("tf2onnx==") for s in project["optional-dependencies"]["bench"])


def unused(dependencies: list[str], imported: set[str]) -> list[str]:
    """The distributions among ``dependencies`` whose module is not in ``imported``."""
    return [d for d in dependencies if IMPORT_NAME.get(d, d.replace("-", "_")) not in imported]


def test_every_core_dependency_is_imported():
    left = unused(core_dependencies(), imported_top_levels())
    assert not left, f"core dependencies nothing under compiler/, passes/ or runtime/ imports: {left}"


def test_the_walk_sees_imports_inside_functions_and_catches_an_unused_one():
    imported = imported_top_levels()
    # matplotlib and networkx are imported only inside functions; the walk must find them
    assert {"matplotlib", "networkx", "onnx", "numpy", "rich", "tensorflow", "ai_edge_litert"} <= imported
    assert unused(["tf2onnx", "tensorflow-cpu", "ai-edge-litert"], imported) == ["tf2onnx"]
