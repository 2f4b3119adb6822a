"""Dense flow accuracy (the TSS benchmark metric), synced across processes.

Rule (TSS evaluation kit of Taniai et al., CVPR 2016, ``compute_scores.m`` / ``RunEvaluation.m``
of github.com/t-taniai/TSS_CVPR2016_EvaluationKit):

* a directed pair (source -> target) is scored on the source pixels whose ground-truth flow is
  known (the kit's ``flowGT < 1e9``; in TSS these are exactly the foreground pixels of the source
  mask) -- here: finite ``gt_flow`` AND ``mask`` when a mask is given;
* the endpoint error of a pixel is ``||pred - gt||_2``; the pixel is correct when the error is
  ``<= T`` (the kit counts ``error > T`` as wrong); a NaN prediction counts as wrong (the
  project-wide "no answer" convention; MATLAB's ``NaN > T`` would have counted it correct);
* the accuracy of a pair is correct / known pixels; the accuracy of a dataset (or of a category,
  a TSS subset) is the MEAN OVER PAIRS (the kit's ``mean(FAcc, 1)``); pairs with no known pixel
  are skipped.

T is ``threshold_px`` unless per-pair thresholds are passed to :meth:`FlowAccuracy.update`; the
TSS dataset provides them (``flow_threshold``: 5 % of the larger side of the ORIGINAL target
image, the kit's ``T5`` column, i.e. 5 px for images whose larger side is 100 px) together with
the target resize factors (``trg_scale``) so that errors computed on resized images are measured
in ORIGINAL target pixels. See :mod:`semcorr.data.tss` for the full protocol and its choices.

In an evaluation loop the metric is fed by :class:`FlowEvaluator`, the flow family of the
datasets with dense ground truth (TSS, synthetic pairs)::

    output = method(batch["src_img"], batch["trg_img"], batch["src_kps"], dense="forward")   # output.flow (B, 2, Hs, Ws)
    evaluator.update(batch, output)
    evaluator.compute()   # {"flow_acc": ... (%), "flow_acc/FG3DCar": ..., "flow_acc_pairs": ...}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchmetrics import Metric

from semcorr.methods.base import MatchOutput
from semcorr.metrics.base import Evaluator


def flow_endpoint_error(pred: torch.Tensor, gt: torch.Tensor, trg_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pixel endpoint error.

    Args:
        pred: (B, 2, H, W) predicted flow (NaN: no answer).
        gt: (B, 2, H, W) ground-truth flow (NaN: unknown).
        trg_scale: optional (B, 2) (sx, sy) factors from ORIGINAL to the flows' target pixels; the
            difference is divided by them, so the error is in original target pixels.

    Returns:
        (B, H, W) error, NaN where either flow is NaN.
    """
    diff = pred.float() - gt.float()
    if trg_scale is not None:
        diff = diff / torch.as_tensor(trg_scale, dtype=diff.dtype, device=diff.device).reshape(-1, 2, 1, 1)
    return torch.linalg.vector_norm(diff, dim=1)


