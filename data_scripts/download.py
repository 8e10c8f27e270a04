"""Command line: ``python -m data_scripts.download NAME [--root DIR]`` (or ``make data NAME=...``).

Downloads every file of a registry dataset into ``<root>/<NAME>/archives/``, verifies it and
extracts it into ``<root>/<NAME>/``, which is the folder the ``course_utils.data`` loaders take.
Re-running skips what is already verified and extracted. ``--help`` lists the datasets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .extract import UnsafeArchiveError, safe_extract
from .fetch import ChecksumError, DownloadError, UnverifiedError, download
from .registry import DATASETS, DatasetEntry, RemoteFile, get_entry, human_size

ROOT_ENV = "COURSE_DATA"
DEFAULT_IMAGES = 500


def default_root() -> Path:
    """``$COURSE_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(ROOT_ENV, "data"))


def _extraction_marker(folder: Path, file: RemoteFile) -> Path:
    return folder / f".extracted-{file.name}.json"


def _extraction_state(file: RemoteFile, limit: int | None) -> dict:
    return {"sha256": file.sha256, "limit": limit if file.limit else None}


def fetch_dataset(
    dataset: str | DatasetEntry,
    root: str | os.PathLike | None = None,
    *,
    images: int | None = None,
    allow_unverified: bool = False,
    delete_archives: bool = False,
    progress: bool = True,
) -> Path:
    """Download, verify and extract one dataset of the registry.

    Args:
        dataset: a registry name (see ``DATASETS``) or a :class:`DatasetEntry`.
        root: parent folder of all datasets (default ``$COURSE_DATA`` or ``./data``).
        images: for archives marked ``limit`` (COCO images), how many images to extract
            (default 500).
        allow_unverified: accept files that have no documented sha256.
        delete_archives: delete each archive once extracted (the markers keep re-runs skipping).
        progress: show progress bars.

    Returns:
        the dataset folder ``<root>/<name>``, to pass to the matching ``course_utils.data`` loader.

    Raises:
        DownloadError, ChecksumError, UnverifiedError: see :func:`data_scripts.fetch.download`.
        UnsafeArchiveError: an archive tries to write outside the dataset folder.
    """
    entry = dataset if isinstance(dataset, DatasetEntry) else get_entry(dataset)
    if images is not None and not any(f.limit for f in entry.files):
        raise ValueError(f"--images applies to datasets with a per-image choice (coco_val2017), not {entry.name}")
    if images is not None and images < 1:
        raise ValueError(f"--images must be a positive number, got {images}")
    limit = images or DEFAULT_IMAGES
    folder = Path(root if root is not None else default_root()) / entry.name
    for file in entry.files:
        marker = _extraction_marker(folder, file)
        state = _extraction_state(file, limit)
        if file.extract and marker.is_file() and json.loads(marker.read_text()) == state:
            print(f"{entry.name}: {file.name} already verified and extracted")
            continue
        archive = download(file.urls, folder / "archives" / file.name, sha256=file.sha256, size=file.size,
                           allow_unverified=allow_unverified, progress=progress)
        if file.extract:
            count = safe_extract(archive, folder, members=file.members, limit=limit if file.limit else None)
            marker.write_text(json.dumps(state))
            print(f"{entry.name}: extracted {count} files from {file.name}")
            if delete_archives:
                archive.unlink()
    return folder


def _listing() -> str:
    lines = ["datasets:"]
    for entry in DATASETS.values():
        lines.append(f"  {entry.name:<14} {human_size(entry.size):>12}  {entry.title}")
        lines.append(f"  {'':<14} {'':>12}  licence: {entry.licence}")
        if entry.notes:
            lines.append(f"  {'':<14} {'':>12}  note: {entry.notes}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; its ``--help`` lists the datasets with sizes and licences."""
    parser = argparse.ArgumentParser(
        prog="python -m data_scripts.download",
        description="Download, verify (sha256) and safely extract a real dataset for full mode.",
        epilog=_listing(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=sorted(DATASETS), metavar="NAME", help="dataset to fetch (listed below)")
    parser.add_argument("--root", type=Path, default=None,
                        help=f"parent folder of the datasets (default: ${ROOT_ENV} or ./data)")
    parser.add_argument("--images", type=int, default=None,
                        help=f"coco_val2017: how many val2017 images to extract (default {DEFAULT_IMAGES})")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept files with no documented sha256 (e.g. pennfudan)")
    parser.add_argument("--delete-archives", action="store_true", help="delete archives once extracted")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 with a one-paragraph message on failure)."""
    args = build_parser().parse_args(argv)
    entry = get_entry(args.name)
    try:
        folder = fetch_dataset(entry, args.root, images=args.images, allow_unverified=args.allow_unverified,
                               delete_archives=args.delete_archives, progress=not args.quiet)
    except (DownloadError, ChecksumError, UnverifiedError, UnsafeArchiveError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"{entry.name} is ready in {folder}\nlicence: {entry.licence}\nplease cite: {entry.citation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
