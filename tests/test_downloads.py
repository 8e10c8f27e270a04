"""Downloads (mirrors, resume, limits, sha256, trust on first use), datasets, ensure_dataset, the command line.

Everything is served by a local HTTP server on 127.0.0.1 from bytes built here, with short
deadlines set by each test; no test touches the network. Hostile archives: test_archive_safety.py.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from course_utils.data import ensure_dataset, fetch_dataset, is_ready
from course_utils.data.download import write_ready_record
from course_utils.data.fetch import (
    ChecksumError,
    DownloadError,
    PinFile,
    TransferLimits,
    UnverifiedError,
    download,
    marker_path,
)
from course_utils.data.registry import DATASETS, DatasetEntry, RemoteFile, get_entry
from data_scripts import download as cli
from tests.archives import files_tar, zip_bytes
from tests.http_server import LocalServer, Route, refused_url

GOOD_FILES = {"pets/a.txt": b"alpha\n", "pets/sub/b.txt": random.Random(1).randbytes(6000)}
GOOD = files_tar(GOOD_FILES)
BIG = random.Random(0).randbytes(1 << 20)  # 1 MiB: several read chunks
FAST = TransferLimits(timeout=2.0, deadline=10.0, min_rate=0, rate_window=1.0, retries=2)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- good files


def test_good_file_is_verified_renamed_and_marked(tmp_path):
    with LocalServer({"/good.tar.gz": GOOD}) as server:
        dest = download([server.url("/good.tar.gz")], tmp_path / "good.tar.gz", sha256=sha(GOOD), size=len(GOOD),
                        progress=False)
    assert dest.read_bytes() == GOOD
    assert marker_path(dest).read_text().strip() == sha(GOOD)
    assert leftovers(tmp_path) == ["good.tar.gz", "good.tar.gz.sha256"]


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
    assert leftovers(tmp_path) == []  # no .part, no file, no marker


def test_truncated_download_resumes_with_a_range_request(tmp_path):
    with LocalServer({"/big.bin": BIG}, truncate_once={"/big.bin"}) as server:
        dest = download([server.url("/big.bin")], tmp_path / "big.bin", sha256=sha(BIG), progress=False)
        ranges = [r for _, r in server.requests]
    assert dest.read_bytes() == BIG
    assert ranges == [None, f"bytes={len(BIG) // 2}-"]  # the second request asked only for the missing half


def test_a_cut_without_content_length_and_a_known_sha256_resumes_on_the_same_mirror(tmp_path):
    """Issue 18: such a cut used to fail the checksum and abandon the mirror; the size says it is short."""
    route = Route(BIG, content_length=None, cut_at=300_000, cut_times=1)
    with LocalServer({"/big.bin": route}) as server:
        download([server.url("/big.bin")], tmp_path / "big.bin", sha256=sha(BIG), size=len(BIG), progress=False)
        assert server.requests == [("/big.bin", None), ("/big.bin", "bytes=300000-")]
    assert (tmp_path / "big.bin").read_bytes() == BIG


def test_a_mirror_that_keeps_failing_hands_its_bytes_over_to_the_next_mirror(tmp_path):
    """Resume where the first mirror allows it, then continue the same bytes from the next one."""
    flaky = Route(BIG, ranges=False, cut_at=400_000)  # always cut, ignores Range
    with LocalServer({"/a/big.bin": flaky, "/b/big.bin": BIG}) as server:
        urls = [server.url("/a/big.bin"), server.url("/b/big.bin")]
        download(urls, tmp_path / "big.bin", sha256=sha(BIG), size=len(BIG), limits=FAST, progress=False)
        assert server.requests == [("/a/big.bin", None), ("/a/big.bin", "bytes=400000-"),
                                   ("/b/big.bin", "bytes=400000-")]
    assert (tmp_path / "big.bin").read_bytes() == BIG


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
        download([url], dest, sha256=sha(GOOD), limits=FAST, progress=False)
    message = str(err.value)
    assert url in message and "ConnectionRefusedError" in message and "(attempts 1-2/2)" in message
    assert "by hand" in message and str(dest) in message
    assert leftovers(tmp_path) == []


def test_a_file_placed_by_hand_is_verified_instead_of_downloaded(tmp_path):
    dest = tmp_path / "good.tar.gz"
    dest.write_bytes(GOOD)
    assert download([refused_url()], dest, sha256=sha(GOOD), progress=False) == dest
    assert marker_path(dest).read_text().strip() == sha(GOOD)


def test_a_wrong_file_placed_by_hand_is_kept_and_named(tmp_path):
    dest = tmp_path / "good.tar.gz"
    dest.write_bytes(GOOD[:-1] + b"!")
    with pytest.raises(ChecksumError, match="remove or replace"):
        download([refused_url()], dest, sha256=sha(GOOD), progress=False)
    assert dest.exists() and not marker_path(dest).exists()


# --------------------------------------------------------------------------- unverified files: trust on first use


def test_undocumented_checksum_is_refused_unless_allowed(tmp_path, capsys):
    with LocalServer({"/x.tar.gz": GOOD}) as server:
        with pytest.raises(UnverifiedError, match="--allow-unverified"):
            download([server.url("/x.tar.gz")], tmp_path / "x.tar.gz", sha256=None, size=len(GOOD), progress=False)
        assert server.requests == []  # refused before any download
        download([server.url("/x.tar.gz")], tmp_path / "x.tar.gz", sha256=None, size=len(GOOD),
                 allow_unverified=True, progress=False)
    assert (tmp_path / "x.tar.gz").read_bytes() == GOOD
    assert "UNVERIFIED" in capsys.readouterr().out
    assert not marker_path(tmp_path / "x.tar.gz").exists()  # never marked verified
    assert PinFile(tmp_path / "sha256-pins.json").get("x.tar.gz") == sha(GOOD)


def test_an_unverified_file_differing_from_its_pin_is_refused_even_on_a_rerun(tmp_path):
    other = files_tar({"pets/a.txt": b"other\n", "pets/sub/b.txt": GOOD_FILES["pets/sub/b.txt"]})
    dest = tmp_path / "x.tar.gz"
    PinFile(tmp_path / "sha256-pins.json").pin("x.tar.gz", sha(GOOD), size=len(GOOD), url="first")
    with LocalServer({"/x.tar.gz": other}) as server:
        with pytest.raises(ChecksumError, match=f"the pinned sha256 is {sha(GOOD)}, got {sha(other)}"):
            download([server.url("/x.tar.gz")], dest, sha256=None, size_bounds=(100, 100_000),
                     allow_unverified=True, limits=FAST, progress=False)
    assert leftovers(tmp_path) == ["sha256-pins.json"]
    dest.write_bytes(other)  # the same file put there by hand (or left by an older run) is checked too
    with pytest.raises(ChecksumError, match="pinned"):
        download([refused_url()], dest, sha256=None, size_bounds=(100, 100_000), allow_unverified=True,
                 progress=False)


def test_an_unverified_file_needs_its_expected_size():
    with pytest.raises(ValueError, match="size_bounds"):
        download(["http://127.0.0.1:9/x.zip"], "x.zip", sha256=None, allow_unverified=True)
    with pytest.raises(ValueError, match="needs its expected size"):
        RemoteFile("x.zip", ("http://127.0.0.1/x.zip",), None, None, top_level=("x",))


# --------------------------------------------------------------------------- malformed responses


GOOD_BOUNDS = (len(GOOD) - 50, len(GOOD) + 50)


def unverified(server: LocalServer, path: str, tmp_path: Path, bounds=GOOD_BOUNDS, limits=FAST) -> Path:
    return download([server.url(path)], tmp_path / "x.tar.gz", sha256=None, size_bounds=bounds,
                    allow_unverified=True, limits=limits, progress=False)


HTML = b"<!DOCTYPE html><html><body><h1>Our servers are busy</h1>" + b" " * 3000 + b"</body></html>"


@pytest.mark.parametrize("route, expected", [
    (Route(HTML, content_type="text/html; charset=utf-8"), "served an HTML page (Content-Type text/html"),
    (Route(HTML + b" " * (len(GOOD) - len(HTML))), "declared a tar.gz archive, but its first bytes are an HTML page"),
    (Route(GOOD, content_length="lots"), "malformed Content-Length 'lots'"),
    (Route(GOOD, content_length=str(10 * len(GOOD))), f"announces {10 * len(GOOD):,} bytes"),
    (Route(GOOD, content_length=None, endless=True), "sent more than the"),
    (Route(GOOD, content_length=None, cut_at=len(GOOD) // 3), "truncated"),
    (Route(GOOD, status=202), "unexpected HTTP status 202"),
    (Route(GOOD, status=503), "HTTP 503"),
], ids=["html-page", "html-as-octet-stream", "bad-length", "too-long", "endless", "cut-no-length", "status-202",
        "status-503"])
def test_every_malformed_response_is_a_download_error_naming_the_url(tmp_path, route, expected):
    with LocalServer({"/x.tar.gz": route}) as server:
        with pytest.raises(DownloadError) as err:
            unverified(server, "/x.tar.gz", tmp_path)
    assert server.url("/x.tar.gz") in str(err.value) and expected in str(err.value)
    assert leftovers(tmp_path) == []  # no file, no .part, no pin


def test_a_trickling_server_is_dropped_for_its_rate(tmp_path):
    slow = Route(GOOD, trickle=(1, 0.05))  # 20 bytes/s
    limits = TransferLimits(timeout=2.0, deadline=10.0, min_rate=1000, rate_window=0.5, retries=1)
    with LocalServer({"/x.tar.gz": slow}) as server:
        with pytest.raises(DownloadError, match=r"too slow \(\d+ bytes/s, below the minimum of 1,000 bytes/s\)"):
            unverified(server, "/x.tar.gz", tmp_path, limits=limits)
    assert leftovers(tmp_path) == []


def test_the_overall_deadline_stops_a_download_that_is_fast_enough_but_endless(tmp_path):
    steady = Route(BIG, trickle=(4096, 0.01))  # ~400 KB/s: above the rate, but 1 MiB takes longer than 0.5 s
    limits = TransferLimits(timeout=2.0, deadline=0.5, min_rate=1000, rate_window=0.2, retries=3)
    with LocalServer({"/big.bin": steady}) as server:
        with pytest.raises(DownloadError, match="the deadline of 0.5 s for big.bin passed"):
            download([server.url("/big.bin"), server.url("/big.bin")], tmp_path / "big.bin", sha256=sha(BIG),
                     size=len(BIG), limits=limits, progress=False)
        assert len(server.requests) == 1  # neither retried nor handed to the mirror
    assert not (tmp_path / "big.bin").exists()
    assert 0 < (tmp_path / "big.bin.part").stat().st_size < len(BIG)  # verified bytes are kept to resume


def test_a_stalled_server_times_out_and_is_retried(tmp_path):
    stalled = Route(GOOD, trickle=(100, 3.0))
    limits = TransferLimits(timeout=0.3, deadline=10.0, min_rate=0, rate_window=1.0, retries=2)
    with LocalServer({"/x.tar.gz": stalled}) as server:
        with pytest.raises(DownloadError, match=r"timed out\) \(attempts 1-2/2\)"):
            unverified(server, "/x.tar.gz", tmp_path, limits=limits)


def test_a_cut_unverified_body_resumes_on_the_same_mirror_only(tmp_path):
    cut_once = Route(GOOD, content_length=None, cut_at=1000, cut_times=1)
    with LocalServer({"/x.tar.gz": cut_once}) as server:
        dest = unverified(server, "/x.tar.gz", tmp_path)
        assert server.requests == [("/x.tar.gz", None), ("/x.tar.gz", "bytes=1000-")]
    assert dest.read_bytes() == GOOD


def test_transfer_limits_are_checked():
    with pytest.raises(ValueError, match="deadline"):
        TransferLimits(deadline=0)
    with pytest.raises(ValueError, match="retries"):
        TransferLimits(retries=0)


# --------------------------------------------------------------------------- datasets and ensure_dataset


def toy_entry(server: LocalServer, body: bytes = GOOD) -> DatasetEntry:
    return DatasetEntry(
        name="toy", title="a toy set", licence="CC0", citation="nobody", homepage="http://example.invalid",
        files=(RemoteFile("toy.tar.gz", (server.url("/gone.tar.gz"), server.url("/toy.tar.gz")), sha(body),
                          len(body), top_level=("pets",)),),
    )


def test_fetch_dataset_downloads_extracts_and_skips_on_rerun(tmp_path):
    with LocalServer({"/toy.tar.gz": GOOD}) as server:
        entry = toy_entry(server)
        folder = fetch_dataset(entry, tmp_path, progress=False)
        n_requests = len(server.requests)
        fetch_dataset(entry, tmp_path, progress=False, delete_archives=True)
        assert len(server.requests) == n_requests
    assert folder == tmp_path / "toy"
    assert (folder / "pets" / "sub" / "b.txt").read_bytes() == GOOD_FILES["pets/sub/b.txt"]
    record = json.loads((folder / ".dataset.json").read_text())
    assert record["files"] == {"toy.tar.gz": {"sha256": sha(GOOD), "verified": True}}
    assert is_ready(entry, folder)
    assert leftovers(tmp_path) == ["archives", "toy"]  # no scratch folder


def test_a_failed_refetch_leaves_the_previous_complete_dataset_untouched(tmp_path):
    with LocalServer({"/toy.tar.gz": GOOD}) as server:
        entry = toy_entry(server)
        folder = fetch_dataset(entry, tmp_path, progress=False)
    (folder / ".dataset.json").unlink()  # e.g. an older layout: not known to be complete
    for archive in (tmp_path / "archives" / "toy").iterdir():
        archive.unlink()
    offline = DatasetEntry("toy", "toy", (RemoteFile("toy.tar.gz", (refused_url("/toy.tar.gz"),), sha(GOOD),
                                                     len(GOOD), top_level=("pets",)),), "-", "-", "http://x.invalid")
    with pytest.raises(DownloadError, match="ConnectionRefusedError"):
        fetch_dataset(offline, tmp_path, progress=False, transfer=FAST)
    assert (folder / "pets" / "a.txt").read_bytes() == b"alpha\n"
    assert leftovers(tmp_path) == ["archives", "toy"]


def test_an_archive_in_the_old_layout_is_reused_after_a_check_not_downloaded_again(tmp_path):
    with LocalServer({"/toy.tar.gz": GOOD}) as server:
        entry = toy_entry(server)
        old = tmp_path / "toy" / "archives" / "toy.tar.gz"  # data/<name>/archives/ before issue 18
        old.parent.mkdir(parents=True)
        old.write_bytes(GOOD)
        folder = fetch_dataset(entry, tmp_path, progress=False)
        assert server.requests == []
    assert (folder / "pets" / "a.txt").read_bytes() == b"alpha\n" and not (folder / "archives").exists()
    assert marker_path(tmp_path / "archives" / "toy" / "toy.tar.gz").read_text().strip() == sha(GOOD)


def test_two_archives_of_one_dataset_merge_into_one_tree(tmp_path):
    """VOC's two tars both hold VOCdevkit/VOC2007/: their files end up side by side."""
    trainval = files_tar({"VOCdevkit/VOC2007/JPEGImages/000005.jpg": b"5"}, gz=False)
    test = files_tar({"VOCdevkit/VOC2007/JPEGImages/000001.jpg": b"1"}, gz=False)
    with LocalServer({"/trainval.tar": trainval, "/test.tar": test}) as server:
        entry = DatasetEntry("voc", "voc", (
            RemoteFile("trainval.tar", (server.url("/trainval.tar"),), sha(trainval), len(trainval),
                       top_level=("VOCdevkit",)),
            RemoteFile("test.tar", (server.url("/test.tar"),), sha(test), len(test), top_level=("VOCdevkit",)),
        ), "-", "-", "http://example.invalid")
        folder = fetch_dataset(entry, tmp_path, progress=False)
    assert sorted(p.name for p in (folder / "VOCdevkit" / "VOC2007" / "JPEGImages").iterdir()) == \
        ["000001.jpg", "000005.jpg"]


