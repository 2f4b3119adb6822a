"""Mask transfer: LT-ACC, IoU and LOC-ERR (Caltech-101 protocol; also used on CUB-200-2011).

The protocol (Kim et al., "Deformable spatial pyramid matching", CVPR 2013, adopted by Proposal
Flow, SCNet, CNNGeo / WeakAlign, NC-Net and Hyperpixel Flow): the source object mask is
transferred to the target image through the estimated correspondences and compared with the
target's ground-truth mask. How the mask is transferred differs between the reference codes, and
:class:`MaskEvaluator` offers both (``dataset.mask_transfer``):

* ``"polygon"`` -- the HPF reference's (``evaluate.py`` / ``eval_caltech`` of the official code):
  the source mask's POLYGON vertices are transferred with the method's keypoint rule, exactly as
  keypoints are, and the transferred polygon is rasterised on the target grid
  (:func:`rasterise_polygon`, ``skimage.draw.polygon``, rows = y, cols = x). Vertices without a
  prediction (NaN) are left out of the polygon (choice: the reference has none, since it does not
  prune boxes on Caltech); fewer than 3 left give an empty mask. No LOC-ERR (it needs a dense
  flow; the reference reports none). This is what HPF's Caltech-101 numbers measure.
* ``"flow"`` -- the source MASK is backward-warped onto the target by the method's dense target ->
  source flow, ``warp_mask(src_mask, method(..., dense="backward").flow)``
  (:mod:`semcorr.metrics.warping`), as dense-flow methods (Proposal Flow, WeakAlign) evaluate;
  adds LOC-ERR.

Exact definitions, per pair, with P the predicted (transferred) and G the ground-truth target mask,
both binarised at 0.5 (the reference code's ``.gt(0.5)``):

* **LT-ACC** (label-transfer accuracy) = the fraction of ALL target pixels whose transferred label
  equals the ground-truth label (foreground or background): ``mean(P == G)`` (HPF
  ``model/evaluation.py``, WeakAlign ``util/eval_util.py``).
* **IoU** = ``|P & G| / |P | G|`` over the target image. (The reference code weights a per-part IoU
  by the part areas, which for the single foreground mask of these benchmarks is the plain IoU.)
  A pair where both masks are empty gets IoU 1 (never happens on real data; the reference gives
  0/0).
* **LOC-ERR** (localization error, DSP; as in WeakAlign's ``localization_error``; flow protocol
  only): each image gets normalised coordinates relative to the bounding box of its object mask,
  ``x_rel = (x - left) / (right - left + 1)``, ``y_rel = (y - top) / (bottom - top + 1)``. For
  every target pixel (x1, y1) -- all pixels, foreground or not -- whose target -> source flow lands
  inside the source image, the landing point is truncated to its pixel (x2, y2) (the reference
  code's ``astype(int)``), and the error is ``|x_rel,t(x1) - x_rel,s(x2)| + |y_rel,t(y1) -
  y_rel,s(y2)|``; LOC-ERR of the pair is the mean over those pixels (lower is better). Choice: all
  coordinates 0-based here; the reference mixes 1-based pixel grids with 0-based box corners, an
  offset of one pixel divided by the box size. Pairs with an empty mask, or whose flow never lands
  inside the source, get no LOC-ERR (skipped).

Dataset values are means over pairs (and over the pairs of each category when groups are given).
Resolution: the masks, polygons and flow are those of the resized images the method sees (as in
HPF); LT-ACC and IoU are ratios of areas and barely depend on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric

from semcorr.errors import ConfigError
from semcorr.methods.base import MatchOutput
from semcorr.metrics.base import Evaluator
from semcorr.metrics.flow import group_indices, reported, resolve_groups
from semcorr.metrics.warping import flow_to_points, warp_mask

#: Values of ``dataset.mask_transfer`` (see the module docstring).
MASK_TRANSFERS = ("polygon", "flow")


def rasterise_polygon(vertices: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Fill a polygon on an (H, W) pixel grid, as the reference code does (``skimage.draw.polygon``
    with rows = y, cols = x): a pixel is foreground when its centre (integer coordinates) lies
    inside or on the polygon. Rows with a NaN coordinate are left out; fewer than 3 vertices give
    an empty mask.

    Args:
        vertices: (P, 2) polygon vertices (x, y) in pixels of the grid.
        size: (H, W).

    Returns:
        (H, W) bool tensor.
    """
    from skimage.draw import polygon as fill_polygon

    pts = np.asarray(torch.as_tensor(vertices).detach().cpu(), dtype=np.float64).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    h, w = int(size[0]), int(size[1])
    mask = np.zeros((h, w), dtype=bool)
    if len(pts) >= 3:
        rows, cols = fill_polygon(pts[:, 1], pts[:, 0], shape=(h, w))
        mask[rows, cols] = True
    return torch.from_numpy(mask)


