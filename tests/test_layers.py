"""The package's data flow runs one way: no module imports one of a higher layer (at run time, lazily or not)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "srdeblur"

# io -> degrade/kernels -> nets + classical -> blind -> inference -> metrics -> evaluation/train/batch -> cli/report
LAYERS = {
    0: {"codecs", "devices", "resize", "classical", "kernels", "metrics", "html"},
    1: {"metadata", "io"},
    2: {"degrade", "photoblur", "tiling"},
    3: {"nets", "int8", "blind"},
    4: {"weights"},
    5: {"inference"},
    6: {"evaluation", "training_data", "train", "batch"},
    7: {"visual", "strips", "report", "cli", "cli_options", "cli_tools", "__main__"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def _runtime_imports(tree: ast.Module) -> set[str]:
    """srdeblur modules imported anywhere in ``tree`` except under ``if TYPE_CHECKING:``."""
    skipped = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If)
               and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
               for node in ast.walk(block)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "srdeblur":
            parts = node.module.split(".")
            found.update(parts[1:2] if len(parts) > 1 else (alias.name for alias in node.names))
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("srdeblur."))
    return found


def test_every_module_has_a_layer():
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__"}
    assert modules == set(LAYER_OF), "add new modules to LAYERS"


@pytest.mark.parametrize("module", sorted(LAYER_OF))
def test_no_module_imports_a_higher_layer(module):
    imports = _runtime_imports(ast.parse((PACKAGE / f"{module}.py").read_text()))
    higher = sorted(name for name in imports if LAYER_OF.get(name, -1) > LAYER_OF[module])
    assert not higher, f"{module} (layer {LAYER_OF[module]}) imports {higher}"


def test_the_checker_sees_lazy_imports_and_skips_type_checking_blocks():
    tree = ast.parse("def f():\n    from srdeblur.cli import main\nif TYPE_CHECKING:\n    from srdeblur.train import X\n")
    assert _runtime_imports(tree) == {"cli"}
