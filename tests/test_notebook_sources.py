"""The committed solution notebooks are exactly what their Python sources in notebook_src/ build."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebook_src").glob("[0-9]*.py"))


def test_every_lab_has_a_source():
    labs = sorted(p.name for p in (ROOT / "solutions").iterdir() if p.is_dir())
    assert [p.stem for p in SOURCES] == labs


@pytest.mark.parametrize("source", SOURCES, ids=[p.stem for p in SOURCES])
def test_solution_notebook_is_built_from_its_source(source, tmp_path):
    out = tmp_path / f"{source.stem}.ipynb"
    subprocess.run([sys.executable, str(source), str(out)], check=True, capture_output=True, cwd=ROOT)
    committed = ROOT / "solutions" / source.stem / f"{source.stem}.ipynb"
    assert out.read_bytes() == committed.read_bytes(), f"{committed} is stale: run `make notebooks`"
