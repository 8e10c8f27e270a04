"""The bubblewrap sandbox, tried directly with hostile cells (no answer policy in front of it).

One notebook holds every attack; it runs once (module fixture) and each test reads one cell's
outputs. The sandbox must hold even for code that got past the policy.
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from course_utils import sandbox
from course_utils.sandbox import SandboxLimits, SandboxUnavailable, bwrap_command, execute_in_sandbox

REPO = Path(__file__).resolve().parents[1]

needs_bwrap = pytest.mark.skipif(not sandbox.sandbox_available(), reason="bubblewrap is not installed "
                                 "(.ci/run installs it; grading refuses to run without it)")

ATTACKS = {
    "where": "import os, socket, subprocess, sys\nprint(os.getuid(), os.getpid())\nprint(sorted(os.listdir('/')))\n"
             f"print(sorted(os.listdir({str(REPO)!r})))",
    "solutions": f"print(open({str(REPO / 'solutions' / '01_localisation' / '01_localisation.ipynb')!r}).read()[:50])",
    "write_package": f"open({str(REPO / 'course_utils' / 'evil.py')!r}, 'w').write('x')",
    "write_scratch": "open('mine.txt', 'w').write('allowed'); print(open('mine.txt').read())",
    "network": "socket.create_connection(('1.1.1.1', 80), timeout=3)",
    "memory": "import torch\nx = torch.empty(6 * 2**30, dtype=torch.uint8)\nx.fill_(1)",
    "processes": "procs = []\ntry:\n    for _ in range(600):\n"
                 "        procs.append(subprocess.Popen(['sleep', '600']))\n"
                 "finally:\n    print('started', len(procs))\n"
                 "    for p in procs:\n        p.kill()\n        p.wait()",
    "survivor": "subprocess.Popen(['setsid', 'sh', '-c', 'sleep 900 &'])\nprint('spawned')",
    "exit": "os._exit(3)",
    "after": "print('never runs')",
}


@pytest.fixture(scope="module")
def run():
    if not sandbox.sandbox_available():
        pytest.skip("bubblewrap is not installed")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in ATTACKS.values()]
    for cell, name in zip(nb.cells, ATTACKS):
        cell.id = name
    result = execute_in_sandbox(nb, {"release.txt": b"lab data"}, SandboxLimits(cell_timeout=60, wall_seconds=240))
    assert result.notebook is not None, result.status + result.log
    cells = {c["id"]: c for c in result.notebook["cells"]}
    return result, cells


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell["outputs"] if o["output_type"] == "stream")


def error(cell) -> str:
    return " ".join(f"{o['ename']}: {o['evalue']}" for o in cell["outputs"] if o["output_type"] == "error")


@pytest.mark.slow
@needs_bwrap
def test_the_sandbox_sees_only_the_packages_and_runs_unprivileged(run):
    _, cells = run
    ids, root, repo = text(cells["where"]).splitlines()
    uid, pid = map(int, ids.split())
    assert uid >= 1000 and pid < 100  # an unprivileged uid, in its own pid namespace
    assert repo == str([".venv", "course_utils", "data_scripts"])  # no solutions/, tests/, gradebook ...
    # only the system folders, and the top folders of the checkout and the Python install, exist
    mounted = {REPO.parts[1], Path(sys.base_prefix).resolve().parts[1], Path(sys.prefix).resolve().parts[1]}
    system = {"bin", "dev", "etc", "home", "lib", "lib32", "lib64", "libx32", "proc", "sbin", "tmp", "usr"}
    assert mounted <= set(ast.literal_eval(root)) <= system | mounted, root
    assert "FileNotFoundError" in error(cells["solutions"])
    assert "Read-only file system" in error(cells["write_package"]) and not (REPO / "course_utils" / "evil.py").exists()
    assert text(cells["write_scratch"]).strip() == "allowed"


@pytest.mark.slow
@needs_bwrap
def test_no_network(run):
    assert "Network is unreachable" in error(run[1]["network"])


@pytest.mark.slow
@needs_bwrap
def test_a_6_gib_allocation_fails(run):
    assert "RuntimeError" in error(run[1]["memory"]) and "allocate" in error(run[1]["memory"])


@pytest.mark.slow
@needs_bwrap
def test_the_process_count_is_bounded(run):
    started = int(text(run[1]["processes"]).split()[-1])
    assert started < SandboxLimits().processes and "Resource temporarily unavailable" in error(run[1]["processes"])


@pytest.mark.slow
@needs_bwrap
def test_os_exit_ends_the_run_and_no_process_survives(run):
    result, cells = run
    assert "kernel died" in result.status
    assert cells["after"]["execution_count"] is None and cells["after"]["outputs"] == []
    assert text(cells["survivor"]).strip() == "spawned"
    leftovers = subprocess.run(["ps", "-eo", "uid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    # zombies (stat Z: dead, waiting for init to reap them) are not survivors
    assert not [ln for ln in leftovers.splitlines() if int(ln.split()[0]) >= 200_000 and ln.split()[1][0] != "Z"], \
        leftovers


def test_without_bubblewrap_grading_refuses_unless_unsafe(monkeypatch):
    monkeypatch.setattr(sandbox, "sandbox_available", lambda: False)
    with pytest.raises(SandboxUnavailable, match="--unsafe"):
        execute_in_sandbox(nbformat.v4.new_notebook())


def test_the_command_line_isolates_and_limits(tmp_path):
    cmd = bwrap_command(tmp_path, 200_123, SandboxLimits(memory_bytes=2**30, processes=10), ["python", "-V"])
    for flag in ("--unshare-pid", "--unshare-net", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in cmd
    assert cmd[cmd.index("--bind") + 1: cmd.index("--bind") + 3] == [str(tmp_path), sandbox.WORKDIR]
    assert "--reuid=200123" in cmd and "--as=1073741824" in cmd and "--nproc=10" in cmd
    bound = {cmd[i + 1] for i, a in enumerate(cmd) if a == "--ro-bind"}
    assert str(REPO / "course_utils") in bound and not {str(REPO), str(REPO / "solutions")} & bound
    assert cmd[-2:] == ["python", "-V"]


def test_a_course_under_tmp_is_mounted_over_the_private_tmp(tmp_path, monkeypatch):
    # a CI clone under /tmp: its venv and course_utils must be mounted after (over) the tmpfs on /tmp
    monkeypatch.setattr(sandbox, "_read_only_paths", lambda: [Path("/tmp/ci-clone/.venv"),
                                                                Path("/tmp/ci-clone/course_utils")])
    cmd = bwrap_command(tmp_path, 200_123, SandboxLimits(), ["python", "-V"])
    tmpfs = cmd.index("--tmpfs")
    assert cmd[tmpfs + 1] == "/tmp"
    binds = [i for i, a in enumerate(cmd) if a == "--ro-bind" and cmd[i + 1].startswith("/tmp/")]
    dirs = [i for i, a in enumerate(cmd) if a == "--dir" and cmd[i + 1].startswith("/tmp")]
    assert len(binds) == 2 and min(binds + dirs) > tmpfs, cmd


def test_bad_limits_and_uids_are_named(tmp_path):
    with pytest.raises(ValueError, match="memory_bytes"):
        SandboxLimits(memory_bytes=0)
    with pytest.raises(ValueError, match="uid"):
        bwrap_command(tmp_path, 0, SandboxLimits(), ["true"])


@pytest.mark.skipif(os.geteuid() != 0, reason="starting a process under another uid needs root")
def test_kill_uid_leaves_no_live_process_of_the_uid():
    uid = 249_999
    procs = [subprocess.Popen(["sleep", "60"], user=uid, group=uid) for _ in range(3)]
    assert len(sandbox._uid_processes(uid)) == 3
    sandbox.kill_uid(uid)
    assert sandbox._uid_processes(uid) == []
    assert all(p.wait(timeout=5) == -9 for p in procs)
