"""Hostile archives served from 127.0.0.1 as a dataset: each is refused with one clear line.

Every case runs the command line (``python -m data_scripts.download pennfudan --allow-unverified``,
as in issue 18) against a registry entry pointing at a local server, with a sentinel folder
``outside/`` next to the data folder. After each refusal: exit status 1, one ``error:`` line that
says why, ``outside/`` byte for byte unchanged, nothing at ``data/pennfudan``, no scratch folder,
no pin, no archive kept. The good archive, by contrast, downloads, extracts, is pinned and loads.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from course_utils.data.extract import ArchiveError, ArchiveLimits, UnsafeArchiveError, safe_extract
from course_utils.data.registry import DATASETS, DatasetEntry, RemoteFile
from data_scripts import download as cli
from tests.archives import (
    files_tar,
    link_chain_tar,
    realpath_attack_tar,
    tar_bytes,
    tar_gz_bomb,
    zip_bomb,
    zip_bytes,
)
from tests.http_server import LocalServer

GOOD_FILES = {"PennFudanPed/readme.txt": b"Penn-Fudan\n", "PennFudanPed/PNGImages/FudanPed00001.png": b"png" * 100}
NOISE = random.Random(0).randbytes(128 << 10)
DEEP = "../" * 6  # from the scratch folders inside data/ up past tmp_path


def snapshot(folder: Path, skip: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (but not under ``skip``) -> its bytes (None for a folder or link)."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.rglob("*")) if not p.is_relative_to(skip)}


@pytest.fixture
def sandbox(tmp_path):
    """``(data root, check)``: ``check()`` asserts nothing changed outside ``data/`` and nothing is left in it."""
    data = tmp_path / "data"
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "flag").write_bytes(b"original")
    before = snapshot(tmp_path, data)

    def check(name: str = "pennfudan") -> None:
        assert snapshot(tmp_path, data) == before, "something was written outside the data folder"
        assert not (data / name).exists(), "a failed fetch left something at the final path"
        left = sorted(str(p.relative_to(data)) for p in data.rglob("*")) if data.exists() else []
        assert all(p in ("archives", f"archives/{name}") for p in left), f"left behind: {left}"

    return data, check


def serve_as_pennfudan(monkeypatch, server: LocalServer, body: bytes, *, file_name: str = "PennFudanPed.zip",
                       sha256: str | None = None, **fields) -> RemoteFile:
    """Point the registry's ``pennfudan`` at ``server`` serving ``body`` as its one archive."""
    limits = {"top_level": ("PennFudanPed",), "max_bytes": 256 << 20, "max_members": 2_000, "max_ratio": 10.0}
    file = RemoteFile(file_name, (server.url("/" + file_name),), sha256, len(body),
                      size_margin=0 if sha256 else 0.15, **{**limits, **fields})
    real = DATASETS["pennfudan"]
    monkeypatch.setitem(DATASETS, "pennfudan", DatasetEntry(real.name, real.title, (file,), real.licence,
                                                            real.citation, real.homepage, real.notes))
    return file


def run_cli(data: Path, capsys, name: str = "pennfudan") -> tuple[int, str, str]:
    status = cli.main([name, "--allow-unverified", "--root", str(data), "--quiet"])
    out, err = capsys.readouterr()
    return status, out, err


def refused(monkeypatch, capsys, sandbox, body: bytes, file_name: str = "PennFudanPed.zip", **fields) -> str:
    """Serve ``body``, run the command line, check the refusal; returns the error line."""
    data, check = sandbox
    with LocalServer({"/" + file_name: body}) as server:
        serve_as_pennfudan(monkeypatch, server, body, file_name=file_name, **fields)
        status, out, err = run_cli(data, capsys)
    assert status == 1, out
    assert err.startswith("error: ") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err and "is ready" not in out
    check()
    return err


# --------------------------------------------------------------------------- the hostile archives of issue 18


def test_realpath_bypass_tar_served_as_the_zip_is_refused_by_its_format(monkeypatch, capsys, sandbox):
    err = refused(monkeypatch, capsys, sandbox, realpath_attack_tar(sandbox[0] / "pennfudan"))
    assert "declared a zip archive, but its first bytes are a tar archive" in err


