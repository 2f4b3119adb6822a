"""Percentage of correct keypoints (PCK): the per-pair rule, grouped means, and the PCK family.

A predicted keypoint is correct when ``||pred - gt|| <= alpha * T`` (T: the dataset's PCK
threshold of the pair, :mod:`semcorr.data.thresholds`). A NaN prediction counts as wrong; NaN
ground truth marks padding and is ignored. Three averages are reported, because published numbers
use all three and they differ whenever pairs have different numbers of keypoints or categories
have different numbers of pairs:

* ``pck@A``: the mean over pairs of each pair's fraction of correct keypoints (HPF, CATs, DHPF,
  CHM: the usual "PCK" of PF-PASCAL / PF-WILLOW / SPair-71k tables);
* ``pck_kp@A``: correct keypoints over all keypoints, pooled (per-keypoint PCK, which
  reproduction threads confuse with the per-pair one: GeoAware-SC issues #14 / #22, SD4Match #7);
* ``pck_cat@A``: the mean over categories of the per-category ``pck@A`` (per-category average);

plus ``pck@A/<category>``, ``pck@A/<field>=<level>`` for the dataset's grouping fields (SPair-71k
difficulty) and ``pck@A/<flag>`` over the pairs of a subset flag (PF-PASCAL ``clean``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import Metric

from semcorr.errors import ConfigError
from semcorr.methods.base import MatchOutput
from semcorr.metrics.base import Evaluator

#: Upper bound on the number of levels of a grouping field (SPair-71k difficulty fields).
MAX_GROUP_LEVELS = 8
#: Values of ``metrics.resolution``: the frame keypoint distances and T are measured in.
RESOLUTIONS = ("resized", "original")


def correct_keypoints(
    pred: torch.Tensor, gt: torch.Tensor, threshold: torch.Tensor, alphas: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Correct and valid keypoint counts of each pair at each alpha.

    Args:
        pred: (B, N, 2) predicted keypoints (NaN: no prediction, counts wrong).
        gt: (B, N, 2) ground-truth keypoints, NaN-padded.
        threshold: (B,) T per pair.
        alphas: the A alpha values.

    Returns:
        ``(correct (B, A), valid (B,))`` as floats: keypoints within ``alpha * T``, valid keypoints.
    """
    valid = torch.isfinite(gt).all(dim=-1)  # (B, N)
    dist = torch.linalg.norm(pred - gt, dim=-1)  # NaN where pred or gt is NaN
    bound = torch.as_tensor(alphas, dtype=dist.dtype, device=dist.device)[None, None] * threshold[:, None, None].to(dist)
    correct = (dist[..., None] <= bound) & valid[..., None]  # (B, N, A); NaN <= x is False
    return correct.sum(dim=1).to(dist.dtype), valid.sum(dim=1).to(dist.dtype)


def pck_per_pair(
    pred: torch.Tensor, gt: torch.Tensor, threshold: torch.Tensor, alphas: Sequence[float]
) -> torch.Tensor:
    """PCK of each pair at each alpha (arguments as :func:`correct_keypoints`).

    Returns:
        (B, A) fraction of correct valid keypoints; NaN for a pair without valid keypoints.
    """
    correct, valid = correct_keypoints(pred, gt, threshold, alphas)
    return correct / valid[:, None]


