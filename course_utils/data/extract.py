"""Safe extraction of tar and zip archives, whatever the interpreter's patch level.

Dataset archives hold regular files and folders only, so that is all this module writes:

* a member that is a symbolic link, a hard link, a device, a FIFO or a sparse file is refused, as
  is a name that is absolute, has a drive letter, a ``..`` part, a backslash or a NUL byte. Since
  no link is ever created, no later member can be redirected through one (the link-chain and
  ``os.path.realpath`` tricks of CVE-2025-4517 have nothing to work with), and each target's
  resolved path is checked to stay inside the destination anyway;
* the archive's format must be the one its name declares (magic bytes: zip, gzip, tar);
* the total unpacked bytes, the member count and the compression ratio are bounded, and a gzip
  stream is cut off the moment it unpacks past the bound (a decompression bomb never reaches disk);
* everything is written into a scratch folder beside the destination, which is renamed into place
  only when complete: a failure leaves nothing at the destination and no partial tree.

Nothing here calls ``TarFile.extractall`` or ``ZipFile.extract``: the standard library's
extraction filters (PEP 706) are only as safe as the interpreter (3.11.7 lacks the June 2025
fixes), while these checks are plain Python.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .registry import DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS, DEFAULT_MAX_RATIO, archive_format

COPY_CHUNK = 1 << 20
# the compression ratio is enforced beyond this many unpacked bytes: a tiny tar.gz is mostly
# padding (a tar is at least 10 KiB) and may look 100 times its size without being a bomb
RATIO_FLOOR = 1 << 20
# how many bytes identify a format: tar's "ustar" magic sits at offset 257
SNIFF_BYTES = 512


class ArchiveError(RuntimeError):
    """An archive cannot be extracted: corrupt, truncated, or not the format its name declares."""


class UnsafeArchiveError(ArchiveError):
    """An archive holds a member that is not a plain file or folder inside the destination, or
    unpacks to more than its limits allow."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What one archive may unpack to.

    Attributes:
        max_bytes: total unpacked bytes (a tar: its whole uncompressed stream, headers included).
        max_members: number of entries (files and folders).
        max_ratio: unpacked bytes per byte of archive file (checked beyond :data:`RATIO_FLOOR` bytes).
    """

    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    max_ratio: float = DEFAULT_MAX_RATIO


# --------------------------------------------------------------------------- formats


def sniff_format(head: bytes) -> str | None:
    """Name the format of a file from its first bytes.

    Args:
        head: the file's first bytes (:data:`SNIFF_BYTES` are enough for every format).

    Returns:
        ``"zip"``, ``"gzip"``, ``"tar"``, ``"html"`` or ``None`` when none of these.
    """
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "gzip"
    if head[257:262] == b"ustar":
        return "tar"
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "html"
    return None


def expected_magic(declared: str) -> str:
    """The :func:`sniff_format` answer that a declared archive format must give.

    Args:
        declared: ``"zip"``, ``"tar.gz"`` or ``"tar"``.

    Returns:
        ``"zip"``, ``"gzip"`` or ``"tar"``.
    """
    magic = {"zip": "zip", "tar.gz": "gzip", "tar": "tar"}
    if declared not in magic:
        raise ValueError(f"declared format must be one of {', '.join(magic)}, got {declared!r}")
    return magic[declared]


def check_format(name: str, head: bytes, declared: str) -> None:
    """Refuse bytes whose format is not the declared one.

    Args:
        name: the file's name, for the message.
        head: its first bytes.
        declared: the format its name declares (``"zip"``, ``"tar.gz"``, ``"tar"``).

    Raises:
        ArchiveError: naming the declared and the actual format.
    """
    actual = sniff_format(head)
    if actual != expected_magic(declared):
        what = {"gzip": "a gzip stream", "html": "an HTML page", None: "no known archive format"}.get(
            actual, f"a {actual} archive")
        raise ArchiveError(f"{name}: declared a {declared} archive, but its first bytes are {what}; refusing it")


# --------------------------------------------------------------------------- member checks


def member_parts(archive_name: str, name: str) -> tuple[str, ...]:
    """The path parts of an archive member, refusing every name that could leave the destination.

    Args:
        archive_name: the archive's file name, for the message.
        name: the member's name as stored (``/`` separated; ``./`` prefixes are dropped).

    Returns:
        the non-empty parts, e.g. ``("images", "cat.jpg")``.

    Raises:
        UnsafeArchiveError: the name is empty, absolute, has a drive letter, a ``..`` part,
            a backslash or a NUL byte.
    """
    def refuse(why: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{archive_name}: member {name!r} {why}; refusing the archive")

    if "\x00" in name:
        raise refuse("contains a NUL byte")
    if "\\" in name:
        raise refuse("contains a backslash (dataset archives separate folders with '/')")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise refuse("has an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p != ".")
    if ".." in parts:
        raise refuse("contains '..'")
    if not parts:
        raise refuse("has an empty name")
    return parts


def _inside(root: Path, parts: tuple[str, ...], archive_name: str) -> Path:
    """``root / parts``, checked to resolve inside ``root`` (which holds no links: none is ever made)."""
    target = root.joinpath(*parts)
    if not target.resolve().is_relative_to(root.resolve()):
        raise UnsafeArchiveError(f"{archive_name}: member {'/'.join(parts)!r} resolves outside the destination; "
                                 "refusing the archive")
    return target


@dataclass
class _Member:
    """One checked member: its path parts, whether it is a folder, its size, the library's handle."""

    parts: tuple[str, ...]
    is_dir: bool
    size: int
    handle: tarfile.TarInfo | zipfile.ZipInfo

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def _tar_kind(info: tarfile.TarInfo) -> str | None:
    """``None`` for a regular file or folder, else what the member is (for the message)."""
    if info.isdir() or (info.isreg() and not info.issparse()):
        return None
    for test, kind in ((info.issym, "a symbolic link"), (info.islnk, "a hard link"), (info.ischr, "a character device"),
                       (info.isblk, "a block device"), (info.isfifo, "a FIFO"), (info.issparse, "a sparse file")):
        if test():
            return kind
    return f"of tar type {info.type!r}"


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    """``None`` for a regular file or folder, else what the member is (for the message)."""
    if info.flag_bits & 0x1:
        return "encrypted"
    mode = info.external_attr >> 16
    if info.create_system != 3 or stat.S_IFMT(mode) in (0, stat.S_IFREG, stat.S_IFDIR):  # 3: Unix mode bits
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "a device, FIFO or socket"


