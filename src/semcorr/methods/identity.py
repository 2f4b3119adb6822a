"""The identity baseline: every point keeps its relative position in the image."""

from __future__ import annotations

import torch

from semcorr.grid import pixel_grid
from semcorr.methods.base import Matcher, MatchOutput


def _scaled(points: torch.Tensor, from_hw: tuple[int, int], to_hw: tuple[int, int]) -> torch.Tensor:
    """(..., 2) points (x, y) of an image of size ``from_hw`` at the same relative position in
    one of size ``to_hw``."""
    return points * points.new_tensor([to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]])


class IdentityMatcher(Matcher):
    """Maps source pixel (x, y) to target pixel (x * Wt / Ws, y * Ht / Hs).

    The HPF paper reports 27.0 PCK@0.1 for this mapping on the full PF-WILLOW.
    """

    readout = "identity"

    def forward(
        self,
        src_img: torch.Tensor,
        trg_img: torch.Tensor,
        src_points: torch.Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
        dense: str | None = None,
    ) -> MatchOutput:
        """src_points (B, N, 2) -> MatchOutput.points (B, N, 2) at the same relative position;
        the flow of the same map when asked (see :meth:`Matcher.forward`)."""
        src_hw, trg_hw = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        flow = None
        if dense is not None:
            frm, to = (src_hw, trg_hw) if dense == "forward" else (trg_hw, src_hw)
            grid = pixel_grid(*frm, src_img.device).permute(1, 2, 0)
            flow = (_scaled(grid, frm, to) - grid).permute(2, 0, 1)[None].expand(src_img.shape[0], -1, -1, -1)
        return MatchOutput(points=_scaled(src_points, src_hw, trg_hw), flow=flow)
