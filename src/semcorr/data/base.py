"""The pair dataset every benchmark derives from, and the sample (batch element) it returns.

A sample is a dict with fixed keys; a batch is the same dict with a leading batch dimension
(see :func:`semcorr.data.collate.collate_pairs`). Keys:

============== ================= =============================================================
key            shape / type      meaning
============== ================= =============================================================
src_img        (3, Hs, Ws) f32   source image, RGB in [0, 1], after the dataset's resize
trg_img        (3, Ht, Wt) f32   target image, likewise
src_kps        (N, 2) f32        source keypoints (x, y) in resized source pixels
trg_kps        (N, 2) f32        target keypoints (x, y) in resized target pixels
n_kps          int               number of valid keypoints N (batches pad with NaN)
pck_threshold  float             T of the PCK rule ``||pred - gt|| <= alpha * T`` (resized px)
pck_threshold_original float     the same T in ORIGINAL target pixels (``metrics.resolution``)
category       str               object category
category_id    int               index of ``category`` in ``dataset.categories``
pair_id        str               unique name of the pair
index          int               position of the pair in the dataset
src_scale      (2,) f32          (sx, sy): resized / original source coordinates
trg_scale      (2,) f32          likewise for the target
src_path       str               source image file
trg_path       str               target image file
============== ================= =============================================================

Datasets add keys of their own (documented in their modules): dense ground truth such as
``flow`` (2, Hs, Ws), masks, per-pair grouping fields listed in ``group_fields`` (e.g. SPair-71k
difficulty levels) as ints, and per-pair subset flags listed in ``subset_flags`` (e.g. PF-PASCAL's
``clean``) as bools.

What a dataset is evaluated with is declared by the dataset: :attr:`PairDataset.evaluators` names
the metric families (``pck``, ``flow``, ``masks``, see :mod:`semcorr.metrics.evaluator`), and
:meth:`PairDataset.protocol` describes how its numbers are measured (written into every
``metrics.json``, see :mod:`semcorr.protocol`).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from semcorr.data.images import load_image
from semcorr.data.subsets import stratified_subset
from semcorr.data.thresholds import KINDS, pck_threshold, scale_box
from semcorr.data.transforms import Resize, resize_image, scale_points
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError, ImageError

log = logging.getLogger(__name__)

#: Tolerance (original pixels) for keypoints just outside the image (1-based annotations).
KP_MARGIN = 2.0
#: A resize "changes the aspect ratio" when its x and y factors differ by more than this fraction.
ASPECT_TOLERANCE = 0.01


@dataclass
class PairRecord:
    """One annotated pair, in original image coordinates.

    Attributes:
        pair_id: unique name of the pair.
        src_path / trg_path: image files.
        category: object category.
        src_kps / trg_kps: (N, 2) float arrays of (x, y) keypoints, or None without keypoints.
        trg_bbox: (4,) target box (x1, y1, x2, y2), for bbox-based PCK thresholds.
        groups: per-pair grouping fields (name -> int), e.g. SPair-71k difficulty.
        extra: dataset-specific values its ``load_extras`` uses (files of masks, flows...).
        annotations: where the (source, target) keypoints were read from (a file, and its row
            when it lists many pairs), named by the errors about them; None: the image files.
    """

    pair_id: str
    src_path: Path
    trg_path: Path
    category: str
    src_kps: np.ndarray | None = None
    trg_kps: np.ndarray | None = None
    trg_bbox: np.ndarray | None = None
    groups: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    annotations: tuple[str, str] | None = None

    def source_of(self, side: str) -> str:
        """Where the ``"src"`` or ``"trg"`` keypoints come from (for error messages)."""
        if self.annotations is not None:
            return self.annotations[0 if side == "src" else 1]
        return str(self.src_path if side == "src" else self.trg_path)


def degenerate_keypoints(kps: np.ndarray) -> str | None:
    """What is wrong with a keypoint set that has the right shape but cannot be a real annotation,
    or None when nothing is.

    Args:
        kps: (N, 2) keypoints (x, y), N >= 1, finite.

    Returns:
        ``"all 10 keypoints are at (0, 0), ..."``, ``"all 10 keypoints are at (x, y): their box has
        zero extent"`` or ``"keypoints 2 and 7 are both at (x, y)"``.
    """
    n = len(kps)
    if not np.any(kps):
        return f"all {n} keypoint{'s are' if n > 1 else ' is'} at (0, 0), which an unannotated or zeroed file gives"
    if n > 1 and not np.any(np.ptp(kps, axis=0)):
        return f"all {n} keypoints are at ({kps[0, 0]:g}, {kps[0, 1]:g}): their box has zero extent"
    _, first, counts = np.unique(kps, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        i = int(first[np.argmax(counts > 1)])
        j = next(k for k in range(n) if k != i and np.array_equal(kps[k], kps[i]))
        return f"keypoints {i} and {j} are both at ({kps[i, 0]:g}, {kps[i, 1]:g})"
    return None


class PairDataset(Dataset):
    """Base class of every benchmark: reads records, loads and resizes pairs consistently.

    Subclasses set the class attributes and implement :meth:`load_records` (and optionally
    :meth:`load_extras` for dense ground truth); :meth:`load_records` also sets
    :attr:`pair_source`, where the pairs came from (recorded in the protocol).

    Class attributes:
        download_name: name for ``python -m semcorr.data.download NAME`` (None: not downloadable).
        thresholds: the PCK threshold kinds the dataset offers (:mod:`semcorr.data.thresholds`),
            the first one the default: ``("img", "bbox")`` for PF-PASCAL, ``("bbox", "img")`` for
            PF-WILLOW / SPair-71k / CUB, ``("img",)`` for the synthetic ones, ``("none",)`` without
            keypoints.
        requires_keypoints: every pair must have >= 1 keypoint.
        group_fields: names of the per-pair grouping fields reported separately by the metrics.
        subset_flags: names of per-pair bool fields whose True pairs are reported as a subset
            (``pck@A/<flag>``).
        splits: valid values of ``split``.

    Args:
        root: dataset folder (official layout).
        split: which pairs (one of ``splits``).
        name: the dataset's name in configs and result tables.
        max_side / size / upscale: resizing, see :class:`semcorr.data.transforms.Resize`.
        convert_images: convert grayscale / RGBA / 16-bit images instead of raising.
        threshold: PCK threshold kind (one of ``thresholds``; None: the dataset's default).
        categories: keep only these categories, None for all.
        pairs_per_category / max_pairs / subset_seed: a stratified, seeded subset of the pairs
            (:func:`semcorr.data.subsets.stratified_subset`); None / None: the full set.
    """

    download_name: ClassVar[str | None] = None
    thresholds: ClassVar[tuple[str, ...]] = ("img",)
    requires_keypoints: ClassVar[bool] = True
    group_fields: ClassVar[tuple[str, ...]] = ()
    subset_flags: tuple[str, ...] = ()
    #: what the target's box of the ``bbox`` threshold is (the protocol record)
    box_source: ClassVar[str] = "the annotated object box"
    splits: ClassVar[tuple[str, ...]] = ("test",)
    #: where the pairs came from (set by :meth:`load_records`; recorded in the protocol)
    pair_source: str = ""

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        name: str | None = None,
        max_side: int | None = 300,
        size: tuple[int, int] | None = None,
        upscale: bool = False,
        convert_images: bool = True,
        threshold: str | None = None,
        categories: list[str] | None = None,
        pairs_per_category: int | None = None,
        max_pairs: int | None = None,
        subset_seed: int = 0,
    ) -> None:
        self.root = Path(root).expanduser()
        self.name = name or type(self).__name__
        if split not in self.splits:
            raise ConfigError(
                f"{type(self).__name__}: unknown split {split!r}; valid: {', '.join(self.splits)}"
            )
        if threshold is not None and threshold not in self.thresholds:
            raise ConfigError(
                f"dataset.threshold={threshold!r} is not offered by {self.name}; valid: {', '.join(self.thresholds)}"
            )
        self.split = split
        self.threshold = threshold or self.thresholds[0]
        self.resize = Resize(max_side=max_side, size=tuple(size) if size else None, upscale=upscale)
        self.convert_images = convert_images
        self.check_root()
        records = self.load_records()
        self.split_pairs = len(records)
        if categories:
            unknown = set(categories) - {r.category for r in records}
            if unknown:
                valid = sorted({r.category for r in records})
                raise ConfigError(f"{self.name}: unknown categories {sorted(unknown)}; valid: {valid}")
            records = [r for r in records if r.category in set(categories)]
        keep = stratified_subset([r.category for r in records], pairs_per_category, max_pairs, subset_seed)
        records = [records[i] for i in keep]
        self.subset = (
            {
                "of": self.split_pairs,
                "categories": sorted(categories) if categories else None,
                "pairs_per_category": None if pairs_per_category is None else int(pairs_per_category),
                "max_pairs": None if max_pairs is None else int(max_pairs),
                "seed": int(subset_seed),
            }
            if categories or pairs_per_category is not None or max_pairs is not None
            else None
        )
        if not records:
            raise DatasetNotFoundError(f"{self.name}: no pairs found under {self.root} for split {split!r}.")
        for record in records:
            self.check_keypoints(record)
        self.records = records
        self.categories = sorted({r.category for r in records})
        self._aspect_changed: int | None = None

    @property
    def evaluators(self) -> tuple[str, ...]:
        """The metric families this dataset is evaluated with (:mod:`semcorr.metrics.evaluator`):
        ``("pck",)`` for keypoint datasets, none without keypoints; datasets with dense ground
        truth override it."""
        return ("pck",) if self.threshold != "none" else ()

    # -- subclass hooks -------------------------------------------------------------------
    def load_records(self) -> list[PairRecord]:
        """Read the official annotation files into records (original coordinates)."""
        raise NotImplementedError

    def load_extras(self, record: PairRecord, src_size: tuple[int, int], trg_size: tuple[int, int]) -> dict:
        """Dense ground truth of a pair, resized to ``src_size`` / ``trg_size`` ((H, W) each)."""
        return {}

    # -- checks ---------------------------------------------------------------------------
    @property
    def download_command(self) -> str | None:
        """The command that downloads this dataset into its root (None: not downloadable)."""
        return f"python -m semcorr.data.download {self.download_name} --root {self.root}" if self.download_name else None

    def missing_message(self, what: Path) -> str:
        """Error text for a missing folder or file, with the command that fixes it."""
        fix = f"Download it with `{self.download_command}`" if self.download_command else "Point dataset.root at the folder"
        return f"{self.name}: {what} not found. {fix}, or set dataset.root=PATH to where it lives."

    def check_root(self) -> None:
        """Raise :class:`DatasetNotFoundError` if the dataset folder does not exist or is a file."""
        if self.root.is_file():
            raise ConfigError(
                f"{self.name}: dataset.root={self.root} is a file; it must be the dataset's folder "
                f"({type(self).__name__}'s docstring shows the layout). Set dataset.root=FOLDER."
            )
        if not self.root.is_dir():
            raise DatasetNotFoundError(self.missing_message(self.root))

    def require(self, path: Path) -> Path:
        """Return ``path`` if it exists, else raise the missing-file error."""
        if not path.exists():
            raise DatasetNotFoundError(self.missing_message(path))
        return path

    def check_keypoints(self, record: PairRecord) -> None:
        """Reject pairs with zero, NaN, mismatched or degenerate keypoints (:func:`degenerate_keypoints`:
        all at the origin, all at one point, duplicated) and, under the ``bbox`` threshold, a target
        box of zero extent (a lone keypoint where the box is the keypoints', as on PF-WILLOW); the
        error names the annotation file."""
        if not self.requires_keypoints:
            return
        where = f"{self.name} pair {record.pair_id} ({record.src_path.name} -> {record.trg_path.name})"
        src, trg = record.src_kps, record.trg_kps
        if src is None or trg is None or len(src) == 0:
            raise AnnotationError(f"{where} has no keypoints. Remove the pair from the pair list or fix its annotation.")
        if src.shape != trg.shape or src.ndim != 2 or src.shape[1] != 2:
            raise AnnotationError(
                f"{where}: source keypoints {src.shape} and target keypoints {trg.shape} do not match; "
                "both must be (N, 2). Fix the annotation."
            )
        if not (np.isfinite(src).all() and np.isfinite(trg).all()):
            raise AnnotationError(f"{where} has NaN or infinite keypoints. Fix or drop them in the annotation.")
        fix = "Fix or replace the annotation, or leave the pair out (dataset.categories / the pair list)."
        for side, kps in (("src", src), ("trg", trg)):
            problem = degenerate_keypoints(kps)
            if problem is not None:
                which = "source" if side == "src" else "target"
                raise AnnotationError(f"{self.name}: {record.source_of(side)}: {problem} ({which} keypoints of pair "
                                      f"{record.pair_id}). {fix}")
        box = self.target_box(record) if self.threshold == "bbox" else None
        if box is not None and not max(float(box[2]) - float(box[0]), float(box[3]) - float(box[1])) > 0:
            raise AnnotationError(
                f"{self.name}: {record.source_of('trg')}: the box of the PCK threshold, {self.box_source}, is "
                f"({', '.join(f'{float(v):g}' for v in box)}): zero extent, so T would be 0 (pair {record.pair_id}). {fix}"
            )

    def check_inside(self, kps: np.ndarray, hw: tuple[int, int], record: PairRecord, which: str) -> None:
        """Reject keypoints more than ``KP_MARGIN`` pixels outside an (H, W) image."""
        h, w = hw
        bad = (kps[:, 0] < -KP_MARGIN) | (kps[:, 1] < -KP_MARGIN) | (kps[:, 0] > w + KP_MARGIN) | (kps[:, 1] > h + KP_MARGIN)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise AnnotationError(
                f"{self.name} pair {record.pair_id}: {which} keypoint {i} at ({kps[i, 0]:.1f}, {kps[i, 1]:.1f}) "
                f"lies outside the {w}x{h} image {getattr(record, which + '_path')}. Fix the annotation."
            )

    # -- loading --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def target_box(self, record: PairRecord) -> np.ndarray | None:
        """(4,) box ``(x1, y1, x2, y2)`` of the target in ORIGINAL pixels for the ``bbox`` threshold:
        the annotated box (PF-WILLOW overrides it with the keypoint box)."""
        return record.trg_bbox

    def pck_thresholds(
        self, record: PairRecord, trg_hw: tuple[int, int], trg_size: tuple[int, int], trg_scale: tuple[float, float]
    ) -> tuple[float, float]:
        """T of a pair (:attr:`threshold`) in resized and in original target pixels.

        Args:
            record: the pair.
            trg_hw / trg_size: (H, W) of the original and of the resized target image.
            trg_scale: (sx, sy) resized / original target coordinates.

        Returns:
            ``(T resized, T original)``.
        """
        box = self.target_box(record) if self.threshold == "bbox" else None
        resized_box = scale_box(box, *trg_scale) if box is not None else None
        return pck_threshold(self.threshold, trg_size, resized_box), pck_threshold(self.threshold, trg_hw, box)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        src_full = load_image(record.src_path, self.convert_images, self.download_command)
        trg_full = load_image(record.trg_path, self.convert_images, self.download_command)
        src_hw, trg_hw = tuple(src_full.shape[-2:]), tuple(trg_full.shape[-2:])
        src_size, trg_size = self.resize.target_size(*src_hw), self.resize.target_size(*trg_hw)
        ssx, ssy = self.resize.scale_factors(*src_hw)
        tsx, tsy = self.resize.scale_factors(*trg_hw)
        if record.src_kps is not None and len(record.src_kps):
            self.check_inside(record.src_kps, src_hw, record, "src")
            self.check_inside(record.trg_kps, trg_hw, record, "trg")
            src_kps = scale_points(torch.as_tensor(record.src_kps, dtype=torch.float32), ssx, ssy)
            trg_kps = scale_points(torch.as_tensor(record.trg_kps, dtype=torch.float32), tsx, tsy)
        else:
            src_kps = trg_kps = torch.zeros(0, 2)
        threshold, threshold_original = (
            self.pck_thresholds(record, trg_hw, trg_size, (tsx, tsy)) if len(trg_kps) else (math.nan, math.nan)
        )
        sample = {
            "src_img": resize_image(src_full, src_size),
            "trg_img": resize_image(trg_full, trg_size),
            "src_kps": src_kps,
            "trg_kps": trg_kps,
            "n_kps": len(src_kps),
            "pck_threshold": threshold,
            "pck_threshold_original": threshold_original,
            "category": record.category,
            "category_id": self.categories.index(record.category),
            "pair_id": record.pair_id,
            "index": index,
            "src_scale": torch.tensor([ssx, ssy]),
            "trg_scale": torch.tensor([tsx, tsy]),
            "src_path": str(record.src_path),
            "trg_path": str(record.trg_path),
        }
        for name in self.group_fields:
            sample[name] = int(record.groups[name])
        for name in self.subset_flags:
            sample[name] = bool(record.extra[name])
        sample.update(self.load_extras(record, src_size, trg_size))
        return sample

    # -- the protocol -----------------------------------------------------------------------
    def pair_key(self, record: PairRecord) -> str:
        """The identity of a pair in the pair-list hash: its two image paths relative to
        :attr:`root` (the file names when elsewhere)."""

        def rel(path: Path) -> str:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                return path.name

        return f"{rel(record.src_path)} -> {rel(record.trg_path)}"

    def pairs_sha256(self) -> str:
        """SHA-256 of the ORDERED pair list (one :meth:`pair_key` per line)."""
        text = "".join(self.pair_key(r) + "\n" for r in self.records)
        return hashlib.sha256(text.encode()).hexdigest()

    def image_hw(self, path: Path) -> tuple[int, int]:
        """(H, W) of an image file from its header (no decoding)."""
        try:
            with Image.open(path) as img:
                w, h = img.size
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"Cannot read image {path} ({exc.__class__.__name__}: {exc}). Replace the file.") from exc
        return int(h), int(w)

    def aspect_changed_pairs(self) -> int:
        """Pairs whose source or target image changes its aspect ratio in the resize (a fixed
        ``dataset.size``): their x and y scale factors differ by more than
        :data:`ASPECT_TOLERANCE`. The ``max_side`` rule keeps the aspect (up to the truncation of
        the new size to whole pixels), so without ``size`` this is 0 without reading any file.
        Warns once when it is not 0."""
        if self._aspect_changed is None:
            count = 0
            if self.resize.size is not None:
                sizes: dict[Path, tuple[int, int]] = {}
                for record in self.records:
                    for path in (record.src_path, record.trg_path):
                        if path not in sizes:
                            sizes[path] = self.image_hw(path)
                    factors = [self.resize.scale_factors(*sizes[p]) for p in (record.src_path, record.trg_path)]
                    count += any(abs(sx / sy - 1.0) > ASPECT_TOLERANCE for sx, sy in factors)
            if count:
                log.warning(
                    "dataset.size=%s changes the aspect ratio of the images of %d of %d %s pairs: distances and "
                    "thresholds are measured in a stretched frame (recorded in the protocol; "
                    "metrics.resolution=original measures PCK in original pixels).",
                    list(self.resize.size), count, len(self.records), self.name,
                )
            self._aspect_changed = count
        return self._aspect_changed

    def threshold_rule(self) -> str:
        """What T is on this dataset, in words (the protocol record)."""
        if self.threshold == "bbox":
            return f"{KINDS['bbox']}: {self.box_source}"
        return KINDS[self.threshold]

    def flips(self) -> str:
        """Which images are mirrored before matching (the protocol record); ``"none"`` here."""
        return "none"

    def protocol_options(self) -> dict[str, Any]:
        """Dataset-specific settings that change the numbers (the protocol record's ``options``)."""
        return {}

    def leakage(self, trained_on: list[str]) -> str | None:
        """A warning when the method's weights were fit on pairs that overlap these (None here).

        Args:
            trained_on: ``<dataset>/<split>`` names the method was trained on.
        """
        return None

    def protocol(self) -> dict[str, Any]:
        """How this dataset's numbers are measured, as recorded in ``metrics.json``
        (:mod:`semcorr.protocol` adds the run's metric and method settings)."""
        return {
            "dataset": self.name,
            "split": self.split,
            "pairs": self.pair_source,
            "n_pairs": len(self.records),
            "pairs_sha256": self.pairs_sha256(),
            "subset": self.subset,
            "threshold": self.threshold,
            "threshold_rule": self.threshold_rule(),
            "image_size": {
                "max_side": self.resize.max_side if self.resize.size is None else None,
                "size": list(self.resize.size) if self.resize.size is not None else None,
                "upscale": bool(self.resize.upscale),
                "aspect_changed_pairs": self.aspect_changed_pairs(),
            },
            "flips": self.flips(),
            "subset_flags": list(self.subset_flags),
            "options": self.protocol_options(),
        }