def _count(archive_name: str, members: list[_Member], member: _Member, limits: ArchiveLimits, total: int) -> int:
    """Add ``member`` to ``members``, enforcing the member count and byte bounds; returns the new total."""
    members.append(member)
    if len(members) > limits.max_members:
        raise UnsafeArchiveError(f"{archive_name}: more than {limits.max_members:,} members; refusing the archive")
    total += member.size
    if total > limits.max_bytes:
        raise UnsafeArchiveError(f"{archive_name}: unpacks to more than {limits.max_bytes:,} bytes; "
                                 "refusing the archive")
    return total


def _checked(archive_name: str, name: str, kind: str | None, is_dir: bool, size: int, handle) -> _Member:
    if kind is not None:
        raise UnsafeArchiveError(f"{archive_name}: member {name!r} is {kind}; dataset archives hold only files "
                                 "and folders, refusing the archive")
    return _Member(member_parts(archive_name, name), is_dir, 0 if is_dir else size, handle)


# --------------------------------------------------------------------------- reading


class _BoundedStream:
    """A read-only, seekable view of a decompressing stream that refuses to go past ``limit`` bytes.

    ``tarfile`` reads and seeks forward through a gzip stream; each read or seek beyond the limit
    raises :class:`UnsafeArchiveError` before the bytes are produced, so a gzip bomb stops there.
    """

    def __init__(self, raw: gzip.GzipFile, limit: int, message: str):
        self.raw, self.limit, self.message = raw, limit, message

    def _refuse_past(self, position: int) -> None:
        if position > self.limit:
            raise UnsafeArchiveError(self.message)

    def read(self, size: int = -1) -> bytes:
        room = self.limit - self.raw.tell() + 1  # one byte more than allowed shows the stream goes on
        data = self.raw.read(room if size is None or size < 0 else min(size, room))
        self._refuse_past(self.raw.tell())
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        target = {os.SEEK_SET: offset, os.SEEK_CUR: self.raw.tell() + offset}.get(whence)
        if target is None:
            raise OSError("only SEEK_SET and SEEK_CUR are supported")
        self._refuse_past(target)
        return self.raw.seek(target)

    def tell(self) -> int:
        return self.raw.tell()


