"""Caltech-101 mask transfer (Kim et al., "Deformable spatial pyramid matching", CVPR 2013):
1,515 test pairs, 15 per category of the 101 object categories, scored by LT-ACC / IoU / LOC-ERR.

Layout read (``root`` = the folder ``python -m semcorr.data.download caltech --root ROOT`` fills,
e.g. the ``Caltech-101/`` folder of the HPF release; a ``ROOT`` holding ``Caltech-101/`` is read
through)::

    ROOT/
      test_pairs_caltech_with_category.csv     the pair list (CNNGeometric / WeakAlign / HPF)
      101_ObjectCategories/<cat>/image_XXXX.jpg
      Annotations/<annot-cat>/annotation_XXXX.mat   optional when the CSV holds the polygons

Pair CSV (read by POSITION, as WeakAlign's ``caltech_dataset.py`` and HPF's ``data/caltech.py``
do): column 0 the source image, 1 the target image (paths such as
``101_ObjectCategories/Faces/image_0001.jpg``; only the last two components ``<cat>/<file>`` are
used, resolved under ``ROOT/101_ObjectCategories``), 2 the class (1-based index into the sorted
category names, not needed: the category is the image's folder), then, when present, 3 / 4 the
source polygon's x / y coordinates and 5 / 6 the target polygon's, each one cell holding a
comma-separated list (quoted in the CSV). A first row that does not name an image is a header.

Annotation ``.mat`` (official ``Annotations.tar``; layout as in the dataset's
``show_annotation.m``): ``box_coord`` (1, 4) = [top, bottom, left, right] of the object box and
``obj_contour`` (2, N) = polygon vertices relative to the box, row 0 x, row 1 y; image coordinates
are ``x = obj_contour[0] + box_coord[2]``, ``y = obj_contour[1] + box_coord[0]``. Four annotation
folders are named differently from the image folders (as in torchvision's Caltech101):
``Faces -> Faces_2``, ``Faces_easy -> Faces_3``, ``Motorbikes -> Motorbikes_16``,
``airplanes -> Airplanes_Side_2`` (folders already renamed to the image folder's name, as the
download script and CNNGeometric leave them, are found too); ``image_XXXX.jpg`` pairs with
``annotation_XXXX.mat``.

Polygon source (``polygons``): ``"csv"`` the CSV columns (what HPF / NC-Net / WeakAlign evaluate),
``"mat"`` the ``.mat`` files, ``"auto"`` (default) the CSV when every row has them, else the
``.mat`` files.

Masks (``src_mask`` (Hs, Ws) bool, ``trg_mask`` (Ht, Wt) bool): the polygon vertices are scaled to
the resized image (``x * sx``, ``y * sy``, the point convention of :mod:`semcorr.data.transforms`)
and filled by :func:`semcorr.metrics.masks.rasterise_polygon` (rows = y, cols = x, as the reference
code's ``skimage.draw.polygon``): a pixel is foreground when its centre lies inside or on the
polygon. Coordinates are used as stored, like the reference code rasterises them (the annotations
come from MATLAB, so they are likely 1-based: a sub-pixel-to-one-pixel shift, identical for source
and target; kept for comparability with published numbers).

Protocol (``mask_transfer``, scored by :class:`semcorr.metrics.masks.MaskEvaluator`; LT-ACC and IoU,
mean over pairs):

* ``"polygon"`` (default): the HPF reference's. The source polygon's vertices are transferred with
  the method's keypoint rule and the transferred polygon is rasterised on the target grid, then
  compared with ``trg_mask``. Samples carry the vertices as the query points: ``src_kps`` (P, 2)
  in resized source pixels, ``n_kps = P``, and ``trg_kps`` all NaN (a polygon vertex has no
  ground-truth correspondence; there is no PCK on Caltech). No LOC-ERR (it needs a dense flow; the
  reference reports none).
* ``"flow"``: the source mask is warped onto the target by the method's dense target -> source
  flow (``warp_mask``), as Proposal Flow / WeakAlign evaluate dense methods; adds LOC-ERR.

Margin pruning (``margin_pruning``, default False): the HPF reference keeps every hyperpixel on
Caltech-101; ``conf/method/hpf.yaml`` and ``nn.yaml`` read ``dataset.margin_pruning`` (True for the
other datasets), so ``method=hpf dataset=caltech`` prunes nothing without being told. It is part of
the protocol record. ``requires_keypoints`` is False and the PCK threshold is ``"none"``.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from semcorr.data.base import PairDataset, PairRecord
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError
from semcorr.metrics.masks import MASK_TRANSFERS, rasterise_polygon

PAIRS_CSV = "test_pairs_caltech_with_category.csv"
IMAGES_DIR = "101_ObjectCategories"
ANNOTATIONS_DIR = "Annotations"
ARCHIVE_DIR = "Caltech-101"
#: Image folder -> annotation folder, where they differ.
ANNOTATION_DIRS = {
    "Faces": "Faces_2",
    "Faces_easy": "Faces_3",
    "Motorbikes": "Motorbikes_16",
    "airplanes": "Airplanes_Side_2",
}
IMAGE_EXTS = (".jpg", ".jpeg", ".png")
_SPLIT = re.compile(r"[,;\s]+")


def parse_polygon(xs: str, ys: str, where: str) -> np.ndarray:
    """Two cells of comma-separated numbers -> (N, 2) float64 polygon (x, y)."""
    try:
        x = np.array([float(v) for v in _SPLIT.split(xs.strip()) if v], dtype=np.float64)
        y = np.array([float(v) for v in _SPLIT.split(ys.strip()) if v], dtype=np.float64)
    except ValueError as exc:
        raise AnnotationError(f"{where}: cannot parse polygon coordinates ({exc}). Fix the CSV.") from exc
    if len(x) != len(y) or len(x) < 3:
        raise AnnotationError(
            f"{where}: polygon has {len(x)} x and {len(y)} y values; need the same number, at least 3. Fix the CSV."
        )
    return np.stack([x, y], axis=1)


def read_annotation(path: Path) -> np.ndarray:
    """Read a Caltech-101 ``annotation_XXXX.mat`` -> (N, 2) float64 polygon in image coordinates."""
    import scipy.io

    if not path.is_file():
        raise DatasetNotFoundError(
            f"Caltech-101 annotation not found: {path}. Download Annotations.tar of Caltech-101 into the "
            "dataset root, or use the pair CSV with polygon columns (dataset.polygons=csv)."
        )
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types on broken files
        raise AnnotationError(f"Cannot read annotation {path} ({exc.__class__.__name__}: {exc}). Replace the file.") from exc
    missing = [k for k in ("box_coord", "obj_contour") if k not in content]
    if missing:
        keys = sorted(k for k in content if not k.startswith("__"))
        raise AnnotationError(f"Annotation {path} lacks {missing} (it has {keys}). Replace the file.")
    box = np.asarray(content["box_coord"], dtype=np.float64).reshape(-1)
    contour = np.asarray(content["obj_contour"], dtype=np.float64)
    if box.size != 4 or contour.ndim != 2 or contour.shape[0] != 2 or contour.shape[1] < 3:
        raise AnnotationError(
            f"Annotation {path}: box_coord {box.shape} / obj_contour {contour.shape}, expected 4 values and (2, N>=3)."
        )
    return np.stack([contour[0] + box[2], contour[1] + box[0]], axis=1)


def polygon_mask(polygon: np.ndarray, size: tuple[int, int], factors: tuple[float, float]) -> torch.Tensor:
    """Rasterise an (N, 2) (x, y) polygon given in original pixels on a resized (H, W) grid.

    Vertices are scaled by ``factors`` (sx, sy), then filled by
    :func:`~semcorr.metrics.masks.rasterise_polygon`.

    Returns:
        (H, W) bool tensor.
    """
    return rasterise_polygon(torch.as_tensor(polygon, dtype=torch.float64) * torch.tensor(factors, dtype=torch.float64), size)


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header."""
    with Image.open(path) as img:
        w, h = img.size
    return h, w


