"""The instructor's side of nbgrader: release the labs, grade a class, export the grades.

    python -m course_utils.instructor release [LAB ...]               # solutions/<lab>/ -> labs/<lab>/
    python -m course_utils.instructor grade LAB [--submissions DIR] [--zip FILE ...] [--jobs N] [--unsafe]
    python -m course_utils.instructor export LAB [--output grades.csv]

``grade`` collects submissions (a folder laid out ``<student>/<lab>/<lab>.ipynb``, and/or LMS zip
files through nbgrader's ``zip_collect``) into ``submitted/`` (symlinks and bad student ids
refused), rebuilds each from the instructor's source with only its answer cells
(:mod:`course_utils.rebuild`, :mod:`course_utils.answer_policy`), runs it in a bubblewrap sandbox
(:mod:`course_utils.sandbox`), N at a time, has nbgrader write the gradebook from the outputs that
came back (in this process only), generates feedback without hidden tests and exports a CSV. A
malformed or failing submission ends as "not graded: <reason>"; the others are still graded.

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
import re
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


# --- the students' copy ----------------------------------------------------------------------

STUDENT_TREE = ("labs", "course_utils", "data_scripts", "docs/student.md", "README.md", "pyproject.toml",
                "requirements.txt", "environment.yml", "Makefile", "LICENSE")


def student_release(root: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Build the tree students get at ``dest``: :data:`STUDENT_TREE`, nothing else of the course.

    No ``solutions/``, ``notebook_src/``, ``tests/``, benchmarks, gradebook or submissions: the
    released notebooks carry no solution and no hidden test. ``dest`` must not exist yet (nothing
    is overwritten) and must lie outside the course root.

    Returns:
        ``dest``, resolved.
    """
    root, dest = Path(root).resolve(), Path(dest).resolve()
    if dest.exists():
        raise FileExistsError(f"dest should be a folder that does not exist yet, got the existing {dest}")
    if dest == root or root in dest.parents:
        raise ValueError(f"dest should lie outside the course root {root}, got {dest}")
    if not (root / "labs").is_dir():
        raise FileNotFoundError(f"no labs/ in {root}: run `make release` first")
    for rel in STUDENT_TREE:
        src = root / rel
        if src.is_dir():
            shutil.copytree(src, dest / rel, ignore=_IGNORED, symlinks=False)
        elif src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    print(f"student copy: {dest} (publish this, keep {root} private)")
    return dest


# --- collecting ---------------------------------------------------------------------------------

STUDENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")


def student_id_problem(student: str) -> str | None:
    """Why ``student`` cannot be a student id (a folder name under ``submitted/``), or None."""
    if not STUDENT_ID.fullmatch(student) or ".." in student:
        return (f"the student id {student!r} is not allowed: letters, digits and . _ @ + - only, "
                f"starting with a letter or digit, no '..'")
    return None


def inbox_problems(source: str | os.PathLike, lab: str) -> dict[str, str]:
    """Students of an inbox folder that will not be collected, with the reason (symlinks, bad ids).

    Nothing is followed: a symlinked student or lab folder, or any symlink inside the lab folder,
    refuses that student's submission.
    """
    problems = {}
    for entry in sorted(Path(source).iterdir()):
        reason = student_id_problem(entry.name)
        if reason is None and entry.is_symlink():
            reason = f"{entry} is a symlink (never followed)"
        elif reason is None and (entry / lab).is_symlink():
            reason = f"{entry / lab} is a symlink (never followed)"
        elif reason is None and (entry / lab).is_dir():
            links = [p for p in (entry / lab).rglob("*") if p.is_symlink()]
            if links:
                reason = f"{links[0]} is a symlink (never followed)"
        if reason is not None:
            problems[entry.name] = reason
    return problems


