"""JupyterLab in a real browser: open lab 01 as a student would, run its setup cell, read the banner.

Headless Chromium (Debian's package, /usr/bin/chromium) is driven by Playwright; Playwright's own
browser download is never used. JupyterLab serves a copy of ``labs/`` in the test's temporary
folder, so nothing the browser saves touches the committed notebooks. A screenshot of the lab
after the setup cell ran is left in that folder (its path is printed).

Without Chromium the test is skipped with the reason, unless ``COURSE_REQUIRE_BROWSER=1`` (set by
``.ci/run``, which installs Chromium), where a missing browser fails the test.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.jupyter_server import free_port, jupyter_lab, new_token, server_args

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
LAB = "01_localisation"
# as root, Chromium needs --no-sandbox; the rest keep it off this machine's closed network
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ERROR_MIME_TYPES = ("application/vnd.jupyter.stderr", "application/vnd.jupyter.error")


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium; or set COURSE_CHROMIUM)"
    if os.environ.get("COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(message + "; COURSE_REQUIRE_BROWSER=1 asks for the browser test to run")
    pytest.skip(message)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_setup_cell_runs_in_jupyterlab_in_chromium(tmp_path):
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (in requirements.txt)")

    served = tmp_path / "labs"
    shutil.copytree(ROOT / "labs" / LAB, served / LAB)
    port, token = free_port(), new_token()
    command = [sys.executable, "-m", "jupyterlab", *server_args(port, token), f"--ServerApp.root_dir={served}"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    python_path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {"COURSE_MODE": "smoke", "PYTHONPATH": python_path}

    with jupyter_lab(command, served, tmp_path, port, token, env=env) as lab:
        assert lab.status == 200, f"JupyterLab did not start:\n{lab.log()}"
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{lab.url}/lab/tree/{LAB}/{LAB}.ipynb?token={token}")
                setup_cell = page.locator(".jp-NotebookPanel .jp-CodeCell").first
                sync_api.expect(setup_cell).to_contain_text("Setup: imports, run mode", timeout=120_000)
                # the kernel is up when its status reads Idle; then run the first code cell as a student does
                sync_api.expect(page.locator(".jp-NotebookPanel-toolbar")).to_contain_text("Python 3", timeout=120_000)
                setup_cell.locator(".jp-InputArea-editor").click()
                page.keyboard.press("Shift+Enter")
                setup_cell.scroll_into_view_if_needed()

                outputs = setup_cell.locator(".jp-OutputArea-output")
                sync_api.expect(outputs.first).to_contain_text("CNNs part II | mode=smoke", timeout=120_000)
                sync_api.expect(setup_cell.locator(".jp-InputPrompt")).to_contain_text("[1]", timeout=60_000)
                shot = tmp_path / f"{LAB}-setup.png"
                page.screenshot(path=str(shot), full_page=False)
                print("screenshot:", shot)

                kinds = [outputs.nth(i).get_attribute("data-mime-type") for i in range(outputs.count())]
                texts = [outputs.nth(i).inner_text() for i in range(outputs.count())]
            finally:
                browser.close()

    assert not [t for k, t in zip(kinds, texts) if k in ERROR_MIME_TYPES], f"the setup cell printed errors: {texts}"
    assert "torch 2." in texts[0] and "seed=0" in texts[0], texts[0]
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
