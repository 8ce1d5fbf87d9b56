"""The package's layers: imports flow data -> models -> diffusion -> tasks -> evaluation -> reporting, and only
evaluation imports metrics (which import nothing above data)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "meddiff"
LAYERS = ["data", "models", "diffusion", "tasks", "metrics", "evaluation", "reporting"]
# what each layer may import from meddiff's layers (modules at the package root, e.g. config, errors, labels,
# atomic, are shared by all)
ALLOWED = {
    "data": {"data"},
    "models": {"data", "models"},
    "diffusion": {"data", "models", "diffusion"},
    "tasks": {"data", "models", "diffusion", "tasks"},
    "metrics": {"data", "metrics"},
    "evaluation": {"data", "models", "diffusion", "tasks", "metrics", "evaluation"},
    "reporting": {"data", "models", "diffusion", "tasks", "evaluation", "reporting"},
}


def _imports(path: Path) -> set[str]:
    """meddiff layers a module imports (at any depth of the file, lazy imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "meddiff" and len(parts) > 1 and parts[1] in LAYERS:
                out.add(parts[1])
    return out


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_imports_only_lower_layers(layer):
    bad = {
        str(path.relative_to(PACKAGE)): sorted(_imports(path) - ALLOWED[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
        if _imports(path) - ALLOWED[layer]
    }
    assert not bad, f"{layer} imports layers above it: {bad}"


def test_the_checker_sees_a_violation(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from meddiff.reporting.tables import write_table\n")
    assert _imports(module) == {"reporting"}
