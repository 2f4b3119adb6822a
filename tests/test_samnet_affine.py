"""SAM-Net affine fields (methods/samnet/affine.py): warping, point transfer, clamping, image points."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from semcorr.methods.samnet.affine import (
    cell_grid,
    clamp_field,
    dense_image_flow,
    identity_field,
    sample_window,
    transfer_image_points,
    transfer_points,
    translation_field,
    window_offsets,
)


def warp_features(feature: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """``F^t(i + f_i)`` on the source grid (the window of offset 0)."""
    return sample_window(feature, field, torch.zeros(1, 2))[:, :, 0]


def test_identity_field_warps_to_identity():
    feat = torch.randn(2, 5, 6, 7)
    field = identity_field(2, 6, 7)
    assert torch.allclose(warp_features(feat, field), feat, atol=1e-6)
    pts = torch.tensor([[[0.0, 0.0], [3.3, 2.7], [6.0, 5.0]]]).expand(2, -1, -1)
    assert torch.allclose(transfer_points(field, pts), pts, atol=1e-6)


def test_translation_field_shifts_features_and_points():
    feat = torch.randn(1, 3, 8, 9)
    field = translation_field(torch.tensor([[2.0, 1.0]]), 8, 9)
    warped = warp_features(feat, field)
    assert torch.allclose(warped[:, :, :7, :7], feat[:, :, 1:, 2:], atol=1e-6)  # F^t(i + f)
    assert torch.all(warped[:, :, 7:, :] == 0) and torch.all(warped[:, :, :, 7:] == 0)  # outside the map
    pts = torch.tensor([[[0.5, 0.5], [4.25, 6.0], [-1.0, 3.0]]])
    assert torch.allclose(transfer_points(field, pts), pts + torch.tensor([2.0, 1.0]), atol=1e-6)
    half = translation_field(torch.tensor([[0.5, 0.0]]), 8, 9)  # bilinear between two cells
    assert torch.allclose(warp_features(feat, half)[..., :8], 0.5 * (feat[..., :8] + feat[..., 1:]), atol=1e-6)


def test_affine_part_drives_window_and_point_extrapolation():
    # a field sampled from one global affine map x -> S x + t: f_c = (S - I) c + t, A_c = S
    s_mat, t = torch.tensor([[1.2, 0.3], [-0.2, 0.9]]), torch.tensor([1.5, -0.5])
    grid = cell_grid(4, 5)  # (2, 4, 5): x, y
    field = identity_field(1, 4, 5)
    field[0, :4] = s_mat.reshape(4, 1, 1)
    field[0, 4:] = torch.einsum("rc,chw->rhw", s_mat - torch.eye(2), grid) + t[:, None, None]
    pts = torch.tensor([[[1.5, 2.25], [0.0, 0.0], [3.9, 2.1], [-1.0, 5.5], [7.0, -2.0]]])  # last two outside
    assert torch.allclose(transfer_points(field, pts), pts @ s_mat.T + t, atol=1e-5)
    # the correlation window is stretched by A: offset (1, 1) reads the target at i + A (1, 1) = i + (2, 3)
    feat = torch.arange(64.0).reshape(1, 1, 8, 8)
    big = identity_field(1, 8, 8)
    big[:, :4] = torch.tensor([2.0, 0.0, 0.0, 3.0])[:, None, None]
    window = sample_window(feat, big, torch.tensor([[1.0, 1.0]]))
    assert window[0, 0, 0, 2, 3] == feat[0, 0, 5, 5]


def test_window_offsets_follow_unfold_order():
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    cols = F.unfold(x, 3, padding=1).reshape(9, 5, 5)
    offsets = window_offsets(1)
    assert torch.equal(offsets[4], torch.tensor([0.0, 0.0]))
    for k, (dx, dy) in enumerate(offsets.long().tolist()):
        assert cols[k, 2, 2] == x[0, 0, 2 + dy, 2 + dx]


def test_clamp_field_keeps_matches_on_the_target_map():
    field = translation_field(torch.tensor([[5.0, -3.0]]), 2, 3)
    field[:, 1] = 0.25  # A is left alone
    clamped = clamp_field(field, 4, 6)
    target = cell_grid(2, 3)[None] + clamped[:, 4:]
    assert target[0, 0].tolist() == [[5.0, 5.0, 5.0], [5.0, 5.0, 5.0]]  # x = i + 5 clamped at w' - 1 = 5
    assert target[0, 1].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # y = j - 3 clamped at 0
    assert torch.equal(clamped[:, :4], field[:, :4])
    inside = translation_field(torch.tensor([[1.0, 1.0]]), 2, 3)
    assert torch.equal(clamp_field(inside, 4, 6), inside)


def test_image_points_through_network_size_and_cells():
    # 8x8 grid of a 64x64 network input (8 px cells); the field moves one cell right = 8 network px.
    # Source 128x96 (x2 / x1.5 to the network), target 32x64 (/2, /1): a source pixel (20, 30) is at
    # network (10, 20), lands on network (18, 20), i.e. target (9, 20).
    field = translation_field(torch.tensor([[1.0, 0.0]]), 8, 8)
    pts = torch.tensor([[[20.0, 30.0], [float("nan"), float("nan")]]])
    out = transfer_image_points(field, pts, (96, 128), (64, 32), (64, 64))
    assert torch.allclose(out[0, 0], torch.tensor([9.0, 20.0]), atol=1e-5) and torch.isnan(out[0, 1]).all()
    flow = dense_image_flow(field, (96, 128), (64, 32), (64, 64))
    assert flow.shape == (1, 2, 96, 128)
    assert torch.allclose(flow[0, :, 30, 20], torch.tensor([9.0 - 20.0, 20.0 - 30.0]), atol=1e-5)