def test_realpath_bypass_tar_declared_as_a_tar_is_refused_at_its_first_link(monkeypatch, capsys, sandbox):
    err = refused(monkeypatch, capsys, sandbox, realpath_attack_tar(sandbox[0] / "pennfudan"),
                  file_name="PennFudanPed.tar")
    assert "member 'a' is a symbolic link" in err and "PennFudanPed.tar" in err


def test_the_realpath_archive_is_a_real_attack_on_this_interpreters_tarfile(tmp_path):
    """The archive above is not a strawman: here the standard library's own "data" filter lets it out."""
    outer = tmp_path / "outer"
    (outer / "dest").mkdir(parents=True)
    (outer / "flag").write_bytes(b"original")
    archive = io.BytesIO(realpath_attack_tar(outer / "dest"))
    try:
        with tarfile.open(fileobj=archive) as tar:
            tar.extractall(outer / "dest", filter="data")
    except (OSError, KeyError, tarfile.FilterError) as err:
        pytest.skip(f"this interpreter ({sys.version.split()[0]}) has the CVE-2025-4517 fix: {err!r}")
    assert (outer / "flag").read_bytes() == b"overwrite" and (outer / "newfile").read_bytes() == b"new"


def test_link_chain_tar_is_refused(monkeypatch, capsys, sandbox):
    outside = sandbox[0].parent / "outside"
    err = refused(monkeypatch, capsys, sandbox, link_chain_tar(outside), file_name="PennFudanPed.tar.gz",
                  top_level=("a", "out"))
    assert "member 'a/b' is a symbolic link" in err


@pytest.mark.parametrize("members, expected", [
    ([("file", "PennFudanPed/ok.txt", b"1"), ("file", DEEP + "outside/flag", b"overwrite")], "contains '..'"),
    ([("file", "PennFudanPed/ok.txt", b"1"), ("file", "/tmp/course-evil", b"x")], "has an absolute path"),
    ([("dir", "PennFudanPed"), ("sym", "PennFudanPed/in", "ok.txt")], "is a symbolic link"),
    ([("file", "PennFudanPed/ok.txt", b"1"), ("hard", "PennFudanPed/h", DEEP + "outside/flag")], "is a hard link"),
    ([("file", "PennFudanPed/ok.txt", b"1"), ("hard", "PennFudanPed/h", "PennFudanPed/ok.txt")], "is a hard link"),
    ([("file", "PennFudanPed/ok.txt", b"1"), ("fifo", "PennFudanPed/pipe")], "is a FIFO"),
    ([("file", "PennFudanPed/ok.txt", b"1"), ("chr", "PennFudanPed/null")], "is a character device"),
    ([("file", "PennFudanPed/a", b"1"), ("file", "PennFudanPed/a", b"2")], "appears twice"),
    ([("file", "PennFudanPed/a", b"1"), ("file", "PennFudanPed/a/b", b"2")], "clashes with another member"),
    ([("file", "PennFudanPed\\..\\..\\evil", b"1")], "contains a backslash"),
], ids=["dotdot", "absolute", "symlink-inside", "hardlink-out", "hardlink-inside", "fifo", "device", "duplicate",
        "file-dir-clash", "backslash"])
def test_tar_members_other_than_plain_files_and_folders_are_refused(monkeypatch, capsys, sandbox, members, expected):
    err = refused(monkeypatch, capsys, sandbox, tar_bytes(members), file_name="PennFudanPed.tar.gz")
    assert expected in err


@pytest.mark.parametrize("body, expected", [
    (zip_bytes({"PennFudanPed/ok.txt": b"1", DEEP + "outside/flag": b"overwrite"}), "contains '..'"),
    (zip_bytes({"PennFudanPed/ok.txt": b"1", "/tmp/course-evil": b"x"}), "has an absolute path"),
    (zip_bytes({"PennFudanPed/ok.txt": b"1", "C:/evil": b"x"}), "has an absolute path"),
    (zip_bytes({"PennFudanPed/ok.txt": b"1"}, symlinks={"PennFudanPed/l": "/etc"}), "is a symbolic link"),
], ids=["dotdot", "absolute", "drive", "symlink"])
def test_zip_members_other_than_plain_files_and_folders_are_refused(monkeypatch, capsys, sandbox, body, expected):
    assert expected in refused(monkeypatch, capsys, sandbox, body)


