"""Archives built in memory for the download tests: good ones, and every hostile kind the issue lists.

A tar is described member by member, in order, so a test can write exactly the sequence an attacker
would: ``("file", name, data)``, ``("dir", name)``, ``("sym", name, target)``, ``("hard", name,
target)``, ``("fifo", name)``, ``("chr", name)``.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

_TYPES = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE,
          "chr": tarfile.CHRTYPE}


def tar_bytes(members: list[tuple], *, gz: bool = True) -> bytes:
    """A tar (gzip-compressed when ``gz``) holding ``members`` in order (see the module docstring)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, *rest in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(rest[0])
                tar.addfile(info, io.BytesIO(rest[0]))
                continue
            info.type = _TYPES[kind]
            info.mode = 0o777 if kind == "dir" else 0o644
            if kind in ("sym", "hard"):
                info.linkname = rest[0]
            tar.addfile(info)
    return buf.getvalue()


def files_tar(files: dict[str, bytes], *, gz: bool = True) -> bytes:
    """A tar of regular files only."""
    return tar_bytes([("file", name, data) for name, data in files.items()], gz=gz)


def zip_bytes(files: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    """A deflated zip of ``files``, plus Unix symbolic links ``{name: target}``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def realpath_attack_tar(dest: Path, *, gz: bool = False) -> bytes:
    """The CVE-2025-4517 archive, modelled on CPython's ``test_realpath_limit_attack``.

    Folders with long names and symlinks to them make ``os.path.realpath`` stop expanding once the
    path passes ``PATH_MAX``; a last symlink climbing back out is then never checked, so an
    extraction filter that trusts ``realpath`` lets a hard link and a file through it. Extracted
    into ``dest`` by a vulnerable ``tarfile``, it overwrites ``dest.parent / "flag"`` with
    ``b"overwrite"`` and creates ``dest.parent / "newfile"``.

    Args:
        dest: the folder the archive will be extracted into (its length sets the name lengths).
        gz: gzip-compress it.
    """
    steps = "abcdefghijklmnop"
    max_path = os.pathconf(dest.parent, "PC_PATH_MAX")
    component = "d" * ((max_path - len(str(dest)) - 1) // (len(steps) + 1))
    members: list[tuple] = []
    path = ""
    for step in steps:
        members.append(("dir", os.path.join(path, component)))
        members.append(("sym", os.path.join(path, step), component))
        path = os.path.join(path, component)
    link = os.path.join(*steps, "l" * 254)
    members.append(("sym", link, os.path.join(*[".."] * len(steps))))
    members.append(("sym", "escape", os.path.join(link, "..")))
    members.append(("hard", "flaglink", os.path.join("escape", "flag")))
    members.append(("file", "flaglink", b"overwrite"))
    members.append(("file", "escape/newfile", b"new"))
    return tar_bytes(members, gz=gz)


def link_chain_tar(outside: Path) -> bytes:
    """Links that are each harmless alone, chained to leave the folder: ``a/b -> ..``, ``a/b/c -> ..``,
    then a file written through ``a/b/c`` and a link to an absolute folder ``outside``."""
    return tar_bytes([
        ("dir", "a"), ("sym", "a/b", ".."), ("sym", "a/b/c", ".."), ("file", "a/b/c/escaped.txt", b"escaped"),
        ("sym", "out", str(outside)), ("file", "out/flag", b"overwrite"),
    ])


def zip_bomb(size: int, top: str = "PennFudanPed") -> bytes:
    """A zip whose one member unpacks to ``size`` zero bytes (1 GiB deflates to about 1 MiB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
            zf.open(f"{top}/zeros.bin", "w", force_zip64=True) as out:
        block = bytes(1 << 20)
        for _ in range(size >> 20):
            out.write(block)
    return buf.getvalue()


def tar_gz_bomb(size: int, top: str = "PennFudanPed") -> bytes:
    """A .tar.gz whose one member is ``size`` zero bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{top}/zeros.bin")
        info.size = size
        tar.addfile(info, _Zeros(size))
    return buf.getvalue()


class _Zeros(io.RawIOBase):
    """``size`` zero bytes, read in chunks (so a 1 GiB member never sits in memory)."""

    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n
