"""A readable training loop for plain models and torchvision detection models.

    history = fit(model, loader, optimizer, steps=steps(fast=600, full=20_000),
                  loss_fn=nn.CrossEntropyLoss())          # plain model: loss_fn(model(x), y)
    history = fit(detector, loader, optimizer, steps=500) # detector: model(images, targets) -> losses

Training is bounded by optimisation *steps*, not epochs or seconds, so a run is reproducible
under a seed whatever the machine. ``fit`` applies :func:`course_utils.config.step_cap` (the
one rule: :data:`~course_utils.config.SMOKE_STEPS` in smoke mode, ``$COURSE_MAX_STEPS`` in any
mode), so a notebook cannot forget to be quick while being graded.

The checkpoint cache lets a lab train once and reuse the weights while its training
configuration is unchanged (:func:`checkpoint_path`, :func:`save_cached`, :func:`load_cached`),
and lets a later lab start from an earlier lab's model (:func:`warm_start`).
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .config import RESULTS_ENV, course_root, get_device, seed_everything, step_cap

# --------------------------------------------------------------------------- plumbing


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Move tensors inside nested lists / tuples / dicts to ``device`` (other values unchanged)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def _batches_forever(loader: Iterable) -> Iterator:
    """Yield batches from ``loader``, starting a new epoch whenever one ends."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("train_loader yielded no batch")


def _split(batch) -> tuple[Any, Any]:
    if not isinstance(batch, (list, tuple)) or len(batch) != 2:
        raise ValueError("each batch must be a pair (inputs, targets)")
    return batch[0], batch[1]


def _losses(model: nn.Module, inputs, targets, loss_fn: Callable | None) -> dict[str, torch.Tensor]:
    """The batch's losses as a dict; the total is their sum."""
    if loss_fn is None:  # torchvision detection models compute their own losses in train mode
        hint = ("without loss_fn, fit calls model(inputs, targets) and expects a dict of losses, as "
                "torchvision detection models return in train mode; for other models pass loss_fn=...")
        try:
            out = model(inputs, targets)
        except TypeError as err:
            raise TypeError(f"{hint} ({err})") from err
        if not isinstance(out, Mapping):
            raise TypeError(f"{hint} (got {type(out).__name__})")
    else:
        out = loss_fn(model(inputs), targets)
    if isinstance(out, torch.Tensor):
        out = {"loss": out}
    if not out:
        raise ValueError("the loss dict is empty")
    return dict(out)


class History:
    """Logged values for plots: ``history["loss"]`` against ``history["step"]``;
    ``history["val_<name>"]`` against ``history["val_step"]``."""

    def __init__(self) -> None:
        self.data: dict[str, list[float]] = defaultdict(list)

    def log(self, step: int, prefix: str = "", **values: float) -> None:
        self.data[f"{prefix}step"].append(step)
        for k, v in values.items():
            self.data[f"{prefix}{k}"].append(float(v))

    def __getitem__(self, key: str) -> list[float]:
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def last(self, key: str) -> float:
        return self.data[key][-1]

    def as_dict(self) -> dict[str, list[float]]:
        return {k: list(v) for k, v in self.data.items()}

    def __repr__(self) -> str:
        last = {k: round(v[-1], 4) for k, v in self.data.items() if v}
        return f"History({last})"


# --------------------------------------------------------------------------- fit