def _tar_members(archive: Path, tar: tarfile.TarFile, limits: ArchiveLimits) -> list[_Member]:
    members: list[_Member] = []
    total = 0
    while (info := tar.next()) is not None:
        member = _checked(archive.name, info.name, _tar_kind(info), info.isdir(), info.size, info)
        total = _count(archive.name, members, member, limits, total)
    return members


def _zip_members(archive: Path, zf: zipfile.ZipFile, limits: ArchiveLimits) -> list[_Member]:
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchiveError(f"{archive.name}: more than {limits.max_members:,} members; refusing the archive")
    members: list[_Member] = []
    total = 0
    for info in infos:
        member = _checked(archive.name, info.filename, _zip_kind(info), info.is_dir(), info.file_size, info)
        total = _count(archive.name, members, member, limits, total)
    ratio = total / max(archive.stat().st_size, 1)
    if total > RATIO_FLOOR and ratio > limits.max_ratio:
        raise UnsafeArchiveError(f"{archive.name}: unpacks {ratio:.0f} times its size (at most {limits.max_ratio:g} "
                                 "allowed); refusing the archive")
    return members


def _check_top_level(archive_name: str, members: list[_Member], top_level: tuple[str, ...], strict: bool) -> None:
    found = {m.parts[0] for m in members}
    missing = sorted(set(top_level) - found)
    if missing:
        raise ArchiveError(f"{archive_name}: expected the top-level entries {', '.join(top_level)}, but "
                           f"{', '.join(missing)} is missing; this is not the expected archive")
    extra = sorted(found - set(top_level))
    if strict and extra:
        raise ArchiveError(f"{archive_name}: unexpected top-level entries {', '.join(extra[:5])} (expected only "
                           f"{', '.join(top_level)}); this is not the expected archive")


def _select(members: list[_Member], prefixes: tuple[str, ...] | None, limit: int | None) -> list[_Member]:
    """Members under ``prefixes`` (all when None); of their files only the first ``limit`` by name.

    The archive order is kept, so a gzip stream is read forward only.
    """
    chosen = [m for m in members if prefixes is None or any(m.path.startswith(p.rstrip("/")) for p in prefixes)]
    if limit is None:
        return chosen
    keep = {m.path for m in sorted((m for m in chosen if not m.is_dir), key=lambda m: m.path)[:limit]}
    return [m for m in chosen if m.is_dir or m.path in keep]


# --------------------------------------------------------------------------- writing