def test_ensure_dataset_returns_a_complete_folder_without_any_request(tmp_path, monkeypatch):
    with LocalServer({"/toy.tar.gz": GOOD}) as server:
        monkeypatch.setitem(DATASETS, "toy", toy_entry(server))
        folder = ensure_dataset("toy", tmp_path, progress=False)
        n_requests = len(server.requests)
        assert ensure_dataset("toy", tmp_path, progress=False) == folder == tmp_path / "toy"
        assert len(server.requests) == n_requests
    monkeypatch.setenv("COURSE_DATA", str(tmp_path))
    assert ensure_dataset("toy") == folder  # root defaults to $COURSE_DATA, like the loaders' dataset_root


def test_is_ready_needs_the_record_that_fetch_dataset_writes_last(tmp_path):
    """A tree without the record (an interrupted old-style extraction, a hand copy) is not complete."""
    entry = get_entry("pennfudan")
    folder = tmp_path / "pennfudan"
    (folder / "PennFudanPed" / "PNGImages").mkdir(parents=True)  # what labs 03 and 04 each looked for
    assert not is_ready(entry, folder)
    write_ready_record(folder, entry, {"PennFudanPed.zip": "0" * 64})
    assert is_ready(entry, folder)
    coco = get_entry("coco_val2017")
    (tmp_path / "coco").mkdir()
    (tmp_path / "voc").mkdir()
    write_ready_record(tmp_path / "coco", coco, {f.name: f.sha256 for f in coco.files}, images=500)
    assert is_ready(coco, tmp_path / "coco") and is_ready(coco, tmp_path / "coco", images=200)
    assert not is_ready(coco, tmp_path / "coco", images=1000)  # more images asked: extract again
    voc = get_entry("voc2007")
    write_ready_record(tmp_path / "voc", voc, {f.name: "f" * 64 for f in voc.files})
    assert not is_ready(voc, tmp_path / "voc")  # not the registry's sha256


