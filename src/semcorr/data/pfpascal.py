"""PF-PASCAL (Ham et al., "Proposal Flow: Semantic Correspondences from Object Proposals", TPAMI 2018).

Layout read (``root`` = the folder ``python -m semcorr.data.download pfpascal --root ROOT`` fills)::

    ROOT/
      PF-dataset-PASCAL/              the official PF-dataset-PASCAL.zip, unpacked as is
        JPEGImages/<name>.jpg
        Annotations/<class>/<name>.mat  keys: ``kps`` (N, 2) x, y with NaN rows for keypoints
                                        that are not visible; ``bbox`` (1, 4) x1, y1, x2, y2
      test_pairs.csv  val_pairs.csv  train_pairs.csv   the pair lists (see below)

The official zip holds images and annotations but no pair lists. The standard lists come from
later releases: the test and validation lists of CNNGeometric / WeakAlign (Rocco et al.,
``test_pairs_pf_pascal.csv``, ``val_pairs_pf_pascal.csv``) and the training list of the HPF line
of work (2940 rows, 1470 with ``flip = 0`` and 1470 mirrored; HPF's own package names the lists
``{trn,val,test}_pairs.csv``). The lists sit beside ``PF-dataset-PASCAL/``, as in the HPF
package (``<datapath>/PF-PASCAL/*_pairs.csv``).
Also found, in this order: ``<split>_pairs.csv``, ``trn_pairs.csv`` (train only),
``<split>_pairs_pf_pascal.csv`` in ``ROOT`` or in ``ROOT/PF-dataset-PASCAL``; or pass
``pairs_csv=FILE``.

CSV columns (header row): ``source_image, target_image, class`` and either
``XA, YA, XB, YB`` (``;``-separated keypoint coordinates, the test list) or ``flip`` (0/1,
the train / validation lists; keypoints then come from the annotation ``.mat`` files, keeping
the keypoints visible in both images, as the HPF reference code does). ``class`` is the
1-based index into the 20 PASCAL VOC classes in the standard order (:data:`CLASSES`). Image
paths in the CSV are looked up by file name in ``PF-dataset-PASCAL/JPEGImages``.

Mirrored pairs (``flip = 1``): both images are mirrored left-right and every keypoint x becomes
``W - x`` (W the width of that image; pixel coordinates whose origin is the left edge of the
image, the HPF convention); the annotation box becomes ``(W - x2, y1, W - x1, y2)``. Records hold
the mirrored keypoints; the images are mirrored in ``__getitem__`` (mirroring commutes exactly
with the bilinear resize, ``align_corners=False``). Samples carry ``flip`` (int).

PCK threshold (``threshold``, HPF's ``--thres``): ``"img"`` (default), max(H, W) of the target
image (the CNNGeometric / HPF evaluation protocol); ``"bbox"``, max(w, h) of the target's
annotation box (read from the ``.mat``; what HPF's layer search scores with).

Train/test leakage: 95 of the 299 standard test pairs are, as ordered pairs, also rows of
``train_pairs.csv``, and 302 of the 506 test images appear in training pairs (mirrored or not).
The standard split is kept; when the training list is found next to the split's list, every pair
of the ``test`` and ``val`` splits carries ``clean`` (True when neither of its images occurs in
any training pair; 79 of the 299 test pairs), reported as ``pck@A/clean``, the overlap is
recorded in the protocol (``options.leakage``), and a method trained on PF-PASCAL ``train``
(``trained_on``) gets a warning.

Ambiguities of the release and what this module does:
- keypoints of the test list: taken from the CSV (``keypoints="auto"``), which is the published
  list; ``keypoints="mat"`` re-reads them from the annotation files as HPF does.
- the training list repeats some rows (488 of 2940 have an identical twin); they are kept, so
  pair ids carry the row number: ``<row>-<source>-<target>[-flip]``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcorr.data.base import PairDataset, PairRecord
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError, ImageError

log = logging.getLogger(__name__)

#: The 20 PASCAL VOC classes in the standard order (CSV ``class`` k is ``CLASSES[k - 1]``).
CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

#: Folder of the official zip inside ``root``.
IMAGE_DIR = "PF-dataset-PASCAL"

_CSV_ALIASES = {"train": ("train", "trn"), "val": ("val",), "test": ("test",)}


def read_mat(path: Path, key: str) -> np.ndarray:
    """Read one variable of a MATLAB ``.mat`` file as a float64 array.

    Raises:
        DatasetNotFoundError: the file does not exist.
        AnnotationError: the file is unreadable or lacks ``key``.
    """
    import scipy.io

    if not path.is_file():
        raise DatasetNotFoundError(f"Annotation file not found: {path}. Re-download the dataset or fix dataset.root.")
    try:
        content = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... on broken files
        raise AnnotationError(f"Cannot read annotation file {path} ({exc.__class__.__name__}: {exc}). Replace the file.") from exc
    if key not in content:
        keys = sorted(k for k in content if not k.startswith("__"))
        raise AnnotationError(f"Annotation file {path} has no variable {key!r} (it has {keys}). Replace the file.")
    try:
        return np.asarray(content[key], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise AnnotationError(f"Variable {key!r} of {path} is not numeric. Replace the file.") from exc


def read_pair_list(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header fields and rows of a PF-PASCAL pair CSV, checked for its required columns."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        rows = list(reader)
    missing = {"source_image", "target_image", "class"} - set(fields)
    if missing:
        raise AnnotationError(
            f"{path}: missing column(s) {sorted(missing)}; expected a header "
            "source_image,target_image,class and XA,YA,XB,YB or flip."
        )
    return fields, rows


def parse_coords(text: str, where: str) -> np.ndarray:
    """Parse a ``;``-separated list of numbers, e.g. ``"253.6;234.3"`` -> (2,) float64."""
    try:
        return np.array([float(v) for v in text.strip().split(";") if v.strip()], dtype=np.float64)
    except ValueError as exc:
        raise AnnotationError(f"{where}: cannot parse keypoint list {text[:60]!r} ({exc}). Fix the CSV.") from exc


def image_width(path: Path) -> int:
    """Width in pixels of an image file (reads the header only)."""
    if not path.is_file():
        raise DatasetNotFoundError(
            f"Image file not found: {path}. Re-download the dataset with "
            "`python -m semcorr.data.download pfpascal` or fix dataset.root."
        )
    try:
        with Image.open(path) as img:
            return int(img.size[0])
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"Cannot read image {path} ({exc.__class__.__name__}: {exc}). Replace the file.") from exc


def mirror_points(kps: np.ndarray, width: float) -> np.ndarray:
    """Mirror (N, 2) keypoints left-right in an image of ``width`` pixels: x -> width - x."""
    out = np.array(kps, dtype=np.float64, copy=True)
    out[:, 0] = width - out[:, 0]
    return out


def mirror_box(box: np.ndarray, width: float) -> np.ndarray:
    """Mirror a (4,) box (x1, y1, x2, y2) left-right: (width - x2, y1, width - x1, y2)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return np.array([width - x2, y1, width - x1, y2], dtype=np.float64)