def test_zip_bomb_is_refused_by_its_ratio_before_anything_is_unpacked(monkeypatch, capsys, sandbox):
    err = refused(monkeypatch, capsys, sandbox, zip_bomb(64 << 20))
    assert "unpacks" in err and "times its size (at most 10 allowed)" in err


def test_tar_gz_bomb_is_cut_off_while_decompressing(monkeypatch, capsys, sandbox):
    err = refused(monkeypatch, capsys, sandbox, tar_gz_bomb(64 << 20), file_name="PennFudanPed.tar.gz")
    assert "unpacks to more than" in err and "10 times its size" in err


def test_too_many_members_are_refused(monkeypatch, capsys, sandbox):
    body = zip_bytes({f"PennFudanPed/{i}.txt": b"" for i in range(30)})
    err = refused(monkeypatch, capsys, sandbox, body, max_members=20)
    assert "more than 20 members" in err


def test_too_many_bytes_are_refused_even_at_a_harmless_ratio(monkeypatch, capsys, sandbox):
    body = zip_bytes({"PennFudanPed/noise.bin": NOISE})  # incompressible
    assert "unpacks to more than 65,536 bytes" in refused(monkeypatch, capsys, sandbox, body, max_bytes=1 << 16)


@pytest.mark.slow
@pytest.mark.parametrize("maker, file_name", [(zip_bomb, "PennFudanPed.zip"), (tar_gz_bomb, "PennFudanPed.tar.gz")])
def test_one_gib_bombs_are_refused_under_the_default_limits(monkeypatch, capsys, sandbox, maker, file_name):
    """The issue's bombs, about 1 MiB that unpack to 1 GiB, against the registry's safe defaults."""
    body = maker(1 << 30)
    assert len(body) < 2 << 20
    defaults = ArchiveLimits()
    err = refused(monkeypatch, capsys, sandbox, body, file_name=file_name, max_bytes=defaults.max_bytes,
                  max_members=defaults.max_members, max_ratio=defaults.max_ratio)
    assert "unpacks" in err


def test_an_archive_whose_format_differs_from_its_name_is_refused(monkeypatch, capsys, sandbox):
    err = refused(monkeypatch, capsys, sandbox, files_tar(GOOD_FILES, gz=True))  # a .tar.gz named .zip
    assert "declared a zip archive, but its first bytes are a gzip stream" in err


