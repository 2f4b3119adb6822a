"""Mask transfer: LT-ACC, IoU and LOC-ERR (Caltech-101 protocol; also used on CUB-200-2011).

The protocol (Kim et al., "Deformable spatial pyramid matching", CVPR 2013, adopted by Proposal
Flow, SCNet, CNNGeo / WeakAlign, NC-Net and Hyperpixel Flow): the source object mask is
transferred to the target image through the estimated correspondences and compared with the
target's ground-truth mask. Here the transfer is ``warp_mask(src_mask, flow)`` with ``flow`` the
method's target -> source flow (``method(src_img, trg_img, ..., dense="backward").flow``,
:mod:`semcorr.metrics.warping`). Exact definitions, per pair, with P the predicted
(transferred) and G the ground-truth target mask, both binarised at 0.5 (the reference code's
``.gt(0.5)``):

* **LT-ACC** (label-transfer accuracy) = the fraction of ALL target pixels whose transferred label
  equals the ground-truth label (foreground or background): ``mean(P == G)`` (HPF
  ``model/evaluation.py``, WeakAlign ``util/eval_util.py``).
* **IoU** = ``|P & G| / |P | G|`` over the target image. (The reference code weights a per-part IoU
  by the part areas, which for the single foreground mask of these benchmarks is the plain IoU.)
  A pair where both masks are empty gets IoU 1 (never happens on real data; the reference gives
  0/0).
* **LOC-ERR** (localization error, DSP; as in WeakAlign's ``localization_error``): each image gets
  normalised coordinates relative to the bounding box of its object mask,
  ``x_rel = (x - left) / (right - left + 1)``, ``y_rel = (y - top) / (bottom - top + 1)``. For
  every target pixel (x1, y1) -- all pixels, foreground or not -- whose target -> source flow lands
  inside the source image, the landing point is truncated to its pixel (x2, y2) (the reference
  code's ``astype(int)``), and the error is ``|x_rel,t(x1) - x_rel,s(x2)| + |y_rel,t(y1) -
  y_rel,s(y2)|``; LOC-ERR of the pair is the mean over those pixels (lower is better). Choice: all
  coordinates 0-based here; the reference mixes 1-based pixel grids with 0-based box corners, an
  offset of one pixel divided by the box size. Pairs with an empty mask, or whose flow never lands
  inside the source, get no LOC-ERR (skipped).

Dataset values are means over pairs (and over the pairs of each category when groups are given).
Resolution: the masks and flow are those of the resized images the method sees (as in HPF);
LT-ACC and IoU are ratios of areas and barely depend on it.

Typical use in an evaluation loop (Caltech-101, CUB)::

    flow = method(batch["src_img"], batch["trg_img"], batch["src_kps"], dense="backward").flow  # (B, 2, Ht, Wt)
    pred = warp_mask(batch["src_mask"], flow)                        # (B, Ht, Wt) bool
    metric.update(pred, batch["trg_mask"], groups=batch["category_id"],
                  src_mask=batch["src_mask"], flow_trg_to_src=flow)
    metric.compute()   # {"lt_acc": ..., "iou": ..., "loc_err": ..., "lt_acc/<category>": ...}
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from semcorr.metrics.flow import group_indices, resolve_groups
from semcorr.metrics.warping import flow_to_points


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
