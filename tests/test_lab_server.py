"""`make lab ARGS=--no-browser` serves JupyterLab: start it on a free port, GET /lab, stop it."""

from pathlib import Path

import pytest

from tests.jupyter_server import free_port, jupyter_lab, new_token, server_args

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.skipif(not (ROOT / ".venv" / ".installed").exists(),
                    reason="needs the Makefile's .venv (make test builds it); without it `make lab` would install one")
def test_make_lab_serves_jupyterlab(tmp_path):
    port, token = free_port(), new_token()
    with jupyter_lab(["make", "lab", "ARGS=" + " ".join(server_args(port, token))], ROOT, tmp_path, port, token) as lab:
        assert lab.status == 200, f"no HTTP 200 from /lab; make lab printed:\n{lab.log()}"
        assert "JupyterLab" in lab.body
        # headless-friendly: the URL to open is printed
        assert f"http://127.0.0.1:{port}/lab" in lab.log()
