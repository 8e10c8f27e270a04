"""data_scripts: download (mirrors, resume, sha256, atomic rename), safe extraction, the command line.

Everything is served by a local HTTP server on 127.0.0.1 from archives built here; no test
touches the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from data_scripts import download as cli
from data_scripts.extract import UnsafeArchiveError, safe_extract
from data_scripts.fetch import ChecksumError, DownloadError, UnverifiedError, download, marker_path
from data_scripts.registry import DATASETS, DatasetEntry, RemoteFile
from tests.http_server import LocalServer, refused_url


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_tar(entries: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> bytes:
    """A .tar.gz with regular files ``entries`` and links ``{name: (tarfile.SYMTYPE|LNKTYPE, target)}``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buf.getvalue()


def make_zip(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buf.getvalue()


GOOD_FILES = {"pets/a.txt": b"alpha\n", "pets/sub/b.txt": b"bravo\n" * 1000}
GOOD = make_tar(GOOD_FILES)
BIG = bytes(range(256)) * 4096  # 1 MiB: several read chunks


# --------------------------------------------------------------------------- download


def test_good_file_is_verified_renamed_and_marked(tmp_path):
    with LocalServer({"/good.tar.gz": GOOD}) as server:
        dest = download([server.url("/good.tar.gz")], tmp_path / "good.tar.gz", sha256=sha(GOOD), progress=False)
    assert dest.read_bytes() == GOOD
    assert marker_path(dest).read_text().strip() == sha(GOOD)
    assert not (tmp_path / "good.tar.gz.part").exists()


def test_rerun_skips_a_verified_file_without_any_request(tmp_path):
    with LocalServer({"/good.tar.gz": GOOD}) as server:
        url = server.url("/good.tar.gz")
        download([url], tmp_path / "good.tar.gz", sha256=sha(GOOD), progress=False)
        download([url], tmp_path / "good.tar.gz", sha256=sha(GOOD), progress=False)
        assert len(server.requests) == 1


def test_corrupt_download_is_deleted_and_the_error_names_file_and_both_hashes(tmp_path):
    corrupt = bytearray(GOOD)
    corrupt[100] ^= 0xFF
    with LocalServer({"/corrupt.tar.gz": bytes(corrupt)}) as server:
        with pytest.raises(ChecksumError) as err:
            download([server.url("/corrupt.tar.gz")], tmp_path / "c.tar.gz", sha256=sha(GOOD), progress=False)
    message = str(err.value)
    assert "c.tar.gz" in message and sha(GOOD) in message and sha(bytes(corrupt)) in message
    assert list(tmp_path.iterdir()) == []  # no .part, no file, no marker


def test_truncated_download_resumes_with_a_range_request(tmp_path):
    with LocalServer({"/big.bin": BIG}, truncate_once={"/big.bin"}) as server:
        dest = download([server.url("/big.bin")], tmp_path / "big.bin", sha256=sha(BIG), progress=False)
        ranges = [r for _, r in server.requests]
    assert dest.read_bytes() == BIG
    assert ranges[0] is None
    assert ranges[1] == f"bytes={len(BIG) // 2}-"  # the second request asked only for the missing half


def test_a_partial_file_left_by_an_earlier_run_is_continued(tmp_path):
    (tmp_path / "big.bin.part").write_bytes(BIG[:1000])
    with LocalServer({"/big.bin": BIG}) as server:
        download([server.url("/big.bin")], tmp_path / "big.bin", sha256=sha(BIG), progress=False)
        assert server.requests == [("/big.bin", "bytes=1000-")]
    assert (tmp_path / "big.bin").read_bytes() == BIG


def test_mirror_is_used_when_the_first_url_fails(tmp_path):
    with LocalServer({"/mirror/good.tar.gz": GOOD}) as server:
        urls = [server.url("/dead/good.tar.gz"), server.url("/mirror/good.tar.gz")]
        dest = download(urls, tmp_path / "good.tar.gz", sha256=sha(GOOD), progress=False)
        assert [p for p, _ in server.requests] == ["/dead/good.tar.gz", "/mirror/good.tar.gz"]
    assert dest.read_bytes() == GOOD


def test_offline_error_names_the_url_and_how_to_fetch_by_hand(tmp_path):
    url = refused_url("/images.tar.gz")
    dest = tmp_path / "images.tar.gz"
    with pytest.raises(DownloadError) as err:
        download([url], dest, sha256=sha(GOOD), retries=1, progress=False)
    message = str(err.value)
    assert url in message and "ConnectionRefusedError" in message
    assert "by hand" in message and str(dest) in message
    assert not dest.exists()


def test_a_file_placed_by_hand_is_verified_instead_of_downloaded(tmp_path):
    dest = tmp_path / "good.tar.gz"
    dest.write_bytes(GOOD)
    assert download([refused_url()], dest, sha256=sha(GOOD), progress=False) == dest
    assert marker_path(dest).read_text().strip() == sha(GOOD)


def test_undocumented_checksum_is_refused_unless_allowed(tmp_path, capsys):
    with LocalServer({"/x.zip": GOOD}) as server:
        with pytest.raises(UnverifiedError, match="--allow-unverified"):
            download([server.url("/x.zip")], tmp_path / "x.zip", sha256=None, progress=False)
        assert server.requests == []  # refused before any download
        download([server.url("/x.zip")], tmp_path / "x.zip", sha256=None, allow_unverified=True, progress=False)
    assert (tmp_path / "x.zip").read_bytes() == GOOD
    assert "UNVERIFIED" in capsys.readouterr().out


# --------------------------------------------------------------------------- extraction


def test_good_tar_and_zip_extract(tmp_path):
    (tmp_path / "good.tar.gz").write_bytes(GOOD)
    (tmp_path / "good.zip").write_bytes(make_zip(GOOD_FILES))
    assert safe_extract(tmp_path / "good.tar.gz", tmp_path / "t") == 2
    assert safe_extract(tmp_path / "good.zip", tmp_path / "z") == 2
    for out in ("t", "z"):
        for name, data in GOOD_FILES.items():
            assert (tmp_path / out / name).read_bytes() == data


@pytest.mark.parametrize("archive", [
    make_tar({"ok.txt": b"1", "../evil": b"x"}),
    make_tar({"ok.txt": b"1", "/tmp/evil": b"x"}),
    make_tar({"ok.txt": b"1"}, links={"link": (tarfile.SYMTYPE, "../../outside")}),
    make_tar({"ok.txt": b"1"}, links={"abs_link": (tarfile.SYMTYPE, "/etc/passwd")}),
    make_tar({"ok.txt": b"1"}, links={"hard": (tarfile.LNKTYPE, "../outside")}),
    make_zip({"ok.txt": b"1", "../evil": b"x"}),
], ids=["tar-dotdot", "tar-absolute", "tar-symlink-out", "tar-symlink-absolute", "tar-hardlink-out", "zip-dotdot"])
def test_unsafe_archives_are_refused_whole(tmp_path, archive):
    path = tmp_path / "bad.archive"
    path.write_bytes(archive)
    root = tmp_path / "root"
    with pytest.raises(UnsafeArchiveError, match="bad.archive"):
        safe_extract(path, root)
    assert not (tmp_path / "evil").exists()
    assert list(root.iterdir()) == []  # refused before anything was written


def test_a_symlink_inside_the_root_is_allowed(tmp_path):
    path = tmp_path / "a.tar.gz"
    path.write_bytes(make_tar({"d/real.txt": b"r"}, links={"d/alias.txt": (tarfile.SYMTYPE, "real.txt")}))
    safe_extract(path, tmp_path / "root")
    assert (tmp_path / "root" / "d" / "alias.txt").read_bytes() == b"r"


def test_members_and_limit_choose_what_is_extracted(tmp_path):
    files = {f"val2017/{i:012d}.jpg": bytes([i]) for i in (5, 1, 3, 4, 2)}
    files["annotations/other.json"] = b"{}"
    (tmp_path / "v.zip").write_bytes(make_zip(files))
    assert safe_extract(tmp_path / "v.zip", tmp_path / "out", members=("val2017/",), limit=2) == 2
    assert sorted(p.name for p in (tmp_path / "out" / "val2017").iterdir()) == ["000000000001.jpg", "000000000002.jpg"]
    assert not (tmp_path / "out" / "annotations").exists()


# --------------------------------------------------------------------------- datasets and the command line


def _entry(server: LocalServer, sha256: str | None = None) -> DatasetEntry:
    return DatasetEntry(
        name="toy", title="a toy set", licence="CC0", citation="nobody", homepage="http://example.invalid",
        files=(RemoteFile("toy.tar.gz", (server.url("/gone.tar.gz"), server.url("/toy.tar.gz")),
                          sha256 or sha(GOOD), len(GOOD)),),
    )


def test_fetch_dataset_downloads_extracts_and_skips_on_rerun(tmp_path):
    with LocalServer({"/toy.tar.gz": GOOD}) as server:
        entry = _entry(server)
        folder = cli.fetch_dataset(entry, tmp_path, progress=False)
        n_requests = len(server.requests)
        cli.fetch_dataset(entry, tmp_path, progress=False, delete_archives=True)
        assert len(server.requests) == n_requests
    assert folder == tmp_path / "toy"
    assert (folder / "pets" / "sub" / "b.txt").read_bytes() == GOOD_FILES["pets/sub/b.txt"]
    assert json.loads((folder / ".extracted-toy.tar.gz.json").read_text())["sha256"] == sha(GOOD)


def test_images_option_is_refused_for_datasets_without_images_choice(tmp_path):
    with pytest.raises(ValueError, match="--images"):
        cli.fetch_dataset("voc2007", tmp_path, images=10)


def test_cli_reports_failure_in_one_message(tmp_path, monkeypatch, capsys):
    with LocalServer({"/toy.tar.gz": b"not the archive"}) as server:
        monkeypatch.setitem(DATASETS, "toy", _entry(server))
        status = cli.main(["toy", "--root", str(tmp_path), "--quiet"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "sha256 mismatch" in err and "toy.tar.gz" in err


def test_cli_help_lists_every_dataset_with_size_and_licence(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("oxford_pets", "pennfudan", "voc2007", "coco_val2017"):
        assert name in out
    assert "773.5 MiB" in out  # oxford_pets: 791,918,971 + 19,173,078 bytes
    assert "CC BY-SA 4.0" in out and "CC BY 4.0" in out


def test_registry_entries_are_well_formed():
    assert set(DATASETS) == {"oxford_pets", "pennfudan", "voc2007", "coco_val2017"}
    for entry in DATASETS.values():
        assert entry.licence and entry.citation and entry.homepage.startswith("http")
        for file in entry.files:
            assert len(file.urls) >= 2, f"{entry.name}/{file.name} needs a mirror"
            assert all(u.startswith(("http://", "https://")) and u.endswith(file.name) for u in file.urls)
            assert file.sha256 is None or (len(file.sha256) == 64 and int(file.sha256, 16) >= 0)
            if file.sha256 is None:
                assert "allow-unverified" in entry.notes, f"{entry.name}: say that it needs --allow-unverified"


def test_make_data_target_runs_the_command():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "\ndata: $(STAMP)" in makefile
    assert "-m data_scripts.download $(NAME) $(ARGS)" in makefile


def test_coco_images_option_end_to_end_with_the_loader(tmp_path):
    """Serve a fake COCO as the two real zips; --images 2 extracts two images that COCOSubset then reads."""
    from course_utils.data import COCOSubset
    from tests.fake_datasets import make_coco_val2017

    fake = make_coco_val2017(tmp_path / "src")
    val_json = (fake / "annotations" / "instances_val2017.json").read_bytes()
    ann_zip = make_zip({"annotations/instances_val2017.json": val_json, "annotations/instances_train2017.json": b"{}"})
    img_zip = make_zip({f"val2017/{p.name}": p.read_bytes() for p in sorted((fake / "val2017").iterdir())})
    with LocalServer({"/ann.zip": ann_zip, "/val2017.zip": img_zip}) as server:
        real = DATASETS["coco_val2017"].files
        entry = DatasetEntry(
            name="coco_val2017", title="fake", licence="CC BY 4.0", citation="-", homepage="http://example.invalid",
            files=(RemoteFile(real[0].name, (server.url("/ann.zip"),), sha(ann_zip), len(ann_zip),
                              members=real[0].members),
                   RemoteFile(real[1].name, (server.url("/val2017.zip"),), sha(img_zip), len(img_zip),
                              members=real[1].members, limit=real[1].limit)),
        )
        folder = cli.fetch_dataset(entry, tmp_path / "data", images=2, progress=False)
    assert not (folder / "annotations" / "instances_train2017.json").exists()  # only the val annotations
    ds = COCOSubset(folder)
    assert [ds[i][1]["image_id"] for i in range(len(ds))] == [139, 285]