def _copy_new_files(src: Path, dest: Path) -> list[str]:
    """Copy ``src``'s regular files into ``dest`` without ever overwriting or following a symlink.

    Returns:
        warnings for conflicts and skipped symlinks.
    """
    warnings = []
    for path in sorted(src.rglob("*")):
        if path.is_symlink():
            warnings.append(f"skipped the symlink {path} (never followed)")
            continue
        if not path.is_file():
            continue
        target = dest / path.relative_to(src)
        if target.exists() or target.is_symlink():
            if target.is_symlink() or not filecmp.cmp(path, target, shallow=False):
                warnings.append(f"kept the existing {target} (a different {path} was not copied over it; "
                                f"move the old one away by hand to replace it)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target, follow_symlinks=False)
    return warnings


def collect_folder(root: str | os.PathLike, lab: str, source: str | os.PathLike) -> list[str]:
    """Copy ``source/<student>/<lab>/`` into ``root/submitted/<student>/<lab>/`` for every student.

    Students listed by :func:`inbox_problems` (symlinks, bad ids) are skipped with a warning.

    Returns:
        the student ids collected.
    """
    root, source = Path(root).resolve(), Path(source).resolve()
    refused = inbox_problems(source, lab)
    for student, reason in refused.items():
        print(f"warning: not collected: {student}: {reason}")
    students = sorted(d.name for d in source.iterdir()
                      if d.name not in refused and not d.is_symlink() and (d / lab).is_dir())
    if source != root / "submitted":
        for student in students:
            for warning in _copy_new_files(source / student / lab, root / "submitted" / student / lab):
                print(f"warning: {warning}")
    return students


def zip_problems(archive: str | os.PathLike, regexp: str = CANVAS_REGEXP) -> tuple[dict[str, bytes], dict[str, str]]:
    """The notebooks of an LMS zip that may be collected, and the students refused, with reasons.

    Entries with ``..``, an absolute path or a symlink mode are refused (named by their path),
    as are student ids that :func:`student_id_problem` rejects and students with more than one
    notebook for the same file (the LMS should give one; the instructor decides by hand).

    Returns:
        ``({entry name: bytes}, {student id or entry: reason})``.
    """
    import stat
    import zipfile

    kept: dict[str, bytes] = {}
    refused: dict[str, str] = {}
    owners: dict[tuple[str, str], list[str]] = {}
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            name = info.filename
            if info.is_dir():
                continue
            parts = Path(name).parts
            if name.startswith(("/", "\\")) or ".." in parts or ":" in name:
                refused[name] = f"the zip entry {name!r} points outside the archive (refused, not extracted)"
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                refused[name] = f"the zip entry {name!r} is a symlink (refused, not extracted)"
                continue
            match = re.match(regexp, "/extracted/" + name)
            if not match:
                continue
            student = match["student_id"]
            problem = student_id_problem(student)
            if problem:
                refused[student] = problem
                continue
            owners.setdefault((student, match["file_id"]), []).append(name)
            kept[name] = zf.read(info)
    for (student, file_id), names in owners.items():
        if len(names) > 1:
            refused[student] = f"{len(names)} files for {file_id} in the zip ({', '.join(names)}): keep one by hand"
            for name in names:
                kept.pop(name, None)
    return kept, refused


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
    import zipfile

    _ensure_alembic_on_path()
    from nbgrader.apps import ZipCollectApp
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.utils import capture_log
    from traitlets.config.loader import Config

    root = Path(root).resolve()
    with tempfile.TemporaryDirectory(prefix="zip-collect-") as tmp:
        archive_dir = Path(tmp) / "downloaded" / lab / "archive"
        archive_dir.mkdir(parents=True)
        refused: dict[str, str] = {}
        for k, archive in enumerate(archives):
            if zipfile.is_zipfile(archive):
                kept, problems = zip_problems(archive, regexp)
                refused.update(problems)
                with zipfile.ZipFile(archive_dir / f"{k}-{Path(archive).name}", "w") as clean:
                    for name, data in kept.items():
                        clean.writestr(Path(name).name, data)
            else:
                shutil.copy2(archive, archive_dir / Path(archive).name)
        for what, reason in refused.items():
            print(f"warning: not collected: {what}: {reason}")
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
    """Students with a ``submitted/<student>/<lab>/`` folder (no symlinks, valid ids), sorted."""
    submitted = Path(root) / "submitted"
    if not submitted.is_dir():
        return []
    return sorted(d.name for d in submitted.iterdir() if not d.is_symlink() and not (d / lab).is_symlink()
                  and (d / lab).is_dir() and student_id_problem(d.name) is None)


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
        ``{student: nbgrader result dict}`` (keys ``success``, ``log``, maybe ``error``, and
        ``seconds``, the time nbgrader took).
    """
    import time

    results = {}
    for student in students:
        print(f"autograding {student} ...", flush=True)
        started = time.perf_counter()
        results[student] = api.autograde(lab, student, force=True, create=True)
        results[student]["seconds"] = time.perf_counter() - started
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


def write_status_csv(rows: list[dict], dest: Path) -> Path:
    """One line per student: ``student_id,status,code_score,max_code_score,reason`` (graded / not graded)."""
    import csv

    with open(dest, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "status", "code_score", "max_code_score", "reason"])
        for r in rows:
            writer.writerow([r["student"], "graded" if r["graded"] else "not graded", r.get("code_score", ""),
                             r.get("max_code_score", ""), r.get("reason", "")])
    return dest


def _print_scores(rows: list[dict]) -> None:
    print(f"{'student':<24} {'code':>10} {'written':>10}  manual grading")
    for r in rows:
        if not r["graded"]:
            print(f"{r['student']:<24} {'not graded':>10}  {r.get('reason', 'no submission in the gradebook')}")
            continue
        print(f"{r['student']:<24} {r['code_score']:>4g} / {r['max_code_score']:<3g} "
              f"{r['written_score']:>4g} / {r['max_written_score']:<3g}  "
              f"{'to do in formgrader' if r['needs_manual_grade'] else 'done'}")


def _sandbox_outputs_preprocessor(results: dict[str, dict[str, dict]]):
    """An nbgrader preprocessor class that replaces ``Execute``: it loads the sandbox's outputs.

    ``results`` maps each student to :func:`course_utils.rebuild.graded_outputs`. Graded code cells
    get the outputs of the rebuilt notebook's run (answer cells also the source that ran, e.g. the
    policy's replacement); code cells the student added lose their outputs and are marked not run.
    """
    from nbgrader.preprocessors import NbGraderPreprocessor

    from course_utils.rebuild import nbgrader_meta

    class SandboxOutputs(NbGraderPreprocessor):
        def preprocess(self, nb, resources):
            graded = results[resources["nbgrader"]["student"]]
            for cell in nb.cells:
                if cell.cell_type != "code":
                    continue
                run = graded.get(nbgrader_meta(cell).get("grade_id"))
                if run is None:
                    note = "# not run by the grader: only the lab's own cells and your answers run\n"
                    cell.source = note + cell.source
                    cell.outputs, cell.execution_count = [], None
                    continue
                from nbformat import from_dict

                if nbgrader_meta(cell).get("solution"):
                    cell.source = run["source"]
                cell.outputs = [from_dict(o) for o in run["outputs"]]
                cell.execution_count = run["execution_count"]
            return nb, resources

    return SandboxOutputs


def _foreign_cells_preprocessor(known_ids: set[str]):
    """An nbgrader preprocessor class that drops the nbgrader metadata of cells whose ``grade_id`` the
    lab does not have (a student's own "test cell worth 100 points"): they earn nothing, and nbgrader's
    ``OverwriteCells`` would otherwise fail on them and leave the whole submission ungraded."""
    from nbgrader.preprocessors import NbGraderPreprocessor

    from course_utils.rebuild import nbgrader_meta

    class DropForeignGradeCells(NbGraderPreprocessor):
        def preprocess(self, nb, resources):
            for cell in nb.cells:
                meta = nbgrader_meta(cell)
                if meta and meta.get("grade_id") not in known_ids:
                    cell.metadata.pop("nbgrader", None)
            return nb, resources

    return DropForeignGradeCells


def sandboxed_autograde_config(results: dict[str, dict[str, dict]], known_ids: set[str] | None = None):
    """nbgrader settings that autograde from sandbox results: ``Execute`` replaced, nothing else run.

    Args:
        results: per student, :func:`course_utils.rebuild.graded_outputs`.
        known_ids: the lab's ``grade_id``s (of the source); other cells' nbgrader metadata is dropped.
    """
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearOutput,
        DeduplicateIds,
        LimitOutput,
        OverwriteCells,
        OverwriteKernelspec,
        SaveAutoGrades,
    )
    from traitlets.config.loader import Config

    # nbgrader 0.9's own sanitize steps, with the foreign cells dropped before OverwriteCells reads them
    sanitize = [ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells, CheckCellMetadata]
    if known_ids is not None:
        sanitize.insert(3, _foreign_cells_preprocessor(set(known_ids)))
    return Config({"Autograde": {"sanitize_preprocessors": sanitize, "autograde_preprocessors": [
        _sandbox_outputs_preprocessor(results), LimitOutput, SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]}})


def _lab_notebooks(root: Path, lab: str) -> tuple[dict, dict, dict[str, bytes]]:
    """The lab's source and release notebooks (dicts) and its other release files."""
    import json

    from course_utils.rebuild import release_files

    source = json.loads((root / "solutions" / lab / f"{lab}.ipynb").read_text(encoding="utf-8"))
    release = json.loads((root / "labs" / lab / f"{lab}.ipynb").read_text(encoding="utf-8"))
    return source, release, release_files(root / "labs" / lab, f"{lab}.ipynb")


def run_sandboxes(notebooks: dict[str, dict], files: dict[str, bytes], limits=None, *, jobs: int = 1,
                  executor=None, unsafe: bool = False) -> dict:
    """Execute each rebuilt notebook in its own sandbox, ``jobs`` at a time (or on ``executor``).

    Args:
        notebooks: ``{student: rebuilt notebook}``.
        files: the lab's release files, copied next to each notebook.
        limits: :class:`course_utils.sandbox.SandboxLimits`.
        jobs: sandboxes at a time when no executor is given.
        executor: any ``concurrent.futures.Executor`` (e.g. Dask distributed's
            ``Client(address).get_executor()``); each worker needs bubblewrap and this course's venv.
        unsafe: run without bubblewrap.

    Returns:
        ``{student: SandboxResult}``.
    """
    from concurrent.futures import ThreadPoolExecutor

    from course_utils.sandbox import execute_in_sandbox

    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs should be a positive int, got {jobs!r}")
    own = executor is None
    executor = executor or ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {student: executor.submit(execute_in_sandbox, nb, files, limits, unsafe=unsafe)
                   for student, nb in notebooks.items()}
        results = {}
        for student, future in futures.items():
            results[student] = future.result()
            print(f"ran {student}: {results[student].status} ({results[student].timings.get('total', 0):.1f} s)",
                  flush=True)
        return results
    finally:
        if own:
            executor.shutdown()


def autograde_sandboxed(root: Path, lab: str, students: list[str], overrides: Any = None, *,
                        jobs: int | None = None, executor=None, unsafe: bool = False, limits=None):
    """Rebuild, sandbox-run and autograde the submissions of ``students``; the gradebook is written here.

    Returns:
        ``(api, results)``: the ``NbGraderAPI`` used and, per student, nbgrader's result dict
        (``success``, ``log``, ``error``); a student who could not be graded (malformed notebook,
        nbgrader failure) has ``success`` False and the reason as ``error``.
    """
    from traitlets.config.loader import Config

    from course_utils.rebuild import SubmissionError, graded_outputs, read_submission, rebuild_notebook
    from course_utils.sandbox import SandboxLimits

    root = Path(root).resolve()
    source, release, files = _lab_notebooks(root, lab)
    rebuilt, graded = {}, {}
    for student in students:
        path = root / "submitted" / student / lab / f"{lab}.ipynb"
        try:
            rebuilt[student], refused = rebuild_notebook(source, release, read_submission(path))
        except SubmissionError as err:
            graded[student] = {"success": False, "error": str(err), "log": ""}
            continue
        for grade_id, problems in refused.items():
            print(f"warning: {student}: answer {grade_id} not run: {problems[0]}"
                  + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""))
    cfg = load_config(root, overrides)
    limits = limits or SandboxLimits(cell_timeout=int(cfg.Execute.timeout))
    ran = run_sandboxes(rebuilt, files, limits, jobs=jobs or os.cpu_count() or 1, executor=executor, unsafe=unsafe)
    results = {s: graded_outputs(rebuilt[s], r.notebook, r.status) for s, r in ran.items()}
    from course_utils.rebuild import nbgrader_meta

    known_ids = {nbgrader_meta(c).get("grade_id") for c in source["cells"]} - {None}
    extra = sandboxed_autograde_config(results, known_ids)
    if overrides is not None:
        extra.merge(Config(overrides))
    api = make_api(root, extra)
    for student, result in autograde_all(api, lab, sorted(results)).items():
        if not result.get("success"):
            result["error"] = "nbgrader could not autograde it: " + (result.get("error") or "")[-300:]
        graded[student] = {**result, "timings": ran[student].timings, "sandbox_status": ran[student].status}
    return api, graded


def grade(root: str | os.PathLike, lab: str, submissions: str | os.PathLike | None = None,
          archives: list[str | os.PathLike] | None = None, regexp: str = CANVAS_REGEXP,
          output: str | os.PathLike | None = None, overrides: Any = None, *, jobs: int | None = None,
          executor=None, unsafe: bool = False, limits=None) -> list[dict]:
    """Collect, check, autograde in sandboxes, generate feedback and export the grades of ``lab``.

    Each submission is rebuilt from the instructor's source with only its answer cells
    (:func:`course_utils.rebuild.rebuild_notebook`), executed in a bubblewrap sandbox
    (:mod:`course_utils.sandbox`), ``jobs`` at a time; then nbgrader, in this process only,
    writes the gradebook from the outputs that came back (its ``Execute`` step replaced).

    Args:
        root: the course root (``solutions/<lab>/`` must be there; submissions go to ``submitted/``).
        lab: the lab folder name, e.g. ``"01_localisation"``.
        submissions: a folder laid out ``<student>/<lab>/<lab>.ipynb`` (default: ``root/submitted``).
        archives: LMS zip files (or loose notebooks) to collect with ``zip_collect``.
        regexp: how ``zip_collect`` reads student id and file name from archived file names.
        output: the grades CSV (default ``root/grades/<lab>.csv``).
        overrides: a traitlets Config merged over ``nbgrader_config.py``.
        jobs: sandboxes at a time (default: the number of CPU cores).
        executor: a ``concurrent.futures`` executor to run the sandboxes on instead (a cluster).
        unsafe: grade without bubblewrap (every submission can read and change this machine).
        limits: :class:`course_utils.sandbox.SandboxLimits` (default: 5.5 GiB, 60 s a cell, ...).

    Returns:
        the score rows of :func:`scores`, one per submitted student; a student not graded has
        ``graded`` False and a ``reason``.
    """
    from course_utils.sandbox import SandboxUnavailable, sandbox_available

    if not unsafe and not sandbox_available():
        raise SandboxUnavailable("grading runs every submission in a bubblewrap sandbox, and bwrap/setpriv "
                                 "were not found: install bubblewrap (apt-get install bubblewrap), or pass "
                                 "--unsafe (make grade UNSAFE=1) if you trust every submission")
    root = Path(root).resolve()
    with tempfile.TemporaryDirectory(prefix="grade-release-") as tmp:
        generated = generate_release(root, lab, tmp, overrides)
        if not (root / "labs" / lab).is_dir() or read_tree(generated) != read_tree(root / "labs" / lab):
            print(f"warning: labs/{lab} differs from a fresh release of solutions/{lab}: students may "
                  f"have a different version from the one graded here (run `make release`)")
    not_graded: dict[str, str] = {}
    if submissions is not None:
        not_graded.update(inbox_problems(submissions, lab))
        collect_folder(root, lab, submissions)
    if archives:
        import zipfile

        for archive in archives:
            if zipfile.is_zipfile(archive):
                not_graded.update(zip_problems(archive, regexp)[1])
        collect_zip(root, lab, archives, regexp)
    students = submitted_students(root, lab)
    if not students and not not_graded:
        raise FileNotFoundError(f"no submissions for {lab} in {root / 'submitted'}")
    api, graded = autograde_sandboxed(root, lab, students, overrides, jobs=jobs, executor=executor,
                                      unsafe=unsafe, limits=limits)
    not_graded.update({s: r["error"] for s, r in graded.items() if not r.get("success")})
    results = [s for s in students if s not in not_graded]
    for student, reason in sorted(not_graded.items()):
        print(f"not graded: {student}: {reason}")
    for student in results:
        result = api.generate_feedback(lab, student, force=True)
        if not result.get("success"):
            print(f"error: no feedback for {student}:\n{result.get('error', '')}")
    csv_path = export_csv(api, lab, output or root / "grades" / f"{lab}.csv")
    rows = scores(api, lab, sorted(set(students) | set(not_graded)))
    for row in rows:
        if row["student"] in not_graded:
            row.update(graded=False, reason=not_graded[row["student"]])
    status_path = write_status_csv(rows, csv_path.with_name(f"{lab}-status.csv"))
    _print_scores(rows)
    print(f"grades: {csv_path} (graded or not, with reasons: {status_path})")
    print(f"feedback: {root / 'feedback'}/<student>/{lab}/")
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
    p_grade.add_argument("--jobs", type=int, default=None, help="sandboxes at a time (default: the CPU cores)")
    p_grade.add_argument("--unsafe", action="store_true", help="grade without the bubblewrap sandbox: every "
                         "submission can then read and change this machine (docs/instructor.md)")
    p_grade.add_argument("--scheduler", help="a Dask distributed scheduler address (tcp://host:8786) to run the "
                         "sandboxes on its workers")

    p_student = sub.add_parser("student-release", help="build the students' copy (no solutions, no tests)")
    p_student.add_argument("dest")

    p_export = sub.add_parser("export", help="export the gradebook's scores (e.g. after manual grading)")
    p_export.add_argument("lab")
    p_export.add_argument("--output", help="grades CSV (default: grades/<lab>.csv)")

    args = parser.parse_args(argv)
    # nbgrader 0.9.6's gradebook triggers SQLAlchemy "not in session" warnings on every autograde: noise
    warnings.filterwarnings("ignore", message=".*not in session.*")
    root = Path(args.root).resolve()
    if args.command == "release":
        release(root, args.labs or None)
    elif args.command == "student-release":
        student_release(root, args.dest)
    elif args.command == "grade":
        executor = None
        if args.scheduler:
            from distributed import Client

            executor = Client(args.scheduler).get_executor()
        rows = grade(root, args.lab, args.submissions, args.zip, args.regexp, args.output, jobs=args.jobs,
                     executor=executor, unsafe=args.unsafe)
        return 0 if all(r["graded"] for r in rows) else 1
    else:
        path = export_csv(make_api(root), args.lab, args.output or root / "grades" / f"{args.lab}.csv")
        print(f"grades: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
