"""The instructor's side of nbgrader: release the labs, grade a class, export the grades.

    python -m course_utils.instructor release [LAB ...]               # solutions/<lab>/ -> labs/<lab>/
    python -m course_utils.instructor grade LAB [--submissions DIR] [--zip FILE ...]
    python -m course_utils.instructor export LAB [--output grades.csv]

``grade`` collects submissions (a folder laid out ``<student>/<lab>/<lab>.ipynb``, and/or LMS zip
files through nbgrader's ``zip_collect``) into ``submitted/``, checks each with
:func:`course_utils.grading.check_submission`, autogrades one student at a time (a crash or a
timeout in one never stops the others), generates feedback and exports a grades CSV.

Nothing here deletes a submission: collecting never overwrites a file already in ``submitted/``
(it warns instead), and nbgrader's ``autograde --force`` only rebuilds ``autograded/``.

The course root is the folder holding ``solutions/``, ``labs/`` and ``submitted/`` (default: the
current directory). Settings come from this repository's ``nbgrader_config.py``; only the course
root is changed. nbgrader is imported inside the functions, never when this module is imported.
See docs/instructor.md.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_FILE = REPO_ROOT / "nbgrader_config.py"

# Canvas "Download submissions": <login>_<user id>_<submission id>_<file name>.ipynb, with "late_"
# after the login for late work and "-1", "-2" appended to resubmitted file names.
CANVAS_REGEXP = r".*/(?P<student_id>[A-Za-z0-9.\-]+)_(?:late_)?\d+_\d+_(?P<file_id>.+?)(?:-\d+)?\.ipynb$"

_IGNORED = shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "*.pyc")


# --- set-up -------------------------------------------------------------------------------------

def find_labs(root: str | os.PathLike) -> list[str]:
    """The labs of a course: every ``solutions/<lab>/`` holding ``<lab>.ipynb``, sorted."""
    solutions = Path(root) / "solutions"
    if not solutions.is_dir():
        return []
    return sorted(d.name for d in solutions.iterdir() if (d / f"{d.name}.ipynb").is_file())


def _ensure_alembic_on_path() -> None:
    """nbgrader runs the ``alembic`` executable when it opens a gradebook; find the venv's."""
    if shutil.which("alembic") is None:
        os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


def load_config(root: str | os.PathLike, overrides: Any = None):
    """This repository's ``nbgrader_config.py`` with ``CourseDirectory.root`` set to ``root``.

    Args:
        root: the course root.
        overrides: an optional ``traitlets.config.Config`` merged last (tests shorten timeouts).
    """
    from traitlets.config.loader import Config, PyFileConfigLoader

    cfg = PyFileConfigLoader(CONFIG_FILE.name, path=str(CONFIG_FILE.parent)).load_config()
    cfg.CourseDirectory.root = str(Path(root).resolve())
    if overrides is not None:
        cfg.merge(Config(overrides))
    return cfg


def make_api(root: str | os.PathLike, overrides: Any = None):
    """An ``NbGraderAPI`` on the course at ``root`` (gradebook: ``root/gradebook.db``, sqlite)."""
    _ensure_alembic_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    cfg = load_config(root, overrides)
    return NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)


def _checked(result: dict, what: str) -> dict:
    """Raise with nbgrader's log when an API call failed; return the result otherwise."""
    if not result.get("success"):
        raise RuntimeError(f"{what} failed:\n{result.get('error', '')}\n{result.get('log', '')}")
    return result


