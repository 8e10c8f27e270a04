"""How fast a class is graded: submissions per minute with JOBS=1 and JOBS=2, and where the time goes.

    python benchmarks/bench_grading.py [--lab 01_localisation] [--students 4]

Grades the same batch (half model solutions, half untouched releases) twice on a temporary copy of
the course, through the production path (rebuilt notebooks in the bubblewrap sandbox, the
gradebook written by nbgrader), once with one sandbox at a time and once with two. Prints
submissions/minute and, per submission, the median seconds of each step: sandbox start (bwrap,
runner and nbclient start-up), kernel start, execution, and the gradebook (nbgrader's autograde
from the results). Speeds are given as ratios against JOBS=1.
"""

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from course_utils import instructor

REPO = Path(__file__).resolve().parents[1]


def grade_batch(lab: str, students: int, jobs: int) -> tuple[float, dict[str, float]]:
    """Grade ``students`` submissions with ``jobs`` sandboxes at a time; (seconds, median step times)."""
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as tmp:
        root = Path(tmp)
        for tree in ("solutions", "labs"):
            shutil.copytree(REPO / tree / lab, root / tree / lab)
        for k in range(students):
            folder = root / "submitted" / f"student{k:03d}" / lab
            folder.mkdir(parents=True)
            shutil.copy(REPO / ("solutions" if k % 2 == 0 else "labs") / lab / f"{lab}.ipynb", folder)
        instructor.generate_release(root, lab, root / "fresh")  # the gradebook knows the lab's cells
        started = time.perf_counter()
        _, results = instructor.autograde_sandboxed(root, lab, instructor.submitted_students(root, lab), jobs=jobs)
        seconds = time.perf_counter() - started
    # a sandbox that could not start (e.g. course_utils not importable inside) still gives nbgrader a
    # notebook with every test marked not run: count it as a failure, not as a fast submission
    failed = [s for s, r in results.items() if not r.get("success") or r.get("sandbox_status") != "ok"]
    if failed:
        raise RuntimeError(f"not graded: {failed}")
    steps = {step: statistics.median(r["timings"].get(step, 0.0) for r in results.values())
             for step in ("sandbox", "kernel", "execution")}
    steps["gradebook"] = statistics.median(r["seconds"] for r in results.values())
    return seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lab", default="01_localisation")
    parser.add_argument("--students", type=int, default=4)
    args = parser.parse_args()
    rows = {jobs: grade_batch(args.lab, args.students, jobs) for jobs in (1, 2)}
    base = args.students / rows[1][0] * 60
    print(f"{args.lab}, {args.students} submissions (half solutions, half blank releases)")
    print(f"{'JOBS':>4} {'subs/min':>9} {'vs JOBS=1':>10} {'sandbox s':>10} {'kernel s':>9} {'exec s':>8} "
          f"{'gradebook s':>12}")
    for jobs, (seconds, steps) in rows.items():
        rate = args.students / seconds * 60
        print(f"{jobs:>4} {rate:>9.2f} {rate / base:>9.2f}x {steps['sandbox']:>10.1f} {steps['kernel']:>9.1f} "
              f"{steps['execution']:>8.1f} {steps['gradebook']:>12.1f}")


if __name__ == "__main__":
    main()
