"""The catalogue of downloadable datasets: where each file of a release lives (URLs, mirrors),
its published checksums and the layout it unpacks into (``strip``, post-extraction steps, the
path that proves the dataset is there). Nothing here touches the network; :mod:`.fetcher` does.

Sources (official pages; checksums as published, "none published" otherwise):

========= ======================================================================================
pfpascal  https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset-PASCAL.zip
          (official PF-PASCAL release, no checksum published) -> ``DIR/PF-dataset-PASCAL/``.
          Pair lists: ``test_pairs_pf_pascal.csv`` and ``val_pairs_pf_pascal.csv`` of the
          CNNGeometric / WeakAlign release (www.di.ens.fr/willow/research/cnngeometric/
          other_resources/), saved as ``DIR/test_pairs.csv`` and ``DIR/val_pairs.csv``; the
          training list (2940 rows with ``flip``), which has no official home: the Google Drive
          file 111tpXshLiJ4qudBHoGK3HbMSNr9vVRq9 that the DenseMatching / GeoAware-SC scripts
          fetch, saved as ``DIR/train_pairs.csv`` (optional: a failure only warns; HPF's
          Google Drive package of PF-PASCAL names its lists ``{trn,val,test}_pairs.csv``, which
          the dataset also reads).
pfwillow  https://www.di.ens.fr/willow/research/proposalflow/dataset/PF-dataset.zip (no checksum
          published; its ``PF-dataset/`` becomes ``DIR``) and the CNNGeometric list
          ``test_pairs_pf.csv`` -> ``DIR/test_pairs_pf.csv`` (optional: the dataset can pair the
          images of each sub-class itself).
spair     http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz (no checksum
          published; its ``SPair-71k/`` becomes ``DIR``).
tss       TSS_CVPR2016.zip from the project page https://taniai.space/projects/cvpr16_dccs/
          (the file URL under it is not verified here), with the University of Tokyo URL used
          by CNNGeometric as a mirror; no checksum published; ``TSS_CVPR2016/`` becomes ``DIR``
          (``DIR/{FG3DCar,JODS,PASCAL}/<pair>/``); plus the CNNGeometric ``test_pairs_tss.csv``
          (optional).
caltech   https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip, md5
          3138e1922a9193bfa496528edbbc45d0 (as torchvision verifies it); the inner
          ``101_ObjectCategories.tar.gz`` and ``Annotations.tar`` are unpacked into ``DIR`` and
          four annotation folders renamed to their image folders' names (``Airplanes_Side_2`` ->
          ``airplanes``, ``Faces_2`` -> ``Faces``, ``Faces_3`` -> ``Faces_easy``,
          ``Motorbikes_16`` -> ``Motorbikes``, as CNNGeometric does); plus the pair list
          ``test_pairs_caltech_with_category.csv`` of CNNGeometric (1515 pairs, with polygons).
cub       https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz, md5
          97eceeb196236b17998738112f37df78 (not on the record page; the value public loaders
          verify); ``CUB_200_2011/`` becomes ``DIR``. The foreground masks are a separate record:
          https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz (mirror: the old
          www.vision.caltech.edu/visipedia-data/CUB-200-2011/ address; no checksum known here),
          unpacked to ``DIR/segmentations/`` (optional: a failure only warns).
voc       PASCAL VOC 2012 trainval (SAM-Net stage 1):
          http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar (mirror
          thor.robots.ox.ac.uk, torchvision's), md5 6cd6e144f989b92b3379bac3b3de84fd;
          ``VOCdevkit/VOC2012/`` becomes ``DIR`` (``DIR/JPEGImages``...).
========= ======================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from semcorr.errors import ConfigError

from .archives import extract

_ENS = "https://www.di.ens.fr/willow/research"
_CNNGEO = f"{_ENS}/cnngeometric/other_resources"


@dataclass(frozen=True)
class Resource:
    """One file of a dataset release.

    Attributes:
        urls: where to get it, tried in order (mirrors).
        filename: name of the downloaded file (inside the dataset root).
        md5 / sha256: published checksums (None where none is published).
        archive: extract it (zip / tar / tar.gz), then delete it unless asked to keep it.
        save_as: for plain files, the path under the root to save to (default ``filename``).
        strip: top-level folder(s) of the archive whose content goes straight into the root.
        optional: a failure warns instead of stopping the command.
        header: for text files, what the first line must start with (catches HTML error pages).
    """

    urls: tuple[str, ...]
    filename: str
    md5: str | None = None
    sha256: str | None = None
    archive: bool = True
    save_as: str | None = None
    strip: str | None = None
    optional: bool = False
    header: str | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A downloadable dataset: its files, default folder and the path that proves it is there."""

    name: str
    folder: str
    description: str
    resources: tuple[Resource, ...]
    check: str
    post: Callable[[Path], None] | None = field(default=None, compare=False)