def test_a_truncated_tar_gz_is_a_clear_error_not_an_eof_traceback(monkeypatch, capsys, sandbox):
    whole = files_tar({"PennFudanPed/big.bin": NOISE})
    body = whole[: len(whole) * 9 // 10]  # within the size margin, so only extraction can tell
    err = refused(monkeypatch, capsys, sandbox, body, file_name="PennFudanPed.tar.gz")
    assert "corrupt or truncated tar.gz archive" in err


def test_a_truncated_zip_is_a_clear_error(monkeypatch, capsys, sandbox):
    whole = zip_bytes({"PennFudanPed/big.bin": NOISE})
    assert "corrupt or truncated zip archive" in refused(monkeypatch, capsys, sandbox, whole[: len(whole) * 9 // 10])


@pytest.mark.parametrize("files, expected", [
    ({"PennFudanPed/ok.txt": b"1", "evil/payload.sh": b"x"}, "unexpected top-level entries evil"),
    ({"Other/ok.txt": b"1"}, "PennFudanPed is missing"),
], ids=["extra-entry", "missing-entry"])
def test_an_unverified_archive_must_hold_exactly_its_expected_top_level_entries(monkeypatch, capsys, sandbox, files,
                                                                               expected):
    assert expected in refused(monkeypatch, capsys, sandbox, zip_bytes(files))


# --------------------------------------------------------------------------- the good archive still works


def test_the_good_unverified_archive_downloads_extracts_is_pinned_and_loads(monkeypatch, capsys, tmp_path):
    from course_utils.data import PennFudan, is_ready
    from tests.fake_datasets import make_pennfudan

    tree = make_pennfudan(tmp_path / "src") / "PennFudanPed"
    body = zip_bytes({f"PennFudanPed/{p.relative_to(tree)}": p.read_bytes()
                      for p in sorted(tree.rglob("*")) if p.is_file()})
    data = tmp_path / "data"
    with LocalServer({"/PennFudanPed.zip": body}) as server:
        serve_as_pennfudan(monkeypatch, server, body)
        status, out, err = run_cli(data, capsys)
        assert status == 0, err
        assert "pennfudan is ready" in out and "UNVERIFIED" in out and "pinned" in out
        assert len(PennFudan(data / "pennfudan")) == 2
        assert is_ready("pennfudan", data / "pennfudan")
        assert not (data / "archives" / "pennfudan" / "PennFudanPed.zip.sha256").exists()  # never marked verified
        record = json.loads((data / "pennfudan" / ".dataset.json").read_text())
        assert record["files"]["PennFudanPed.zip"] == {"sha256": hashlib.sha256(body).hexdigest(), "verified": False}
        assert hashlib.sha256(body).hexdigest() in (data / "sha256-pins.json").read_text()
        n_requests = len(server.requests)
        assert run_cli(data, capsys)[0] == 0 and len(server.requests) == n_requests  # complete: no request


def test_trust_on_first_use_refuses_a_later_different_file(monkeypatch, capsys, tmp_path):
    first = zip_bytes({"PennFudanPed/readme.txt": b"the first download\n"})
    later = zip_bytes({"PennFudanPed/readme.txt": b"a different file!!\n"})
    data = tmp_path / "data"
    for body, expected_status in ((first, 0), (later, 1)):
        with LocalServer({"/PennFudanPed.zip": body}) as server:
            serve_as_pennfudan(monkeypatch, server, body)
            (data / "pennfudan" / ".dataset.json").unlink(missing_ok=True)  # not complete: fetch again
            for archive in (data / "archives" / "pennfudan").glob("*"):
                archive.unlink()
            status, _, err = run_cli(data, capsys)
        assert status == expected_status, err
    assert "sha256 mismatch for PennFudanPed.zip: the pinned sha256 is " + hashlib.sha256(first).hexdigest() in err
    assert (data / "pennfudan" / "PennFudanPed" / "readme.txt").read_bytes() == b"the first download\n"


def test_safe_extract_writes_only_files_and_folders_and_replaces_nothing(tmp_path):
    archive = tmp_path / "a.tar"
    archive.write_bytes(tar_bytes([("dir", "PennFudanPed"), ("file", "./PennFudanPed/x.txt", b"x")], gz=False))
    assert safe_extract(archive, tmp_path / "out", top_level=("PennFudanPed",)) == 1
    assert (tmp_path / "out" / "PennFudanPed" / "x.txt").read_bytes() == b"x"
    with pytest.raises(FileExistsError, match="dest"):
        safe_extract(archive, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "out"]  # no scratch folder left


def test_safe_extract_errors_are_archive_errors_and_leave_no_scratch(tmp_path):
    archive = tmp_path / "x.zip"
    archive.write_bytes(zip_bytes({"top/a.txt": b"a" * (2 << 20)}))
    with pytest.raises(UnsafeArchiveError, match="at most 2 allowed"):
        safe_extract(archive, tmp_path / "out", limits=ArchiveLimits(max_ratio=2.0))
    other = tmp_path / "y.zip"
    other.write_bytes(zip_bytes({"top/a.txt": NOISE}))
    with pytest.raises(ArchiveError, match="top-level entries other"):
        safe_extract(other, tmp_path / "out", top_level=("other",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.zip", "y.zip"]


def test_zip_reads_are_bounded_by_the_declared_size(tmp_path):
    """A zip whose central directory understates a member's size cannot write more than it declared."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("top/a.bin", b"A" * 1000)
    body = buf.getvalue().replace((1000).to_bytes(4, "little"), (10).to_bytes(4, "little"))
    archive = tmp_path / "lie.zip"
    archive.write_bytes(body)
    with pytest.raises(ArchiveError):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
