"""The one table of real datasets: name -> files (URLs with mirrors, sha256, size, limits), licence, citation.

Checksums come from published sources, never from a guess: the Oxford-IIIT Pet, VOC 2007 and COCO
2017 sha256 sums and sizes are the ones TensorFlow Datasets records for the same URLs
(``tensorflow_datasets/datasets/oxford_iiit_pet/checksums.tsv``, ``url_checksums/voc.txt``,
``url_checksums/coco2017.txt``). A file whose checksum is not documented anywhere has
``sha256=None``: the downloader then refuses it unless ``allow_unverified`` is given, checks its
approximate ``size`` (``size_margin``), its type and its top-level entries instead, and pins the
sha256 of the first good download (trust on first use, see :mod:`course_utils.data.fetch`).

Every archive also states what it may unpack to (``max_bytes``, ``max_members``, ``max_ratio``),
so that a hostile mirror cannot fill the disk; the defaults below are safe for a file that does
not say.

Dataset hosts die (VOC's own server has been down for long stretches): each file lists its
mirrors in order; the downloader tries the next one when a URL fails.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

DEFAULT_MAX_BYTES = 1 << 30  # an archive unpacks to at most 1 GiB unless its entry says more
DEFAULT_MAX_MEMBERS = 100_000
DEFAULT_MAX_RATIO = 50.0  # unpacked bytes per archive byte; images barely compress, JSON about 8x
ARCHIVE_FORMATS = {".zip": "zip", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".tar": "tar"}


def archive_format(name: str) -> str | None:
    """The archive format a file name declares: ``"zip"``, ``"tar.gz"``, ``"tar"`` or ``None``.

    Args:
        name: a file name such as ``"images.tar.gz"``.

    Returns:
        the format, or ``None`` for a name that is not an archive's.
    """
    for suffix, fmt in ARCHIVE_FORMATS.items():
        if name.lower().endswith(suffix):
            return fmt
    return None


@dataclass(frozen=True)
class RemoteFile:
    """One file to download (and usually extract).

    Attributes:
        name: file name on disk, e.g. ``"images.tar.gz"``; its suffix declares the archive format.
        urls: the original URL first, then mirrors, all serving identical bytes.
        sha256: hex digest of the file, or ``None`` when no documented checksum exists.
        size: size in bytes: exact when ``sha256`` is known, approximate (``size_margin``) when not.
        size_margin: for an unverified file, the accepted relative deviation from ``size``.
        extract: unpack the archive into the dataset folder after verification.
        members: when given, extract only archive members whose path starts with one of these.
        limit: the ``--images N`` option caps the members extracted from this archive (COCO).
        top_level: the archive's top-level entries (``"images"`` for ``images/...``); an
            unverified archive must hold these and nothing else, a verified one at least these.
        max_bytes: the most bytes the archive may unpack to (a tar: its whole uncompressed stream).
        max_members: the most entries the archive may hold.
        max_ratio: the most unpacked bytes per byte of archive.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    extract: bool = True
    members: tuple[str, ...] | None = None
    limit: bool = False
    top_level: tuple[str, ...] = ()
    size_margin: float = 0.0
    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    max_ratio: float = DEFAULT_MAX_RATIO

    def __post_init__(self) -> None:
        where = f"RemoteFile {self.name!r}"
        if not self.name or "/" in self.name or "\\" in self.name or self.name.startswith("."):
            raise ValueError(f"{where}: name must be a plain file name, got {self.name!r}")
        if not self.urls or not all(u.startswith(("http://", "https://")) for u in self.urls):
            raise ValueError(f"{where}: urls must be one or more http(s) URLs, got {self.urls!r}")
        if self.sha256 is not None and not re.fullmatch(r"[0-9a-f]{64}", self.sha256):
            raise ValueError(f"{where}: sha256 must be 64 lowercase hex digits or None, got {self.sha256!r}")
        if self.size is not None and self.size <= 0:
            raise ValueError(f"{where}: size must be a positive number of bytes or None, got {self.size!r}")
        if self.sha256 is None and self.size is None:
            raise ValueError(f"{where}: an unverified file (sha256=None) needs its expected size")
        if not 0.0 <= self.size_margin < 1.0:
            raise ValueError(f"{where}: size_margin must be in [0, 1), got {self.size_margin!r}")
        if self.extract and self.format is None:
            raise ValueError(f"{where}: extract=True needs a .zip, .tar.gz, .tgz or .tar name")
        if self.extract and not self.top_level:
            raise ValueError(f"{where}: an archive to extract needs its expected top_level entries")
        for field_name in ("max_bytes", "max_members", "max_ratio"):
            if getattr(self, field_name) <= 0:
                raise ValueError(f"{where}: {field_name} must be positive, got {getattr(self, field_name)!r}")

    @property
    def format(self) -> str | None:
        """The archive format the name declares (see :func:`archive_format`)."""
        return archive_format(self.name)

    @property
    def verified(self) -> bool:
        """True when the registry knows the file's sha256."""
        return self.sha256 is not None

    def size_bounds(self) -> tuple[int, int] | None:
        """The accepted download size ``(lowest, highest)`` in bytes, ``None`` when unknown.

        Returns:
            ``(size, size)`` for a verified file, ``size`` +- ``size_margin`` for an unverified one.
        """
        if self.size is None:
            return None
        if self.verified or not self.size_margin:
            return self.size, self.size
        return math.floor(self.size * (1 - self.size_margin)), math.ceil(self.size * (1 + self.size_margin))