class GroupedMean(Metric):
    """(Weighted) mean of per-pair values within groups (categories, difficulty levels), synced
    across processes.

    Args:
        num_groups: G, the number of groups.
        num_values: K, the values per pair (e.g. one per alpha).
    """

    full_state_update = False

    def __init__(self, num_groups: int, num_values: int) -> None:
        super().__init__()
        self.num_groups, self.num_values = num_groups, num_values
        self.add_state("sums", default=torch.zeros(num_groups, num_values, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("counts", default=torch.zeros(num_groups, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor, groups: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        """Add pairs. values: (B, K) (rows with NaN are skipped); groups: (B,) long in [0, G);
        weights: optional (B,) weight of each row (default 1): the mean is then
        ``sum(w v) / sum(w)``."""
        values = values.to(torch.float64).reshape(-1, self.num_values)
        groups = groups.reshape(-1).long().to(values.device)
        w = torch.ones(len(values), dtype=torch.float64, device=values.device) if weights is None else weights.to(values)
        keep = torch.isfinite(values).all(dim=1)
        if ((groups < 0) | (groups >= self.num_groups)).any():
            raise ValueError(f"group index out of range [0, {self.num_groups}): {groups.tolist()}")
        self.sums.index_add_(0, groups[keep], values[keep] * w[keep, None])
        self.counts.index_add_(0, groups[keep], w[keep])

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ((G, K) means, NaN for empty groups; (G,) total weights), synced across processes.

        (torchmetrics squeezes singleton dimensions of ``compute``'s output; the shapes are
        restored here so callers can always index [group, value].)
        """
        means = self.sums / self.counts[:, None]
        return means, self.counts

    def grouped(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`compute` with its shapes guaranteed: ((G, K) means, (G,) counts)."""
        means, counts = self.compute()
        return means.reshape(self.num_groups, self.num_values), counts.reshape(self.num_groups)


class PCKEvaluator(Evaluator):
    """The PCK family (see the module docstring for the keys).

    Args:
        alphas: PCK alphas A.
        categories: the dataset's category names (``category_id`` indexes them).
        group_fields: per-pair int fields to report ``pck@A/<field>=<level>`` by.
        subset_flags: per-pair bool fields to report ``pck@A/<flag>`` over the True pairs.
        resolution: ``"resized"`` (distances and T in resized target pixels, HPF's protocol) or
            ``"original"`` (in original target pixels, DIFT's: predictions and ground truth are
            divided by ``trg_scale`` and T is ``pck_threshold_original``). The two agree unless
            the resize changed the aspect ratio (``dataset.size``).
    """

    needs = frozenset({"points"})

    def __init__(
        self,
        alphas: Sequence[float],
        categories: Sequence[str],
        group_fields: Sequence[str] = (),
        subset_flags: Sequence[str] = (),
        resolution: str = "resized",
    ) -> None:
        super().__init__()
        if resolution not in RESOLUTIONS:
            raise ConfigError(f"metrics.resolution must be one of {', '.join(RESOLUTIONS)}, got {resolution!r}")
        self.alphas = [float(a) for a in alphas]
        self.categories = list(categories)
        self.resolution = resolution
        a = len(self.alphas)
        self.per_pair = GroupedMean(len(self.categories), a)
        self.per_keypoint = GroupedMean(len(self.categories), a)
        self.by_field = nn.ModuleDict({f: GroupedMean(MAX_GROUP_LEVELS, a) for f in group_fields})
        self.by_flag = nn.ModuleDict({f: GroupedMean(1, a) for f in subset_flags})

    @classmethod
    def from_dataset(cls, dataset: Any, alphas: Sequence[float], resolution: str = "resized") -> PCKEvaluator:
        """The PCK family of a :class:`~semcorr.data.base.PairDataset`: its categories, grouping
        fields and subset flags."""
        return cls(alphas, dataset.categories, dataset.group_fields, dataset.subset_flags, resolution)

    def frame(self, batch: Mapping[str, Any], points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predictions, ground truth, T) in the frame of :attr:`resolution`."""
        gt = batch["trg_kps"]
        pred = points.to(gt.device)
        if self.resolution == "resized":
            return pred, gt, batch["pck_threshold"]
        scale = batch["trg_scale"].to(gt)[:, None, :]
        return pred / scale, gt / scale, batch["pck_threshold_original"]

    def update(self, batch: Mapping[str, Any], output: MatchOutput) -> dict[str, torch.Tensor]:
        """Score a batch; returns ``{"pck": (B, A)}`` (NaN for pairs without keypoints)."""
        pred, gt, threshold = self.frame(batch, output.points)
        correct, valid = correct_keypoints(pred, gt, threshold, self.alphas)
        pair = correct / valid[:, None]
        categories = batch["category_id"]
        self.per_pair.update(pair, categories)
        self.per_keypoint.update(pair, categories, weights=valid)
        for field, metric in self.by_field.items():
            metric.update(pair, batch[field])
        for flag, metric in self.by_flag.items():
            keep = batch[flag].to(torch.bool).to(pair.device)
            metric.update(pair[keep], torch.zeros(int(keep.sum()), dtype=torch.long))
        return {"pck": pair}

    def compute(self) -> dict[str, float]:
        """``pck@A``, ``pck_kp@A``, ``pck_cat@A``, ``pck@A/<category>``, ``pck@A/<field>=<level>``,
        ``pck@A/<flag>``, in %; NaN where no pair was scored."""
        out: dict[str, float] = {}
        means, counts = self.per_pair.grouped()
        kp_means, kp_counts = self.per_keypoint.grouped()
        scored = counts > 0
        overall = (means[scored] * counts[scored, None]).sum(0) / counts.sum()
        pooled = (kp_means[scored] * kp_counts[scored, None]).sum(0) / kp_counts.sum()
        per_category = means[scored].mean(0)
        for i, a in enumerate(self.alphas):
            out[f"pck@{a:g}"] = 100.0 * float(overall[i])
            out[f"pck_kp@{a:g}"] = 100.0 * float(pooled[i])
            out[f"pck_cat@{a:g}"] = 100.0 * float(per_category[i])
        for c, name in enumerate(self.categories):
            if counts[c] > 0:
                for i, a in enumerate(self.alphas):
                    out[f"pck@{a:g}/{name}"] = 100.0 * float(means[c, i])
        for field, metric in self.by_field.items():
            g_means, g_counts = metric.grouped()
            for level in range(MAX_GROUP_LEVELS):
                if g_counts[level] > 0:
                    for i, a in enumerate(self.alphas):
                        out[f"pck@{a:g}/{field}={level}"] = 100.0 * float(g_means[level, i])
        for flag, metric in self.by_flag.items():
            f_means, f_counts = metric.grouped()
            for i, a in enumerate(self.alphas):
                out[f"pck@{a:g}/{flag}"] = 100.0 * float(f_means[0, i]) if f_counts[0] > 0 else float("nan")
        return out