def test_images_option_is_refused_for_datasets_without_images_choice(tmp_path):
    with pytest.raises(ValueError, match="--images"):
        fetch_dataset("voc2007", tmp_path, images=10)
    with pytest.raises(ValueError, match="positive"):
        fetch_dataset("coco_val2017", tmp_path, images=0)


def test_coco_images_option_end_to_end_with_the_loader(tmp_path):
    """Serve a fake COCO as the two real zips; --images 2 extracts two images that COCOSubset then reads."""
    from course_utils.data import COCOSubset
    from tests.fake_datasets import make_coco_val2017

    fake = make_coco_val2017(tmp_path / "src")
    val_json = (fake / "annotations" / "instances_val2017.json").read_bytes()
    ann_zip = zip_bytes({"annotations/instances_val2017.json": val_json, "annotations/instances_train2017.json": b"{}"})
    img_zip = zip_bytes({f"val2017/{p.name}": p.read_bytes() for p in sorted((fake / "val2017").iterdir())})
    real = DATASETS["coco_val2017"].files
    with LocalServer({"/ann.zip": ann_zip, "/val2017.zip": img_zip}) as server:
        entry = DatasetEntry(
            name="coco_val2017", title="fake", licence="CC BY 4.0", citation="-", homepage="http://example.invalid",
            files=(RemoteFile(real[0].name, (server.url("/ann.zip"),), sha(ann_zip), len(ann_zip),
                              members=real[0].members, top_level=real[0].top_level),
                   RemoteFile(real[1].name, (server.url("/val2017.zip"),), sha(img_zip), len(img_zip),
                              members=real[1].members, limit=real[1].limit, top_level=real[1].top_level)),
        )
        folder = fetch_dataset(entry, tmp_path / "data", images=2, progress=False)
    assert not (folder / "annotations" / "instances_train2017.json").exists()  # only the val annotations
    ds = COCOSubset(folder)
    assert [ds[i][1]["image_id"] for i in range(len(ds))] == [139, 285]