@dataclass(frozen=True)
class DatasetEntry:
    """A dataset of the registry: what to fetch and under which terms."""

    name: str
    title: str
    files: tuple[RemoteFile, ...]
    licence: str
    citation: str
    homepage: str
    notes: str = ""

    @property
    def size(self) -> int | None:
        """Total download size in bytes, ``None`` if any file's size is undocumented."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(sizes)

    @property
    def verified(self) -> bool:
        """True when every file has a documented sha256."""
        return all(f.verified for f in self.files)


_PETS = "https://thor.robots.ox.ac.uk/~vgg/data/pets/"
_PETS_OLD = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"
_PETS_TV = "https://thor.robots.ox.ac.uk/datasets/pets/"  # the URL torchvision uses
_VOC = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/"
_VOC_MIRROR = "http://pjreddie.com/media/files/"  # YOLO's author's mirror; TFDS hashes these
_COCO = "http://images.cocodataset.org/"
_COCO_TLS = "https://images.cocodataset.org/"
_PENNFUDAN = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"


def _coco_annotations(member: str) -> RemoteFile:
    """COCO's 2017 annotation archive (one file for every annotation type), extracting only ``member``."""
    return RemoteFile("annotations_trainval2017.zip", (_COCO + "annotations/annotations_trainval2017.zip",
                                                       _COCO_TLS + "annotations/annotations_trainval2017.zip"),
                      "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268", 252_907_541,
                      members=(f"annotations/{member}",), top_level=("annotations",), max_bytes=2 << 30,
                      max_members=100)


_COCO_VAL2017_IMAGES = RemoteFile("val2017.zip", (_COCO + "zips/val2017.zip", _COCO_TLS + "zips/val2017.zip"),
                                  "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05", 815_585_330,
                                  members=("val2017/",), limit=True, top_level=("val2017",), max_members=10_000)

DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            name="oxford_pets",
            title="Oxford-IIIT Pet: 37 breeds, head boxes (trainval) and trimaps",
            files=(
                RemoteFile("images.tar.gz", (_PETS + "images.tar.gz", _PETS_TV + "images.tar.gz",
                                             _PETS_OLD + "images.tar.gz"),
                           "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d", 791_918_971,
                           top_level=("images",), max_members=20_000),
                RemoteFile("annotations.tar.gz", (_PETS + "annotations.tar.gz", _PETS_TV + "annotations.tar.gz",
                                                  _PETS_OLD + "annotations.tar.gz"),
                           "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91", 19_173_078,
                           top_level=("annotations",), max_bytes=256 << 20, max_members=40_000),
            ),
            licence="CC BY-SA 4.0 (annotations); image copyright stays with the original owners",
            citation="O. M. Parkhi, A. Vedaldi, A. Zisserman, C. V. Jawahar. Cats and Dogs. CVPR 2012.",
            homepage="https://www.robots.ox.ac.uk/~vgg/data/pets/",
            notes="head boxes exist for the trainval images only",
        ),
        DatasetEntry(
            name="pennfudan",
            title="Penn-Fudan pedestrians: 170 images with instance masks",
            files=(
                # no published checksum: about 53.7 MB (the Internet Archive copy is byte-identical);
                # trusted on first use, then pinned
                RemoteFile("PennFudanPed.zip", (_PENNFUDAN, "https://web.archive.org/web/2023id_/" + _PENNFUDAN),
                           None, 53_700_000, size_margin=0.15, top_level=("PennFudanPed",),
                           max_bytes=256 << 20, max_members=2_000, max_ratio=10.0),
            ),
            licence="no licence stated by the authors; distributed for research and teaching",
            citation="L. Wang, J. Shi, G. Song, I. Shen. Object Detection Combining Recognition and "
                     "Segmentation. ACCV 2007.",
            homepage="https://www.cis.upenn.edu/~jshi/ped_html/",
            notes="no published checksum: needs --allow-unverified (about 54 MB); the first good download "
                  "is pinned (trust on first use)",
        ),
        DatasetEntry(
            name="voc2007",
            title="PASCAL VOC 2007 detection: 20 classes, trainval + test (9,963 images)",
            files=(
                RemoteFile("VOCtrainval_06-Nov-2007.tar", (_VOC + "VOCtrainval_06-Nov-2007.tar",
                                                           _VOC_MIRROR + "VOCtrainval_06-Nov-2007.tar"),
                           "7d8cd951101b0957ddfd7a530bdc8a94f06121cfc1e511bb5937e973020c7508", 460_032_000,
                           top_level=("VOCdevkit",), max_members=40_000),
                RemoteFile("VOCtest_06-Nov-2007.tar", (_VOC + "VOCtest_06-Nov-2007.tar",
                                                       _VOC_MIRROR + "VOCtest_06-Nov-2007.tar"),
                           "6836888e2e01dca84577a849d339fa4f73e1e4f135d312430c4856b5609b4892", 451_020_800,
                           top_level=("VOCdevkit",), max_members=40_000),
            ),
            licence="images: Flickr terms of use; annotations: the VOC challenge's terms (research use)",
            citation="M. Everingham, L. Van Gool, C. K. I. Williams, J. Winn, A. Zisserman. The PASCAL Visual "
                     "Object Classes (VOC) Challenge. IJCV 88(2), 2010.",
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
        ),
        DatasetEntry(
            name="coco_val2017",
            title="COCO val2017: instance annotations + the first N images (--images N)",
            files=(
                _coco_annotations("instances_val2017.json"),
                _COCO_VAL2017_IMAGES,
            ),
            licence="annotations: CC BY 4.0; images: Flickr terms of use",
            citation="T.-Y. Lin et al. Microsoft COCO: Common Objects in Context. ECCV 2014.",
            homepage="https://cocodataset.org/",
            notes="the image zip is verified whole, then only --images N images are extracted",
        ),
        DatasetEntry(
            name="coco_keypoints_val2017",
            title="COCO val2017 person keypoints (17 per person) + the first N images (--images N)",
            files=(
                # the same two files as coco_val2017 (an archive already fetched for it is reused, not
                # downloaded again); only the person keypoint annotations are extracted
                _coco_annotations("person_keypoints_val2017.json"),
                _COCO_VAL2017_IMAGES,
            ),
            licence="annotations: CC BY 4.0; images: Flickr terms of use",
            citation="T.-Y. Lin et al. Microsoft COCO: Common Objects in Context. ECCV 2014.",
            homepage="https://cocodataset.org/#keypoints-2017",
            notes="the first --images N val2017 images by file name; COCOKeypoints uses those showing a "
                  "person with labelled keypoints; archives already fetched for coco_val2017 are reused",
        ),
    )
}


def get_entry(name: str) -> DatasetEntry:
    """The registry entry called ``name``.

    Raises:
        KeyError: naming the unknown dataset and the known ones.
    """
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    return DATASETS[name]


def human_size(size: int | None) -> str:
    """``791918971`` -> ``"755.2 MiB"``; ``None`` -> ``"size unknown"``."""
    if size is None:
        return "size unknown"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
