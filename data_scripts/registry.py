"""The one table of real datasets: name -> files (URLs with mirrors, sha256, size), licence, citation.

Checksums come from published sources, never from a guess: the Oxford-IIIT Pet, VOC 2007 and COCO
2017 sha256 sums and sizes are the ones TensorFlow Datasets records for the same URLs
(``tensorflow_datasets/datasets/oxford_iiit_pet/checksums.tsv``, ``url_checksums/voc.txt``,
``url_checksums/coco2017.txt``). A file whose checksum is not documented anywhere has
``sha256=None``: the downloader then refuses it unless ``--allow-unverified`` is given, and prints
the sha256 it measured so it can be added here.

Dataset hosts die (VOC's own server has been down for long stretches): each file lists its
mirrors in order; the downloader tries the next one when a URL fails.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """One file to download (and usually extract).

    Attributes:
        name: file name on disk, e.g. ``"images.tar.gz"``.
        urls: the original URL first, then mirrors, all serving identical bytes.
        sha256: hex digest of the file, or ``None`` when no documented checksum exists.
        size: size in bytes, or ``None`` when not documented.
        extract: unpack the archive into the dataset folder after verification.
        members: when given, extract only archive members whose path starts with one of these.
        limit: the ``--images N`` option caps the members extracted from this archive (COCO).
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None
    extract: bool = True
    members: tuple[str, ...] | None = None
    limit: bool = False


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


_PETS = "https://thor.robots.ox.ac.uk/~vgg/data/pets/"
_PETS_OLD = "https://www.robots.ox.ac.uk/~vgg/data/pets/data/"
_PETS_TV = "https://thor.robots.ox.ac.uk/datasets/pets/"  # the URL torchvision uses
_VOC = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/"
_VOC_MIRROR = "http://pjreddie.com/media/files/"  # YOLO's author's mirror; TFDS hashes these
_COCO = "http://images.cocodataset.org/"
_COCO_TLS = "https://images.cocodataset.org/"
_PENNFUDAN = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"

DATASETS: dict[str, DatasetEntry] = {
    entry.name: entry
    for entry in (
        DatasetEntry(
            name="oxford_pets",
            title="Oxford-IIIT Pet: 37 breeds, head boxes (trainval) and trimaps",
            files=(
                RemoteFile("images.tar.gz", (_PETS + "images.tar.gz", _PETS_TV + "images.tar.gz",
                                             _PETS_OLD + "images.tar.gz"),
                           "67195c5e1c01f1ab5f9b6a5d22b8c27a580d896ece458917e61d459337fa318d", 791_918_971),
                RemoteFile("annotations.tar.gz", (_PETS + "annotations.tar.gz", _PETS_TV + "annotations.tar.gz",
                                                  _PETS_OLD + "annotations.tar.gz"),
                           "52425fb6de5c424942b7626b428656fcbd798db970a937df61750c0f1d358e91", 19_173_078),
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
                RemoteFile("PennFudanPed.zip", (_PENNFUDAN, "https://web.archive.org/web/2023id_/" + _PENNFUDAN),
                           None, None),
            ),
            licence="no licence stated by the authors; distributed for research and teaching",
            citation="L. Wang, J. Shi, G. Song, I. Shen. Object Detection Combining Recognition and "
                     "Segmentation. ACCV 2007.",
            homepage="https://www.cis.upenn.edu/~jshi/ped_html/",
            notes="no published checksum: needs --allow-unverified (about 54 MB)",
        ),
        DatasetEntry(
            name="voc2007",
            title="PASCAL VOC 2007 detection: 20 classes, trainval + test (9,963 images)",
            files=(
                RemoteFile("VOCtrainval_06-Nov-2007.tar", (_VOC + "VOCtrainval_06-Nov-2007.tar",
                                                           _VOC_MIRROR + "VOCtrainval_06-Nov-2007.tar"),
                           "7d8cd951101b0957ddfd7a530bdc8a94f06121cfc1e511bb5937e973020c7508", 460_032_000),
                RemoteFile("VOCtest_06-Nov-2007.tar", (_VOC + "VOCtest_06-Nov-2007.tar",
                                                       _VOC_MIRROR + "VOCtest_06-Nov-2007.tar"),
                           "6836888e2e01dca84577a849d339fa4f73e1e4f135d312430c4856b5609b4892", 451_020_800),
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
                RemoteFile("annotations_trainval2017.zip", (_COCO + "annotations/annotations_trainval2017.zip",
                                                            _COCO_TLS + "annotations/annotations_trainval2017.zip"),
                           "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268", 252_907_541,
                           members=("annotations/instances_val2017.json",)),
                RemoteFile("val2017.zip", (_COCO + "zips/val2017.zip", _COCO_TLS + "zips/val2017.zip"),
                           "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05", 815_585_330,
                           members=("val2017/",), limit=True),
            ),
            licence="annotations: CC BY 4.0; images: Flickr terms of use",
            citation="T.-Y. Lin et al. Microsoft COCO: Common Objects in Context. ECCV 2014.",
            homepage="https://cocodataset.org/",
            notes="the image zip is verified whole, then only --images N images are extracted",
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
