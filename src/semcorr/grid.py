"""Small geometry shared by methods, metrics, datasets and pictures: pixel grids, feature cells to
pixels, and moving points by a flow.

Coordinate convention (the whole project): a pixel's centre has integer coordinates (x = column,
y = row), so an image of width W spans centres 0 .. W-1; a flow (B, 2, H, W) defined on the grid
of image A maps pixel (x, y) of A to ``(x + flow[0, y, x], y + flow[1, y, x])`` in image B, NaN
where there is no answer. The grid comes from kornia's ``create_meshgrid``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.utils import create_meshgrid
from torch import Tensor


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


def move_points(points: Tensor, flow: Tensor) -> Tensor:
    """Move points by a displacement field sampled bilinearly at them.

    Args:
        points: (N, 2) pixel coordinates (x, y) on the flow's grid; NaN rows are padding.
        flow: (2, H, W) displacement (dx, dy) of every pixel.

    Returns:
        (N, 2) moved points; NaN where the query is NaN. Queries outside the grid read the nearest
        border displacement; integer queries read their pixel's displacement exactly.
    """
    _, h, w = flow.shape
    valid = torch.isfinite(points).all(-1)
    safe = torch.where(valid[:, None], points, torch.zeros_like(points))
    scale = safe.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (safe * scale - 1.0).view(1, 1, -1, 2)
    sampled = F.grid_sample(flow[None].to(safe.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    moved = safe + sampled[0, :, 0].T
    return torch.where(valid[:, None], moved, torch.full_like(moved, float("nan")))