class PFPascalDataset(PairDataset):
    """PF-PASCAL pairs (see the module docstring for the layout and the rules).

    Args:
        root: folder holding ``PF-dataset-PASCAL/`` and the pair CSVs.
        split: ``"test"`` (299 pairs), ``"val"`` (308) or ``"train"`` (2940, half mirrored).
        pairs_csv: pair list to read instead of the one found under ``root``.
        keypoints: ``"auto"`` (CSV keypoints when the CSV has them, else the ``.mat`` files),
            ``"csv"`` or ``"mat"``.
        **kwargs: the :class:`~semcorr.data.base.PairDataset` arguments (name, max_side, size,
            upscale, convert_images, threshold (``"img"`` or ``"bbox"``), categories, subsets).
    """

    download_name = "pfpascal"
    thresholds = ("img", "bbox")
    box_source = "the bbox of the target's annotation .mat"
    requires_keypoints = True
    splits = ("test", "val", "train")

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        pairs_csv: str | Path | None = None,
        keypoints: str = "auto",
        **kwargs: Any,
    ) -> None:
        if keypoints not in ("auto", "csv", "mat"):
            raise ConfigError(f"PFPascalDataset: keypoints must be 'auto', 'csv' or 'mat', got {keypoints!r}")
        self.train_images: set[str] = set()
        self.train_pairs: set[tuple[str, str]] = set()
        self.train_list: Path | None = None
        self.pairs_csv = Path(pairs_csv).expanduser() if pairs_csv else None
        self.keypoints_from = keypoints
        self._mat_cache: dict[tuple[Path, str], np.ndarray] = {}
        kwargs.setdefault("name", "pfpascal")
        super().__init__(root, split=split, **kwargs)

    # -- layout ---------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """Folder holding ``JPEGImages`` and ``Annotations`` (``root/PF-dataset-PASCAL``;
        ``root`` itself when it is that folder)."""
        inner = self.root / IMAGE_DIR
        if not inner.is_dir() and (self.root / "JPEGImages").is_dir():
            return self.root
        return inner

    def standard_csv(self, split: str) -> tuple[Path | None, list[Path]]:
        """The standard pair list of ``split`` found under ``root`` (None if none) and the
        paths tried (see the module docstring for the search order)."""
        tried = []
        for folder in (self.root, self.root / IMAGE_DIR):
            for alias in _CSV_ALIASES[split]:
                for name in (f"{alias}_pairs.csv", f"{alias}_pairs_pf_pascal.csv"):
                    tried.append(folder / name)
                    if tried[-1].is_file():
                        return tried[-1], tried
        return None, tried

    def find_csv(self) -> Path:
        """The pair list of this split (``pairs_csv``, or the standard one under ``root``)."""
        if self.pairs_csv is not None:
            return self.require(self.pairs_csv)
        found, tried = self.standard_csv(self.split)
        if found is not None:
            return found
        raise DatasetNotFoundError(
            self.missing_message(self.root / f"{self.split}_pairs.csv")
            + f" (also looked for: {', '.join(str(p.relative_to(self.root)) for p in tried[1:])};"
            " or pass dataset.pairs_csv=FILE)"
        )

    def annotation_path(self, category: str, image: Path) -> Path:
        """The annotation file of an image: ``Annotations/<category>/<stem>.mat``."""
        return self.data_dir / "Annotations" / category / (image.stem + ".mat")

    def annotation(self, category: str, image: Path, key: str) -> np.ndarray:
        """``key`` of the annotation of ``image`` (``Annotations/<category>/<stem>.mat``), cached."""
        path = self.annotation_path(category, image)
        if (path, key) not in self._mat_cache:
            self._mat_cache[(path, key)] = read_mat(path, key)
        return self._mat_cache[(path, key)]

    # -- records --------------------------------------------------------------------------
    def load_records(self) -> list[PairRecord]:
        data_dir = self.data_dir
        if not (data_dir / "JPEGImages").is_dir():
            raise DatasetNotFoundError(self.missing_message(self.root / IMAGE_DIR / "JPEGImages"))
        csv_path = self.find_csv()
        self.pair_source = csv_path.name
        fields, rows = read_pair_list(csv_path)
        if self.split != "train":
            self.read_training_list()
        has_kps = {"XA", "YA", "XB", "YB"} <= set(fields)
        if self.keypoints_from == "csv" and not has_kps:
            raise ConfigError(f"{csv_path} has no XA,YA,XB,YB columns; use dataset.keypoints=mat or auto.")
        use_csv_kps = has_kps and self.keypoints_from != "mat"
        need_mat = not use_csv_kps or self.threshold == "bbox"
        records = []
        widths: dict[Path, int] = {}
        for i, row in enumerate(rows):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            line = i + 2  # 1-based, after the header
            where = f"{csv_path.name} line {line}"
            try:
                cls = int(float(row["class"]))
            except ValueError as exc:
                raise AnnotationError(f"{where}: class {row['class']!r} is not an integer 1..20.") from exc
            if not 1 <= cls <= len(CLASSES):
                raise AnnotationError(f"{where}: class {cls} is outside 1..{len(CLASSES)} (PASCAL VOC classes).")
            category = CLASSES[cls - 1]
            src_path = data_dir / "JPEGImages" / Path(row["source_image"]).name
            trg_path = data_dir / "JPEGImages" / Path(row["target_image"]).name
            try:
                flip = int(float(row.get("flip") or 0))
            except ValueError as exc:
                raise AnnotationError(f"{where}: flip {row['flip']!r} is not 0 or 1.") from exc
            pair_id = f"{i + 1:04d}-{src_path.stem}-{trg_path.stem}" + ("-flip" if flip else "")
            src_kps = trg_kps = trg_bbox = None
            annotations = (f"{csv_path} line {line}",) * 2
            if use_csv_kps:
                xa, ya = parse_coords(row["XA"], where), parse_coords(row["YA"], where)
                xb, yb = parse_coords(row["XB"], where), parse_coords(row["YB"], where)
                if not (len(xa) == len(ya) and len(xb) == len(yb)):
                    raise AnnotationError(f"{where}: XA/YA or XB/YB have different lengths. Fix the CSV.")
                src_kps, trg_kps = np.stack([xa, ya], 1), np.stack([xb, yb], 1)
            if need_mat:
                trg_bbox = self.annotation(category, trg_path, "bbox").reshape(-1)[:4]
                if not use_csv_kps:
                    src_kps, trg_kps = self.mat_keypoints(category, src_path, trg_path, where)
                    annotations = (str(self.annotation_path(category, src_path)), str(self.annotation_path(category, trg_path)))
            if flip:
                for path in (src_path, trg_path):
                    if path not in widths:
                        widths[path] = image_width(path)
                src_w, trg_w = widths[src_path], widths[trg_path]
                src_kps, trg_kps = mirror_points(src_kps, src_w), mirror_points(trg_kps, trg_w)
                if trg_bbox is not None:
                    trg_bbox = mirror_box(trg_bbox, trg_w)
            records.append(
                PairRecord(
                    pair_id=pair_id,
                    src_path=src_path,
                    trg_path=trg_path,
                    category=category,
                    src_kps=src_kps,
                    trg_kps=trg_kps,
                    trg_bbox=trg_bbox,
                    extra={"flip": flip, "csv_line": line, **self.leakage_flags(src_path.name, trg_path.name)},
                    annotations=annotations,
                )
            )
        self._mat_cache.clear()
        return records

    # -- train/test leakage ---------------------------------------------------------------
    def read_training_list(self) -> None:
        """Read the standard training list under ``root`` (if there is one) into
        :attr:`train_images` / :attr:`train_pairs` and flag the pairs ``clean``."""
        found, _ = self.standard_csv("train")
        if found is None:
            return
        _, rows = read_pair_list(found)
        pairs = [(Path(r["source_image"].strip()).name, Path(r["target_image"].strip()).name) for r in rows]
        self.train_list = found
        self.train_pairs = set(pairs)
        self.train_images = {name for pair in pairs for name in pair}
        self.subset_flags = ("clean",)

    def leakage_flags(self, src_name: str, trg_name: str) -> dict[str, bool]:
        """``{"clean": ...}`` for a pair when the training list was read, else ``{}``."""
        if self.train_list is None:
            return {}
        return {"clean": src_name not in self.train_images and trg_name not in self.train_images}

    def leakage_counts(self) -> dict[str, Any] | None:
        """Overlap of these pairs with the training list (None when it was not read): pairs that
        are training rows (same ordered pair), images that occur in training pairs, clean pairs."""
        if self.train_list is None:
            return None
        names = [(r.src_path.name, r.trg_path.name) for r in self.records]
        images = {n for pair in names for n in pair}
        return {
            "train_list": self.train_list.name,
            "pairs_in_train": sum(pair in self.train_pairs for pair in names),
            "images_in_train": len(images & self.train_images),
            "images": len(images),
            "clean_pairs": sum(bool(r.extra["clean"]) for r in self.records),
        }

    def leakage(self, trained_on: list[str]) -> str | None:
        """A warning when the method was trained on PF-PASCAL ``train`` and these are its test or
        validation pairs."""
        counts = self.leakage_counts()
        if counts is None or not any(t.split("/")[0] == "pfpascal" and t.endswith("/train") for t in trained_on):
            return None
        return (
            f"the method was trained on PF-PASCAL train, and {counts['pairs_in_train']} of these {len(self.records)} "
            f"{self.split} pairs are training pairs and {counts['images_in_train']} of their {counts['images']} images "
            f"occur in training pairs: compare pck@A/clean ({counts['clean_pairs']} pairs whose images never occur "
            "in training), not pck@A alone."
        )

    # -- the protocol -----------------------------------------------------------------------
    def pair_key(self, record: PairRecord) -> str:
        """:meth:`PairDataset.pair_key` plus `` flip`` for mirrored pairs."""
        return super().pair_key(record) + (" flip" if record.extra.get("flip") else "")

    def flips(self) -> str:
        mirrored = sum(bool(r.extra.get("flip")) for r in self.records)
        return f"{mirrored} of {len(self.records)} pairs mirrored (flip column)" if mirrored else "none"

    def protocol_options(self) -> dict[str, Any]:
        return {"keypoints": self.keypoints_from, "leakage": self.leakage_counts()}

    def mat_keypoints(self, category: str, src: Path, trg: Path, where: str) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints of a pair from its two ``.mat`` files, keeping rows visible in both."""
        a = self.annotation(category, src, "kps")
        b = self.annotation(category, trg, "kps")
        if a.size == 0 or b.size == 0:
            return np.zeros((0, 2)), np.zeros((0, 2))
        if a.ndim != 2 or a.shape[1] != 2 or a.shape != b.shape:
            raise AnnotationError(
                f"{where}: keypoint arrays {a.shape} ({src.stem}.mat) and {b.shape} ({trg.stem}.mat) "
                f"in Annotations/{category} must both be (N, 2) with the same N. Fix the annotation."
            )
        keep = np.isfinite(a).all(1) & np.isfinite(b).all(1)
        return a[keep], b[keep]

    # -- loading --------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = super().__getitem__(index)
        flip = int(self.records[index].extra.get("flip", 0))
        if flip:
            sample["src_img"] = sample["src_img"].flip(-1)
            sample["trg_img"] = sample["trg_img"].flip(-1)
        sample["flip"] = flip
        return sample
