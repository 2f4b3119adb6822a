"""Keypoint transfer through the hyperpixel flow (HPF sec. 3.3, the reference's rule).

Hand-written: the rule is specific to HPF and no library implements it.

A source point ``p`` collects every kept source box containing it (bounds inclusive). Each such
box ``q`` proposes ``trg_box[match[q]].topleft + (p - src_box[q].topleft)``; the prediction is
their mean. A point in no kept box gets NaN (it counts as wrong). The names say "box" because the
rule moves points with the matched receptive-field boxes (SAM-Net's ``transfer_points`` moves them
through an affine field instead).

:func:`box_transfer_reference` follows the rule literally with a points x boxes membership matrix.
:func:`box_transfer` and :func:`dense_box_transfer` use the grid instead: box ``c`` of an axis
spans ``[c j - r, c j + r]``, so the boxes holding a coordinate form an interval of cells found
arithmetically, the boxes holding a point are a rectangle of the kept grid, and the sum of the
matched target corners over that rectangle is four reads of a summed-area table. Memory is
linear in the number of points, so a whole image's pixels go at once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from semcorr.grid import pixel_grid

from .geometry import HyperpixelGrid


def box_transfer_reference(src_boxes: Tensor, trg_boxes: Tensor, match: Tensor, points: Tensor) -> Tensor:
    """The reference transfer rule with an explicit membership matrix.

    Args:
        src_boxes: (Ns, 4) kept source boxes ``(xmin, ymin, xmax, ymax)``.
        trg_boxes: (Nt, 4) kept target boxes.
        match: (Ns,) int64 target index of each source hyperpixel.
        points: (N, 2) source points (x, y); NaN rows give NaN.

    Returns:
        (N, 2) float32 target points; NaN where no box holds the point.
    """
    x, y = points[:, :1], points[:, 1:]
    inside = (x >= src_boxes[:, 0]) & (y >= src_boxes[:, 1]) & (x <= src_boxes[:, 2]) & (y <= src_boxes[:, 3])
    proposals = trg_boxes[match, :2][None] + points[:, None, :] - src_boxes[None, :, :2]  # (N, Ns, 2)
    total = (proposals * inside[..., None]).sum(dim=1)
    return total / inside.sum(dim=1, keepdim=True)


def covering_cells(coords: Tensor, first: int, count: int, jump: int, half_rf: int) -> tuple[Tensor, Tensor]:
    """Kept cells of one grid axis whose boxes contain each coordinate.

    Cell ``c`` (full-grid index) contains ``v`` when ``c j - r <= v <= c j + r``. The bounds come
    from ``ceil((v - r) / j)`` and ``floor((v + r) / j)`` in float64 and are then corrected with
    exact comparisons, so membership matches the float32 test of the reference exactly.

    Args:
        coords: (N,) float coordinates.
        first / count: the kept cells are ``first .. first + count - 1``.
        jump / half_rf: ``j`` and ``r``.

    Returns:
        ``(lo, hi)``: (N,) int64 kept-grid indices (0-based in the kept range) of the first and
        last containing cell; ``lo > hi`` where there is none (NaN coordinates included).
    """
    v = coords.double()
    finite = torch.isfinite(v)
    v = torch.where(finite, v, torch.zeros_like(v))
    lo = torch.ceil((v - half_rf) / jump)
    lo = lo - ((lo - 1) * jump + half_rf >= v).double()
    lo = lo + (lo * jump + half_rf < v).double()
    hi = torch.floor((v + half_rf) / jump)
    hi = hi + ((hi + 1) * jump - half_rf <= v).double()
    hi = hi - (hi * jump - half_rf > v).double()
    lo = lo.clamp(min=first).long() - first
    hi = hi.clamp(max=first + count - 1).long() - first
    lo = torch.where(finite, lo, torch.ones_like(lo))
    hi = torch.where(finite, hi, torch.zeros_like(hi))
    return lo, hi


def _corner_table(src: HyperpixelGrid, trg: HyperpixelGrid, match: Tensor) -> Tensor:
    """Summed-area table of the matched target top-left corners over the kept source grid.

    Returns:
        (Hs+1, Ws+1, 2) float64 with ``T[y, x] = sum of corners over rows < y, cols < x``.
    """
    hs, ws = src.shape
    corners = trg.topleft(match.device)[match].double().view(hs, ws, 2)
    table = corners.new_zeros(hs + 1, ws + 1, 2)
    table[1:, 1:] = corners.cumsum(0).cumsum(1)
    return table


def _cell_sum(lo: Tensor, hi: Tensor, first: int, jump: int, half_rf: int) -> Tensor:
    """Sum over kept cells ``lo..hi`` (kept-grid indices) of the box minimum ``c j - r``."""
    a = (lo + first).double()
    b = (hi + first).double()
    n = (hi - lo + 1).double()
    return jump * (a + b) * n / 2 - half_rf * n


def _rect_transfer(
    src: HyperpixelGrid,
    table: Tensor,
    x: Tensor,
    y: Tensor,
    xr: tuple[Tensor, Tensor],
    yr: tuple[Tensor, Tensor],
) -> Tensor:
    """Mean proposal of the rectangle of boxes ``yr x xr`` for points ``(x, y)``.

    All arguments broadcast together; returns (..., 2) float32, NaN for empty rectangles.
    """
    (x0, x1), (y0, y1) = xr, yr
    empty = (x0 > x1) | (y0 > y1)
    x0c, y0c = x0.clamp(0, table.shape[1] - 1), y0.clamp(0, table.shape[0] - 1)
    x1c, y1c = torch.maximum(x1, x0c - 1) + 1, torch.maximum(y1, y0c - 1) + 1
    corner_sum = table[y1c, x1c] - table[y0c, x1c] - table[y1c, x0c] + table[y0c, x0c]
    nx = (x1c - x0c).double()
    ny = (y1c - y0c).double()
    n = nx * ny
    j, r = src.jump, src.half_rf
    src_x = _cell_sum(x0c, x1c - 1, src.cols.start, j, r) * ny
    src_y = _cell_sum(y0c, y1c - 1, src.rows.start, j, r) * nx
    px = x.double() + (corner_sum[..., 0] - src_x) / n
    py = y.double() + (corner_sum[..., 1] - src_y) / n
    out = torch.stack([px, py], dim=-1).float()
    return out.masked_fill(empty[..., None], float("nan"))


def box_transfer(src: HyperpixelGrid, trg: HyperpixelGrid, match: Tensor, points: Tensor) -> Tensor:
    """The reference transfer rule computed on the grid (no membership matrix).

    Args:
        src / trg: kept grids of the source and target hyperpixels.
        match: (Ns,) int64 target index of each source hyperpixel.
        points: (N, 2) source points (x, y); NaN rows give NaN.

    Returns:
        (N, 2) float32 target points; NaN where no kept box holds the point.
    """
    if src.size == 0 or trg.size == 0:
        return torch.full_like(points, float("nan"))
    table = _corner_table(src, trg, match)
    xr = covering_cells(points[:, 0], src.cols.start, len(src.cols), src.jump, src.half_rf)
    yr = covering_cells(points[:, 1], src.rows.start, len(src.rows), src.jump, src.half_rf)
    return _rect_transfer(src, table, points[:, 0], points[:, 1], xr, yr).to(points.dtype)


def dense_box_transfer(src: HyperpixelGrid, trg: HyperpixelGrid, match: Tensor) -> Tensor:
    """Transfer every source pixel ``(x, y)``, integer coordinates, by the same rule.

    Args:
        src / trg: kept grids; the source image is ``src.image_hw``.
        match: (Ns,) int64 target index of each source hyperpixel.

    Returns:
        (2, H, W) float32 flow: pixel ``(x, y)`` maps to ``(x + flow[0, y, x], y + flow[1, y, x])``;
        NaN where no kept box holds the pixel.
    """
    h, w = src.image_hw
    device = match.device
    xs = torch.arange(w, device=device, dtype=torch.float32)
    ys = torch.arange(h, device=device, dtype=torch.float32)
    if src.size == 0 or trg.size == 0:
        return torch.full((2, h, w), float("nan"), device=device)
    table = _corner_table(src, trg, match)
    x0, x1 = covering_cells(xs, src.cols.start, len(src.cols), src.jump, src.half_rf)
    y0, y1 = covering_cells(ys, src.rows.start, len(src.rows), src.jump, src.half_rf)
    pred = _rect_transfer(src, table, xs[None, :], ys[:, None], (x0[None, :], x1[None, :]), (y0[:, None], y1[:, None]))
    return pred.permute(2, 0, 1) - pixel_grid(h, w, device)