def coco_zips(tmp_path: Path) -> tuple[bytes, bytes]:
    """The two COCO zips as a fake: both annotation files (instances + person keypoints) and every image
    of both fakes (the keypoint fake's ids; the instance fake's 139 and 285 hold the same names)."""
    from tests.fake_datasets import make_coco_keypoints_val2017, make_coco_val2017

    boxes = make_coco_val2017(tmp_path / "src")
    points = make_coco_keypoints_val2017(tmp_path / "src")
    ann_zip = zip_bytes({
        "annotations/instances_val2017.json": (boxes / "annotations" / "instances_val2017.json").read_bytes(),
        "annotations/person_keypoints_val2017.json":
            (points / "annotations" / "person_keypoints_val2017.json").read_bytes(),
        "annotations/person_keypoints_train2017.json": b"{}",
    })
    img_zip = zip_bytes({f"val2017/{p.name}": p.read_bytes() for p in sorted((points / "val2017").iterdir())})
    return ann_zip, img_zip


def served_coco_entry(name: str, server: LocalServer, ann_zip: bytes, img_zip: bytes,
                      ann_sha: str | None = None) -> DatasetEntry:
    """The registry entry ``name`` with its URLs on the local server and the sha256 of the served fakes."""
    real = DATASETS[name].files
    return DatasetEntry(
        name=name, title="fake", licence="CC BY 4.0", citation="-", homepage="http://example.invalid",
        files=(RemoteFile(real[0].name, (server.url("/ann.zip"),), ann_sha or sha(ann_zip), len(ann_zip),
                          members=real[0].members, top_level=real[0].top_level),
               RemoteFile(real[1].name, (server.url("/val2017.zip"),), sha(img_zip), len(img_zip),
                          members=real[1].members, limit=real[1].limit, top_level=real[1].top_level)),
    )


