"""course_utils imports flow downward: a module imports only modules of lower layers (course_utils/__init__.py).

Every ``import`` in every module of the package, at the top or inside a function, is parsed (no
module is executed) and resolved to its top-level unit (``course_utils.models.yolo`` ->
``models``); modules of one package (``data/``, ``models/``, ``metrics/``) may import each other.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "course_utils"

# bottom to top; units of one layer do not import each other
LAYERS = [
    {"config", "tensors", "boxes"},
    {"data"},
    {"metrics"},
    {"models"},
    {"train"},
    {"benchmark"},
    {"viz"},
    {"grading"},
    {"answer_policy", "sandbox"},  # grading's policy and sandbox: no course_utils imports
    {"rebuild"},  # a submission rebuilt from the source with policy-checked answers
    {"instructor"},
]
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def unit_of(path: Path) -> str:
    """The top-level unit of a module file: ``models/yolo.py`` -> ``models``, ``train.py`` -> ``train``."""
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    """The course_utils units ``path`` imports (absolute or relative imports, anywhere in the file)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]  # e.g. ("course_utils", "models")
    units = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[:len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
                names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "course_utils" and len(parts) > 1:
                units.add(parts[1])
    return units


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_unit_has_a_layer():
    units = {unit_of(p) for p in MODULES}
    missing = sorted(units - set(RANK))
    assert not missing, f"give these a layer in LAYERS (and course_utils/__init__.py): {missing}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_downward(path):
    own = unit_of(path)
    upward = sorted(u for u in imported_units(path) - {own} if RANK[u] >= RANK[own])
    assert not upward, f"{path.relative_to(PACKAGE)} (layer {RANK[own]}) imports {upward}: layers {LAYERS}"


def test_the_parser_sees_relative_and_lazy_imports(tmp_path, monkeypatch):
    """The check would fail on an upward import: the parser must see every kind."""
    fake = PACKAGE / "models" / "yolo.py"
    source = "from ..viz import draw\nimport course_utils.grading\ndef f():\n    from .. import train\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source if self == fake else "")
    assert imported_units(fake) == {"viz", "grading", "train"}
