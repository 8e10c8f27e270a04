"""Each lab's full-mode path runs end to end on tiny fake datasets laid out like the real ones.

Offline, so pretrained weights fall back to the small from-scratch backbone (with a printed
notice), and ``COURSE_MAX_STEPS`` keeps every training loop to a couple of steps: this checks the
code paths students with a GPU will run, not the figures they will get.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.fake_datasets import make_oxford_pets

ROOT = Path(__file__).resolve().parents[1]
FAKE_DATA = {"01_localisation": [make_oxford_pets], "02_yolo": [], "07_benchmark": []}


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("lab", sorted(FAKE_DATA))
def test_full_mode_runs_on_fake_data(lab, tmp_path, monkeypatch):
    for make in FAKE_DATA[lab]:
        make(tmp_path)
    monkeypatch.setenv("COURSE_MODE", "full")
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    monkeypatch.setenv("COURSE_MAX_STEPS", "2")
    monkeypatch.setenv("COURSE_RESULTS", str(tmp_path / "results.json"))
    path = ROOT / "solutions" / lab / f"{lab}.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.output_type == "stream")
    assert "mode=full" in text
    if lab == "01_localisation":
        assert "classes ['cat', 'dog']" in text, "full mode must read the (fake) Oxford-IIIT Pet set"
        assert "[course_utils.models]" in text, "offline, the fallback backbone must say so"
    if lab == "07_benchmark":
        assert "[course_utils.models]" in text, "offline, the pretrained detectors' fallback must say so"
        assert text.count("images/s at batch 1") == 5 and "DETR" in text, "all five detectors must be timed"