def test_coco_keypoints_download_is_verified_and_read_by_the_loader(tmp_path):
    """Serve the fake COCO zips; --images 3 extracts the first three images (139, 285, 632) and only the
    person keypoints of val2017; COCOKeypoints keeps the two showing a person with keypoints."""
    from course_utils.data import COCOKeypoints

    ann_zip, img_zip = coco_zips(tmp_path)
    with LocalServer({"/ann.zip": ann_zip, "/val2017.zip": img_zip}) as server:
        entry = served_coco_entry("coco_keypoints_val2017", server, ann_zip, img_zip)
        folder = fetch_dataset(entry, tmp_path / "data", images=3, progress=False)
    assert folder == tmp_path / "data" / "coco_keypoints_val2017"
    assert sorted(p.name for p in (folder / "annotations").iterdir()) == ["person_keypoints_val2017.json"]
    assert sorted(p.name for p in (folder / "val2017").iterdir()) == [
        "000000000139.jpg", "000000000285.jpg", "000000000632.jpg"]
    record = json.loads((folder / ".dataset.json").read_text())
    assert record["images"] == 3
    assert record["files"]["annotations_trainval2017.zip"] == {"sha256": sha(ann_zip), "verified": True}
    archives = tmp_path / "data" / "archives" / "coco_keypoints_val2017"
    assert marker_path(archives / "val2017.zip").read_text().strip() == sha(img_zip)
    assert COCOKeypoints(folder).ids == [139, 285]