def _binary(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask.float() > 0.5


def mask_transfer_scores(pred_mask: torch.Tensor, gt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LT-ACC and IoU of each pair.

    Args:
        pred_mask: (B, H, W) transferred mask in the target frame (bool, or float binarised at 0.5).
        gt_mask: (B, H, W) ground-truth target mask (bool or float).

    Returns:
        ``(lt_acc (B,), iou (B,))`` as float64.
    """
    if pred_mask.shape != gt_mask.shape or pred_mask.ndim != 3:
        raise ValueError(f"pred_mask {tuple(pred_mask.shape)} and gt_mask {tuple(gt_mask.shape)} must both be (B, H, W)")
    p, g = _binary(pred_mask), _binary(gt_mask).to(pred_mask.device)
    lt_acc = (p == g).flatten(1).to(torch.float64).mean(dim=1)
    inter = (p & g).flatten(1).sum(dim=1).to(torch.float64)
    union = (p | g).flatten(1).sum(dim=1).to(torch.float64)
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return lt_acc, iou


def _relative_coordinates(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(H, W) mask -> (x_rel (W,), y_rel (H,)) w.r.t. the mask's bounding box, or None if empty."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return None
    left, right, top, bottom = xs.min(), xs.max(), ys.min(), ys.max()
    h, w = mask.shape
    x = (torch.arange(w, device=mask.device, dtype=torch.float64) - left) / (right - left + 1).double()
    y = (torch.arange(h, device=mask.device, dtype=torch.float64) - top) / (bottom - top + 1).double()
    return x, y


def localization_error(src_mask: torch.Tensor, trg_mask: torch.Tensor, flow_trg_to_src: torch.Tensor) -> torch.Tensor:
    """LOC-ERR of each pair (see the module docstring).

    Args:
        src_mask: (B, Hs, Ws) source object mask.
        trg_mask: (B, Ht, Wt) target object mask.
        flow_trg_to_src: (B, 2, Ht, Wt) target -> source flow (NaN: no answer, pixel skipped).

    Returns:
        (B,) float64, NaN for pairs without a defined error.
    """
    b, _, ht, wt = flow_trg_to_src.shape
    hs, ws = src_mask.shape[-2:]
    out = torch.full((b,), float("nan"), dtype=torch.float64)
    points = flow_to_points(flow_trg_to_src.double())
    for i in range(b):
        rel_t = _relative_coordinates(_binary(trg_mask[i]))
        rel_s = _relative_coordinates(_binary(src_mask[i]).to(points.device))
        if rel_t is None or rel_s is None:
            continue
        x2, y2 = points[i, 0], points[i, 1]
        inside = torch.isfinite(x2) & torch.isfinite(y2) & (x2 >= 0) & (x2 <= ws - 1) & (y2 >= 0) & (y2 <= hs - 1)
        if not inside.any():
            continue
        rows, cols = torch.nonzero(inside, as_tuple=True)
        col2 = x2[rows, cols].floor().long()
        row2 = y2[rows, cols].floor().long()
        xt, yt = rel_t[0].to(points.device)[cols], rel_t[1].to(points.device)[rows]
        xs, ys = rel_s[0][col2], rel_s[1][row2]
        out[i] = ((xt - xs).abs() + (yt - ys).abs()).mean().cpu()
    return out


class MaskTransfer(Metric):
    """Mean per-pair LT-ACC, IoU (and LOC-ERR when the flow is given), overall and per group.

    Args:
        num_groups: G, number of groups (e.g. categories); 1 for none.
        group_names: optional G names for the keys of :meth:`compute`.

    States (``dist_reduce_fx="sum"``, float64, shape (G,)): sums of LT-ACC, IoU and LOC-ERR, the
    number of pairs, and the number of pairs with a LOC-ERR.
    """

    full_state_update = False

    def __init__(self, num_groups: int = 1, group_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.num_groups, self.group_names = resolve_groups(num_groups, group_names)
        for name in ("lt_acc_sum", "iou_sum", "pairs", "loc_err_sum", "loc_pairs"):
            self.add_state(name, default=torch.zeros(self.num_groups, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        pred_mask: torch.Tensor,
        gt_mask: torch.Tensor,
        groups: torch.Tensor | None = None,
        src_mask: torch.Tensor | None = None,
        flow_trg_to_src: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of pairs.

        Args:
            pred_mask: (B, Ht, Wt) transferred source mask in the target frame (bool / float).
            gt_mask: (B, Ht, Wt) ground-truth target mask.
            groups: optional (B,) long group index per pair.
            src_mask / flow_trg_to_src: (B, Hs, Ws) source mask and (B, 2, Ht, Wt) target -> source
                flow; when both are given LOC-ERR is accumulated too.
        """
        lt_acc, iou = mask_transfer_scores(pred_mask, gt_mask)
        device = self.pairs.device
        g = group_indices(groups, lt_acc.numel(), self.num_groups, device)
        self.lt_acc_sum.index_add_(0, g, lt_acc.to(device))
        self.iou_sum.index_add_(0, g, iou.to(device))
        self.pairs.index_add_(0, g, torch.ones_like(lt_acc, device=device))
        if src_mask is not None and flow_trg_to_src is not None:
            loc = localization_error(src_mask, gt_mask, flow_trg_to_src).to(device)
            ok = torch.isfinite(loc)
            self.loc_err_sum.index_add_(0, g[ok], loc[ok])
            self.loc_pairs.index_add_(0, g[ok], torch.ones_like(loc[ok]))

    def _name(self, g: int) -> str:
        return self.group_names[g] if self.group_names is not None else str(g)

    def compute(self) -> dict[str, torch.Tensor]:
        """Flat dict of scalar tensors: ``lt_acc``, ``iou``, ``loc_err`` (NaN if never given),
        ``mask_pairs``, and per group ``lt_acc/<g>``, ``iou/<g>``, ``loc_err/<g>`` when there is more
        than one group or names were given."""
        n, n_loc = self.pairs.sum(), self.loc_pairs.sum()
        out = {
            "lt_acc": self.lt_acc_sum.sum() / n,
            "iou": self.iou_sum.sum() / n,
            "loc_err": self.loc_err_sum.sum() / n_loc,
            "mask_pairs": n,
        }
        if self.num_groups > 1 or self.group_names is not None:
            for g in range(self.num_groups):
                name = self._name(g)
                out[f"lt_acc/{name}"] = self.lt_acc_sum[g] / self.pairs[g]
                out[f"iou/{name}"] = self.iou_sum[g] / self.pairs[g]
                out[f"loc_err/{name}"] = self.loc_err_sum[g] / self.loc_pairs[g]
        return out


class MaskEvaluator(Evaluator):
    """The mask-transfer family (keys ``lt_acc``, ``iou``, ``mask_pairs``, per category
    ``lt_acc/<c>``, ``iou/<c>``; with the flow protocol also ``loc_err``, ``loc_err/<c>``).

    Reads ``src_mask``, ``trg_mask`` and ``category_id`` from the batch, and for the polygon
    protocol the transferred source-polygon vertices: ``output.points[i, :n_kps[i]]`` (the dataset
    gives the vertices as the query points ``src_kps``).

    Args:
        categories: the dataset's category names.
        transfer: ``"polygon"`` or ``"flow"`` (see the module docstring).
    """

    def __init__(self, categories: Sequence[str], transfer: str = "polygon") -> None:
        super().__init__()
        if transfer not in MASK_TRANSFERS:
            raise ConfigError(f"dataset.mask_transfer must be one of {', '.join(MASK_TRANSFERS)}, got {transfer!r}")
        self.transfer = transfer
        self.needs = frozenset({"points"} if transfer == "polygon" else {"backward"})
        self.metric = MaskTransfer(num_groups=len(categories), group_names=list(categories))

    @classmethod
    def from_dataset(cls, dataset: Any) -> MaskEvaluator:
        """The mask family of a :class:`~semcorr.data.base.PairDataset` (its ``mask_transfer``)."""
        return cls(dataset.categories, dataset.mask_transfer)

    def transferred(self, batch: Mapping[str, Any], output: MatchOutput) -> torch.Tensor:
        """(B, Ht, Wt) bool source masks transferred onto the targets by :attr:`transfer`."""
        if self.transfer == "flow":
            return warp_mask(batch["src_mask"], output.flow.to(batch["src_mask"].device))
        size = tuple(batch["trg_mask"].shape[-2:])
        return torch.stack([
            rasterise_polygon(output.points[i, : int(batch["n_kps"][i])], size) for i in range(len(batch["n_kps"]))
        ]).to(batch["trg_mask"].device)

    def update(self, batch: Mapping[str, Any], output: MatchOutput) -> dict[str, torch.Tensor]:
        flow = {"src_mask": batch["src_mask"], "flow_trg_to_src": output.flow} if self.transfer == "flow" else {}
        self.metric.update(self.transferred(batch, output), batch["trg_mask"], groups=batch["category_id"], **flow)
        return {}

    def compute(self) -> dict[str, float]:
        values = reported(self.metric.compute())
        if self.transfer == "polygon":
            values = {k: v for k, v in values.items() if not k.startswith("loc_err")}
        return values