class CaltechDataset(PairDataset):
    """Caltech-101 mask-transfer pairs (see the module docstring).

    Args:
        root: the Caltech-101 folder (or its parent holding ``Caltech-101/``).
        split: ``"test"`` (the only split).
        pairs_file: the pair CSV, relative to the data folder or absolute.
        polygons: ``"auto"``, ``"csv"`` or ``"mat"`` (where the object polygons come from).
        mask_transfer: ``"polygon"`` (the HPF reference) or ``"flow"`` (see the module docstring).
        margin_pruning: whether methods with margin pruning (HPF, ``nn`` with the box read-out)
            prune on this dataset (False: the reference's rule).
        **kwargs: the :class:`~semcorr.data.base.PairDataset` arguments.
    """

    download_name = "caltech"
    thresholds = ("none",)
    requires_keypoints = False
    splits = ("test",)
    evaluators = ("masks",)

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        pairs_file: str = PAIRS_CSV,
        polygons: str = "auto",
        mask_transfer: str = "polygon",
        margin_pruning: bool = False,
        **kwargs: Any,
    ) -> None:
        if polygons not in ("auto", "csv", "mat"):
            raise ConfigError(f"CaltechDataset: polygons must be 'auto', 'csv' or 'mat', got {polygons!r}")
        if mask_transfer not in MASK_TRANSFERS:
            raise ConfigError(f"dataset.mask_transfer must be one of {', '.join(MASK_TRANSFERS)}, got {mask_transfer!r}")
        self.pairs_file = pairs_file
        self.polygons = polygons
        self.mask_transfer = mask_transfer
        self.margin_pruning = bool(margin_pruning)
        kwargs.setdefault("name", "caltech")
        super().__init__(root, split=split, **kwargs)

    @property
    def data_dir(self) -> Path:
        """Folder holding ``101_ObjectCategories/`` (``root`` or ``root/Caltech-101``)."""
        inner = self.root / ARCHIVE_DIR
        if not (self.root / IMAGES_DIR).is_dir() and inner.is_dir():
            return inner
        return self.root

    def resolve_image(self, name: str, where: str) -> Path:
        parts = Path(name.strip().replace("\\", "/")).parts
        if len(parts) < 2:
            raise AnnotationError(f"{where}: image path {name!r} lacks its category folder (<cat>/image_XXXX.jpg).")
        path = self.data_dir / IMAGES_DIR / parts[-2] / parts[-1]
        if not path.is_file():
            raise DatasetNotFoundError(self.missing_message(path) + f" (named in {where})")
        return path

    def annotation_path(self, image: Path) -> Path:
        """``<cat>/image_XXXX.jpg`` -> ``Annotations/<annot-cat>/annotation_XXXX.mat``.

        The official folder name (e.g. ``Faces_2``) is tried first, then the image folder's name
        (``python -m semcorr.data.download caltech`` renames the four odd folders, as CNNGeometric
        does).
        """
        number = image.stem.split("_")[-1]
        category = image.parent.name
        candidates = [self.data_dir / ANNOTATIONS_DIR / f / f"annotation_{number}.mat"
                      for f in dict.fromkeys((ANNOTATION_DIRS.get(category, category), category))]
        return next((c for c in candidates if c.is_file()), candidates[0])

    def load_records(self) -> list[PairRecord]:
        csv_path = Path(self.pairs_file).expanduser()
        if not csv_path.is_absolute():
            csv_path = self.data_dir / csv_path
        self.require(self.data_dir / IMAGES_DIR)
        with open(self.require(csv_path), newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
        if rows and not rows[0][0].strip().lower().endswith(IMAGE_EXTS):
            rows = rows[1:]  # header
        have_polygons = bool(rows) and all(len(r) >= 7 and all(c.strip() for c in r[3:7]) for r in rows)
        if self.polygons == "csv" and not have_polygons:
            raise AnnotationError(
                f"{self.name}: {csv_path} has no polygon columns (source x, source y, target x, target y after the "
                "class) in every row; use dataset.polygons=mat with the Annotations folder, or the HPF/WeakAlign CSV."
            )
        use_csv = self.polygons == "csv" or (self.polygons == "auto" and have_polygons)
        self.pair_source = csv_path.name
        records = []
        for i, row in enumerate(rows):
            where = f"{csv_path.name} row {i + 1}"
            if len(row) < 2:
                raise AnnotationError(f"{where}: expected source_image, target_image, class, ...; got {len(row)} columns.")
            src = self.resolve_image(row[0], where)
            trg = self.resolve_image(row[1], where)
            extra: dict[str, Any] = {}
            if use_csv:
                extra["src_polygon"] = parse_polygon(row[3], row[4], where + " (source polygon)")
                extra["trg_polygon"] = parse_polygon(row[5], row[6], where + " (target polygon)")
            else:
                extra["src_annotation"] = self.require(self.annotation_path(src))
                extra["trg_annotation"] = self.require(self.annotation_path(trg))
            records.append(
                PairRecord(
                    pair_id=f"{i + 1:04d}-{src.parent.name}/{src.stem}-{trg.stem}",
                    src_path=src,
                    trg_path=trg,
                    category=src.parent.name,
                    extra=extra,
                )
            )
        return records

    def polygon(self, record: PairRecord, which: str) -> np.ndarray:
        """(N, 2) object polygon of the ``"src"`` or ``"trg"`` image in original pixels."""
        if f"{which}_polygon" in record.extra:
            return record.extra[f"{which}_polygon"]
        return read_annotation(record.extra[f"{which}_annotation"])

    def load_extras(self, record: PairRecord, src_size: tuple[int, int], trg_size: tuple[int, int]) -> dict:
        out: dict[str, Any] = {}
        for which, size, path in (("src", src_size, record.src_path), ("trg", trg_size, record.trg_path)):
            factors = self.resize.scale_factors(*image_size(path))
            polygon = self.polygon(record, which)
            out[f"{which}_mask"] = polygon_mask(polygon, size, factors)
            if which == "src" and self.mask_transfer == "polygon":
                vertices = torch.as_tensor(polygon, dtype=torch.float32) * torch.tensor(factors, dtype=torch.float32)
                out.update(src_kps=vertices, trg_kps=torch.full_like(vertices, float("nan")), n_kps=len(vertices))
        return out

    def protocol_options(self) -> dict[str, Any]:
        return {"mask_transfer": self.mask_transfer, "polygons": self.polygons, "margin_pruning": self.margin_pruning}
