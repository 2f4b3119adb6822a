"""PCK on hand-computed cases: thresholds, NaN padding and predictions, per-group means."""

import math

import pytest
import torch

from semcorr.metrics.pck import GroupedMean, pck_per_pair

NAN = float("nan")


def test_pck_thresholds_by_hand():
    gt = torch.tensor([[[0.0, 0.0], [10.0, 10.0], [20.0, 0.0], [NAN, NAN]]])
    # errors: 3, 5, 12 (3-4-5 and 5-12-13 triangles use exact distances below)
    pred = torch.tensor([[[3.0, 0.0], [13.0, 14.0], [20.0, 12.0], [NAN, NAN]]])
    threshold = torch.tensor([100.0])
    out = pck_per_pair(pred, gt, threshold, [0.03, 0.05, 0.1, 0.15])
    # alpha*T = 3, 5, 10, 15; dists 3, 5, 12 -> inclusive bounds
    assert out.tolist() == [[pytest.approx(1 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3), 1.0]]


def test_nan_prediction_counts_wrong_and_padding_ignored():
    gt = torch.tensor([[[0.0, 0.0], [5.0, 5.0]], [[1.0, 1.0], [NAN, NAN]]])
    pred = torch.tensor([[[0.0, 0.0], [NAN, NAN]], [[1.0, 1.0], [0.0, 0.0]]])
    out = pck_per_pair(pred, gt, torch.tensor([10.0, 10.0]), [0.1])
    assert out[:, 0].tolist() == [0.5, 1.0]


def test_pair_without_keypoints_is_nan_and_skipped_by_grouped_mean():
    out = pck_per_pair(torch.zeros(1, 2, 2), torch.full((1, 2, 2), NAN), torch.tensor([1.0]), [0.1])
    assert math.isnan(out.item())
    metric = GroupedMean(2, 1)
    metric.update(torch.tensor([[0.5], [NAN], [1.0], [0.0]]), torch.tensor([0, 0, 0, 1]))
    means, counts = metric.grouped()
    assert means[:, 0].tolist() == [0.75, 0.0]
    assert counts.tolist() == [2.0, 1.0]


def test_grouped_mean_per_category_is_mean_over_pairs():
    metric = GroupedMean(3, 2)
    metric.update(torch.tensor([[1.0, 1.0], [0.0, 0.5]]), torch.tensor([2, 2]))
    metric.update(torch.tensor([[0.25, 0.75]]), torch.tensor([0]))
    means, counts = metric.grouped()
    assert means[2].tolist() == [0.5, 0.75]
    assert means[0].tolist() == [0.25, 0.75]
    assert math.isnan(means[1, 0].item()) and counts[1] == 0


def test_grouped_mean_rejects_bad_group():
    metric = GroupedMean(2, 1)
    with pytest.raises(ValueError, match="out of range"):
        metric.update(torch.tensor([[1.0]]), torch.tensor([2]))
