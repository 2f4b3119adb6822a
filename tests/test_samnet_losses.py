"""SAM-Net losses (losses.py): eqs. 11-13 by hand, the truncation, the flow supervision at keypoints."""

from __future__ import annotations

import math

import pytest
import torch

from semcorr.errors import ConfigError
from semcorr.methods.samnet import SAMNetIteration, SAMNetLoss, SAMNetOutput
from semcorr.methods.samnet.affine import identity_field, translation_field
from semcorr.methods.samnet.losses import attribute_matching_loss, flow_loss, patch_distances


def test_matching_loss_is_minimal_at_the_true_shift():
    torch.manual_seed(0)
    src = torch.randn(1, 16, 12, 12)
    trg = torch.roll(src, shifts=(1, 2), dims=(2, 3))  # true field: f = (2, 1)
    losses = {}
    for fx in range(-1, 5):
        for fy in range(-2, 4):
            field = translation_field(torch.tensor([[float(fx), float(fy)]]), 12, 12)
            losses[(fx, fy)] = attribute_matching_loss(src, trg, field, tau=0.0).item()
    assert min(losses, key=losses.get) == (2, 1)
    other, identity = torch.randn_like(src), identity_field(1, 12, 12)
    plain = attribute_matching_loss(src, other, identity, tau=0.0).item()
    assert attribute_matching_loss(src, other, identity, tau=50.0).item() == pytest.approx(50.0)  # max(-log K, tau)
    assert plain <= attribute_matching_loss(src, other, identity, tau=0.5).item() <= plain + 0.5
    assert attribute_matching_loss(src, other, identity, tau=0.5, truncation="cap").item() <= 0.5 + 1e-6  # min
    with pytest.raises(ConfigError):
        attribute_matching_loss(src, src, identity, truncation="both")


def test_negatives_are_shifted_transformations_on_the_target_map():
    # D(i, d) by hand: 1x1 patches, source cell (0, 0) matched to target (2, 1) of a 3x4 target
    attr = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    trg = torch.zeros(1, 2, 3, 4)
    trg[:, 0] = 1.0
    trg[0, :, 1, 3] = torch.tensor([0.0, 1.0])  # the cell right of the match is orthogonal
    field = translation_field(torch.tensor([[2.0, 1.0]]), 1, 1)
    dist, inside = patch_distances(attr, trg, field, window_radius=1, patch_radius=0)
    # offsets (dx, dy) row-major from (-1, -1): every candidate is on the 3x4 map
    assert inside.all()
    assert dist[0, :, 0, 0].tolist() == pytest.approx([0, 0, 0, 0, 0, 2, 0, 0, 0])
    expected = -math.log(1 / (8 + math.exp(-2)))
    assert attribute_matching_loss(attr, trg, field, tau=0.0, window_radius=1, patch_radius=0).item() == pytest.approx(
        expected, abs=1e-5
    )
    # matched at the corner (3, 2): the 5 candidates off the map are left out of the softmax; of the
    # 4 left, (3, 1) is the orthogonal cell
    corner = translation_field(torch.tensor([[3.0, 2.0]]), 1, 1)
    _, inside = patch_distances(attr, trg, corner, window_radius=1, patch_radius=0)
    assert inside[0, :, 0, 0].tolist() == [True, True, False, True, True, False, False, False, False]
    assert attribute_matching_loss(attr, trg, corner, tau=0.0, window_radius=1, patch_radius=0).item() == pytest.approx(
        math.log(3 + math.exp(-2)), abs=1e-5
    )


def test_off_map_candidates_do_not_beat_a_weak_match():
    # attribute-transferred cells u and target cells v at cosine 0.4 (post-ReLU features are often
    # that far apart): a zero feature off the map would be closer (distance 1 < 2 - 2 * 0.4) and win
    # the softmax; they are left out, so every cell scores log(#candidates on the map)
    u, v = torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)
    u[:, 0] = 1.0
    v[:, 0], v[:, 1] = 0.4, math.sqrt(1 - 0.4**2)
    per_axis = torch.tensor([sum(1 for q in range(8) if abs(q - p) <= 4) for p in range(8)], dtype=torch.float64)
    expected = torch.log(per_axis[:, None] * per_axis[None, :]).mean().item()  # 5..8 candidates per axis
    loss = attribute_matching_loss(u, v, identity_field(1, 8, 8), tau=0.0, patch_radius=0)
    assert loss.item() == pytest.approx(expected, abs=1e-4)




def test_flow_loss_is_the_end_point_error_in_cells():
    # 32x32 images, a 4x4 grid (8 px cells); the ground truth moves everything 16 px right = 2 cells
    src = torch.tensor([[[4.0, 4.0], [12.5, 20.0], [27.0, 9.0], [float("nan"), float("nan")]]])
    trg = src + torch.tensor([16.0, 0.0])
    true = translation_field(torch.tensor([[2.0, 0.0]]), 4, 4)
    identity = identity_field(1, 4, 4)
    assert flow_loss([true], src, trg, (32, 32)).item() == pytest.approx(0.0, abs=1e-5)
    assert flow_loss([identity], src, trg, (32, 32)).item() == pytest.approx(2.0, abs=1e-5)
    assert flow_loss([identity, true], src, trg, (32, 32)).item() == pytest.approx(1.0, abs=1e-5)  # mean over iterations
    # a point's error is measured where it is (sub-cell): a field that scales x by 2 about cell 0
    scale = identity_field(1, 4, 4)
    scale[:, 0] = 2.0
    scale[:, 4] = torch.arange(4.0)  # f_c = (A - I) c for x, so that c -> 2c and every point p -> 2p
    point = torch.tensor([[[12.0, 4.0]]])  # cell x = 12.5 / 8 - 0.5 = 1.0625 -> 2.125 cells = 20.5 px
    assert flow_loss([scale], point, torch.tensor([[[20.5, 4.0]]]), (32, 32)).item() == pytest.approx(0.0, abs=1e-5)
    assert flow_loss([true], src[:, 3:], trg[:, 3:], (32, 32)).item() == 0.0  # only padding: no error
    criterion = SAMNetLoss(flow=2.0)
    out = SAMNetOutput([SAMNetIteration(identity, torch.rand(1, 3, 32, 32), torch.ones(1, 1, 4, 4), torch.rand(1, 8, 4, 4))],
                       torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 4))
    terms = criterion(out, src, trg)
    assert terms["flow"].item() == pytest.approx(2.0, abs=1e-5)
    assert terms["loss"].item() == pytest.approx(terms["am"].item() + terms["content"].item()
                                                 + terms["smooth"].item() + 2.0 * terms["flow"].item(), rel=1e-5)
    assert "flow" not in criterion(out) and "flow" not in SAMNetLoss(flow=0.0)(out, src, trg)
