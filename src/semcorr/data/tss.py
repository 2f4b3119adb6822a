"""TSS (Taniai et al., "Joint recovery of dense correspondence and cosegmentation in two images",
CVPR 2016): 400 image pairs with dense ground-truth flow and object masks, in three subsets.

Layout read (``root`` = the folder ``python -m semcorr.data.download tss --root ROOT`` fills; the
official ``TSS_CVPR2016.zip`` unpacks to ``TSS_CVPR2016/``, read through when ``ROOT`` holds it)::

    ROOT/<FG3DCar|JODS|PASCAL>/<pair>/     e.g. FG3DCar/001_005 (195 + 81 + 124 = 400 folders)
        image1.png, image2.png              the two images (any size; they may differ)
        flow1.flo                           Middlebury flow on the grid of image1, -> image2
        flow2.flo                           flow on the grid of image2, -> image1
        mask1.png, mask2.png                object masks (8-bit or palette; > 0 is foreground)
        flip_gt.txt                         0/1: the objects face opposite directions
        pair.txt, corr.txt                  source file names; sparse correspondences (unused)

The flow files follow the Middlebury convention: pixel (x, y) of image k maps to
``(x + u, y + v)`` in the other image; unknown flow (background) is stored as 1e10 (> 1e9), and
the known pixels of ``flowk`` are exactly the foreground of ``maskk``. Checked on the real files:
``flow1`` lands image1's ``corr.txt`` points (normalised by W, H) on image2's with a median error
of 0.2-0.7 original pixels, 2 pixels for the pair with ``flip_gt = 1`` -- so flows always point
into the images AS STORED, mirrored ones included.

Pairs: every folder gives two directed pairs, ``<subset>/<pair>_1to2`` (source image1, target
image2, ``flow1``, source mask ``mask1``) then ``<subset>/<pair>_2to1`` (``flow2``, ``mask2``), the
two rows the evaluation kit scores per folder; subsets in the order FG3DCar, JODS, PASCAL, folders
sorted: 800 directed pairs for the full release. The category is the subset. Per-pair group field
``flip`` (0/1) lets results be reported also without the flipped pairs, as the kit's ``w/o flip``
row does.

Protocol (the official TSS evaluation kit, github.com/t-taniai/TSS_CVPR2016_EvaluationKit,
``RunEvaluation.m`` / ``compute_scores.m``; rule implemented in :mod:`semcorr.metrics.flow`):

* a predicted flow, whatever resolution it was computed at, is resized to the ORIGINAL source grid
  and its vectors rescaled to original target pixels (the kit's ``resize_flows``);
* scored pixels: the source pixels with known ground-truth flow (``flowGT < 1e9``, = foreground);
* a pixel is correct when its endpoint error is ``<= T``, with ``T = t/100 * max(H, W)`` of the
  ORIGINAL TARGET image; the reported number is the ``T5`` column, ``t = 5``: ``alpha = 0.05``
  (follow-up papers describe it as "T = 5 pixels" with images resized to a larger side of 100
  pixels, which is the same threshold);
* accuracy per directed pair = correct / scored pixels; per subset = mean over its directed pairs
  (the kit's ``Average`` row, flipped pairs included); papers report the three subset means and
  their average.
* ``flip_gt`` is metadata for reporting (the ``w/o flip`` row); the kit does not flip anything.
  Methods that cannot match mirrored objects are sometimes given the flip as an oracle (the
  target is mirrored before matching): ``flip_target=True`` does that here, mirroring the target
  image, target mask and ground-truth flow (target x -> W_t - 1 - x in the resized frame) for the
  pairs with ``flip_gt = 1``. Off by default (the images as stored, like the kit).

What a sample holds, besides the :mod:`semcorr.data.base` keys (``src_kps`` empty, PCK threshold
NaN):

=============== ============== ===============================================================
key             shape / type   meaning
=============== ============== ===============================================================
flow            (2, Hs, Ws)    ground-truth source -> target flow on the RESIZED source grid,
                f32            in RESIZED target pixels (the convention of ``MatchOutput.flow``);
                               NaN where unknown (background)
src_mask        (Hs, Ws) bool  source foreground (= where ``flow`` is known)
trg_mask        (Ht, Wt) bool  target foreground
flow_threshold  float          T of the rule in ORIGINAL target pixels: alpha * max(H0t, W0t)
src_size_orig   (2,) long      (H, W) of the original source image
trg_size_orig   (2,) long      (H, W) of the original target image
flip            int            ``flip_gt`` of the folder (group field)
=============== ============== ===============================================================

How the metric stays in original pixels: with ``FlowAccuracy.update(pred, flow, src_mask,
threshold=flow_threshold, trg_scale=trg_scale)`` the error of every pixel is divided per axis by
the target's resize factors, so it is measured in ORIGINAL target pixels against T in original
pixels -- exact units for any resize (also non-uniform ``size=[H, W]``). The one approximation of
this default path: the scored pixels are those of the resized source grid (each resized pixel
carries the ground truth of its nearest original pixel), not of the original grid; the fraction
is the same up to sampling. The kit's exact path (original grid) is available per pair:
``orig = dataset.load_original(i)``; ``pred0 = resize_flow(pred, orig["flow"].shape[-2:],
1 / sample["src_scale"], 1 / sample["trg_scale"])``; ``flow_accuracy_per_pair(pred0,
orig["flow"][None], threshold=orig["flow_threshold"])``. With ``max_side=None`` both paths agree.

Resizing of the ground truth (choice): resized source pixel x2 corresponds to original position
``x1 = x2 / s_src`` (the project's point-scaling convention ``x -> x * s``); it takes the flow of
the nearest original pixel (nearest keeps unknown pixels unknown and never blends foreground with
background), and its target ``(x1 + u) * s_trg`` is expressed in resized target pixels. A constant
translation u is therefore exactly ``u * s`` after resizing. Masks use the same nearest sampling,
so ``src_mask`` and the known pixels of ``flow`` coincide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from semcorr.data.base import PairDataset, PairRecord
from semcorr.data.flo import read_flo
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError
from semcorr.grid import pixel_grid

#: The three subsets, in reporting order.
SUBSETS = ("FG3DCar", "JODS", "PASCAL")
#: Files every pair folder must hold.
PAIR_FILES = ("image1.png", "image2.png", "flow1.flo", "flow2.flo", "mask1.png", "mask2.png")
#: Folder name of the official archive.
ARCHIVE_DIR = "TSS_CVPR2016"


def read_mask(path: Path) -> np.ndarray:
    """Read a TSS mask PNG as an (H, W) bool array (any value > 0 is foreground; palette images
    are read by palette index)."""
    if not path.is_file():
        raise DatasetNotFoundError(f"Mask file not found: {path}. Re-download the dataset or fix dataset.root.")
    try:
        with Image.open(path) as img:
            arr = np.asarray(img)
    except OSError as exc:
        raise AnnotationError(f"Cannot read mask {path} ({exc}). Replace the file.") from exc
    if arr.ndim == 3:
        arr = arr[..., :3].max(axis=-1)
    return arr > 0


def read_flip(path: Path) -> int:
    """Read ``flip_gt.txt`` (0 or 1); a missing file means 0, as in the evaluation kit."""
    if not path.is_file():
        return 0
    text = path.read_text().strip()
    try:
        value = int(float(text.split()[0])) if text else 0
    except ValueError as exc:
        raise AnnotationError(f"{path}: expected 0 or 1, got {text[:20]!r}. Fix the file.") from exc
    if value not in (0, 1):
        raise AnnotationError(f"{path}: expected 0 or 1, got {value}. Fix the file.")
    return value


def nearest_indices(size: tuple[int, int], orig_size: tuple[int, int], factors: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest original pixel of every pixel of a resized grid.

    Resized pixel (x, y) sits at the original position (x / sx, y / sy) (the point-scaling
    convention ``x -> x * s``); its nearest original pixel is the rounded position, clamped.

    Returns:
        (rows (H, 1), cols (1, W)) int arrays for fancy indexing of an (H0, W0, ...) array.
    """
    (h, w), (h0, w0) = size, orig_size
    sx, sy = factors
    cols = np.clip(np.rint(np.arange(w) / sx), 0, w0 - 1).astype(np.int64)
    rows = np.clip(np.rint(np.arange(h) / sy), 0, h0 - 1).astype(np.int64)
    return rows[:, None], cols[None, :]