def read_tree(folder: str | os.PathLike) -> dict[str, bytes]:
    """Every file under ``folder`` as ``{relative posix path: bytes}``, to compare two trees."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --- release ------------------------------------------------------------------------------------

def generate_release(root: str | os.PathLike, lab: str, dest: str | os.PathLike, overrides: Any = None) -> Path:
    """Run ``generate_assignment`` for ``lab`` of the course at ``root``, writing the release to ``dest/lab``.

    Also records the lab's graded cells in ``root/gradebook.db`` (autograding needs them). The
    course's own ``labs/`` is not touched.

    Returns:
        the generated folder ``dest/lab``.
    """
    from traitlets.config.loader import Config

    dest = Path(dest).resolve()
    extra = Config({"CourseDirectory": {"release_directory": str(dest)}})
    if overrides is not None:
        extra.merge(Config(overrides))
    api = make_api(root, extra)
    _checked(api.generate_assignment(lab, force=True, create=True), f"generate_assignment {lab}")
    return dest / lab


def release(root: str | os.PathLike = ".", labs: list[str] | None = None) -> list[Path]:
    """Regenerate ``labs/<lab>/`` from ``solutions/<lab>/`` for the given labs (default: all).

    The generation runs in a scratch course (no gradebook is left in ``root``); the result replaces
    ``labs/<lab>/`` wholesale, so the same solutions always give byte-identical files.

    Returns:
        the written lab folders.
    """
    root = Path(root).resolve()
    labs = labs or find_labs(root)
    written = []
    for lab in labs:
        if not (root / "solutions" / lab / f"{lab}.ipynb").is_file():
            raise FileNotFoundError(f"no solutions/{lab}/{lab}.ipynb in {root}")
        with tempfile.TemporaryDirectory(prefix="release-") as tmp:
            shutil.copytree(root / "solutions" / lab, Path(tmp) / "solutions" / lab, ignore=_IGNORED)
            generated = generate_release(tmp, lab, Path(tmp) / "release")
            target = root / "labs" / lab
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(generated, target)
        print(f"released {lab} -> {target}")
        written.append(target)
    stale = sorted(d.name for d in (root / "labs").glob("*/") if d.is_dir() and d.name not in find_labs(root))
    if stale:
        print(f"warning: labs/ holds folders with no solutions/ source (left alone): {', '.join(stale)}")
    return written


# --- collecting ---------------------------------------------------------------------------------

def _copy_new_files(src: Path, dest: Path) -> list[str]:
    """Copy ``src``'s files into ``dest`` without ever overwriting; return warnings for conflicts."""
    warnings = []
    for path in sorted(p for p in src.rglob("*") if p.is_file()):
        target = dest / path.relative_to(src)
        if target.exists():
            if not filecmp.cmp(path, target, shallow=False):
                warnings.append(f"kept the existing {target} (a different {path} was not copied over it; "
                                f"move the old one away by hand to replace it)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return warnings


def collect_folder(root: str | os.PathLike, lab: str, source: str | os.PathLike) -> list[str]:
    """Copy ``source/<student>/<lab>/`` into ``root/submitted/<student>/<lab>/`` for every student.

    Returns:
        the student ids found in ``source``.
    """
    root, source = Path(root).resolve(), Path(source).resolve()
    students = sorted(d.name for d in source.iterdir() if (d / lab).is_dir())
    if source != root / "submitted":
        for student in students:
            for warning in _copy_new_files(source / student / lab, root / "submitted" / student / lab):
                print(f"warning: {warning}")
    return students


def collect_zip(root: str | os.PathLike, lab: str, archives: list[str | os.PathLike],
                regexp: str = CANVAS_REGEXP) -> list[str]:
    """Collect LMS downloads (zip files or loose notebooks) with nbgrader's ``zip_collect``.

    ``regexp`` must name the groups ``student_id`` and ``file_id`` (see nbgrader's
    ``FileNameCollectorPlugin.named_regexp``); the default reads Canvas file names. zip_collect
    runs in a scratch course and its result is copied into ``root/submitted/`` without
    overwriting, so an earlier submission is never replaced or deleted.

    Returns:
        the student ids collected.
    """
    _ensure_alembic_on_path()
    from nbgrader.apps import ZipCollectApp
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log
    from traitlets.config.loader import Config

    root = Path(root).resolve()
    with tempfile.TemporaryDirectory(prefix="zip-collect-") as tmp:
        archive_dir = Path(tmp) / "downloaded" / lab / "archive"
        archive_dir.mkdir(parents=True)
        for archive in archives:
            shutil.copy2(archive, archive_dir / Path(archive).name)
        cfg = load_config(tmp, Config({
            "CourseDirectory": {"assignment_id": lab, "release_directory": str(root / "labs")},
            "FileNameCollectorPlugin": {"named_regexp": regexp},
            "ZipCollectApp": {"force": True},
        }))
        app = ZipCollectApp(coursedir=CourseDirectory(config=cfg), config=cfg)
        _checked(capture_log(app), f"zip_collect {lab}")
        staged = Path(tmp) / "submitted"
        students = sorted(d.name for d in staged.iterdir()) if staged.is_dir() else []
        for student in students:
            for warning in _copy_new_files(staged / student / lab, root / "submitted" / student / lab):
                print(f"warning: {warning}")
    if not students:
        print(f"warning: nothing in {[str(a) for a in archives]} matched the file-name pattern {regexp!r}")
    return students


# --- grading ------------------------------------------------------------------------------------

def submitted_students(root: str | os.PathLike, lab: str) -> list[str]:
    """Students with a ``submitted/<student>/<lab>/`` folder, sorted."""
    submitted = Path(root) / "submitted"
    return sorted(d.name for d in submitted.iterdir() if (d / lab).is_dir()) if submitted.is_dir() else []


def force_smoke_mode() -> None:
    """Make the grading kernels run in smoke mode even if ``COURSE_MODE`` was exported.

    ``COURSE_MODE`` wins over nbgrader's ``NBGRADER_EXECUTION`` in ``course_utils.config.get_mode``,
    and kernels inherit this process's environment: a leftover ``COURSE_MODE=full`` would train
    for real and hit the cell timeout.
    """
    mode = os.environ.get("COURSE_MODE", "").strip().lower()
    if mode and mode != "smoke":
        print(f"warning: COURSE_MODE={mode} is set; grading runs in smoke mode regardless")
    os.environ["COURSE_MODE"] = "smoke"


def autograde_all(api, lab: str, students: list[str]) -> dict[str, dict]:
    """Autograde each student in turn; a failure is reported and the next student still graded.

    Returns:
        ``{student: nbgrader result dict}`` (keys ``success``, ``log``, maybe ``error``).
    """
    results = {}
    for student in students:
        print(f"autograding {student} ...", flush=True)
        results[student] = api.autograde(lab, student, force=True, create=True)
        if not results[student].get("success"):
            print(f"error: autograding {student} failed; the others are still graded:\n"
                  f"{results[student].get('error', '')}")
    return results


def export_csv(api, lab: str, dest: str | os.PathLike) -> Path:
    """Write the gradebook's scores for ``lab`` to the CSV file ``dest`` (nbgrader's CSV exporter)."""
    from nbgrader.plugins import CsvExportPlugin

    dest = Path(dest).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    plugin = CsvExportPlugin(parent=api, to=str(dest), assignment=[lab])
    gradebook = api.gradebook
    try:
        plugin.export(gradebook)
    finally:
        gradebook.close()
    return dest


def scores(api, lab: str, students: list[str]) -> list[dict]:
    """One row per student: code and written scores, their maxima, and whether manual grading is due."""
    from nbgrader.api import MissingEntry

    rows = []
    gradebook = api.gradebook
    try:
        for student in students:
            try:
                sub = gradebook.find_submission(lab, student)
            except MissingEntry:
                rows.append({"student": student, "graded": False})
                continue
            rows.append({"student": student, "graded": True, "code_score": sub.code_score,
                         "max_code_score": sub.max_code_score, "written_score": sub.written_score,
                         "max_written_score": sub.max_written_score, "score": sub.score,
                         "max_score": sub.max_score, "needs_manual_grade": sub.needs_manual_grade})
    finally:
        gradebook.close()
    return rows


def _print_scores(rows: list[dict]) -> None:
    print(f"{'student':<24} {'code':>10} {'written':>10}  manual grading")
    for r in rows:
        if not r["graded"]:
            print(f"{r['student']:<24} {'not graded':>10}")
            continue
        print(f"{r['student']:<24} {r['code_score']:>4g} / {r['max_code_score']:<3g} "
              f"{r['written_score']:>4g} / {r['max_written_score']:<3g}  "
              f"{'to do in formgrader' if r['needs_manual_grade'] else 'done'}")


def grade(root: str | os.PathLike, lab: str, submissions: str | os.PathLike | None = None,
          archives: list[str | os.PathLike] | None = None, regexp: str = CANVAS_REGEXP,
          output: str | os.PathLike | None = None, overrides: Any = None) -> list[dict]:
    """Collect, check, autograde, generate feedback and export the grades of ``lab``.

    Args:
        root: the course root (``solutions/<lab>/`` must be there; submissions go to ``submitted/``).
        lab: the lab folder name, e.g. ``"01_localisation"``.
        submissions: a folder laid out ``<student>/<lab>/<lab>.ipynb`` (default: ``root/submitted``).
        archives: LMS zip files (or loose notebooks) to collect with ``zip_collect``.
        regexp: how ``zip_collect`` reads student id and file name from archived file names.
        output: the grades CSV (default ``root/grades/<lab>.csv``).
        overrides: a traitlets Config merged over ``nbgrader_config.py`` (e.g. a shorter timeout).

    Returns:
        the score rows of :func:`scores`, one per submitted student.
    """
    from course_utils.grading import check_submission

    root = Path(root).resolve()
    with tempfile.TemporaryDirectory(prefix="grade-release-") as tmp:
        generated = generate_release(root, lab, tmp, overrides)
        if not (root / "labs" / lab).is_dir() or read_tree(generated) != read_tree(root / "labs" / lab):
            print(f"warning: labs/{lab} differs from a fresh release of solutions/{lab}: students may "
                  f"have a different version from the one graded here (run `make release`)")
    if submissions is not None:
        collect_folder(root, lab, submissions)
    if archives:
        collect_zip(root, lab, archives, regexp)
    students = submitted_students(root, lab)
    if not students:
        raise FileNotFoundError(f"no submissions for {lab} in {root / 'submitted'}")
    reference = root / "solutions" / lab / f"{lab}.ipynb"
    for student in students:
        for nb in sorted((root / "submitted" / student / lab).glob("*.ipynb")):
            for problem in check_submission(nb, release=reference, verbose=False):
                print(f"warning: {student}: {problem}")

    api = make_api(root, overrides)
    force_smoke_mode()
    autograde_all(api, lab, students)
    for student in students:
        result = api.generate_feedback(lab, student, force=True)
        if not result.get("success"):
            print(f"error: no feedback for {student}:\n{result.get('error', '')}")
    csv_path = export_csv(api, lab, output or root / "grades" / f"{lab}.csv")
    rows = scores(api, lab, students)
    _print_scores(rows)
    print(f"grades: {csv_path}\nfeedback: {root / 'feedback'}/<student>/{lab}/")
    return rows


# --- command line -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    """``python -m course_utils.instructor release|grade|export ...``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m course_utils.instructor", description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=".", help="the course root (default: the current folder)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_release = sub.add_parser("release", help="regenerate labs/<lab>/ from solutions/<lab>/")
    p_release.add_argument("labs", nargs="*", help="labs to release (default: every solutions/<lab>/)")

    p_grade = sub.add_parser("grade", help="collect, autograde, generate feedback, export grades")
    p_grade.add_argument("lab")
    p_grade.add_argument("--submissions", help="folder of <student>/<lab>/<lab>.ipynb (default: submitted/)")
    p_grade.add_argument("--zip", nargs="*", default=[], help="LMS download(s) to collect with zip_collect")
    p_grade.add_argument("--regexp", default=CANVAS_REGEXP, help="file-name pattern for zip_collect "
                         "(named groups student_id and file_id); default: Canvas downloads")
    p_grade.add_argument("--output", help="grades CSV (default: grades/<lab>.csv)")

    p_export = sub.add_parser("export", help="export the gradebook's scores (e.g. after manual grading)")
    p_export.add_argument("lab")
    p_export.add_argument("--output", help="grades CSV (default: grades/<lab>.csv)")

    args = parser.parse_args(argv)
    # nbgrader 0.9.6's gradebook triggers SQLAlchemy "not in session" warnings on every autograde: noise
    warnings.filterwarnings("ignore", message=".*not in session.*")
    root = Path(args.root).resolve()
    if args.command == "release":
        release(root, args.labs or None)
    elif args.command == "grade":
        rows = grade(root, args.lab, args.submissions, args.zip, args.regexp, args.output)
        return 0 if all(r["graded"] for r in rows) else 1
    else:
        path = export_csv(make_api(root), args.lab, args.output or root / "grades" / f"{args.lab}.csv")
        print(f"grades: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