def _caltech_post(root: Path) -> None:
    """Unpack Caltech-101's inner archives and align four annotation folder names."""
    for inner in ("101_ObjectCategories.tar.gz", "Annotations.tar"):
        path = root / inner
        if path.is_file():
            extract(path, root)
            path.unlink()
    renames = {"Airplanes_Side_2": "airplanes", "Faces_2": "Faces", "Faces_3": "Faces_easy", "Motorbikes_16": "Motorbikes"}
    for old, new in renames.items():
        src, dst = root / "Annotations" / old, root / "Annotations" / new
        if src.is_dir() and not dst.exists():
            src.rename(dst)


DATASETS: dict[str, DatasetSpec] = {
    "pfpascal": DatasetSpec(
        name="pfpascal",
        folder="PF-PASCAL",
        description="PF-PASCAL: 20 VOC classes (test 299 / val 308 / train 2940 pairs incl. mirrored ones)",
        resources=(
            Resource((f"{_ENS}/proposalflow/dataset/PF-dataset-PASCAL.zip",), "PF-dataset-PASCAL.zip"),
            Resource((f"{_CNNGEO}/test_pairs_pf_pascal.csv",), "test_pairs_pf_pascal.csv", archive=False,
                     save_as="test_pairs.csv", header="source_image"),
            Resource((f"{_CNNGEO}/val_pairs_pf_pascal.csv",), "val_pairs_pf_pascal.csv", archive=False,
                     save_as="val_pairs.csv", header="source_image"),
            Resource(("https://drive.google.com/uc?export=download&id=111tpXshLiJ4qudBHoGK3HbMSNr9vVRq9",),
                     "trn_pairs_pf_pascal.csv", archive=False, save_as="train_pairs.csv", optional=True,
                     header="source_image"),
        ),
        check="PF-dataset-PASCAL/JPEGImages",
    ),
    "pfwillow": DatasetSpec(
        name="pfwillow",
        folder="PF-WILLOW",
        description="PF-WILLOW: 900 test pairs of 10 sub-classes",
        resources=(
            Resource((f"{_ENS}/proposalflow/dataset/PF-dataset.zip",), "PF-dataset.zip", strip="PF-dataset"),
            Resource((f"{_CNNGEO}/test_pairs_pf.csv",), "test_pairs_pf.csv", archive=False, optional=True),
        ),
        check="car(G)",
    ),
    "spair": DatasetSpec(
        name="spair",
        folder="SPair-71k",
        description="SPair-71k: 70,958 pairs of 18 categories (trn 53,340 / val 5,384 / test 12,234)",
        resources=(
            Resource(("http://cvlab.postech.ac.kr/research/SPair-71k/data/SPair-71k.tar.gz",), "SPair-71k.tar.gz",
                     strip="SPair-71k"),
        ),
        check="Layout/large/test.txt",
    ),
    "tss": DatasetSpec(
        name="tss",
        folder="TSS",
        description="TSS (Taniai et al. CVPR 2016): 400 pairs with dense flow and masks",
        resources=(
            Resource(("https://taniai.space/projects/cvpr16_dccs/data/TSS_CVPR2016.zip",
                      "http://www.hci.iis.u-tokyo.ac.jp/datasets/data/JointCorrCoseg/TSS_CVPR2016.zip"),
                     "TSS_CVPR2016.zip", strip="TSS_CVPR2016"),
            Resource((f"{_CNNGEO}/test_pairs_tss.csv",), "test_pairs_tss.csv", archive=False, optional=True),
        ),
        check="FG3DCar",
    ),
    "caltech": DatasetSpec(
        name="caltech",
        folder="Caltech-101",
        description="Caltech-101: images and object outlines (mask transfer, 1515 CNNGeometric test pairs)",
        resources=(
            Resource(("https://data.caltech.edu/records/mzrjq-6wc02/files/caltech-101.zip",), "caltech-101.zip",
                     md5="3138e1922a9193bfa496528edbbc45d0", strip="caltech-101"),
            Resource((f"{_CNNGEO}/test_pairs_caltech_with_category.csv",), "test_pairs_caltech_with_category.csv",
                     archive=False),
        ),
        check="101_ObjectCategories",
        post=_caltech_post,
    ),
    "cub": DatasetSpec(
        name="cub",
        folder="CUB_200_2011",
        description="CUB-200-2011: 11,788 bird images with 15 part keypoints",
        resources=(
            Resource(("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",), "CUB_200_2011.tgz",
                     md5="97eceeb196236b17998738112f37df78", strip="CUB_200_2011"),
            Resource(("https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz",
                      "http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/segmentations.tgz"),
                     "segmentations.tgz", optional=True),
        ),
        check="images",
    ),
    "voc": DatasetSpec(
        name="voc",
        folder="VOC2012",
        description="PASCAL VOC 2012 trainval (17,125 images; SAM-Net stage-1 synthetic pairs)",
        resources=(
            Resource(("http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
                      "https://thor.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"),
                     "VOCtrainval_11-May-2012.tar", md5="6cd6e144f989b92b3379bac3b3de84fd", strip="VOCdevkit/VOC2012"),
        ),
        check="JPEGImages",
    ),
}



def get_spec(name: str) -> DatasetSpec:
    """The spec of a dataset name; :class:`ConfigError` listing the valid names otherwise."""
    key = name.strip().lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ConfigError(f"Unknown dataset {name!r}. Downloadable datasets: {', '.join(DATASETS)}.")
    return DATASETS[key]
