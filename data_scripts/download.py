"""Command line: ``python -m data_scripts.download NAME [--root DIR]`` (or ``make data NAME=...``).

Downloads every file of a registry dataset into ``<root>/archives/<NAME>/``, verifies it and
extracts it into ``<root>/<NAME>/``, the folder the ``course_utils.data`` loaders take (see
:mod:`course_utils.data.download`). Re-running skips a complete dataset. ``--help`` lists the
datasets. A failure prints one line starting with ``error:`` and exits with status 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_utils.data.download import DEFAULT_IMAGES, fetch_dataset
from course_utils.data.extract import ArchiveError
from course_utils.data.fetch import ChecksumError, DownloadError, UnverifiedError
from course_utils.data.registry import DATASETS, get_entry, human_size

__all__ = ["build_parser", "fetch_dataset", "main"]


def _listing() -> str:
    lines = ["datasets:"]
    width = max(len(name) for name in DATASETS)
    for entry in DATASETS.values():
        size = human_size(entry.size) if entry.verified else f"about {human_size(entry.size)}"
        lines.append(f"  {entry.name:<{width}} {size:>16}  {entry.title}")
        lines.append(f"  {'':<{width}} {'':>16}  licence: {entry.licence}")
        if entry.notes:
            lines.append(f"  {'':<{width}} {'':>16}  note: {entry.notes}")
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
                        help="parent folder of the datasets (default: $COURSE_DATA or data/ of the checkout)")
    parser.add_argument("--images", type=int, default=None,
                        help=f"coco_val2017, coco_keypoints_val2017: how many val2017 images to extract "
                             f"(default {DEFAULT_IMAGES})")
    parser.add_argument("--allow-unverified", action="store_true",
                        help="accept files with no published sha256 (e.g. pennfudan): trust on first use")
    parser.add_argument("--delete-archives", action="store_true", help="delete archives once extracted")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 with a one-line message on failure)."""
    args = build_parser().parse_args(argv)
    entry = get_entry(args.name)
    try:
        folder = fetch_dataset(entry, args.root, images=args.images, allow_unverified=args.allow_unverified,
                               delete_archives=args.delete_archives, progress=not args.quiet)
    except (DownloadError, ChecksumError, UnverifiedError, ArchiveError, ValueError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"error: interrupted; nothing partial was left in {args.root or 'the data folder'}", file=sys.stderr)
        return 130
    print(f"{entry.name} is ready in {folder}\nlicence: {entry.licence}\nplease cite: {entry.citation}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