def test_coco_keypoints_download_with_the_wrong_sha256_is_refused_and_leaves_nothing(tmp_path):
    ann_zip, img_zip = coco_zips(tmp_path)
    with LocalServer({"/ann.zip": ann_zip, "/val2017.zip": img_zip}) as server:
        entry = served_coco_entry("coco_keypoints_val2017", server, ann_zip, img_zip, ann_sha="0" * 64)
        with pytest.raises(ChecksumError, match="annotations_trainval2017.zip") as err:
            fetch_dataset(entry, tmp_path / "data", images=3, progress=False, transfer=FAST)
    assert "0" * 64 in str(err.value) and sha(ann_zip) in str(err.value)
    assert not (tmp_path / "data" / "coco_keypoints_val2017").exists()
    assert leftovers(tmp_path / "data" / "archives" / "coco_keypoints_val2017") == []


def test_coco_archives_fetched_for_coco_val2017_are_reused_not_downloaded_again(tmp_path, monkeypatch, capsys):
    from course_utils.data import COCOKeypoints, COCOSubset

    ann_zip, img_zip = coco_zips(tmp_path)
    root = tmp_path / "data"
    with LocalServer({"/ann.zip": ann_zip, "/val2017.zip": img_zip}) as server:
        for name in ("coco_val2017", "coco_keypoints_val2017"):
            monkeypatch.setitem(DATASETS, name, served_coco_entry(name, server, ann_zip, img_zip))
        boxes = fetch_dataset("coco_val2017", root, images=2, progress=False)
        n_requests = len(server.requests)
        stale = root / "archives" / "coco_keypoints_val2017" / "val2017.zip.part"  # an interrupted download
        stale.parent.mkdir(parents=True)
        stale.write_bytes(img_zip[:100])
        points = fetch_dataset("coco_keypoints_val2017", root, images=2, progress=False)
        assert len(server.requests) == n_requests  # both archives came from coco_val2017's folder
    assert capsys.readouterr().out.count("reusing") == 2 and not stale.exists()
    for file in ("annotations_trainval2017.zip", "val2017.zip"):
        mine, theirs = root / "archives" / "coco_keypoints_val2017" / file, root / "archives" / "coco_val2017" / file
        assert mine.read_bytes() == theirs.read_bytes()
        assert mine.stat().st_ino == theirs.stat().st_ino  # a hard link on one file system: no second GiB
        assert marker_path(mine).read_text() == marker_path(theirs).read_text()
    assert COCOSubset(boxes).ids == [139, 285] and COCOKeypoints(points).ids == [139, 285]
    assert not (points / "annotations" / "instances_val2017.json").exists()


