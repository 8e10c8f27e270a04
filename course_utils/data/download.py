"""Fetch a dataset of the registry into ``<root>/<name>``, which appears only when complete.

Layout under ``root`` (``$COURSE_DATA``, else ``data/`` of the course checkout, see
:func:`course_utils.data.real.data_root`)::

    <root>/<name>/                 the dataset, as the course_utils.data loaders read it
    <root>/<name>/.dataset.json    what it was made from (written last: see is_ready)
    <root>/archives/<name>/        the downloaded archives (+ <file>.sha256 markers of verified ones)
    <root>/sha256-pins.json        trust on first use: sha256 of the first good unverified download

Every archive of a dataset is extracted into one scratch folder beside ``<root>/<name>``, which
replaces ``<root>/<name>`` only once all of them are in, so a failure (refused archive, full disk,
Ctrl-C) leaves the previous state untouched and nothing partial at ``<root>/<name>``.

:func:`ensure_dataset` is the one "already downloaded?" check for notebooks: it returns the
folder when ``.dataset.json`` says it is complete for the asked options, and fetches otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .extract import ArchiveError, ArchiveLimits, safe_extract
from .fetch import PinFile, TransferLimits, download, is_verified, marker_path, pin_first_use, sha256_of
from .real import data_root
from .registry import DATASETS, DatasetEntry, RemoteFile, get_entry

DEFAULT_IMAGES = 500
RECORD = ".dataset.json"
PINS = "sha256-pins.json"


def _entry(dataset: str | DatasetEntry) -> DatasetEntry:
    return dataset if isinstance(dataset, DatasetEntry) else get_entry(dataset)


def _images(entry: DatasetEntry, images: int | None) -> int | None:
    """The number of images to extract, ``None`` for a dataset without that choice."""
    if not any(f.limit for f in entry.files):
        if images is not None:
            raise ValueError(f"images: --images applies to datasets with a per-image choice (coco_val2017, "
                             f"coco_keypoints_val2017), not {entry.name}")
        return None
    if images is not None and (not isinstance(images, int) or images < 1):
        raise ValueError(f"images: expected a positive number of images, got {images!r}")
    return images or DEFAULT_IMAGES


def ready_record(entry: DatasetEntry, digests: dict[str, str], images: int | None) -> dict:
    """What ``<root>/<name>/.dataset.json`` holds once a dataset is complete.

    Args:
        entry: the registry entry.
        digests: file name -> sha256 of the archive it was extracted from.
        images: how many images were extracted (datasets with ``--images``), else ``None``.

    Returns:
        ``{"name", "images", "files": {name: {"sha256", "verified"}}}``; ``verified`` is True only
        for a sha256 the registry documents (an unverified file is at most pinned).
    """
    files = {f.name: {"sha256": digests[f.name], "verified": f.sha256 is not None and digests[f.name] == f.sha256}
             for f in entry.files if f.extract}
    return {"name": entry.name, "images": images, "files": files}


def write_ready_record(folder: str | os.PathLike, entry: DatasetEntry, digests: dict[str, str],
                       images: int | None = None) -> Path:
    """Write :func:`ready_record` into ``folder`` (the last step of :func:`fetch_dataset`).

    Args:
        folder: the dataset folder (or the scratch folder about to become it).
        entry, digests, images: see :func:`ready_record`.

    Returns:
        the record's path.
    """
    path = Path(folder) / RECORD
    path.write_text(json.dumps(ready_record(entry, digests, images), indent=2, sort_keys=True) + "\n")
    return path


def is_ready(dataset: str | DatasetEntry, folder: str | os.PathLike, *, images: int | None = None) -> bool:
    """True when ``folder`` holds the complete dataset for these options.

    That is: its ``.dataset.json`` names this dataset, every archive of the registry entry, the
    registry's sha256 for each verified file, and at least ``images`` images. A folder without the
    record (an interrupted old-style extraction, a tree copied by hand) is not ready.

    Args:
        dataset: a registry name or entry.
        folder: the dataset folder, ``<root>/<name>``.
        images: the images asked for (datasets with ``--images``; default 500).

    Returns:
        whether the folder can be used as is.
    """
    entry = _entry(dataset)
    wanted = _images(entry, images)
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if not isinstance(record, dict) or record.get("name") != entry.name:
        return False
    files = record.get("files") or {}
    for file in entry.files:
        if not file.extract:
            continue
        got = files.get(file.name)
        if not isinstance(got, dict) or (file.sha256 is not None and got.get("sha256") != file.sha256):
            return False
    recorded = record.get("images")
    return wanted is None or (isinstance(recorded, int) and recorded >= wanted)


def _shared_copy(entry: DatasetEntry, file: RemoteFile, root: Path) -> Path | None:
    """A verified copy of ``file`` already fetched for another registry dataset, or ``None``.

    ``coco_val2017`` and ``coco_keypoints_val2017`` share both COCO archives (1 GiB); only files
    with the same name and a documented sha256 qualify, and only once that copy has been verified.
    """
    if file.sha256 is None:
        return None
    for other in DATASETS.values():
        if other.name == entry.name:
            continue
        for theirs in other.files:
            copy = root / "archives" / other.name / theirs.name
            if theirs.name == file.name and theirs.sha256 == file.sha256 and is_verified(copy, file.sha256):
                return copy
    return None


def _place_copy(source: Path, dest: Path) -> None:
    """Hard-link ``source`` at ``dest``, or copy it there atomically where links are not possible."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
        return
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.copy-", dir=dest.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fetch_file(entry: DatasetEntry, file: RemoteFile, root: Path, allow_unverified: bool,
                transfer: TransferLimits, progress: bool) -> Path:
    dest = root / "archives" / entry.name / file.name
    legacy = root / entry.name / "archives" / file.name  # where the downloader before issue 18 kept it
    if legacy.is_file() and not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.rename(legacy, dest)  # checked again below like a file placed by hand, never trusted as is
    shared = _shared_copy(entry, file, root) if not dest.exists() else None
    if shared is not None:
        _place_copy(shared, dest)  # checked below like a file placed by hand (sha256), never trusted as is
        dest.with_name(dest.name + ".part").unlink(missing_ok=True)  # an interrupted download of it, not needed
        print(f"{entry.name}: reusing {file.name} fetched for {shared.parent.name}")
    return download(
        file.urls, dest, sha256=file.sha256, size_bounds=file.size_bounds(),
        declared=file.format, allow_unverified=allow_unverified, pins=PinFile(root / PINS),
        pin_key=_pin_key(entry, file), pin_new=False, limits=transfer, progress=progress,
    )