def fit(
    model: nn.Module,
    train_loader: Iterable,
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    loss_fn: Callable | None = None,
    scheduler: Any | None = None,
    eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    grad_clip: float | None = None,
    log_every: int = 10,
    device: torch.device | str | None = None,
    seed: int | None = None,
    progress: bool = True,
    history: History | None = None,
) -> History:
    """Train ``model`` for ``steps`` optimisation steps.

    Args:
        model: the network; moved to ``device``.
        train_loader: yields ``(inputs, targets)`` batches; restarted when exhausted.
        optimizer: over ``model``'s parameters.
        steps: number of optimisation steps (see :func:`course_utils.config.steps`); capped by
            :func:`course_utils.config.step_cap`: ``SMOKE_STEPS`` in smoke mode, ``$COURSE_MAX_STEPS``
            when that is set (in any mode).
        loss_fn: ``loss_fn(model(inputs), targets)`` -> a scalar tensor or a dict of them. None
            for models that return their loss dict from ``model(inputs, targets)``.
        scheduler: stepped after every optimisation step (e.g. ``OneCycleLR``).
        eval_fn: ``eval_fn(model) -> {name: value}``, called every ``eval_every`` steps and at
            the end, with the model in eval mode; logged as ``val_<name>``.
        eval_every: steps between evaluations (default: only at the end).
        grad_clip: clip the global gradient norm to this value.
        log_every: average the training losses over this many steps per history entry.
        device: default :func:`~course_utils.config.get_device`.
        seed: if given, seed everything first, so two runs with one seed give the same model.
        progress: show a tqdm progress bar.
        history: continue logging into this history (its steps continue from its last step).

    Returns:
        the :class:`History` (training losses; ``lr``; ``val_*`` metrics).
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if log_every < 1:
        raise ValueError(f"log_every must be >= 1, got {log_every!r}")
    steps = min(steps, step_cap())
    if seed is not None:
        seed_everything(seed)
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    history = history if history is not None else History()
    start = int(history["step"][-1]) if "step" in history and history["step"] else 0

    window: dict[str, list[float]] = defaultdict(list)
    batches = _batches_forever(train_loader)
    bar = tqdm(range(1, steps + 1), desc="train", disable=not progress, leave=False)
    model.train()
    for step in bar:
        inputs, targets = _split(to_device(next(batches), device))
        losses = _losses(model, inputs, targets, loss_fn)
        total = sum(losses.values())
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"the loss became {total.item()} at step {start + step} "
                f"({ {k: v.item() for k, v in losses.items()} }); try a lower learning rate or grad_clip"
            )
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()

        window["loss"].append(total.item())
        if len(losses) > 1:
            for k, v in losses.items():
                window[k].append(v.item())
        if step % log_every == 0 or step == steps:
            means = {k: sum(v) / len(v) for k, v in window.items()}
            history.log(start + step, **means, lr=optimizer.param_groups[0]["lr"])
            bar.set_postfix(loss=f"{means['loss']:.4f}")
            window.clear()
        if eval_fn is not None and (step == steps or (eval_every and step % eval_every == 0)):
            history.log(start + step, prefix="val_", **_run_eval(eval_fn, model))
    bar.close()
    return history


def _run_eval(eval_fn: Callable, model: nn.Module) -> dict[str, float]:
    model.eval()
    try:
        with torch.no_grad():
            metrics = eval_fn(model)
    finally:
        model.train()
    return {k: float(v) for k, v in dict(metrics).items()}


# --------------------------------------------------------------------------- evaluation


class _NormLayersFrozen:
    """Train mode (so detection models return losses) with normalisation layers kept in eval mode
    (so evaluating does not change their running statistics)."""

    def __init__(self, model: nn.Module):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.train()
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm | nn.GroupNorm | nn.LayerNorm):
                m.eval()
            if isinstance(m, nn.Dropout):
                m.eval()
        return self.model

    def __exit__(self, *exc):
        self.model.train(self.was_training)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    loss_fn: Callable | None = None,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
) -> dict[str, float]:
    """Mean losses over ``loader`` without changing the model.

    Plain models (``loss_fn`` given) run in eval mode. Detection models (no ``loss_fn``) only
    return losses in train mode, so they run in train mode with normalisation and dropout layers
    in eval mode, under ``no_grad``.

    Returns:
        ``{"loss": mean total, <component>: mean, ...}``, averaged over batches.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    sums: dict[str, float] = defaultdict(float)
    n = 0
    was_training = model.training
    if loss_fn is None:
        ctx = _NormLayersFrozen(model)
    else:
        model.eval()
        ctx = torch.no_grad()
    try:
        with ctx:
            for i, batch in enumerate(loader):
                if max_batches is not None and i >= max_batches:
                    break
                inputs, targets = _split(to_device(batch, device))
                losses = _losses(model, inputs, targets, loss_fn)
                sums["loss"] += float(sum(losses.values()))
                if len(losses) > 1:
                    for k, v in losses.items():
                        sums[k] += float(v)
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("loader yielded no batch")
    return {k: v / n for k, v in sums.items()}


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
) -> tuple[Any, Any]:
    """Run ``model`` in eval mode over ``loader``.

    Returns:
        (outputs, targets): for models that return one tensor (or a tuple of tensors) per batch,
        the outputs concatenated along dim 0 (on the CPU); for detection models, one list with an
        output dict per image.
        Targets are gathered the same way.
    """
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    try:
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            inputs, target = _split(batch)
            outputs.append(to_device(model(to_device(inputs, device)), "cpu"))
            targets.append(target)
    finally:
        model.train(was_training)
    return _gather(outputs), _gather(targets)


