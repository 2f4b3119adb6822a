"""Small geometry shared by methods, metrics, datasets and pictures: pixel grids, sampling a field at
points (:func:`sample_at`, which image warping and point transfer both use), feature cells to pixels,
and moving points by a flow.

Coordinate convention (the whole project): a pixel's centre has integer coordinates (x = column,
y = row), so an image of width W spans centres 0 .. W-1; a flow (B, 2, H, W) defined on the grid
of image A maps pixel (x, y) of A to ``(x + flow[0, y, x], y + flow[1, y, x])`` in image B, NaN
where there is no answer. The grid comes from kornia's ``create_meshgrid``. Sampling is
``grid_sample(..., align_corners=True)`` after ``x_n = 2 x / (W - 1) - 1`` (x_n = -1 is the centre
of column 0, +1 the centre of column W-1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.utils import create_meshgrid
from torch import Tensor

#: Normalised coordinate used for NaN positions: far outside [-1, 1], so zero padding applies.
_OUTSIDE = -8.0


def pixel_grid(height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel-centre coordinates of an image.

    Returns:
        (2, H, W): channel 0 is x (column index), channel 1 is y (row index).
    """
    grid = create_meshgrid(height, width, normalized_coordinates=False, device=device, dtype=dtype)
    return grid[0].permute(2, 0, 1)


def pixel_points(height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel-centre coordinates as a list of points: :func:`pixel_grid` flattened row-major.

    Returns:
        (H W, 2) (x, y); row ``y W + x`` is pixel (x, y).
    """
    return pixel_grid(height, width, device, dtype).reshape(2, height * width).T


def cells_to_pixels(points: Tensor, grid_hw: tuple[int, int], image_hw: tuple[int, int]) -> Tensor:
    """Feature cells -> image pixels, a feature map spanning the whole image: a cell is the centre
    of the block of pixels it summarises, ``x = (u + 0.5) W / w - 0.5`` (identity when the map is
    the image).

    Args:
        points: (..., 2) float cell coordinates (u, v) of an (h, w) map (column, row).
        grid_hw: (h, w). image_hw: (H, W) of the image.

    Returns:
        (..., 2) pixel coordinates (x, y).
    """
    ratio = points.new_tensor([image_hw[1] / grid_hw[1], image_hw[0] / grid_hw[0]])
    return (points + 0.5) * ratio - 0.5


def pixels_to_cells(points: Tensor, image_hw: tuple[int, int], grid_hw: tuple[int, int]) -> Tensor:
    """Image pixels -> feature cells, the inverse of :func:`cells_to_pixels`:
    ``u = (x + 0.5) w / W - 0.5``.

    Args:
        points: (..., 2) pixel coordinates (x, y) of an (H, W) image.
        image_hw: (H, W). grid_hw: (h, w) of its feature map.

    Returns:
        (..., 2) cell coordinates (u, v).
    """
    return cells_to_pixels(points, image_hw, grid_hw)


def _normalised_grid(points: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, 2, H', W') pixel positions in an (height, width) image -> (B, H', W', 2) grid_sample grid.

    align_corners=True normalisation; NaN positions go far outside the image.
    """
    scale = points.new_tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)])
    grid = points.permute(0, 2, 3, 1) * scale - 1.0
    return torch.where(torch.isfinite(grid).all(dim=-1, keepdim=True), grid, torch.full_like(grid, _OUTSIDE))


def sample_at(
    field: torch.Tensor,
    points: torch.Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    fill: float = 0.0,
) -> torch.Tensor:
    """Sample a field at pixel positions (pixel centres at integer coordinates).

    Args:
        field: (B, C, H, W) values; NaN entries are "unknown".
        points: (B, 2, H', W') positions (x, y) in ``field``'s pixels; NaN: no position.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"zeros"`` (outside the image counts as 0) or ``"border"`` (clamped).
        fill: value returned where the position is NaN.

    Returns:
        (B, C, H', W'). With bilinear sampling an output is NaN iff a neighbour with non-zero
        weight is unknown (unknown values do not leak through zero weights).
    """
    _, _, h, w = field.shape
    field = field.float()
    grid = _normalised_grid(points.float(), h, w)
    unknown = ~torch.isfinite(field)
    if unknown.any():
        known = (~unknown).float()
        values = F.grid_sample(torch.where(unknown, 0.0, field), grid, mode=mode, padding_mode=padding_mode, align_corners=True)
        weight = F.grid_sample(known, grid, mode=mode, padding_mode=padding_mode, align_corners=True)
        # The total weight of the in-image neighbours (zero padding contributes none): an output is
        # known iff all of its in-image neighbours with non-zero weight are known.
        ones = F.grid_sample(torch.ones_like(known), grid, mode=mode, padding_mode=padding_mode, align_corners=True)
        out = torch.where(weight >= ones - 1e-6, values, torch.full_like(values, float("nan")))
    else:
        out = F.grid_sample(field, grid, mode=mode, padding_mode=padding_mode, align_corners=True)
    no_position = ~torch.isfinite(points).all(dim=1, keepdim=True)
    return torch.where(no_position, torch.full_like(out, fill), out)


def move_points(points: Tensor, flow: Tensor) -> Tensor:
    """Move points by a displacement field sampled bilinearly at them (:func:`sample_at`).

    Args:
        points: (N, 2) pixel coordinates (x, y) on the flow's grid; NaN rows are padding.
        flow: (2, H, W) displacement (dx, dy) of every pixel.

    Returns:
        (N, 2) moved points; NaN where the query is NaN (or reads an unknown displacement with a
        non-zero weight). Queries outside the grid read the nearest border displacement; integer
        queries read their pixel's displacement exactly.
    """
    sampled = sample_at(flow[None], points.T[None, :, :, None], padding_mode="border", fill=float("nan"))
    return points + sampled[0, :, :, 0].T
