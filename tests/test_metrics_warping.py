"""Warping through flows and resizing flows (semcorr.metrics.warping) on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from semcorr.grid import pixel_grid
from semcorr.metrics.warping import flow_to_points, flow_valid, points_to_flow, resize_flow, warp_by_flow

NAN = float("nan")


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_warp_by_integer_shift_reproduces_the_shifted_image(mode):
    src = torch.rand(2, 3, 5, 6)
    flow = torch.zeros(2, 2, 5, 6)
    flow[:, 0], flow[:, 1] = 2.0, -1.0  # target (x, y) reads source (x + 2, y - 1)
    out = warp_by_flow(src, flow, mode=mode)
    expected = torch.zeros_like(src)
    expected[:, :, 1:, :4] = src[:, :, :4, 2:]
    assert torch.equal(out, expected)
    flow[0, :, 2, 3] = NAN
    out = warp_by_flow(src, flow, mode=mode, fill=-1.0)
    assert torch.all(out[0, :, 2, 3] == -1.0) and torch.equal(out[1], expected[1])


def test_warp_by_non_square_flow_grid_and_bilinear_midpoint():
    src = torch.arange(12.0).reshape(1, 1, 3, 4)
    flow = torch.zeros(1, 2, 2, 5)  # target 2x5 reads a 3x4 source
    flow[:, 0] = 0.5
    out = warp_by_flow(src, flow)
    assert out.shape == (1, 1, 2, 5)
    assert out[0, 0, 0, :3].tolist() == pytest.approx([0.5, 1.5, 2.5]) and out[0, 0, 1, 1].item() == pytest.approx(5.5)
    assert out[0, 0, 0, 3].item() == pytest.approx(1.5)  # x = 3.5: half of pixel 3, half zero padding


def test_resize_flow_keeps_translations_exact():
    flow = torch.zeros(1, 2, 10, 20)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    half = resize_flow(flow, (5, 10), 0.5, 0.5)
    assert torch.all(half[:, 0] == 1.5) and torch.all(half[:, 1] == -1.0)
    aniso = resize_flow(flow, (5, 5), (0.25, 0.5), (0.25, 0.5))
    assert torch.all(aniso[:, 0] == 0.75) and torch.all(aniso[:, 1] == -1.0)
    back = resize_flow(half, (10, 20), 2.0, 2.0)
    assert torch.allclose(back, flow)
    # Identity flow between differently scaled images: x1 -> x1, then x2 = x1 / 2, t2 = x1 / 4.
    ident = resize_flow(torch.zeros(1, 2, 8, 8), (4, 4), 0.5, 0.25)
    assert torch.allclose(ident[0, 0], -pixel_grid(4, 4)[0] / 2)
    per_pair = resize_flow(flow.repeat(2, 1, 1, 1), (5, 10), torch.tensor([[0.5, 0.5], [0.5, 0.5]]), 0.5)
    assert torch.all(per_pair[:, 0] == 1.5)


def test_resize_flow_nan_does_not_leak_through_zero_weights():
    flow = torch.ones(1, 2, 4, 4)
    flow[0, :, 1, 1] = NAN
    same = resize_flow(flow, (4, 4), 1.0, 1.0)
    assert flow_valid(same).sum().item() == 15 and not flow_valid(same)[0, 1, 1]
    up = resize_flow(flow, (8, 8), 2.0, 2.0)  # x1 = x2 / 2: NaN reaches x2 in 1..3 only
    invalid = ~flow_valid(up)[0]
    assert invalid[1:4, 1:4].all() and invalid.sum().item() == 9
    nearest = ~flow_valid(resize_flow(flow, (8, 8), 2.0, 2.0, mode="nearest"))[0]
    assert nearest[2, 2] and nearest[1:4, 1:4].sum() == nearest.sum() < 9  # ties at .5 may go either way


def test_points_flow_round_trip():
    flow = torch.randn(2, 2, 3, 5, generator=torch.Generator().manual_seed(0))
    points = flow_to_points(flow)
    assert torch.allclose(points[:, 0, 1, 4], 4 + flow[:, 0, 1, 4])
    # (x + u) - x loses the low bits of small u: an absolute tolerance (randn values near 0 broke rtol alone)
    assert torch.allclose(points_to_flow(points), flow, atol=1e-6)
