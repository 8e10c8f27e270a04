"""Run one notebook in a bubblewrap sandbox and hand back the executed cells.

The grader (trusted, outside) calls :func:`execute_in_sandbox` with a notebook it built itself and
the lab's release files. Inside the sandbox the only writable places are a scratch copy of that
folder and a private ``/tmp``; ``/usr``, the Python install, the virtual environment and the
``course_utils``/``data_scripts`` packages are mounted read-only at their own paths, and nothing
else of the host exists (no course root, no ``solutions/``, no gradebook, no other students). The
sandbox has no network, its own pid namespace (``--die-with-parent``: every process it started
dies with it) and runs as an unprivileged uid (``setpriv``) under ``prlimit`` limits on address
space, CPU time, process count, file size and open files; the grader kills it at its wall-time
limit. The executed notebook comes back as JSON on a pipe (``--result-fd``) that the kernel does
not inherit.

Inside, ``python -m course_utils.sandbox NOTEBOOK`` executes the notebook with nbclient (kernel
``python3``, errors recorded, a cell timeout) in ``COURSE_MODE=smoke``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKDIR = "/home/lab"  # the scratch folder's path inside the sandbox
NOTEBOOK_NAME = "graded.ipynb"


class SandboxUnavailable(RuntimeError):
    """bubblewrap or setpriv is missing, or cannot create a sandbox on this machine."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one sandboxed notebook may use.

    Attributes:
        memory_bytes: address space of each process (RLIMIT_AS): a kernel that imported torch and ran a
            convolution maps about 3.3 GiB (oneDNN fails below 4 GiB); 5.5 GiB refuses a 6 GiB tensor.
        cpu_seconds: CPU time of each process (RLIMIT_CPU).
        processes: processes and threads of the sandbox's uid (RLIMIT_NPROC).
        file_bytes: largest file a process may write (RLIMIT_FSIZE).
        wall_seconds: the whole run, start to end; the grader kills the sandbox after it.
        cell_timeout: seconds one cell may run before the kernel is interrupted.
    """

    memory_bytes: int = 11 * 2**29  # 5.5 GiB
    cpu_seconds: int = 600
    processes: int = 256
    file_bytes: int = 256 * 2**20
    wall_seconds: float = 600.0
    cell_timeout: int = 60

    def __post_init__(self) -> None:
        for name in ("memory_bytes", "cpu_seconds", "processes", "file_bytes", "wall_seconds", "cell_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"SandboxLimits.{name} should be a positive number, got {value!r}")


@dataclass
class SandboxResult:
    """What came back from one sandboxed run.

    Attributes:
        notebook: the executed notebook as a dict, or None when nothing valid came back.
        status: ``"ok"``, ``"kernel died"``, ``"wall time exceeded"``, ``"no result"``, ...
        log: the sandbox's stderr (last 4000 characters), for the instructor.
        timings: seconds spent in ``sandbox`` (start to runner), ``kernel`` (kernel start) and
            ``execution``, as measured (``sandbox`` by the grader, the others by the runner).
    """

    notebook: dict | None
    status: str
    log: str = ""
    timings: dict[str, float] = field(default_factory=dict)


def sandbox_available() -> bool:
    """True when bubblewrap and setpriv are installed (``/usr/bin/bwrap``, ``setpriv``)."""
    return shutil.which("bwrap") is not None and shutil.which("setpriv") is not None


def _read_only_paths() -> list[Path]:
    """Host paths the sandbox sees read-only: the Python install, the venv, the course packages."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(),
             REPO_ROOT / "course_utils", REPO_ROOT / "data_scripts"}
    return sorted(p for p in paths if p.exists() and not str(p).startswith("/usr/"))


def _parents(paths: list[Path]) -> list[Path]:
    """Every parent folder of ``paths`` below ``/``, outermost first, without repeats."""
    seen: list[Path] = []
    for path in paths:
        for parent in reversed(path.parents[:-1]):
            if parent not in seen:
                seen.append(parent)
    return seen


