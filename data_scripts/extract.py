"""Safe extraction of tar and zip archives: nothing may land outside the destination folder.

Every member is checked before anything is written, so a hostile archive is refused whole: no
absolute paths, no ``..``, no symbolic or hard links pointing outside the folder, no device files.
Tar members go through the standard library's ``tarfile.data_filter`` (PEP 706); zip members
through the same rules here, since ``zipfile`` silently rewrites bad names instead of refusing.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath


class UnsafeArchiveError(RuntimeError):
    """An archive member would be written, or would point, outside the destination."""


def _selected(name: str, members: tuple[str, ...] | None) -> bool:
    return members is None or any(name.startswith(prefix) for prefix in members)


def _check_name(archive: Path, name: str, root: Path) -> None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} has an absolute path; refusing to extract")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} contains '..'; refusing to extract")
    if not (root / path).resolve().is_relative_to(root):
        raise UnsafeArchiveError(f"{archive.name}: member {name!r} resolves outside {root}; refusing to extract")


def _tar_members(archive: Path, tar: tarfile.TarFile, root: Path, members, limit) -> list[tarfile.TarInfo]:
    chosen = []
    for member in tar.getmembers():
        _check_name(archive, member.name, root)
        try:
            tarfile.data_filter(member, str(root))  # refuses links out, absolute paths, devices
        except tarfile.FilterError as err:
            raise UnsafeArchiveError(f"{archive.name}: member {member.name!r} is unsafe ({err}); "
                                     "refusing to extract") from None
        if _selected(member.name, members) and (member.isdir() or member.isfile() or member.issym()
                                                 or member.islnk()):
            chosen.append(member)
    return _limit(chosen, limit, lambda m: m.isfile())


def _zip_members(archive: Path, zf: zipfile.ZipFile, root: Path, members, limit) -> list[zipfile.ZipInfo]:
    chosen = []
    for info in zf.infolist():
        _check_name(archive, info.filename, root)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(f"{archive.name}: member {info.filename!r} is a symbolic link; "
                                     "refusing to extract")
        if _selected(info.filename, members):
            chosen.append(info)
    return _limit(chosen, limit, lambda i: not i.is_dir())


def _limit(chosen: list, limit: int | None, is_file) -> list:
    """Keep all directories and the first ``limit`` files (in sorted name order)."""
    if limit is None:
        return chosen
    files = sorted((m for m in chosen if is_file(m)), key=lambda m: getattr(m, "name", None) or m.filename)
    keep = {id(m) for m in files[:limit]}
    return [m for m in chosen if not is_file(m) or id(m) in keep]


def safe_extract(
    archive: str | os.PathLike,
    root: str | os.PathLike,
    *,
    members: tuple[str, ...] | None = None,
    limit: int | None = None,
) -> int:
    """Extract a ``.tar``, ``.tar.gz`` or ``.zip`` into ``root``, refusing unsafe archives.

    Args:
        archive: the archive file.
        root: destination folder (created if needed).
        members: extract only members whose path starts with one of these prefixes.
        limit: extract at most this many files (the first in sorted order), e.g. COCO ``--images N``.

    Returns:
        the number of files extracted.

    Raises:
        UnsafeArchiveError: a member is absolute, contains ``..``, resolves outside ``root`` or is
            a link pointing outside it; nothing has been written then.
        ValueError: the file is neither a tar nor a zip archive.
    """
    archive, root = Path(archive), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    root = root.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            chosen = _zip_members(archive, zf, root, members, limit)
            for info in chosen:
                zf.extract(info, root)
            return sum(not i.is_dir() for i in chosen)
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            chosen = _tar_members(archive, tar, root, members, limit)
            tar.extractall(root, members=chosen, filter="data")
            return sum(m.isfile() for m in chosen)
    raise ValueError(f"{archive} is neither a tar nor a zip archive")
