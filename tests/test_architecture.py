"""The shape of the code: imports run one way, inference loads without Lightning, functions stay short."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, need

#: Layers from the bottom: a module may import its own package and anything of a lower layer, nothing higher.
LAYERS = {
    "fer.models": 0,
    "fer.device": 0,
    "fer.files": 0,
    "fer.face": 1,
    "fer.data": 2,
    "fer.shipped": 3,
    "fer.predictor": 3,
    "fer.adaptation": 3,
    "fer.checkpoint": 4,
    "fer.export": 5,
    "fer.training": 6,
    "fer.inference": 6,
    "fer.evaluate": 7,
    "fer.calibration": 5,
    "fer.web": 7,
    "fer.config": 8,
}


def _modules() -> dict[str, Path]:
    paths = sorted((ROOT / "fer").rglob("*.py"))
    names = {}
    for path in paths:
        parts = path.relative_to(ROOT).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _imports(path: Path) -> set[str]:
    """Every ``fer`` module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("fer"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("fer")}
    return found


def _layer(module: str) -> tuple[str, int]:
    group = next(g for g in sorted(LAYERS, key=len, reverse=True) if module == g or module.startswith(g + "."))
    return group, LAYERS[group]


def test_imports_run_downwards_only():
    upward = []
    for module, path in _modules().items():
        if module == "fer":
            continue
        group, layer = _layer(module)
        for imported in _imports(path):
            other, other_layer = _layer(imported)
            if other != group and other_layer >= layer:
                upward.append(f"{module} -> {imported}")
    assert not upward


def test_no_two_files_import_each_other():
    modules = _modules()
    graph = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    mutual = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if a in graph.get(b, ())})
    assert not mutual


def test_no_function_is_over_60_lines():
    long = []
    for path in [*sorted((ROOT / "fer").rglob("*.py")), ROOT / "infer.py", ROOT / "train.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long


def test_recognising_a_photo_loads_neither_lightning_nor_torchmetrics_nor_hydra():
    photo = need(DATA / "photos" / "multi_face.jpg")
    script = (
        "import sys, cv2\n"
        "from fer.inference.recognizer import EmotionRecognizer\n"
        "faces = EmotionRecognizer(device='cpu').predict(cv2.imread(sys.argv[1]), track=False)\n"
        "loaded = [m for m in ('pytorch_lightning', 'lightning', 'torchmetrics', 'hydra') if m in sys.modules]\n"
        "print(len(faces), loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(photo)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "5 []"


@pytest.mark.parametrize("module", ["fer.checkpoint", "fer.export", "fer.web.app"])
def test_reading_checkpoints_and_serving_load_no_lightning(module):
    script = (
        f"import sys, {module}; print([m for m in ('pytorch_lightning', 'torchmetrics', 'hydra') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr[-3000:]
