"""Hyperpixel geometry: receptive-field boxes of the base layer and margin pruning.

Every hyperpixel sits on the base layer's regular grid. Following the reference code, cell
``(x, y)`` (column ``x``, row ``y`` of the base feature map) has centre ``(x j, y j)`` and box
``[x j - r, y j - r, x j + r, y j + r]`` with ``j`` the base layer's jump and ``r = rf // 2``
(``rf`` its receptive field; ResNet ids 0..9 report the reference's hard-coded table, other
backbones their computed values). Margin pruning keeps the boxes with ``xmin >= -j``,
``ymin >= -j``, ``xmax < W + j``, ``ymax < H + j`` for an ``H x W`` image. The four conditions
are separable, so the kept cells always form a rectangle of the grid: everything here is stored
for that rectangle only, in row-major order (the order of the reference's flattened boxes). Plain arithmetic,
hand-written (HPF-specific box convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class HyperpixelGrid:
    """The kept hyperpixels of one image: a rectangle of the base layer's grid.

    Attributes:
        jump: the base layer's jump ``j`` in image pixels.
        half_rf: ``r = rf // 2`` of the base layer (box half side).
        image_hw: ``(H, W)`` of the image the boxes live in.
        feature_hw: ``(h, w)`` of the base feature map (the full grid).
        rows: kept grid rows (full-grid indices, consecutive).
        cols: kept grid columns (full-grid indices, consecutive).
    """

    jump: int
    half_rf: int
    image_hw: tuple[int, int]
    feature_hw: tuple[int, int]
    rows: range
    cols: range

    @property
    def shape(self) -> tuple[int, int]:
        """``(Hk, Wk)``: kept rows and columns."""
        return len(self.rows), len(self.cols)

    @property
    def size(self) -> int:
        """Number of kept hyperpixels ``N = Hk * Wk``."""
        return len(self.rows) * len(self.cols)

    @property
    def image_wh(self) -> tuple[int, int]:
        """``(W, H)`` of the image (the reference's ``imsize`` order)."""
        return self.image_hw[1], self.image_hw[0]

    def _axes(self, device: torch.device | str | None) -> tuple[Tensor, Tensor]:
        """Full-grid column and row index of every kept hyperpixel, each (N,) float32."""
        ys = torch.arange(self.rows.start, self.rows.stop, device=device, dtype=torch.float32)
        xs = torch.arange(self.cols.start, self.cols.stop, device=device, dtype=torch.float32)
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        return gx.reshape(-1), gy.reshape(-1)

    def centres(self, device: torch.device | str | None = None) -> Tensor:
        """Box centres ``(x j, y j)``.

        Returns:
            (N, 2) float32 (x, y) in image pixels, row-major over the kept rectangle.
        """
        gx, gy = self._axes(device)
        return torch.stack([gx * self.jump, gy * self.jump], dim=1)

    def boxes(self, device: torch.device | str | None = None) -> Tensor:
        """Receptive-field boxes of the kept hyperpixels.

        Returns:
            (N, 4) float32 ``(xmin, ymin, xmax, ymax)`` in image pixels, row-major.
        """
        c = self.centres(device)
        return torch.cat([c - self.half_rf, c + self.half_rf], dim=1)

    def topleft(self, device: torch.device | str | None = None) -> Tensor:
        """Top-left corners ``(xmin, ymin)`` of the boxes.

        Returns:
            (N, 2) float32, row-major.
        """
        return self.centres(device) - self.half_rf


def kept_range(cells: int, length: int, jump: int, half_rf: int, prune: bool) -> range:
    """Cells of one grid axis whose boxes survive margin pruning.

    Cell ``c`` spans ``[c j - r, c j + r]``; it is kept when ``c j - r >= -j`` and
    ``c j + r < length + j``.

    Args:
        cells: number of cells on the axis (feature map width or height).
        length: image extent on the axis in pixels.
        jump: ``j``.
        half_rf: ``r``.
        prune: ``False`` keeps every cell.

    Returns:
        The consecutive kept cell indices (possibly empty).
    """
    if not prune:
        return range(cells)
    first = max(0, -((jump - half_rf) // jump))  # ceil((r - j) / j)
    last = min(cells - 1, (length + jump - half_rf - 1) // jump)
    return range(first, max(first, last + 1))


def hyperpixel_grid(
    feature_hw: tuple[int, int],
    image_hw: tuple[int, int],
    jump: int,
    receptive_field: int,
    margin_pruning: bool = True,
) -> HyperpixelGrid:
    """Boxes of a base feature map, pruned at the image margins.

    Args:
        feature_hw: ``(h, w)`` of the base layer's feature map.
        image_hw: ``(H, W)`` of the image the features were computed from.
        jump: the base layer's jump in pixels.
        receptive_field: the base layer's receptive field size in pixels.
        margin_pruning: drop boxes reaching more than one jump past the image border
            (the reference does, except on Caltech-101).

    Returns:
        The :class:`HyperpixelGrid` of kept cells.
    """
    half = int(receptive_field) // 2
    h, w = int(feature_hw[0]), int(feature_hw[1])
    height, width = int(image_hw[0]), int(image_hw[1])
    return HyperpixelGrid(
        jump=int(jump),
        half_rf=half,
        image_hw=(height, width),
        feature_hw=(h, w),
        rows=kept_range(h, height, int(jump), half, margin_pruning),
        cols=kept_range(w, width, int(jump), half, margin_pruning),
    )
