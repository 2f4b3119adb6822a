"""Percentage of correct keypoints (PCK) and the grouped means that report it per category.

A predicted keypoint is correct when ``||pred - gt|| <= alpha * T`` (T: the dataset's PCK
threshold of the pair, see :mod:`semcorr.data.base`). PCK of a pair is the fraction of its valid
keypoints that are correct; PCK of a dataset (or category, or difficulty level) is the mean over
its pairs. A NaN prediction counts as wrong; NaN ground truth marks padding and is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


def pck_per_pair(
    pred: torch.Tensor, gt: torch.Tensor, threshold: torch.Tensor, alphas: Sequence[float]
) -> torch.Tensor:
    """PCK of each pair at each alpha.

    Args:
        pred: (B, N, 2) predicted keypoints (NaN: no prediction, counts wrong).
        gt: (B, N, 2) ground-truth keypoints, NaN-padded.
        threshold: (B,) T per pair.
        alphas: the A alpha values.

    Returns:
        (B, A) fraction of correct valid keypoints; NaN for a pair without valid keypoints.
    """
    valid = torch.isfinite(gt).all(dim=-1)  # (B, N)
    dist = torch.linalg.norm(pred - gt, dim=-1)  # NaN where pred or gt is NaN
    bound = torch.as_tensor(alphas, dtype=dist.dtype, device=dist.device)[None, None] * threshold[:, None, None].to(dist)
    correct = (dist[..., None] <= bound) & valid[..., None]  # (B, N, A); NaN <= x is False
    n_valid = valid.sum(dim=1, keepdim=True).to(dist.dtype)  # (B, 1)
    return correct.sum(dim=1).to(dist.dtype) / n_valid


class GroupedMean(Metric):
    """Mean of per-pair values within groups (categories, difficulty levels), synced across processes.

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

    def update(self, values: torch.Tensor, groups: torch.Tensor) -> None:
        """Add pairs. values: (B, K) (rows with NaN are skipped); groups: (B,) long in [0, G)."""
        values = values.to(torch.float64).reshape(-1, self.num_values)
        groups = groups.reshape(-1).long().to(values.device)
        keep = torch.isfinite(values).all(dim=1)
        if ((groups < 0) | (groups >= self.num_groups)).any():
            raise ValueError(f"group index out of range [0, {self.num_groups}): {groups.tolist()}")
        self.sums.index_add_(0, groups[keep], values[keep])
        self.counts.index_add_(0, groups[keep], torch.ones_like(groups[keep], dtype=torch.float64))

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ((G, K) means, NaN for empty groups; (G,) counts), synced across processes.

        (torchmetrics squeezes singleton dimensions of ``compute``'s output; the shapes are
        restored here so callers can always index [group, value].)
        """
        means = self.sums / self.counts[:, None]
        return means, self.counts

    def grouped(self) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`compute` with its shapes guaranteed: ((G, K) means, (G,) counts)."""
        means, counts = self.compute()
        return means.reshape(self.num_groups, self.num_values), counts.reshape(self.num_groups)
