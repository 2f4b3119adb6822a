"""SAM-Net matching cost and blending (correlation.py, blending.py): eqs. 5, 8, 9 on hand-built inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from semcorr.methods.samnet.affine import identity_field, sample_window, translation_field, window_offsets
from semcorr.methods.samnet.blending import blend_features
from semcorr.methods.samnet.correlation import (
    argmax_field,
    attribute_weight,
    confidence,
    correlation_volume,
    local_correlation,
    matching_weight,
    mixed_volume,
    voted_translation,
)


def test_blending_identity_translation_and_affine_by_hand():
    src, trg = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    alpha = torch.rand(1, 1, 6, 6) + 0.1
    lam = attribute_weight(2)
    assert lam == pytest.approx(1 - math.exp(-2))
    out = blend_features(src, trg, identity_field(1, 6, 6), alpha, lam)
    assert torch.allclose(out, (1 - lam) * src + lam * trg, atol=1e-6)
    shift = blend_features(src, trg, translation_field(torch.tensor([[1.0, 0.0]]), 6, 6), alpha, lam)
    assert torch.allclose(shift[..., :5], (1 - lam) * src[..., :5] + lam * trg[..., 1:], atol=1e-6)
    # A = 2I, f = 0: neighbour j = i + e predicts j - 2e = i - e; weights alpha_j
    field = identity_field(1, 6, 6)
    field[:, 0] = field[:, 3] = 2.0
    out = blend_features(src, trg, field, alpha, 1.0)
    i = (3, 2)  # (y, x)
    num = sum(alpha[0, 0, i[0] + dy, i[1] + dx] * trg[0, :, i[0] - dy, i[1] - dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    den = sum(alpha[0, 0, i[0] + dy, i[1] + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert torch.allclose(out[0, :, i[0], i[1]], num / den, atol=1e-5)


def test_blending_commutes_with_a_1x1_convolution():
    # the network blends lifted features: lift(blend(F^s, F^t)) == blend(lift(F^s), lift(F^t))
    torch.manual_seed(0)
    src, trg = torch.randn(2, 12, 5, 6), torch.randn(2, 12, 7, 6)
    field = translation_field(torch.tensor([[0.7, -0.4], [0.3, 0.6]]), 5, 6)
    field[:, 1] = 0.2  # a12: the neighbours' predictions of x differ by up to 0.2
    alpha = torch.rand(2, 1, 5, 6) + 0.05
    lift = torch.nn.Conv2d(12, 3, 1)
    with torch.no_grad():
        direct = lift(blend_features(src, trg, field, alpha, 0.8))
        lifted = blend_features(lift(src), lift(trg), field, alpha, 0.8)
    inner = (slice(None), slice(None), slice(1, 4), slice(1, 5))  # cells whose samples all lie on the target map
    assert torch.allclose(direct[inner], lifted[inner], atol=1e-5)


def test_correlation_and_confidence_peak_at_the_match():
    torch.manual_seed(0)
    src = torch.randn(1, 16, 10, 10)
    trg = torch.roll(src, shifts=(1, 2), dims=(2, 3))  # F^t(i + (2, 1)) = F^s(i)
    volume = correlation_volume(src, trg)
    assert volume.shape == (1, 100, 10, 10)
    corr = local_correlation(mixed_volume(volume, src, trg, attribute_weight(1)), identity_field(1, 10, 10))
    assert corr.shape == (1, 81, 10, 10)
    best = window_offsets(4)[corr[0, :, 5, 5].argmax()]
    assert best.tolist() == [2.0, 1.0] and corr[0, :, 5, 5].max() == pytest.approx(1.0, abs=1e-5)
    at_match = local_correlation(volume, translation_field(torch.tensor([[2.0, 1.0]]), 10, 10))
    conf_match, conf_off = confidence(at_match), confidence(corr)
    assert conf_match[0, 0, 5, 5] > 1.5 * conf_off[0, 0, 5, 5]  # eq. 9 on cosines: a soft confidence
    assert torch.allclose(conf_match[0, 0, 5, 5], torch.softmax(at_match[0, :, 5, 5], 0)[40])


def test_volume_sampling_equals_cosines_of_the_sampled_window():
    # at integer positions the sampled volume is the cosine of F^s with the target window of eq. 5
    torch.manual_seed(1)
    src, attr, trg = torch.randn(1, 8, 6, 7), torch.randn(1, 8, 6, 7), torch.randn(1, 8, 5, 9)
    field = translation_field(torch.tensor([[1.0, -1.0]]), 6, 7)
    lam = attribute_weight(2)
    corr = local_correlation(mixed_volume(correlation_volume(src, trg), attr, trg, lam), field, radius=2)
    window = F.normalize(sample_window(trg, field, window_offsets(2)), dim=1)  # (B, C, K, h, w); zero off the map
    query = (1 - lam) * F.normalize(src, dim=1) + lam * F.normalize(attr, dim=1)
    expected = torch.einsum("bckhw,bchw->bkhw", window, query)
    assert torch.allclose(corr, expected, atol=1e-5)
    assert torch.equal(mixed_volume(correlation_volume(src, trg), attr, trg, 0.0), correlation_volume(src, trg))


def test_dilated_window_reads_entries_dilation_cells_apart():
    torch.manual_seed(2)
    src = torch.randn(1, 16, 16, 16)
    trg = torch.roll(src, shifts=(0, 6), dims=(2, 3))  # true shift 6 cells right: outside the dense 9x9 window
    volume = correlation_volume(src, trg)
    dense = local_correlation(volume, identity_field(1, 16, 16), radius=4)
    coarse = local_correlation(volume, identity_field(1, 16, 16), radius=4, dilation=2)
    assert dense[0, :, 8, 4].max() < 0.9  # no entry of the dense window reaches the match
    assert window_offsets(4)[coarse[0, :, 8, 4].argmax()].tolist() == [3.0, 0.0]  # 3 entries x 2 cells
    assert coarse[0, :, 8, 4].max() == pytest.approx(1.0, abs=1e-5)


def test_attribute_weight_readings():
    assert matching_weight(3, "paper") == pytest.approx(1 - math.exp(-3)) and matching_weight(3, "zero") == 0.0


def test_argmax_field_sends_each_cell_to_its_most_similar_target_cell():
    volume = torch.zeros(1, 6, 2, 4)  # a 2x3 source grid, a 2x4 target map
    volume[0, 0, 1, 3] = 1.0  # source cell (0, 0) is most like target (3, 1)
    volume[0, 4, 0, 0] = 0.5  # source cell (1, 1) like target (0, 0); the others tie at 0: first cell (0, 0)
    field = argmax_field(volume, (2, 3))
    assert torch.equal(field[0, :4], identity_field(1, 2, 3)[0, :4])  # A = I
    target = field[0, 4:] + torch.stack(torch.meshgrid(torch.arange(2.0), torch.arange(3.0), indexing="ij")[::-1])
    assert target[:, 0, 0].tolist() == [3.0, 1.0] and target[:, 1, 1].tolist() == [0.0, 0.0]
    assert target[:, 0, 2].tolist() == [0.0, 0.0]


def test_voted_translation_is_the_offset_most_cells_agree_on():
    torch.manual_seed(3)
    src = torch.randn(1, 16, 6, 8)
    trg = torch.roll(src, shifts=(-1, 2), dims=(2, 3))  # F^t(i + (2, -1)) = F^s(i) for cells not wrapped
    shift = voted_translation(correlation_volume(src, trg), (6, 8))
    assert shift.tolist() == [[2.0, -1.0]]
    # by hand: 3 cells vote (1, 0) with similarity 1, one cell votes (-2, 1) with similarity 1: (1, 0) wins
    volume = torch.full((1, 4, 3, 3), -1.0)  # a 2x2 source grid, a 3x3 target map
    for cell, (x, y) in enumerate([(0, 0), (1, 0), (0, 1), (1, 1)]):
        volume[0, cell, y, x + 1] = 1.0 if cell < 3 else -1.0
    volume[0, 3, 2, 0] = 1.0  # cell (1, 1) is most like target (0, 2): offset (-1, 1)
    assert voted_translation(volume, (2, 2)).tolist() == [[1.0, 0.0]]
