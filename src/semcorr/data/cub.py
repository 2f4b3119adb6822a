"""CUB-200-2011 (Wah et al., Caltech-UCSD Birds-200-2011, 2011): same-species image pairs with
keypoint (part) transfer and foreground-mask transfer, as SAM-Net evaluates mask transfer on it.

Layout read (``root`` = the ``CUB_200_2011/`` folder of the official ``CUB_200_2011.tgz``, or its
parent; ``python -m semcorr.data.download cub --root ROOT`` fills it)::

    CUB_200_2011/
      images.txt                  <image_id> <class_folder>/<file>.jpg
      image_class_labels.txt      <image_id> <class_id>
      classes.txt                 <class_id> <class_name>      e.g. 1 001.Black_footed_Albatross
      train_test_split.txt        <image_id> <is_training_image>   (1 train, 0 test)
      bounding_boxes.txt          <image_id> <x> <y> <width> <height>   (pixels)
      parts/part_locs.txt         <image_id> <part_id> <x> <y> <visible>   (15 parts per image)
      images/<class_folder>/<file>.jpg
    segmentations/<class_folder>/<file>.png     the separate segmentation release
                                                (``segmentations.tgz``; looked up next to
                                                ``CUB_200_2011/`` -- where it unpacks -- or inside it)

There is no official pair list; pairs are built deterministically:

* split ``"test"`` / ``"train"``: the images with ``is_training_image`` 0 / 1;
* for every class (in class-id order) the candidate pairs are the ORDERED pairs (a, b), a != b, of
  its split images (image-id order) that share at least one part visible in both images. Pairs
  without a commonly visible part are never drawn (documented choice, so ``requires_keypoints``
  holds); of them, the ``min(pairs_per_class, #candidates)`` with the smallest key
  ``sha256(f"{seed}:{src_id}:{trg_id}")`` are drawn and kept in candidate order. A hash rather than
  a random generator: the draw is the same on every platform and library version, each pair's
  fate depends only on the seed and its two images (selecting categories does not change the
  pairs of the others), and no global seed is involved.
* keypoints: the parts visible in BOTH images, in part-id order, coordinates as stored (pixels;
  whether 0- or 1-based is not documented by the release; invisible parts are stored as 0, 0).
* category: the class folder name (``001.Black_footed_Albatross``).

PCK threshold (``threshold``): ``"bbox"`` (default), max(w, h) of the TARGET's box from
``bounding_boxes.txt``, scaled by the target's resize factors (as SPair-71k; choice: CUB has no
established PCK protocol for pairs); ``"img"``, max(H, W) of the target image.

Masks (extras ``src_mask`` (Hs, Ws) bool and ``trg_mask`` (Ht, Wt) bool, when masks are on: ``masks``
``True``, or ``"auto"`` (default) and the ``segmentations/`` folder exists): the
segmentation PNGs are soft (grey levels = fraction of annotators marking the pixel); they are read
as values / 255, resized bilinearly (align_corners=False, like the images) to the resized image
size and thresholded: foreground where the value is > ``mask_threshold`` (0.5: a majority of
annotators). Mask transfer is scored as Caltech-101's flow-warp protocol (``mask_transfer =
"flow"``, :mod:`semcorr.metrics.masks`): the segmentations are no polygons to transfer.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from semcorr.data.base import PairDataset, PairRecord
from semcorr.data.transforms import resize_image
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError

log = logging.getLogger(__name__)

ARCHIVE_DIR = "CUB_200_2011"
SEGMENTATIONS_DIR = "segmentations"
TEXT_FILES = ("images.txt", "image_class_labels.txt", "classes.txt", "train_test_split.txt", "bounding_boxes.txt")


def pair_key(seed: int, src_id: int, trg_id: int) -> str:
    """Sort key of a candidate pair in the seeded draw (see the module docstring)."""
    return hashlib.sha256(f"{seed}:{src_id}:{trg_id}".encode()).hexdigest()


def read_table(path: Path, columns: int, kinds: str) -> list[tuple]:
    """Read a whitespace-separated CUB text file: one row per line, ``columns`` fields.

    ``kinds`` gives each column's type: ``i`` int, ``f`` float, ``s`` the rest of the line.
    """
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=columns - 1)
            if len(parts) != columns:
                raise AnnotationError(f"{path} line {n}: expected {columns} fields, got {line[:80]!r}. Fix the file.")
            try:
                rows.append(tuple(int(p) if k == "i" else float(p) if k == "f" else p for p, k in zip(parts, kinds)))
            except ValueError as exc:
                raise AnnotationError(f"{path} line {n}: {exc}. Fix the file.") from exc
    return rows


def read_part_locs(path: Path, image_ids: list[int]) -> dict[int, np.ndarray]:
    """``parts/part_locs.txt`` -> {image_id: (P, 3) float array of (x, y, visible)}."""
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except ValueError as exc:
        raise AnnotationError(f"{path}: non-numeric value ({exc}). Fix the file.") from exc
    if values.size % 5:
        raise AnnotationError(f"{path}: expected 5 fields per line (image, part, x, y, visible). Fix the file.")
    table = values.reshape(-1, 5)
    n_parts = int(table[:, 1].max()) if len(table) else 0
    parts = {i: np.zeros((n_parts, 3)) for i in image_ids}
    for image_id, part_id, x, y, visible in table:
        entry = parts.get(int(image_id))
        if entry is not None:
            entry[int(part_id) - 1] = (x, y, visible)
    return parts


def read_segmentation(path: Path) -> np.ndarray:
    """A CUB segmentation PNG -> (H, W) float32 in [0, 1] (grey value / 255)."""
    if not path.is_file():
        raise DatasetNotFoundError(
            f"CUB segmentation not found: {path}. Download the separate segmentation release "
            "(segmentations.tgz) next to CUB_200_2011/, or set dataset.masks=false."
        )
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L") if img.mode not in ("L", "I;16", "I", "F") else img, dtype=np.float32)
            top = 65535.0 if img.mode.startswith("I") else 255.0
    except OSError as exc:
        raise AnnotationError(f"Cannot read segmentation {path} ({exc}). Replace the file.") from exc
    return arr / top


class CUBDataset(PairDataset):
    """CUB-200-2011 same-class pairs with parts and masks (see the module docstring).

    Args:
        root: ``CUB_200_2011/`` or its parent.
        split: ``"test"`` or ``"train"``.
        pairs_per_class: pairs drawn per class (fewer when a class has fewer candidates).
        seed: seed of the pair draw (see the module docstring).
        masks: load the segmentation masks (``src_mask`` / ``trg_mask``): ``True`` (error when the
            ``segmentations/`` folder is missing), ``False``, or ``"auto"`` (when present; a warning
            otherwise -- the download script fetches only ``CUB_200_2011.tgz``).
        mask_threshold: foreground where the soft segmentation is > this.
        **kwargs: the :class:`~semcorr.data.base.PairDataset` arguments.
    """

    download_name = "cub"
    thresholds = ("bbox", "img")
    box_source = "the target's box of bounding_boxes.txt"
    requires_keypoints = True
    splits = ("test", "train")
    #: how masks are transferred (:class:`semcorr.metrics.masks.MaskEvaluator`)
    mask_transfer = "flow"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        pairs_per_class: int = 10,
        seed: int = 0,
        masks: bool | str = "auto",
        mask_threshold: float = 0.5,
        **kwargs: Any,
    ) -> None:
        if int(pairs_per_class) < 1:
            raise ConfigError(f"CUBDataset: pairs_per_class must be >= 1, got {pairs_per_class}")
        if not 0.0 <= float(mask_threshold) < 1.0:
            raise ConfigError(f"CUBDataset: mask_threshold must be in [0, 1), got {mask_threshold}")
        self.pairs_per_class = int(pairs_per_class)
        self.seed = int(seed)
        if masks not in (True, False, "auto"):
            raise ConfigError(f"CUBDataset: masks must be true, false or 'auto', got {masks!r}")
        self.masks_option = masks
        self.masks = bool(masks)
        self.mask_threshold = float(mask_threshold)
        kwargs.setdefault("name", "cub")
        super().__init__(root, split=split, **kwargs)

    @property
    def data_dir(self) -> Path:
        """The ``CUB_200_2011`` folder (``root`` or ``root/CUB_200_2011``)."""
        inner = self.root / ARCHIVE_DIR
        if not (self.root / "images.txt").is_file() and inner.is_dir():
            return inner
        return self.root

    @property
    def segmentation_dir(self) -> Path:
        """``segmentations/`` next to the data folder (where the archive unpacks) or inside it."""
        for folder in (self.data_dir.parent / SEGMENTATIONS_DIR, self.data_dir / SEGMENTATIONS_DIR):
            if folder.is_dir():
                return folder
        return self.data_dir.parent / SEGMENTATIONS_DIR

    @property
    def evaluators(self) -> tuple[str, ...]:
        """PCK, and mask transfer when the masks are loaded."""
        return ("pck", "masks") if self.masks else ("pck",)

    def protocol_options(self) -> dict[str, Any]:
        return {"masks": self.masks, "mask_threshold": self.mask_threshold, "mask_transfer": self.mask_transfer}

    def load_records(self) -> list[PairRecord]:
        base = self.data_dir
        self.pair_source = f"drawn: {self.pairs_per_class} ordered pairs per class, seed {self.seed}"
        for name in TEXT_FILES:
            self.require(base / name)
        self.require(base / "parts" / "part_locs.txt")
        if self.masks_option == "auto":
            self.masks = self.segmentation_dir.is_dir()
            if not self.masks:
                log.warning("%s: no %s folder: pairs come without masks (no mask transfer).", self.name, self.segmentation_dir)
        if self.masks and not self.segmentation_dir.is_dir():
            raise DatasetNotFoundError(
                self.missing_message(self.segmentation_dir)
                + " The masks are the separate segmentations.tgz release; set dataset.masks=false to go without."
            )
        images = dict(read_table(base / "images.txt", 2, "is"))
        labels = dict(read_table(base / "image_class_labels.txt", 2, "ii"))
        classes = dict(read_table(base / "classes.txt", 2, "is"))
        is_train = dict(read_table(base / "train_test_split.txt", 2, "ii"))
        boxes = {r[0]: r[1:] for r in read_table(base / "bounding_boxes.txt", 5, "iffff")}
        wanted = 1 if self.split == "train" else 0
        split_ids = sorted(i for i in images if is_train.get(i) == wanted)
        parts_file = base / "parts" / "part_locs.txt"
        parts = read_part_locs(parts_file, split_ids)
        by_class: dict[int, list[int]] = {}
        for image_id in split_ids:
            if image_id not in labels:
                raise AnnotationError(f"{base / 'image_class_labels.txt'} has no class for image {image_id}. Fix the file.")
            by_class.setdefault(labels[image_id], []).append(image_id)
        records = []
        for class_id in sorted(by_class):
            ids = by_class[class_id]
            if class_id not in classes:
                raise AnnotationError(f"{base / 'classes.txt'} has no class {class_id}. Fix the file.")
            visible = np.stack([parts[i][:, 2] > 0 for i in ids]) if ids else np.zeros((0, 0), bool)
            common = visible.astype(np.int64) @ visible.T.astype(np.int64)  # (n, n) shared visible parts
            np.fill_diagonal(common, 0)
            candidates = np.argwhere(common > 0)  # ordered (a, b) in row-major = image-id order
            if len(candidates) == 0:
                continue
            keys = [pair_key(self.seed, ids[a], ids[b]) for a, b in candidates]
            k = min(self.pairs_per_class, len(candidates))
            chosen = np.sort(np.argsort(keys, kind="stable")[:k])
            for a, b in candidates[chosen]:
                src_id, trg_id = ids[a], ids[b]
                both = visible[a] & visible[b]
                x, y, w, h = boxes[trg_id]
                src_rel, trg_rel = images[src_id], images[trg_id]
                records.append(
                    PairRecord(
                        pair_id=f"{classes[class_id]}/{src_id}-{trg_id}",
                        src_path=base / "images" / src_rel,
                        trg_path=base / "images" / trg_rel,
                        category=classes[class_id],
                        src_kps=np.ascontiguousarray(parts[src_id][both, :2]),
                        trg_kps=np.ascontiguousarray(parts[trg_id][both, :2]),
                        trg_bbox=np.array([x, y, x + w, y + h], dtype=np.float64),
                        annotations=(f"{parts_file} (image {src_id})", f"{parts_file} (image {trg_id})"),
                        extra={
                            "src_seg": self.segmentation_dir / Path(src_rel).with_suffix(".png"),
                            "trg_seg": self.segmentation_dir / Path(trg_rel).with_suffix(".png"),
                        },
                    )
                )
        return records

    def load_extras(self, record: PairRecord, src_size: tuple[int, int], trg_size: tuple[int, int]) -> dict:
        if not self.masks:
            return {}
        out = {}
        for which, size, image in (("src", src_size, record.src_path), ("trg", trg_size, record.trg_path)):
            seg = read_segmentation(record.extra[f"{which}_seg"])
            if self.resize.target_size(*seg.shape) != tuple(size):
                raise AnnotationError(
                    f"{self.name} pair {record.pair_id}: segmentation {record.extra[f'{which}_seg']} is "
                    f"{seg.shape[1]}x{seg.shape[0]}, not the size of image {image}. Replace the file."
                )
            soft = resize_image(torch.from_numpy(seg)[None], size)[0]
            out[f"{which}_mask"] = soft > self.mask_threshold
        return out