def bwrap_command(scratch: Path, uid: int, limits: SandboxLimits, inner: list[str]) -> list[str]:
    """The command line that runs ``inner`` in a sandbox whose only writable folder is ``scratch``.

    bwrap runs as root to set up mounts and namespaces (it must read the Python install, which may
    sit in a folder only root can enter); inside, ``setpriv`` drops to ``uid`` with no capabilities
    and ``prlimit`` applies the limits, so RLIMIT_NPROC (not enforced for root) bounds forks.

    Args:
        scratch: host folder mounted read-write at :data:`WORKDIR` (owned by ``uid``).
        uid: an unprivileged uid (and gid) for the processes of the sandbox.
        limits: the resource limits.
        inner: the command to run inside, e.g. ``[python, "-m", "course_utils.sandbox", ...]``.

    Returns:
        the argument list for ``subprocess``.
    """
    if not isinstance(uid, int) or uid < 1000:
        raise ValueError(f"uid should be an unprivileged uid (an int >= 1000), got {uid!r}")
    read_only = _read_only_paths()
    cmd = ["bwrap", "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        target = Path("/") / link
        if target.is_symlink():
            cmd += ["--symlink", os.readlink(target), str(target)]
    for etc in ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime", "/etc/nsswitch.conf", "/etc/fonts"):
        if os.path.exists(etc):
            cmd += ["--ro-bind", etc, etc]
    # the private /tmp first: a venv or checkout under /tmp (a CI clone) is then mounted on top of it,
    # not hidden by it (bwrap applies its mount options in order)
    cmd += ["--perms", "1777", "--tmpfs", "/tmp"]
    for parent in _parents([*read_only, Path(WORKDIR)]):
        cmd += ["--perms", "0755", "--dir", str(parent)]
    for path in read_only:
        cmd += ["--ro-bind", str(path), str(path)]
    cmd += ["--bind", str(scratch), WORKDIR, "--proc", "/proc", "--dev", "/dev",
            "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--hostname", "sandbox", "--chdir", WORKDIR, "--clearenv"]
    for name, value in sandbox_environment().items():
        cmd += ["--setenv", name, value]
    cmd += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", *prlimit_arguments(limits), "--", *inner]
    return cmd


def prlimit_arguments(limits: SandboxLimits) -> list[str]:
    """``prlimit`` and its options for ``limits`` (no core dumps, at most 256 open files)."""
    return ["prlimit", f"--as={int(limits.memory_bytes)}", f"--cpu={int(limits.cpu_seconds)}",
            f"--nproc={int(limits.processes)}", f"--fsize={int(limits.file_bytes)}", "--core=0",
            "--nofile=256"]


def sandbox_environment() -> dict[str, str]:
    """The whole environment of the sandboxed processes (nothing is inherited from the grader)."""
    return {
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp",
        "COURSE_MODE": "smoke", "NBGRADER_EXECUTION": "autograde", "OMP_NUM_THREADS": "1",
        "OMP_WAIT_POLICY": "PASSIVE", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": "/tmp/matplotlib", "JUPYTER_RUNTIME_DIR": "/tmp/jupyter",
        "IPYTHONDIR": "/tmp/ipython", "PYTHONDONTWRITEBYTECODE": "1", "COURSE_DATA": "/tmp/data",
        "LANG": "C.UTF-8",
    }


_next_uid = [0]


def sandbox_uid(base: int = 200_000, span: int = 50_000) -> int:
    """An unprivileged uid for one sandbox: distinct for concurrent runs of this process and of others.

    RLIMIT_NPROC counts the processes of a uid across the machine, so two sandboxes must not share
    one; the uid mixes this process's pid with a per-process counter.
    """
    _next_uid[0] += 1
    return base + (os.getpid() * 97 + _next_uid[0]) % span


def execute_in_sandbox(notebook: Mapping, files: Mapping[str, bytes] | None = None,
                       limits: SandboxLimits | None = None, *, unsafe: bool = False) -> SandboxResult:
    """Execute ``notebook`` in a fresh sandbox and return the executed notebook.

    Args:
        notebook: an nbformat-4 notebook as a dict (built by the grader, not the student's file).
        files: other files of the assignment folder, ``{relative path: bytes}`` (the lab's release
            files); the notebook is written as :data:`NOTEBOOK_NAME` next to them.
        limits: resource limits (default :class:`SandboxLimits`).
        unsafe: run without bubblewrap (same runner, limits and environment, but the notebook sees
            the whole machine). Only for an instructor who trusts every submission.

    Returns:
        a :class:`SandboxResult`; its notebook is None unless the runner handed back valid JSON.

    Raises:
        SandboxUnavailable: when bubblewrap is missing and ``unsafe`` is False.
    """
    limits = limits or SandboxLimits()
    if not unsafe and not sandbox_available():
        raise SandboxUnavailable("grading needs bubblewrap (`apt-get install bubblewrap`; it provides "
                                 "/usr/bin/bwrap) and setpriv; pass --unsafe (make grade UNSAFE=1) to grade "
                                 "without a sandbox, which lets every submission read and change this machine")
    if not unsafe and os.geteuid() != 0:
        raise SandboxUnavailable("the sandbox is set up as root (bwrap mounts the Python install and setpriv "
                                 "drops to an unprivileged uid); run grading as root, or in a container")
    uid = sandbox_uid()
    with tempfile.TemporaryDirectory(prefix="sandbox-") as tmp:
        scratch = Path(tmp) / "lab"
        scratch.mkdir()
        for rel, data in (files or {}).items():
            target = (scratch / rel).resolve()
            if scratch.resolve() not in target.parents:
                raise ValueError(f"files should hold relative paths inside the lab folder, got {rel!r}")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (scratch / NOTEBOOK_NAME).write_text(json.dumps(notebook), encoding="utf-8")
        read_end, write_end = os.pipe()
        options = ["--timeout", str(int(limits.cell_timeout)), "--result-fd", str(write_end)]
        inner = [str(Path(sys.prefix) / "bin" / "python"), "-m", "course_utils.sandbox", NOTEBOOK_NAME, *options]
        if unsafe:
            cmd = [*prlimit_arguments(limits), "--", *inner[:3], str(scratch / NOTEBOOK_NAME), *options]
            env, cwd = {**sandbox_environment(), "HOME": str(tmp), "TMPDIR": str(tmp)}, scratch
        else:
            for path in [scratch, *scratch.rglob("*")]:
                os.chown(path, uid, uid)
            cmd, env, cwd = bwrap_command(scratch, uid, limits, inner), {"PATH": "/usr/bin:/bin"}, None
        try:
            return _run(cmd, env, cwd, limits.wall_seconds, read_end, write_end)
        finally:
            if not unsafe:
                kill_uid(uid)


def _uid_processes(uid: int) -> list[int]:
    """Pids of the live (not zombie) processes whose real uid is ``uid`` (read from ``/proc``)."""
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:  # the process ended while we read it
            continue
        alive = not fields.get("State", "").strip().startswith(("Z", "X"))
        if alive and int(fields.get("Uid", "-1").split()[0]) == uid:
            pids.append(int(status.parent.name))
    return pids


def kill_uid(uid: int, timeout: float = 10.0) -> None:
    """Kill every process left with the sandbox's uid and wait until none is alive.

    The sandbox's pid namespace dies with bwrap, but the kernel takes the processes down
    asynchronously; this makes "every process it started is gone when it ends" hold when the grader
    moves on. Zombies (already dead, waiting for init to reap them) do not count.

    Raises:
        RuntimeError: when a process of ``uid`` is still alive after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while pids := _uid_processes(uid):
        for pid in pids:
            try:
                os.kill(pid, 9)
            except (ProcessLookupError, PermissionError):
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} of the sandbox's uid {uid} are still alive after {timeout:g} s")
        time.sleep(0.05)


def _run(cmd: list[str], env: dict[str, str], cwd: Path | None, wall_seconds: float,
         read_end: int, write_end: int) -> SandboxResult:
    """Run the sandbox command; read the result from the pipe; kill it at the wall-time limit."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=stderr, pass_fds=(write_end,), start_new_session=True)
        os.close(write_end)
        chunks, status = [], None
        deadline = started + wall_seconds
        import selectors

        with selectors.DefaultSelector() as sel:
            sel.register(read_end, selectors.EVENT_READ)
            size = 0
            while True:
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    status = f"wall time exceeded ({wall_seconds:g} s): the sandbox was killed"
                    break
                if not sel.select(timeout=min(remaining, 1.0)):
                    if proc.poll() is not None:
                        break
                    continue
                data = os.read(read_end, 1 << 20)
                if not data:
                    break
                size += len(data)
                if size > 64 * 2**20:
                    status = "the result was larger than 64 MiB: the sandbox was killed"
                    break
                chunks.append(data)
        os.close(read_end)
        _kill(proc)
        stderr.seek(0)
        log = stderr.read()[-4000:].decode("utf-8", "replace")
    elapsed = time.perf_counter() - started
    if status is None:
        try:
            payload = json.loads(b"".join(chunks))
            if not isinstance(payload, dict) or not isinstance(payload.get("notebook"), dict):
                raise ValueError("no notebook in the result")
        except (ValueError, RecursionError):
            return SandboxResult(None, f"no result (the sandbox exited with {proc.returncode})", log,
                                 {"total": elapsed})
        timings = {k: float(v) for k, v in (payload.get("timings") or {}).items() if isinstance(v, (int, float))}
        timings["sandbox"] = max(0.0, elapsed - sum(timings.values()))
        timings["total"] = elapsed
        return SandboxResult(payload["notebook"], str(payload.get("status", "ok"))[:200], log, timings)
    return SandboxResult(None, status, log, {"total": elapsed})


def _kill(proc: subprocess.Popen) -> None:
    """End the sandbox: bwrap's death takes its pid namespace (every process in it) down."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 9)
        except ProcessLookupError:
            pass
    proc.wait()


# --- inside the sandbox ---------------------------------------------------------------------------

def run_inside(notebook_path: str, cell_timeout: int) -> dict:
    """Execute a notebook with nbclient and return ``{"notebook", "status", "timings"}``.

    Runs in the sandbox (or, with ``--unsafe``, in a plain subprocess). Errors are recorded in the
    cells (``allow_errors``); a dead kernel or a failure of the runner ends the run with the cells
    executed so far, the rest without outputs (the grader scores those tests 0).
    """
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook_path, as_version=4)
    client = NotebookClient(
        nb, timeout=cell_timeout, allow_errors=True, interrupt_on_timeout=True, kernel_name="python3",
        startup_timeout=120, record_timing=False, resources={"metadata": {"path": str(Path(notebook_path).parent)}},
        error_on_timeout={"ename": "CellTimeoutError", "evalue": f"the cell ran longer than {cell_timeout} s",
                          "traceback": []},
        extra_arguments=["--HistoryManager.hist_file=:memory:"])
    timings, status = {}, "ok"
    started = time.perf_counter()
    try:
        with client.setup_kernel():
            timings["kernel"] = time.perf_counter() - started
            started = time.perf_counter()
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
    except Exception as err:  # noqa: BLE001 - a dead kernel or anything else: report, keep what ran
        status = f"kernel died or the runner failed: {type(err).__name__}: {str(err)[:300]}"
    timings["execution"] = time.perf_counter() - started
    return {"notebook": nb, "status": status, "timings": timings}


def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils.sandbox NOTEBOOK --result-fd N [--timeout S]``: the runner; JSON to fd N."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m course_utils.sandbox", description=main.__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--timeout", type=int, default=60)
    parser.add_argument("--result-fd", type=int, required=True, help="the pipe the result is written to")
    args = parser.parse_args(argv)
    os.set_inheritable(args.result_fd, False)  # the kernel and its children never get the result pipe
    out = os.fdopen(args.result_fd, "w", encoding="utf-8")
    try:
        import ctypes

        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: same-uid code cannot open /proc/<us>/fd/3
    except (OSError, AttributeError):
        pass
    result = run_inside(args.notebook, args.timeout)
    json.dump(result, out)
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
