"""Run mode, device, seeding, the setup banner and recorded figures.

One switch decides how much work a notebook does: the environment variable ``COURSE_MODE``.
:func:`steps` turns it into a number of optimisation steps; it and :func:`course_root` are the
only places that decide the step budget and the course folder.

* ``smoke`` - a few optimisation steps; for tests and for nbgrader autograding (nbgrader sets
  ``NBGRADER_EXECUTION``), so grading a class is quick. Graded answers never depend on training.
* ``fast``  - synthetic data and small models trained from scratch: real learning in a few
  minutes on a laptop CPU. The default without a GPU.
* ``full``  - real datasets and pretrained weights. The default with a CUDA GPU.

Labs record their headline figures with :func:`record`; when ``COURSE_RESULTS`` names a JSON
file, the figures are merged into it so tests and the closing benchmark lab can read them.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

VALID_MODES = ("smoke", "fast", "full")
MODE_ENV = "COURSE_MODE"
RESULTS_ENV = "COURSE_RESULTS"
SMOKE_STEPS = 3  # every training loop in smoke mode (tests, nbgrader): graded answers never depend on training
MAX_STEPS_ENV = "COURSE_MAX_STEPS"  # optional cap on every training loop, in any mode (tests run full mode)
# what marks the course folder: the instructor's checkout and the students' copy (make student-release)
# both hold the project file next to the package
COURSE_MARKERS = ("pyproject.toml", "course_utils/__init__.py")
DEFAULT_SEED = 0

T = TypeVar("T")


def get_mode() -> str:
    """The run mode: ``COURSE_MODE`` if set, else ``smoke`` under nbgrader, else by hardware.

    Returns:
        one of ``"smoke"``, ``"fast"``, ``"full"``.

    Raises:
        ValueError: if ``COURSE_MODE`` holds anything else.
    """
    raw = os.environ.get(MODE_ENV, "").strip()
    if raw:
        mode = raw.lower()
        if mode not in VALID_MODES:
            raise ValueError(
                f"{MODE_ENV}={raw!r} is not a run mode; expected one of {', '.join(VALID_MODES)}"
            )
        return mode
    if os.environ.get("NBGRADER_EXECUTION"):
        return "smoke"
    return "full" if torch.cuda.is_available() else "fast"


def by_mode(*, smoke: T, fast: T, full: T) -> T:
    """Pick the value for the current run mode, e.g. ``steps = by_mode(smoke=3, fast=600, full=20_000)``."""
    return {"smoke": smoke, "fast": fast, "full": full}[get_mode()]


def step_cap() -> int:
    """The most optimisation steps any training loop may take now.

    Returns:
        :data:`SMOKE_STEPS` in smoke mode, else no cap (``2**62``); lowered to ``$COURSE_MAX_STEPS``
        when that is set.

    Raises:
        ValueError: ``COURSE_MAX_STEPS`` is set to anything but a positive integer.
    """
    cap = SMOKE_STEPS if get_mode() == "smoke" else 2**62
    raw = os.environ.get(MAX_STEPS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{MAX_STEPS_ENV}={raw!r} must be a positive integer")
        cap = min(cap, int(raw))
    return cap


def steps(*, fast: int, full: int) -> int:
    """The step budget of one training run, e.g. ``fit(..., steps(fast=600, full=20_000))``.

    Args:
        fast: steps in fast mode (CPU, synthetic data).
        full: steps in full mode (GPU, real data).

    Returns:
        ``fast`` or ``full`` for the current mode, capped by :func:`step_cap` (so
        :data:`SMOKE_STEPS` in smoke mode).
    """
    for name, value in (("fast", fast), ("full", full)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be a non-negative int (optimisation steps), got {value!r}")
    budget = full if get_mode() == "full" else fast
    return min(budget, step_cap())


def course_root(start: str | os.PathLike | None = None) -> Path | None:
    """The course folder: the nearest folder at or above ``start`` holding :data:`COURSE_MARKERS`.

    A lab notebook runs in ``labs/NN_topic/`` (or ``solutions/NN_topic/``) of the course checkout;
    a student's copy of one lab, on JupyterHub or Colab, has no course folder above it.

    Args:
        start: a folder or file (default: the current working directory).

    Returns:
        the folder (absolute), or None when no folder above ``start`` holds the marker.
    """
    here = Path(start if start is not None else Path.cwd()).resolve()
    return next((p for p in (here, *here.parents) if all((p / m).is_file() for m in COURSE_MARKERS)), None)


def get_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = DEFAULT_SEED) -> int:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    Args:
        seed: a non-negative integer.

    Returns:
        the seed, for printing.
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return seed


@dataclass(frozen=True)
class Setup:
    """What :func:`setup` decided: the run mode, the device and the seed."""

    mode: str
    device: torch.device
    seed: int

    def __str__(self) -> str:
        import torchvision

        return (
            f"CNNs part II | mode={self.mode} | device={self.device} | torch {torch.__version__}"
            f" | torchvision {torchvision.__version__} | python {platform.python_version()}"
            f" | seed={self.seed}"
        )


def setup(seed: int = DEFAULT_SEED, *, verbose: bool = True) -> Setup:
    """The first call of every notebook: seed everything and print one banner line.

    Args:
        seed: seed for python, numpy and torch.
        verbose: print the banner (mode, device, torch/torchvision versions, seed).

    Returns:
        a :class:`Setup` with ``mode``, ``device`` and ``seed``.
    """
    info = Setup(mode=get_mode(), device=get_device(), seed=seed_everything(seed))
    if verbose:
        print(info)
    return info


def record(name: str, value: float) -> float:
    """Record a headline figure such as ``record("02_yolo/mAP50", 0.93)``.

    When ``COURSE_RESULTS`` names a JSON file, ``{name: value}`` is merged into it (written to a
    temporary file then renamed, so a reader never sees half a file). Without it, nothing is
    written.

    Args:
        name: ``"<lab>/<metric>"``, e.g. ``"01_localisation/mean_iou"``.
        value: a finite real number (python, numpy or a one-element tensor).

    Returns:
        the value as a python float, so ``x = record("lab/x", compute())`` reads naturally.
    """
    if not isinstance(name, str) or "/" not in name or name.startswith("/") or name.endswith("/"):
        raise ValueError(f"name must look like '<lab>/<metric>', got {name!r}")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"value for {name!r} must be a single number, got shape {tuple(value.shape)}")
        value = value.item()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"value for {name!r} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"value for {name!r} must be finite, got {number}")

    path = os.environ.get(RESULTS_ENV)
    if path:
        _merge_json(Path(path), {name: number})
    return number


def read_results(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The figures recorded so far in ``path`` (default: ``COURSE_RESULTS``); ``{}`` if none."""
    path = path or os.environ.get(RESULTS_ENV)
    if not path or not Path(path).exists():
        return {}
    return json.loads(Path(path).read_text())


def _merge_json(path: Path, update: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = read_results(path)
    data.update(update)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