def _write_file(archive_name: str, member: str, source, target: Path, size: int) -> None:
    """Copy exactly ``size`` bytes from ``source`` into a new file ``target`` (never through a link)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(target, flags, 0o644)
    except FileExistsError:
        raise UnsafeArchiveError(f"{archive_name}: member {member!r} appears twice; "
                                 "refusing the archive") from None
    written = 0
    with os.fdopen(fd, "wb") as out:
        while block := source.read(min(COPY_CHUNK, size - written + 1)):
            written += len(block)
            if written > size:
                raise UnsafeArchiveError(f"{archive_name}: member {member!r} holds more than its declared "
                                         f"{size:,} bytes; refusing the archive")
            out.write(block)
    if written < size:
        raise ArchiveError(f"{archive_name}: member {member!r} is truncated ({written:,} of {size:,} bytes)")


def _write(archive_name: str, members: list[_Member], scratch: Path, open_member) -> int:
    files = 0
    for member in members:
        target = _inside(scratch, member.parts, archive_name)
        try:
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            with open_member(member.handle) as source:
                _write_file(archive_name, member.path, source, target, member.size)
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise UnsafeArchiveError(f"{archive_name}: member {member.path!r} clashes with another member "
                                     "(a file and a folder of the same name); refusing the archive") from None
        files += 1
    return files


def _extract_tar(archive: Path, declared: str, scratch: Path, limits: ArchiveLimits, prefixes, limit, top_level,
                 strict) -> int:
    bound = min(limits.max_bytes, max(RATIO_FLOOR, int(limits.max_ratio * archive.stat().st_size)))
    message = (f"{archive.name}: unpacks to more than {bound:,} bytes (at most {limits.max_bytes:,} bytes and "
               f"{limits.max_ratio:g} times its size allowed); refusing the archive")
    with open(archive, "rb") as raw:
        gz = gzip.GzipFile(fileobj=raw, mode="rb") if declared == "tar.gz" else None
        stream = _BoundedStream(gz, bound, message) if gz is not None else raw
        with tarfile.open(fileobj=stream, mode="r:") as tar:  # type: ignore[arg-type]
            members = _tar_members(archive, tar, limits)
            _check_top_level(archive.name, members, top_level, strict)
            chosen = _select(members, prefixes, limit)
            return _write(archive.name, chosen, scratch, tar.extractfile)


def _extract_zip(archive: Path, scratch: Path, limits: ArchiveLimits, prefixes, limit, top_level, strict) -> int:
    with zipfile.ZipFile(archive) as zf:
        members = _zip_members(archive, zf, limits)
        _check_top_level(archive.name, members, top_level, strict)
        chosen = _select(members, prefixes, limit)
        return _write(archive.name, chosen, scratch, zf.open)


def safe_extract(
    archive: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    declared: str | None = None,
    members: tuple[str, ...] | None = None,
    limit: int | None = None,
    top_level: tuple[str, ...] = (),
    strict_top_level: bool = False,
    limits: ArchiveLimits = ArchiveLimits(),
) -> int:
    """Extract a ``.zip``, ``.tar.gz`` or ``.tar`` into a new folder ``dest``, refusing unsafe archives.

    The members go into a scratch folder beside ``dest``, renamed to ``dest`` only when all are
    written; on any failure the scratch folder is deleted and ``dest`` does not exist.

    Args:
        archive: the archive file.
        dest: the folder to create (its parent must exist; ``dest`` itself must not).
        declared: the archive's format, ``"zip"``, ``"tar.gz"`` or ``"tar"`` (default: from its name).
        members: extract only members whose path starts with one of these prefixes.
        limit: extract at most this many files (the first in name order), e.g. COCO ``--images N``.
        top_level: top-level entries the archive must hold (all of them).
        strict_top_level: also refuse any other top-level entry (for unverified archives).
        limits: bounds on unpacked bytes, member count and compression ratio.

    Returns:
        the number of files extracted.

    Raises:
        UnsafeArchiveError: a member is a link, device or FIFO, its name is absolute or has ``..``,
            or the archive is over its limits.
        ArchiveError: the archive is corrupt, truncated, lacks the expected top-level entries or
            is not the declared format.
        FileExistsError: ``dest`` already exists.
    """
    archive, dest = Path(archive), Path(dest)
    declared = declared or archive_format(archive.name)
    if declared is None:
        raise ValueError(f"declared: {archive.name} has no archive suffix (.zip, .tar.gz, .tgz, .tar); pass declared=")
    if dest.exists():
        raise FileExistsError(f"dest: {dest} exists already; safe_extract creates a new folder")
    with open(archive, "rb") as f:
        check_format(archive.name, f.read(SNIFF_BYTES), declared)
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
    try:
        try:
            if declared == "zip":
                count = _extract_zip(archive, scratch, limits, members, limit, top_level, strict_top_level)
            else:
                count = _extract_tar(archive, declared, scratch, limits, members, limit, top_level, strict_top_level)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile,
                NotImplementedError) as err:
            raise ArchiveError(f"{archive.name}: corrupt or truncated {declared} archive "
                               f"({type(err).__name__}: {err})") from None
        os.rename(scratch, dest)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return count
