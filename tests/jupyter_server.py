"""Start a JupyterLab server for a test on a free port of 127.0.0.1, wait for it, and stop it."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_args(port: int, token: str) -> list[str]:
    """Command-line options of a headless, local-only JupyterLab with a known token."""
    return ["--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}"]


@contextlib.contextmanager
def jupyter_lab(command: list[str], cwd: Path, tmp_path: Path, port: int, token: str,
                env: dict | None = None, wait_s: float = 120) -> Iterator[SimpleNamespace]:
    """Run ``command`` (which starts JupyterLab on ``port`` with ``token``) until /lab answers.

    Jupyter's config, data and runtime folders live in ``tmp_path``, so the user's own settings
    play no part. Yields ``url`` (the server root), ``status`` and ``body`` of GET /lab (status
    None if it never answered within ``wait_s``) and ``log()`` (what the server printed so far).
    The whole process group is stopped on exit.
    """
    log_file = open(tmp_path / "lab.log", "w+")
    env = {**os.environ, **(env or {}), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")}
    proc = subprocess.Popen(command, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)

    def log() -> str:
        log_file.flush()
        return (tmp_path / "lab.log").read_text()

    try:
        status, body, deadline = None, "", time.time() + wait_s
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=5) as r:
                    status, body = r.status, r.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(1)
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}", status=status, body=body, log=log)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log_file.close()


def new_token() -> str:
    return secrets.token_hex(8)
