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
``flow`` (2, Hs, Ws), masks, and per-pair grouping fields listed in ``group_fields``
(e.g. SPair-71k difficulty levels) as ints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from semcorr.data.images import load_image
from semcorr.data.transforms import Resize, resize_image, scale_points
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError

#: Tolerance (original pixels) for keypoints just outside the image (1-based annotations).
KP_MARGIN = 2.0


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


def degenerate_keypoints(kps: np.ndarray, single_is_degenerate: bool = False) -> str | None:
    """What is wrong with a keypoint set that has the right shape but cannot be a real annotation,
    or None when nothing is.

    Args:
        kps: (N, 2) keypoints (x, y), N >= 1, finite.
        single_is_degenerate: a lone keypoint is an error too (it spans a box of zero extent,
            which makes a keypoint-box PCK threshold 0).

    Returns:
        ``"all 10 keypoints are at (0, 0)"``, ``"all 10 keypoints are at (x, y): their box has
        zero extent"``, ``"keypoints 2 and 7 are both at (x, y)"`` or the lone keypoint's problem.
    """
    n = len(kps)
    if not np.any(kps):
        return f"all {n} keypoint{'s are' if n > 1 else ' is'} at (0, 0), which an unannotated or zeroed file gives"
    if n > 1 and not np.any(np.ptp(kps, axis=0)):
        return f"all {n} keypoints are at ({kps[0, 0]:g}, {kps[0, 1]:g}): their box has zero extent"
    if n == 1 and single_is_degenerate:
        return "it has one keypoint, whose box has zero extent: the PCK threshold (the box's longer side) would be 0"
    _, first, counts = np.unique(kps, axis=0, return_index=True, return_counts=True)
    if np.any(counts > 1):
        i = int(first[np.argmax(counts > 1)])
        j = next(k for k in range(n) if k != i and np.array_equal(kps[k], kps[i]))
        return f"keypoints {i} and {j} are both at ({kps[i, 0]:g}, {kps[i, 1]:g})"
    return None


class PairDataset(Dataset):
    """Base class of every benchmark: reads records, loads and resizes pairs consistently.

    Subclasses set the class attributes and implement :meth:`load_records` (and optionally
    :meth:`load_extras` for dense ground truth).

    Class attributes:
        download_name: name for ``python -m semcorr.data.download NAME`` (None: not downloadable).
        threshold: how T is computed: ``"image"`` max(H, W) of the target image, ``"bbox"``
            max(w, h) of the target box, ``"kps"`` max extent of the target keypoints,
            ``"none"`` (no keypoints).
        requires_keypoints: every pair must have >= 1 keypoint.
        group_fields: names of the per-pair grouping fields reported separately by the metrics.
        splits: valid values of ``split``.

    Args:
        root: dataset folder (official layout).
        split: which pairs (one of ``splits``).
        name: the dataset's name in configs and result tables.
        max_side / size / upscale: resizing, see :class:`semcorr.data.transforms.Resize`.
        convert_images: convert grayscale / RGBA / 16-bit images instead of raising.
        max_pairs: keep only the first ``max_pairs`` pairs (quick runs), None for all.
        categories: keep only these categories, None for all.
    """

    download_name: ClassVar[str | None] = None
    threshold: ClassVar[str] = "image"
    requires_keypoints: ClassVar[bool] = True
    group_fields: ClassVar[tuple[str, ...]] = ()
    splits: ClassVar[tuple[str, ...]] = ("test",)

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        name: str | None = None,
        max_side: int | None = 300,
        size: tuple[int, int] | None = None,
        upscale: bool = False,
        convert_images: bool = True,
        max_pairs: int | None = None,
        categories: list[str] | None = None,
    ) -> None:
        self.root = Path(root).expanduser()
        if split not in self.splits:
            raise ConfigError(
                f"{type(self).__name__}: unknown split {split!r}; valid: {', '.join(self.splits)}"
            )
        self.split = split
        self.name = name or type(self).__name__
        self.resize = Resize(max_side=max_side, size=tuple(size) if size else None, upscale=upscale)
        self.convert_images = convert_images
        self.check_root()
        records = self.load_records()
        if categories:
            unknown = set(categories) - {r.category for r in records}
            if unknown:
                valid = sorted({r.category for r in records})
                raise ConfigError(f"{self.name}: unknown categories {sorted(unknown)}; valid: {valid}")
            records = [r for r in records if r.category in set(categories)]
        if max_pairs is not None:
            records = records[: int(max_pairs)]
        if not records:
            raise DatasetNotFoundError(f"{self.name}: no pairs found under {self.root} for split {split!r}.")
        for record in records:
            self.check_keypoints(record)
        self.records = records
        self.categories = sorted({r.category for r in records})

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
        all at the origin, all at one point, duplicated, a lone target keypoint under a
        keypoint-box threshold); the error names the annotation file."""
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
        for side, kps in (("src", src), ("trg", trg)):
            problem = degenerate_keypoints(kps, single_is_degenerate=side == "trg" and self.threshold == "kps")
            if problem is not None:
                which = "source" if side == "src" else "target"
                raise AnnotationError(
                    f"{self.name}: {record.source_of(side)}: {problem} ({which} keypoints of pair {record.pair_id}). "
                    "Fix or replace the annotation, or leave the pair out (dataset.categories / the pair list)."
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

    def pck_threshold(self, record: PairRecord, trg_kps: torch.Tensor, trg_size: tuple[int, int], trg_scale: tuple[float, float]) -> float:
        """T of the PCK rule in resized target pixels (see :attr:`threshold`)."""
        if self.threshold == "image":
            return float(max(trg_size))
        if self.threshold == "bbox":
            x1, y1, x2, y2 = (float(v) for v in record.trg_bbox)
            return max((x2 - x1) * trg_scale[0], (y2 - y1) * trg_scale[1])
        if self.threshold == "kps":
            extent = trg_kps.max(dim=0).values - trg_kps.min(dim=0).values
            return float(extent.max())
        return math.nan

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
        threshold = self.pck_threshold(record, trg_kps, trg_size, (tsx, tsy)) if len(trg_kps) else math.nan
        sample = {
            "src_img": resize_image(src_full, src_size),
            "trg_img": resize_image(trg_full, trg_size),
            "src_kps": src_kps,
            "trg_kps": trg_kps,
            "n_kps": len(src_kps),
            "pck_threshold": threshold,
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
        sample.update(self.load_extras(record, src_size, trg_size))
        return sample
