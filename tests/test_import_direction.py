"""Data moves one way: frontend -> IR -> passes -> targets -> runtime.

Passes and analyses import nothing from ``bertc.runtime`` or ``bertc.targets``:
what they need to run a graph (random calibration data, an engine) comes through
the pass context, and what a target runs they learn from its capability table
through ``bertc.legalize``.  No target imports another target's module.  A plain
walk over each module's import statements, top level and inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"compiler": "bertc", "passes": "bertc.passes", "runtime": "bertc.runtime"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT)
    top = PACKAGES[rel.parts[0]]
    parts = [p for p in rel.with_suffix("").parts[1:] if p != "__init__"]
    return ".".join([top, *parts])


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, resolved from relative imports."""
    tree = ast.parse(path.read_text())
    package = module_name(path).rsplit(".", 0 if path.name == "__init__.py" else 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            out.add(prefix)
            out.update(f"{prefix}.{a.name}" for a in node.names)  # `from bertc import runtime`
    return out


def _files(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("path", _files("passes", "compiler/analysis"), ids=lambda p: str(p.relative_to(ROOT)))
def test_passes_and_analyses_do_not_import_runtimes_or_targets(path):
    bad = sorted(n for n in imports(path) if _is_under(n, "bertc.runtime") or _is_under(n, "bertc.targets"))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: hand what it needs in through the PassContext"


TARGET_MODULES = {"onnx": {"bertc.targets.onnx", "bertc.targets.onnx_emitter", "bertc.targets.onnx_quant",
                           "bertc.targets.onnx_fused"},
                  "tflite": {"bertc.targets.tflite", "bertc.targets.tflite_builder", "bertc.targets.tflite_quant",
                             "bertc.targets.tflite_fused", "bertc.targets.tflite_core", "bertc.targets.tflite_checks"}}


@pytest.mark.parametrize("target", sorted(TARGET_MODULES))
def test_no_target_imports_another_targets_module(target):
    others = set().union(*(mods for name, mods in TARGET_MODULES.items() if name != target))
    for mod in TARGET_MODULES[target]:
        path = ROOT / "compiler" / "targets" / (mod.rsplit(".", 1)[1] + ".py")
        bad = sorted(n for n in imports(path) if any(_is_under(n, o) for o in others))
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_every_target_module_is_listed():
    listed = set().union(*TARGET_MODULES.values()) | {"bertc.targets.base", "bertc.targets"}
    assert {module_name(p) for p in _files("compiler/targets")} == listed


def test_the_walk_sees_relative_and_local_imports(tmp_path):
    """The check can fail: a relative import inside a function is found and resolved."""
    fake = ROOT / "passes" / "_direction_probe.py"
    fake.write_text("def f():\n    from ..runtime.calib import random_calibration\n")
    try:
        assert "bertc.runtime.calib" in imports(fake)
    finally:
        fake.unlink()


# A target's modules form a tree: its table is assembled in its main module (onnx.py, tflite.py) from
# modules that never import that main module back, so no module patches another's table.
@pytest.mark.parametrize("target", sorted(TARGET_MODULES))
def test_a_targets_parts_do_not_import_its_main_module(target):
    main = f"bertc.targets.{target}"
    for mod in TARGET_MODULES[target] - {main}:
        path = ROOT / "compiler" / "targets" / (mod.rsplit(".", 1)[1] + ".py")
        assert not any(n == main or n.startswith(main + ".") for n in imports(path)), f"{path.name} imports {main}"
