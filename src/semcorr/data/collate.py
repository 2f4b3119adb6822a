"""Batching pair samples: keypoints padded with NaN, images stacked, strings kept as lists."""

from __future__ import annotations

from typing import Any

import torch

from semcorr.errors import ConfigError

#: Keys whose per-sample tensors have a variable first dimension (padded with NaN).
PADDED_KEYS = ("src_kps", "trg_kps")


def pad_points(points: list[torch.Tensor]) -> torch.Tensor:
    """Stack (N_i, 2) tensors into (B, max N_i, 2), padding with NaN."""
    n = max((len(p) for p in points), default=0)
    out = torch.full((len(points), n, 2), float("nan"))
    for i, p in enumerate(points):
        out[i, : len(p)] = p
    return out


def collate_pairs(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate samples of :class:`semcorr.data.base.PairDataset` into a batch.

    Returns:
        dict with the same keys: tensors stacked to (B, ...), keypoints padded to (B, N, 2)
        with NaN, ints/floats as (B,) tensors, strings as lists of length B.
    """
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        if key in PADDED_KEYS:
            batch[key] = pad_points(values)
        elif isinstance(values[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ConfigError(
                    f"Cannot batch {key!r} of different sizes {sorted(shapes)}: use "
                    "datamodule.batch_size=1 or a fixed image size (dataset.size=[H,W])."
                )
            batch[key] = torch.stack(values)
        elif isinstance(values[0], bool):
            batch[key] = torch.tensor(values)
        elif isinstance(values[0], int):
            batch[key] = torch.tensor(values, dtype=torch.long)
        elif isinstance(values[0], float):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            batch[key] = values
    return batch