def test_a_corrupt_shared_archive_is_named_not_used(tmp_path, monkeypatch):
    ann_zip, img_zip = coco_zips(tmp_path)
    root = tmp_path / "data"
    with LocalServer({"/ann.zip": ann_zip, "/val2017.zip": img_zip}) as server:
        for name in ("coco_val2017", "coco_keypoints_val2017"):
            monkeypatch.setitem(DATASETS, name, served_coco_entry(name, server, ann_zip, img_zip))
        fetch_dataset("coco_val2017", root, images=2, progress=False)
        shared = root / "archives" / "coco_val2017" / "val2017.zip"
        shared.write_bytes(b"x" * len(img_zip))  # damaged after its check; the marker still says good
        with pytest.raises(ChecksumError, match="val2017.zip is not the expected file"):
            fetch_dataset("coco_keypoints_val2017", root, images=2, progress=False)
    assert not (root / "coco_keypoints_val2017").exists()


# --------------------------------------------------------------------------- the command line and the registry


def test_cli_reports_failure_in_one_line(tmp_path, monkeypatch, capsys):
    with LocalServer({"/toy.tar.gz": b"not the archive"}) as server:
        monkeypatch.setitem(DATASETS, "toy", toy_entry(server, GOOD))
        status = cli.main(["toy", "--root", str(tmp_path), "--quiet"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("error: could not download toy.tar.gz") and err.count("\n") == 1
    assert "announces 15 bytes, but toy.tar.gz has" in err
    assert not (tmp_path / "toy").exists()


def test_the_command_exits_1_with_one_line_and_no_traceback(tmp_path):
    """What `make data NAME=pennfudan` prints without --allow-unverified (nothing is fetched)."""
    run = subprocess.run([sys.executable, "-m", "data_scripts.download", "pennfudan", "--root", str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 1
    assert run.stderr.startswith("error: PennFudanPed.zip has no documented sha256") and run.stderr.count("\n") == 1
    assert "Traceback" not in run.stderr + run.stdout and leftovers(tmp_path) == []


def test_cli_help_lists_every_dataset_with_size_and_licence(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in ("oxford_pets", "pennfudan", "voc2007", "coco_val2017", "coco_keypoints_val2017"):
        assert name in out
    assert "773.5 MiB" in out  # oxford_pets: 791,918,971 + 19,173,078 bytes
    assert "about 51.2 MiB" in out  # pennfudan: 53.7 MB, not exact
    assert "CC BY-SA 4.0" in out and "CC BY 4.0" in out and "trust on first use" in out


def test_fetch_dataset_is_importable_from_data_scripts_for_the_notebooks():
    from data_scripts.download import fetch_dataset as from_scripts

    assert from_scripts is fetch_dataset


def test_course_utils_never_imports_data_scripts():
    """Imports flow downward: the command line uses course_utils.data, never the other way round."""
    import ast

    package = Path(__file__).resolve().parents[1] / "course_utils"
    for module in package.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "data_scripts" for n in names), f"{module} imports data_scripts"


def test_registry_entries_are_well_formed():
    assert set(DATASETS) == {"oxford_pets", "pennfudan", "voc2007", "coco_val2017", "coco_keypoints_val2017"}
    for entry in DATASETS.values():
        assert entry.licence and entry.citation and entry.homepage.startswith("http")
        for file in entry.files:
            assert len(file.urls) >= 2, f"{entry.name}/{file.name} needs a mirror"
            assert all(u.endswith(file.name) for u in file.urls)
            assert file.size is not None and file.top_level and file.format in ("zip", "tar.gz", "tar")
            assert file.max_bytes >= file.size, f"{entry.name}/{file.name} could never be extracted"
            if file.sha256 is None:
                assert "allow-unverified" in entry.notes, f"{entry.name}: say that it needs --allow-unverified"
                assert 0 < file.size_margin < 0.5


def test_coco_keypoints_shares_coco_val2017s_published_files_and_extracts_the_person_keypoints():
    boxes, points = get_entry("coco_val2017"), get_entry("coco_keypoints_val2017")
    for mine, theirs in zip(points.files, boxes.files, strict=True):
        assert (mine.name, mine.urls, mine.sha256, mine.size, mine.limit, mine.top_level) == \
            (theirs.name, theirs.urls, theirs.sha256, theirs.size, theirs.limit, theirs.top_level)
    assert points.files[0].members == ("annotations/person_keypoints_val2017.json",)
    assert points.files[1].members == ("val2017/",) and points.verified


@pytest.mark.parametrize("fields, expected", [
    ({"sha256": "ABC"}, "sha256 must be 64 lowercase hex"),
    ({"urls": ("ftp://x/y.zip",)}, "urls must be"),
    ({"name": "../y.zip"}, "plain file name"),
    ({"name": "y.rar"}, "extract=True needs"),
    ({"top_level": ()}, "top_level"),
    ({"max_ratio": 0}, "max_ratio must be positive"),
    ({"size_margin": 1.5}, "size_margin"),
])
def test_registry_rejects_a_malformed_file_naming_the_field(fields, expected):
    base = {"name": "y.zip", "urls": ("https://example.invalid/y.zip",), "sha256": None, "size": 10,
            "top_level": ("y",)}
    with pytest.raises(ValueError, match=expected):
        RemoteFile(**{**base, **fields})


def test_make_data_target_runs_the_command():
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "\ndata: $(STAMP)" in makefile
    assert "-m data_scripts.download $(NAME) $(ARGS)" in makefile
