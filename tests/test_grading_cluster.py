"""Grading on a cluster: a local Dask scheduler and two workers on 127.0.0.1 run the sandboxes.

The gradebook stays with the grading process; only the sandboxed runs go to the workers. The
scores must be those the source's point values give (a solution and an answer to exercise 1).
"""

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_utils import instructor
from course_utils.sandbox import sandbox_available

REPO = Path(__file__).resolve().parents[1]
LAB = "01_localisation"
BIN = Path(sys.executable).parent

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sandbox_available(), reason="grading needs bubblewrap (.ci/run installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = [open(tmp_path / f"{name}.log", "w") for name in ("scheduler", "worker1", "worker2")]
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=logs[0], stderr=subprocess.STDOUT)]
    try:
        client = None
        for _ in range(60):
            try:
                client = distributed.Client(address, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        assert client is not None, (tmp_path / "scheduler.log").read_text()
        for log in logs[1:]:
            procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                           "--host", "127.0.0.1"], stdout=log, stderr=subprocess.STDOUT))
        client.wait_for_workers(2, timeout=120)
        yield client
        client.close()
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
        for log in logs:
            log.close()


def test_a_class_graded_on_two_dask_workers_gets_the_true_scores(cluster, tmp_path):
    from distributed import get_task_stream

    root, inbox = tmp_path / "course", tmp_path / "inbox"
    for tree in ("solutions", "labs"):
        shutil.copytree(REPO / tree / LAB, root / tree / LAB)
    source = json.loads((REPO / "solutions" / LAB / f"{LAB}.ipynb").read_text())
    release = json.loads((REPO / "labs" / LAB / f"{LAB}.ipynb").read_text())
    points = {}
    for cell in source["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            points[meta["grade_id"]] = float(meta["points"])
    ex1 = next(c for c in source["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "ex1-box-conversions")
    for cell in release["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "ex1-box-conversions":
            cell["source"] = ex1["source"]
    for student, nb in (("alice", source), ("bob", release)):
        (inbox / student / LAB).mkdir(parents=True)
        (inbox / student / LAB / f"{LAB}.ipynb").write_text(json.dumps(nb))

    with get_task_stream(cluster) as stream:
        rows = instructor.grade(root, LAB, inbox, executor=cluster.get_executor())
    assert {r["student"]: float(r["code_score"]) for r in rows} == {
        "alice": sum(points.values()), "bob": points["test-box-conversions"]}
    workers = set(cluster.scheduler_info()["workers"])
    ran_on = [task["worker"] for task in stream.data if "execute_in_sandbox" in task["key"]]
    assert len(ran_on) == 2 and set(ran_on) <= workers, stream.data  # the sandboxes ran on the workers
