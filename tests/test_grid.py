"""semcorr.grid: pixel grids, sampling at points, cells to pixels, moving points by a flow."""

from __future__ import annotations

import pytest
import torch

from semcorr.grid import cells_to_pixels, move_points, pixel_grid, pixel_points, pixels_to_cells


def test_pixel_grid_and_points_layouts():
    grid = pixel_grid(2, 3)
    assert grid.shape == (2, 2, 3)
    assert grid[0].tolist() == [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]]  # x: column index
    assert grid[1].tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]  # y: row index
    assert pixel_points(2, 3).tolist() == [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]
    assert pixel_points(2, 3, dtype=torch.float64).dtype == torch.float64


def test_cells_to_pixels_centres():
    pos = torch.tensor([[0.0, 0.0], [5.0, 3.0]])  # (x, y) cells
    assert cells_to_pixels(pos, (8, 8), (8, 8)).tolist() == [[0.0, 0.0], [5.0, 3.0]]
    assert cells_to_pixels(pos, (4, 4), (8, 8)).tolist() == [[0.5, 0.5], [10.5, 6.5]]
    assert pixels_to_cells(torch.tensor([[0.5, 0.5], [10.5, 6.5]]), (8, 8), (4, 4)).tolist() == pos.tolist()


def test_move_points_bilinear_and_nan():
    flow = torch.zeros(2, 4, 5)
    flow[0] = torch.arange(5.0)  # dx = x
    points = torch.tensor([[1.0, 2.0], [2.5, 0.0], [float("nan"), 1.0]])
    moved = move_points(points, flow)
    assert moved[0].tolist() == pytest.approx([2.0, 2.0])
    assert moved[1].tolist() == pytest.approx([5.0, 0.0])
    assert torch.isnan(moved[2]).all()