def _pin_key(entry: DatasetEntry, file: RemoteFile) -> str:
    return f"{entry.name}/{file.name}"


def _merge(source: Path, target: Path) -> None:
    """Move the tree ``source`` into the folder ``target``, refusing a file two archives both hold."""
    for item in sorted(source.iterdir()):
        there = target / item.name
        if item.is_dir() and there.is_dir():
            _merge(item, there)
            item.rmdir()
        elif there.exists():
            raise ArchiveError(f"{there.name} is in two archives of the dataset; refusing to overwrite it")
        else:
            os.rename(item, there)


def _swap_into_place(scratch: Path, folder: Path) -> None:
    """Rename ``scratch`` to ``folder``; a previous ``folder`` goes only after the new one is in."""
    old = None
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
        os.rename(folder, old / folder.name)
    os.rename(scratch, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def fetch_dataset(
    dataset: str | DatasetEntry,
    root: str | os.PathLike | None = None,
    *,
    images: int | None = None,
    allow_unverified: bool = False,
    delete_archives: bool = False,
    progress: bool = True,
    transfer: TransferLimits | None = None,
) -> Path:
    """Download, verify and extract one dataset of the registry; skip it when already complete.

    Args:
        dataset: a registry name (see ``DATASETS``) or a :class:`DatasetEntry`.
        root: parent folder of all datasets (default :func:`course_utils.data.real.data_root`).
        images: for archives marked ``limit`` (COCO images), how many images to extract (default 500).
        allow_unverified: accept files that have no documented sha256 (trust on first use).
        delete_archives: delete each archive once the dataset is complete.
        progress: show progress bars.
        transfer: timeouts, deadline and minimum rate of each download (default :class:`TransferLimits`).

    Returns:
        the dataset folder ``<root>/<name>``, to pass to the matching ``course_utils.data`` loader.

    Raises:
        DownloadError, ChecksumError, UnverifiedError: see :func:`course_utils.data.fetch.download`.
        ArchiveError, UnsafeArchiveError: an archive is corrupt, not its declared format, over its
            limits, or holds a member other than a plain file or folder inside the dataset.
    """
    entry = _entry(dataset)
    wanted = _images(entry, images)
    root = Path(root) if root is not None else data_root()
    folder = root / entry.name
    if is_ready(entry, folder, images=wanted):
        print(f"{entry.name}: already complete in {folder}")
        return folder
    transfer = transfer or TransferLimits()
    archives = [(file, _fetch_file(entry, file, root, allow_unverified, transfer, progress)) for file in entry.files]
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{entry.name}.incomplete-", dir=root))
    try:
        digests = {}
        for file, archive in archives:
            if not file.extract:
                continue
            unpacked = scratch / f".unpacked-{file.name}"
            try:
                count = safe_extract(
                    archive, unpacked, declared=file.format, members=file.members,
                    limit=wanted if file.limit else None, top_level=file.top_level,
                    strict_top_level=file.sha256 is None,
                    limits=ArchiveLimits(file.max_bytes, file.max_members, file.max_ratio),
                )
            except ArchiveError:
                if file.sha256 is None:  # not a good download: neither kept nor pinned
                    archive.unlink(missing_ok=True)
                raise
            _merge(unpacked, scratch)
            unpacked.rmdir()
            digests[file.name] = file.sha256 or sha256_of(archive)
            print(f"{entry.name}: extracted {count} files from {file.name}")
        write_ready_record(scratch, entry, digests, wanted)
        _swap_into_place(scratch, folder)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    pins = PinFile(root / PINS)
    for file, archive in archives:
        if file.extract and file.sha256 is None and pins.get(_pin_key(entry, file)) is None:
            pin_first_use(pins, _pin_key(entry, file), archive, digests[file.name], url=file.urls[0])
    if delete_archives:
        for _, archive in archives:
            archive.unlink(missing_ok=True)
            marker_path(archive).unlink(missing_ok=True)
    return folder


def ensure_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    images: int | None = None,
    allow_unverified: bool = False,
    progress: bool = True,
) -> Path:
    """The ready folder of a dataset, downloading it only when it is not complete (see :func:`is_ready`).

    This is the one check notebooks use instead of looking for a file of their own choosing.

    Args:
        name: a registry name, e.g. ``"pennfudan"``.
        root: parent folder of the datasets (default :func:`course_utils.data.real.data_root`).
        images: datasets with a per-image choice (COCO): at least this many images (default 500).
        allow_unverified: fetch files without a documented sha256 (trust on first use).
        progress: show progress bars while downloading.

    Returns:
        ``<root>/<name>``, complete.
    """
    folder = (Path(root) if root is not None else data_root()) / name
    if is_ready(name, folder, images=images):
        return folder
    return fetch_dataset(name, folder.parent, images=images, allow_unverified=allow_unverified, progress=progress)