def resize_gt_flow(flow: np.ndarray, size: tuple[int, int], src_factors, trg_factors) -> torch.Tensor:
    """Original (H0, W0, 2) ground-truth flow (NaN unknown) -> (2, H, W) on the resized grid.

    Resized source pixel x2 takes the flow u of its nearest original pixel (:func:`nearest_indices`)
    and maps to ``(x2 / s_src + u) * s_trg`` in resized target pixels.
    """
    rows, cols = nearest_indices(size, flow.shape[:2], src_factors)
    sampled = flow[rows, cols].astype(np.float64)  # (H, W, 2)
    h, w = size
    x2 = np.arange(w, dtype=np.float64)[None, :]
    y2 = np.arange(h, dtype=np.float64)[:, None]
    u = (x2 / src_factors[0] + sampled[..., 0]) * trg_factors[0] - x2
    v = (y2 / src_factors[1] + sampled[..., 1]) * trg_factors[1] - y2
    return torch.from_numpy(np.stack([u, v]).astype(np.float32))


def resize_gt_mask(mask: np.ndarray, size: tuple[int, int], factors) -> torch.Tensor:
    """Original (H0, W0) mask -> (H, W) bool on the resized grid (same sampling as the flow)."""
    rows, cols = nearest_indices(size, mask.shape, factors)
    return torch.from_numpy(np.ascontiguousarray(mask[rows, cols]))