def _gather(parts: list) -> Any:
    if parts and all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts)
    if parts and all(isinstance(p, tuple) and all(isinstance(t, torch.Tensor) for t in p) for p in parts):
        return tuple(torch.cat(column) for column in zip(*parts))  # e.g. (logits, boxes) per batch
    flat = []
    for p in parts:
        flat.extend(p if isinstance(p, (list, tuple)) else [p])
    return flat


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    history: History | None = None,
    **meta: Any,
) -> Path:
    """Save weights (and optionally optimizer state, history and plain metadata) atomically.

    ``meta`` values must be plain python (numbers, strings, lists, dicts) so that
    :func:`load_checkpoint` can read the file with ``weights_only=True``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "meta": meta}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if history is not None:
        state["history"] = history.as_dict()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw dict of a checkpoint file, read with ``torch.load(weights_only=True)`` (a file that
    would run code when unpickled is refused). The one reader of checkpoints in the course.

    Args:
        path: the file.
        map_location: where to put its tensors.

    Returns:
        the dict :func:`save_checkpoint` wrote (``model``, ``meta``, maybe ``optimizer``, ``history``).

    Raises:
        FileNotFoundError: no file at ``path``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``torch.load(weights_only=True)``:
    a file that would run code when unpickled is refused).

    Args:
        path: the checkpoint file.
        model: if given, its weights are loaded (strictly: names and shapes must match).
        optimizer: if given, its state is loaded.

    Returns:
        the checkpoint dict: ``model``, ``meta`` and, when saved, ``optimizer`` and ``history``
        (a :class:`History`).
    """
    state = read_checkpoint(path, map_location=map_location)
    if model is not None:
        model.load_state_dict(state["model"])
    if optimizer is not None:
        if "optimizer" not in state:
            raise ValueError(f"{path} holds no optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    if "history" in state:
        history = History()
        for k, v in state["history"].items():
            history.data[k] = list(v)
        state["history"] = history
    return state


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with ``requires_grad`` if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# --------------------------------------------------------------------------- checkpoint cache


def checkpoint_path(lab: str, name: str) -> Path:
    """Where lab ``lab`` keeps model ``name`` (``<lab>/<name>.pt``).

    Next to ``$COURSE_RESULTS`` when that is set; else in ``results/`` of the course folder
    (:func:`course_utils.config.course_root`; git ignores it); else - a student's copy of the
    labs, on JupyterHub or Colab - in the user's cache, ``$XDG_CACHE_HOME`` or ``~/.cache``, under
    ``cnns-part2/results``. Never inside an assignment folder, which students submit, and the same
    place for every lab, so that lab 07 finds what labs 02-06 saved.

    Args:
        lab: the lab's folder name, e.g. ``"02_yolo"``.
        name: the model's name, e.g. ``"yolo"``.

    Returns:
        the path of the checkpoint file (which may not exist yet).
    """
    results = os.environ.get(RESULTS_ENV)
    if results:
        return Path(results).parent / lab / f"{name}.pt"
    root = course_root()
    if root is not None:
        return root / "results" / lab / f"{name}.pt"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "cnns-part2" / "results" / lab / f"{name}.pt"


def _read_saved(path: str | os.PathLike) -> dict | None:
    """The checkpoint dict at ``path`` (:func:`read_checkpoint`), or None: no file, or not readable."""
    try:
        return read_checkpoint(path)
    except Exception:  # noqa: BLE001 - a missing, truncated or foreign file: train instead
        return None


def _fitting(saved: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``saved`` whose name and shape match one of ``model``'s."""
    own = model.state_dict()
    return {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}


def load_cached(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any]) -> dict | None:
    """Load ``path`` into ``model`` if it was saved by :func:`save_cached` with exactly ``config``.

    Args:
        path: the checkpoint (:func:`checkpoint_path`).
        model: the module to load into, in place.
        config: the training configuration (plain values) the weights must have been saved with.

    Returns:
        the checkpoint's ``meta`` dict (with ``config`` and whatever was saved with it), or None
        (no file, another configuration, or weights that do not fit ``model``: then ``model`` is
        unchanged).
    """
    state = _read_saved(path)
    if state is None or state.get("meta", {}).get("config") != dict(config):
        return None
    if len(_fitting(state["model"], model)) != len(state["model"]) or len(state["model"]) != len(model.state_dict()):
        return None  # the architecture changed under the same config
    model.load_state_dict(state["model"])
    return state["meta"]


def save_cached(path: str | os.PathLike, model: nn.Module, config: Mapping[str, Any], **meta: Any) -> Path:
    """Save ``model``'s weights with its training ``config`` (plain values) and extra ``meta``.

    Returns:
        the path written (atomically, by :func:`save_checkpoint`).
    """
    return save_checkpoint(path, model, config=dict(config), **meta)


def warm_start(path: str | os.PathLike, model: nn.Module, *, mode: str = "fast") -> dict | None:
    """Start ``model`` from the weights another lab saved with :func:`save_cached`, where they fit.

    Every tensor of the checkpoint whose name and shape match one of ``model``'s is copied; the
    others (e.g. a classifier for another number of classes) keep their fresh initialisation.

    Args:
        path: the checkpoint, e.g. ``checkpoint_path("03_retinanet", "retinanet")``.
        model: the module to initialise, in place.
        mode: only a checkpoint whose saved ``config["mode"]`` is this one is used (a full-mode
            ResNet-50 does not fit a fast-mode model).

    Returns:
        None when there is no usable checkpoint (``model`` unchanged); else a dict with ``loaded`` and
        ``fresh`` (names of ``model``'s tensors copied / left as they were) and the checkpoint's ``config``.
    """
    state = _read_saved(path)
    config = {} if state is None else state.get("meta", {}).get("config", {})
    if config.get("mode") != mode:
        return None
    loaded = _fitting(state["model"], model)
    if not loaded:
        return None
    model.load_state_dict(loaded, strict=False)
    return {"loaded": sorted(loaded), "fresh": sorted(k for k in model.state_dict() if k not in loaded),
            "config": config}