def flow_accuracy_per_pair(
    pred: torch.Tensor,
    gt: torch.Tensor,
    mask: torch.Tensor | None = None,
    threshold: float | torch.Tensor = 5.0,
    trg_scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flow accuracy of each pair (see the module docstring for the rule).

    Args:
        pred: (B, 2, H, W) predicted flow, NaN where the method has no answer.
        gt: (B, 2, H, W) ground-truth flow, NaN where unknown.
        mask: optional (B, H, W) bool: evaluate only these pixels (and only where gt is known).
        threshold: T, a float or a (B,) tensor of per-pair thresholds (same units as the error).
        trg_scale: optional (B, 2) factors, see :func:`flow_endpoint_error`.

    Returns:
        ``(accuracy (B,), n_correct (B,), n_known (B,))``; accuracy is NaN where n_known is 0.
    """
    if pred.shape != gt.shape or pred.ndim != 4 or pred.shape[1] != 2:
        raise ValueError(f"pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must both be (B, 2, H, W)")
    known = torch.isfinite(gt).all(dim=1)
    if mask is not None:
        if mask.shape != known.shape:
            raise ValueError(f"mask {tuple(mask.shape)} does not fit the flow grid {tuple(known.shape)}")
        known = known & mask.to(device=known.device, dtype=torch.bool)
    err = flow_endpoint_error(pred, gt, trg_scale)
    bound = torch.as_tensor(threshold, dtype=err.dtype, device=err.device).reshape(-1, 1, 1)
    correct = (err <= bound) & known  # NaN <= T is False: no answer counts wrong
    n_correct = correct.flatten(1).sum(dim=1).to(torch.float64)
    n_known = known.flatten(1).sum(dim=1).to(torch.float64)
    return n_correct / n_known, n_correct, n_known


def resolve_groups(num_groups: int, group_names: Sequence[str] | None) -> tuple[int, list[str] | None]:
    """Number of groups and their names: names alone fix the number; both must agree."""
    if group_names is not None and len(group_names) != num_groups:
        if num_groups != 1:
            raise ValueError(f"{len(group_names)} group names for {num_groups} groups")
        num_groups = len(group_names)
    return int(num_groups), list(group_names) if group_names is not None else None


def group_indices(groups: torch.Tensor | None, batch: int, num_groups: int, device) -> torch.Tensor:
    """(B,) long group indices, checked to lie in [0, num_groups); all 0 when ``groups`` is None."""
    if groups is None:
        return torch.zeros(batch, dtype=torch.long, device=device)
    groups = torch.as_tensor(groups, device=device).reshape(-1).long()
    if groups.numel() != batch:
        raise ValueError(f"groups has {groups.numel()} entries for a batch of {batch}")
    if ((groups < 0) | (groups >= num_groups)).any():
        raise ValueError(f"group index out of range [0, {num_groups}): {groups.tolist()}")
    return groups


class FlowAccuracy(Metric):
    """Mean per-pair flow accuracy, overall and per group (e.g. TSS subset), DDP-safe.

    Args:
        threshold_px: default T (pixels) when :meth:`update` gets no per-pair thresholds.
        num_groups: G, number of groups (``groups`` indices in [0, G)); 1 for none.
        group_names: optional G names used in the keys of :meth:`compute`.
        prefix: key prefix of :meth:`compute` (default ``"flow_acc"``).

    States (all ``dist_reduce_fx="sum"``, float64, shape (G,)): the sum of per-pair accuracies,
    the number of scored pairs, and the pooled correct / known pixel counts.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(
        self,
        threshold_px: float = 5.0,
        num_groups: int = 1,
        group_names: Sequence[str] | None = None,
        prefix: str = "flow_acc",
    ) -> None:
        super().__init__()
        self.num_groups, self.group_names = resolve_groups(num_groups, group_names)
        self.threshold_px = float(threshold_px)
        self.prefix = prefix
        for name in ("acc_sum", "pairs", "correct_px", "known_px"):
            self.add_state(name, default=torch.zeros(self.num_groups, dtype=torch.float64), dist_reduce_fx="sum")

    def update(
        self,
        pred_flow: torch.Tensor,
        gt_flow: torch.Tensor,
        mask: torch.Tensor | None = None,
        threshold: torch.Tensor | float | None = None,
        trg_scale: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> None:
        """Add a batch of pairs.

        Args:
            pred_flow: (B, 2, H, W) predicted source -> target flow (NaN: no answer).
            gt_flow: (B, 2, H, W) ground truth, NaN where unknown.
            mask: optional (B, H, W) bool restricting the scored pixels.
            threshold: optional per-pair T, (B,) or a float; default ``threshold_px``.
            trg_scale: optional (B, 2) original -> flow-units factors of the target (errors are
                then measured in original target pixels).
            groups: optional (B,) long group index per pair.
        """
        acc, n_correct, n_known = flow_accuracy_per_pair(
            pred_flow, gt_flow, mask, self.threshold_px if threshold is None else threshold, trg_scale
        )
        device = self.acc_sum.device
        acc, n_correct, n_known = acc.to(device), n_correct.to(device), n_known.to(device)
        g = group_indices(groups, acc.numel(), self.num_groups, device)
        scored = n_known > 0
        self.acc_sum.index_add_(0, g[scored], acc[scored])
        self.pairs.index_add_(0, g[scored], torch.ones_like(acc[scored]))
        self.correct_px.index_add_(0, g, n_correct)
        self.known_px.index_add_(0, g, n_known)

    def _name(self, g: int) -> str:
        return self.group_names[g] if self.group_names is not None else str(g)

    def compute(self) -> dict[str, torch.Tensor]:
        """Results as a flat dict of scalar tensors (accuracies in [0, 1], NaN when empty).

        Keys: ``<prefix>`` mean over all scored pairs; ``<prefix>_pixels`` pooled over all known
        pixels; ``<prefix>_pairs`` number of scored pairs; and, when there is more than one group
        or names were given, ``<prefix>/<group>`` the mean over the pairs of each group.
        """
        total_pairs = self.pairs.sum()
        out = {
            self.prefix: self.acc_sum.sum() / total_pairs,
            f"{self.prefix}_pixels": self.correct_px.sum() / self.known_px.sum(),
            f"{self.prefix}_pairs": total_pairs,
        }
        if self.num_groups > 1 or self.group_names is not None:
            means = self.acc_sum / self.pairs
            for g in range(self.num_groups):
                out[f"{self.prefix}/{self._name(g)}"] = means[g]
        return out


def reported(values: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """A metric's results as reported: accuracies (fractions) in %, counts (``*_pairs``) and
    LOC-ERR (``loc_err*``) as they are."""
    return {
        k: float(v) if k.endswith("_pairs") or k.startswith("loc_err") else 100.0 * float(v) for k, v in values.items()
    }


class FlowEvaluator(Evaluator):
    """The flow family: TSS flow accuracy of the method's source -> target flow (``output.flow``
    of ``dense="forward"``; keys ``flow_acc``, ``flow_acc_pixels``, ``flow_acc_pairs``,
    ``flow_acc/<category>``).

    Reads ``flow`` (ground truth), ``src_mask``, ``flow_threshold`` (T in ORIGINAL target
    pixels), ``trg_scale`` and ``category_id`` from the batch.

    Args:
        categories: the dataset's category names.
    """

    needs = frozenset({"forward"})

    def __init__(self, categories: Sequence[str]) -> None:
        super().__init__()
        self.accuracy = FlowAccuracy(num_groups=len(categories), group_names=list(categories))

    @classmethod
    def from_dataset(cls, dataset: Any) -> FlowEvaluator:
        """The flow family of a :class:`~semcorr.data.base.PairDataset`."""
        return cls(dataset.categories)

    def update(self, batch: Mapping[str, Any], output: MatchOutput) -> dict[str, torch.Tensor]:
        gt = batch["flow"]
        self.accuracy.update(
            output.flow.to(gt.device), gt, batch["src_mask"], threshold=batch["flow_threshold"],
            trg_scale=batch["trg_scale"], groups=batch["category_id"],
        )
        return {}

    def compute(self) -> dict[str, float]:
        return reported(self.accuracy.compute())
