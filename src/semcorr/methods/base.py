"""The interface every method implements, trained or not, so the evaluation loop never branches.

A method maps a batch of image pairs and query points in the source images to points in the
target images. Dense outputs (a flow field) come from :meth:`Matcher.dense_flow`, which by default
transfers every source pixel through :meth:`Matcher.forward`; methods with a natural dense output
override it.

Conventions: images are (B, 3, H, W) float RGB in [0, 1] (each backbone applies its own
normalisation); points are (B, N, 2) pixel coordinates (x, y) of the image they lie in, padded
with NaN. A predicted point of NaN means "no prediction" and counts as wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


@dataclass
class MatchOutput:
    """What a method returns for a batch of pairs.

    Attributes:
        points: (B, N, 2) target-image coordinates of the query source points; NaN where the
            query was padding or the method has no answer.
        extras: optional tensors for pictures and applications, keyed by name, e.g.
            ``"warped"`` (B, 3, Ht, Wt) source warped onto the target, ``"sparse_src"`` /
            ``"sparse_trg"`` (B, K, 2) sparse matches. Each method documents its own.
    """

    points: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


class Matcher(nn.Module):
    """Base class of all methods (baselines, HPF, NBB, DIA, SAM-Net).

    Subclasses implement :meth:`forward`. ``src_ids`` / ``trg_ids`` name the images (e.g. their
    file paths) so that a method may cache per-image work across pairs sharing an image.
    """

    #: Points transferred per call in the default :meth:`dense_flow` (bounds memory).
    dense_chunk: int = 16384

    def forward(
        self,
        src_img: torch.Tensor,
        trg_img: torch.Tensor,
        src_points: torch.Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
    ) -> MatchOutput:
        """Transfer points from source to target.

        Args:
            src_img: (B, 3, Hs, Ws) source images in [0, 1].
            trg_img: (B, 3, Ht, Wt) target images in [0, 1].
            src_points: (B, N, 2) query points (x, y) in source pixels, NaN-padded.
            src_ids / trg_ids: optional image names of length B, for caching.

        Returns:
            :class:`MatchOutput` with ``points`` of shape (B, N, 2).
        """
        raise NotImplementedError

    def save_pair_outputs(
        self, folder: Path, src_img: torch.Tensor, trg_img: torch.Tensor, output: MatchOutput, index: int
    ) -> list[Path]:
        """Write method-specific files of one pair (aligned images, analogies...) into ``folder``.

        Called by the evaluation loop for the pairs that get pictures (``save_pictures=true``).

        Args:
            folder: the pair's output folder (created by the method if it writes anything).
            src_img / trg_img: (3, Hs, Ws) / (3, Ht, Wt) images of the pair, in [0, 1].
            output: the :class:`MatchOutput` of the batch holding the pair.
            index: position of the pair in that batch.

        Returns:
            The files written; the default writes none.
        """
        return []

    @torch.no_grad()
    def dense_flow(
        self,
        src_img: torch.Tensor,
        trg_img: torch.Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
    ) -> torch.Tensor:
        """Dense displacement field from source to target.

        Returns:
            (B, 2, Hs, Ws) flow such that source pixel (x, y) maps to target pixel
            (x + flow[0, y, x], y + flow[1, y, x]); NaN where the method has no answer.
        """
        b, _, h, w = src_img.shape
        ys, xs = torch.meshgrid(
            torch.arange(h, dtype=torch.float32, device=src_img.device),
            torch.arange(w, dtype=torch.float32, device=src_img.device),
            indexing="ij",
        )
        grid = torch.stack([xs, ys], dim=-1).reshape(1, h * w, 2).expand(b, -1, -1)
        out = torch.cat(
            [
                self(src_img, trg_img, grid[:, i : i + self.dense_chunk], src_ids, trg_ids).points
                for i in range(0, h * w, self.dense_chunk)
            ],
            dim=1,
        )
        return (out - grid).reshape(b, h, w, 2).permute(0, 3, 1, 2)