def mirror_flow_target(flow: torch.Tensor, trg_width: int) -> torch.Tensor:
    """Re-express a (2, H, W) flow for a horizontally mirrored target: x_t -> (W_t - 1) - x_t."""
    xs = pixel_grid(flow.shape[-2], flow.shape[-1], flow.device, flow.dtype)[0]
    out = flow.clone()
    out[0] = (trg_width - 1) - (xs + flow[0]) - xs
    return out


class TSSDataset(PairDataset):
    """TSS directed pairs with dense ground truth (see the module docstring).

    Args:
        root: the TSS folder (holding ``FG3DCar/``, ``JODS/``, ``PASCAL/``, or ``TSS_CVPR2016/``).
        split: ``"test"`` (the only split).
        alpha: T = alpha * max(H, W) of the original target image (``flow_threshold``); 0.05 is
            the benchmark's number.
        flip_target: mirror the target of ``flip_gt = 1`` pairs (oracle flip), see above.
        **kwargs: the :class:`~semcorr.data.base.PairDataset` arguments (``categories`` are
            subset names).
    """

    download_name = "tss"
    thresholds = ("none",)
    requires_keypoints = False
    group_fields = ("flip",)
    splits = ("test",)
    evaluators = ("flow",)
    pair_source = "every pair folder of the subsets, in both directions"

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        alpha: float = 0.05,
        flip_target: bool = False,
        **kwargs: Any,
    ) -> None:
        if not alpha > 0:
            raise ConfigError(f"TSSDataset: alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.flip_target = bool(flip_target)
        kwargs.setdefault("name", "tss")
        super().__init__(root, split=split, **kwargs)

    @property
    def data_dir(self) -> Path:
        """Folder holding the subsets (``root`` or ``root/TSS_CVPR2016``)."""
        inner = self.root / ARCHIVE_DIR
        if inner.is_dir() and not any((self.root / s).is_dir() for s in SUBSETS):
            return inner
        return self.root

    def load_records(self) -> list[PairRecord]:
        data_dir = self.data_dir
        subsets = [s for s in SUBSETS if (data_dir / s).is_dir()]
        if not subsets:
            raise DatasetNotFoundError(
                self.missing_message(data_dir / "FG3DCar")
                + f" (expected at least one of the subset folders {', '.join(SUBSETS)})"
            )
        records = []
        for subset in subsets:
            folders = sorted(p for p in (data_dir / subset).iterdir() if p.is_dir() and not p.name.startswith("."))
            for folder in folders:
                for name in PAIR_FILES:
                    self.require(folder / name)
                flip = read_flip(folder / "flip_gt.txt")
                for a, b in ((1, 2), (2, 1)):
                    records.append(
                        PairRecord(
                            pair_id=f"{subset}/{folder.name}_{a}to{b}",
                            src_path=folder / f"image{a}.png",
                            trg_path=folder / f"image{b}.png",
                            category=subset,
                            groups={"flip": flip},
                            extra={
                                "flow": folder / f"flow{a}.flo",
                                "src_mask": folder / f"mask{a}.png",
                                "trg_mask": folder / f"mask{b}.png",
                                "flip": flip,
                            },
                        )
                    )
        return records

    # -- ground truth -----------------------------------------------------------------------
    def _read_original(self, record: PairRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Original-resolution (flow (H, W, 2) NaN-unknown, src mask, trg mask), checked."""
        flow = read_flo(record.extra["flow"])
        src_mask = read_mask(record.extra["src_mask"])
        trg_mask = read_mask(record.extra["trg_mask"])
        if flow.shape[:2] != src_mask.shape:
            raise AnnotationError(
                f"{self.name} pair {record.pair_id}: flow {record.extra['flow']} is {flow.shape[1]}x{flow.shape[0]} but "
                f"mask {record.extra['src_mask']} is {src_mask.shape[1]}x{src_mask.shape[0]}; both must have the source "
                "image's size. Re-download the pair."
            )
        return flow, src_mask, trg_mask

    def load_extras(self, record: PairRecord, src_size: tuple[int, int], trg_size: tuple[int, int]) -> dict:
        flow, src_mask, trg_mask = self._read_original(record)
        src_hw, trg_hw = flow.shape[:2], trg_mask.shape
        if self.resize.target_size(*src_hw) != tuple(src_size) or self.resize.target_size(*trg_hw) != tuple(trg_size):
            raise AnnotationError(
                f"{self.name} pair {record.pair_id}: the ground truth ({src_hw[1]}x{src_hw[0]} flow, {trg_hw[1]}x{trg_hw[0]} "
                f"target mask) does not have the size of the images {record.src_path.name} / {record.trg_path.name}. "
                "Re-download the pair."
            )
        s_src = self.resize.scale_factors(*src_hw)
        s_trg = self.resize.scale_factors(*trg_hw)
        return {
            "flow": resize_gt_flow(flow, src_size, s_src, s_trg),
            "src_mask": resize_gt_mask(src_mask, src_size, s_src),
            "trg_mask": resize_gt_mask(trg_mask, trg_size, s_trg),
            "flow_threshold": self.alpha * float(max(trg_hw)),
            "src_size_orig": torch.tensor(src_hw, dtype=torch.long),
            "trg_size_orig": torch.tensor(trg_hw, dtype=torch.long),
        }

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = super().__getitem__(index)
        if self.flip_target and self.records[index].groups["flip"]:
            width = sample["trg_img"].shape[-1]
            sample["trg_img"] = sample["trg_img"].flip(-1)
            sample["trg_mask"] = sample["trg_mask"].flip(-1)
            sample["flow"] = mirror_flow_target(sample["flow"], width)
        return sample

    def flips(self) -> str:
        if not self.flip_target:
            return "none"
        mirrored = sum(bool(r.groups["flip"]) for r in self.records)
        return f"flip_target: the targets of the {mirrored} pairs with flip_gt = 1 mirrored (oracle flip)"

    def protocol_options(self) -> dict[str, Any]:
        return {"flow_alpha": self.alpha}

    def load_original(self, index: int) -> dict[str, Any]:
        """Ground truth of pair ``index`` at the ORIGINAL resolution (the kit's evaluation grid).

        Returns:
            dict with ``flow`` (2, H0s, W0s) f32 source -> target flow in original pixels, NaN where
            unknown (target mirrored in the original frame when ``flip_target`` applies), ``src_mask``
            (H0s, W0s) bool, ``trg_mask`` (H0t, W0t) bool and ``flow_threshold`` (original pixels).
        """
        record = self.records[index]
        flow, src_mask, trg_mask = self._read_original(record)
        flow_t = torch.from_numpy(flow).permute(2, 0, 1).contiguous()
        trg_mask_t = torch.from_numpy(trg_mask)
        if self.flip_target and record.groups["flip"]:
            flow_t = mirror_flow_target(flow_t, trg_mask.shape[1])
            trg_mask_t = trg_mask_t.flip(-1)
        return {
            "flow": flow_t,
            "src_mask": torch.from_numpy(src_mask),
            "trg_mask": trg_mask_t,
            "flow_threshold": self.alpha * float(max(trg_mask.shape)),
        }
