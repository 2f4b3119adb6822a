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


# -- the PCK family: three averages, grouping fields, subset flags, resolution -------------------
def batch_of(pairs, **extra):
    """A collated batch of hand-made pairs: each (category id, gt (N, 2), pred (N, 2), T), NaN-padded."""
    n = max(len(p[1]) for p in pairs)
    pad = lambda rows: torch.cat([torch.tensor(rows, dtype=torch.float32), torch.full((n - len(rows), 2), NAN)])  # noqa: E731
    return {
        "category_id": torch.tensor([p[0] for p in pairs]),
        "trg_kps": torch.stack([pad(p[1]) for p in pairs]),
        "pred": torch.stack([pad(p[2]) for p in pairs]),
        "pck_threshold": torch.tensor([p[3] for p in pairs]),
        **extra,
    }


def feed(evaluator, batch):
    from semcorr.methods.base import MatchOutput

    return evaluator.update(batch, MatchOutput(batch["pred"]))["pck"]


def test_three_averages_by_hand():
    """Pairs with 2, 4 and 1 keypoints in two categories, T = 10, alphas 0.1 and 0.5 (bounds 1, 5):
    A (cat) errors 0, 5 -> 1/2, 2/2; B (cat) errors 0, 2, none (NaN prediction: wrong), 9 -> 1/4, 2/4;
    C (dog) error 3 -> 0/1, 1/1.
    per pair:     (1/2 + 1/4 + 0) / 3 = 1/4,         (1 + 1/2 + 1) / 3 = 5/6
    per keypoint: (1 + 1 + 0) / 7 = 2/7,             (2 + 2 + 1) / 7 = 5/7
    per category: ((1/2 + 1/4) / 2 + 0) / 2 = 3/16,  ((1 + 1/2) / 2 + 1) / 2 = 7/8"""
    from semcorr.metrics.pck import PCKEvaluator

    evaluator = PCKEvaluator([0.1, 0.5], ["cat", "dog"])
    a = (0, [[0, 0], [10, 0]], [[0, 0], [10, 5]], 10.0)
    b = (0, [[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 3], [NAN, NAN], [3, 12]], 10.0)
    c = (1, [[5, 5]], [[8, 5]], 10.0)
    pair = feed(evaluator, batch_of([a, b]))  # A padded to 4 keypoints
    assert pair.tolist() == [[0.5, 1.0], [0.25, 0.5]]
    feed(evaluator, batch_of([c]))
    out = evaluator.compute()
    assert out["pck@0.1"] == pytest.approx(25.0) and out["pck@0.5"] == pytest.approx(100 * 5 / 6)
    assert out["pck_kp@0.1"] == pytest.approx(100 * 2 / 7) and out["pck_kp@0.5"] == pytest.approx(100 * 5 / 7)
    assert out["pck_cat@0.1"] == pytest.approx(100 * 3 / 16) and out["pck_cat@0.5"] == pytest.approx(100 * 7 / 8)
    assert out["pck@0.1/cat"] == pytest.approx(37.5) and out["pck@0.5/dog"] == pytest.approx(100.0)


def test_nan_prediction_is_wrong_in_every_average():
    from semcorr.metrics.pck import PCKEvaluator

    evaluator = PCKEvaluator([0.1], ["cat"])
    feed(evaluator, batch_of([(0, [[0, 0], [5, 5]], [[0, 0], [NAN, NAN]], 10.0)]))
    out = evaluator.compute()
    assert out["pck@0.1"] == out["pck_kp@0.1"] == out["pck_cat@0.1"] == pytest.approx(50.0)


def test_grouping_fields_and_subset_flags():
    from semcorr.metrics.pck import PCKEvaluator

    evaluator = PCKEvaluator([0.1], ["cat"], group_fields=["occlusion"], subset_flags=["clean"])
    pairs = [(0, [[0, 0]], [[0, 0]], 10.0), (0, [[0, 0]], [[5, 0]], 10.0), (0, [[0, 0], [1, 1]], [[0, 0], [9, 9]], 10.0)]
    feed(evaluator, batch_of(pairs, occlusion=torch.tensor([0, 2, 2]), clean=torch.tensor([True, False, True])))
    out = evaluator.compute()
    assert out["pck@0.1/occlusion=0"] == 100.0 and out["pck@0.1/occlusion=2"] == pytest.approx(25.0)
    assert "pck@0.1/occlusion=1" not in out
    assert out["pck@0.1/clean"] == pytest.approx(75.0)  # pairs 1 and 3: (1 + 1/2) / 2


def test_original_resolution_undoes_an_aspect_changing_resize():
    """A 200x100 (W x H) target squashed to 100x100: trg_scale (sx, sy) = (0.5, 1), T = 100 resized
    (img) and 200 original; alpha 0.05 -> bounds 5 and 10 px. Resized errors 4 (x), 5.5 (y), 6 (x) are
    8, 5.5, 12 original pixels: resized 1 of 3 correct, original 2 of 3."""
    from semcorr.metrics.pck import PCKEvaluator

    gt = [[50, 50], [50, 50], [50, 50]]
    pred = [[54, 50], [50, 55.5], [56, 50]]
    batch = batch_of([(0, gt, pred, 100.0)], trg_scale=torch.tensor([[0.5, 1.0]]),
                     pck_threshold_original=torch.tensor([200.0]))
    resized, original = PCKEvaluator([0.05], ["c"]), PCKEvaluator([0.05], ["c"], resolution="original")
    assert feed(resized, batch).tolist() == [[pytest.approx(1 / 3)]]
    assert feed(original, batch).tolist() == [[pytest.approx(2 / 3)]]
    with pytest.raises(Exception, match="metrics.resolution"):
        PCKEvaluator([0.1], ["c"], resolution="native")
