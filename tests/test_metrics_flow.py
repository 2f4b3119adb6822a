"""Flow accuracy (semcorr.metrics.flow) on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from semcorr.metrics.flow import FlowAccuracy, flow_accuracy_per_pair, flow_endpoint_error

NAN = float("nan")


def hand_flows():
    """Two pairs on a 2x3 grid with known endpoint errors (gt = 0 where known).

    Pair 0: errors [0, 3, 5] / [no answer, 6, gt unknown]      -> 3 correct of 5 known at T = 5.
    Pair 1: errors [1, 10, 2] / [4, 4, 4], mask keeps (0,0), (0,1) -> 1 correct of 2.
    """
    gt = torch.zeros(2, 2, 2, 3)
    gt[0, :, 1, 2] = NAN
    pred = torch.zeros(2, 2, 2, 3)
    pred[0, 0, 0, 1] = 3.0
    pred[0, :, 0, 2] = torch.tensor([3.0, 4.0])
    pred[0, :, 1, 0] = NAN
    pred[0, 1, 1, 1] = 6.0
    pred[1, 0, 0, 0] = 1.0
    pred[1, 1, 0, 1] = 10.0
    pred[1, 0, 0, 2] = 2.0
    pred[1, 0, 1] = 4.0
    mask = torch.ones(2, 2, 3, dtype=torch.bool)
    mask[1] = False
    mask[1, 0, :2] = True
    return pred, gt, mask


def test_flow_accuracy_per_pair_by_hand():
    pred, gt, mask = hand_flows()
    acc, correct, known = flow_accuracy_per_pair(pred, gt, mask, threshold=5.0)
    assert known.tolist() == [5.0, 2.0] and correct.tolist() == [3.0, 1.0]
    assert acc.tolist() == [pytest.approx(0.6), 0.5]
    # The bound is inclusive (the kit counts error > T as wrong) and per pair.
    acc = flow_accuracy_per_pair(pred, gt, mask, threshold=torch.tensor([4.99, 10.0]))[0]
    assert acc.tolist() == [pytest.approx(0.4), 1.0]
    err = flow_endpoint_error(pred, gt)
    assert err[0, 0].tolist() == [0.0, 3.0, 5.0] and math.isnan(err[0, 1, 0])


def test_flow_accuracy_metric_means_over_pairs_and_groups():
    pred, gt, mask = hand_flows()
    empty_gt = torch.full((1, 2, 2, 3), NAN)  # a pair without known pixels is skipped
    metric = FlowAccuracy(threshold_px=5.0, num_groups=2, group_names=["JODS", "PASCAL"])
    metric.update(pred, gt, mask, groups=torch.tensor([1, 0]))
    metric.update(torch.zeros(1, 2, 2, 3), empty_gt, groups=torch.tensor([0]))
    out = metric.compute()
    assert out["flow_acc"].item() == pytest.approx(0.55)  # mean of 0.6 and 0.5
    assert out["flow_acc_pixels"].item() == pytest.approx(4 / 7)
    assert out["flow_acc_pairs"].item() == 2
    assert out["flow_acc/PASCAL"].item() == pytest.approx(0.6) and out["flow_acc/JODS"].item() == 0.5
    with pytest.raises(ValueError, match="out of range"):
        metric.update(pred, gt, mask, groups=torch.tensor([0, 2]))


def test_flow_accuracy_in_original_pixels_via_trg_scale():
    gt = torch.zeros(1, 2, 4, 4)
    pred = torch.zeros(1, 2, 4, 4)
    pred[:, 0] = 2.0  # 2 resized pixels = 4 original pixels when the target was halved
    scale = torch.tensor([[0.5, 0.5]])
    metric = FlowAccuracy(threshold_px=3.0)
    metric.update(pred, gt, trg_scale=scale)
    assert metric.compute()["flow_acc"].item() == 0.0
    metric = FlowAccuracy()
    metric.update(pred, gt, threshold=torch.tensor([4.0]), trg_scale=scale)
    assert metric.compute()["flow_acc"].item() == 1.0
    assert set(metric.compute()) == {"flow_acc", "flow_acc_pixels", "flow_acc_pairs"}


def test_flow_accuracy_states_merge_like_a_single_process():
    pred, gt, mask = hand_flows()
    whole = FlowAccuracy(num_groups=2)
    whole.update(pred, gt, mask, groups=torch.tensor([0, 1]))
    a, b = FlowAccuracy(num_groups=2), FlowAccuracy(num_groups=2)
    a.update(pred[:1], gt[:1], mask[:1], groups=torch.tensor([0]))
    b.update(pred[1:], gt[1:], mask[1:], groups=torch.tensor([1]))
    for name in ("acc_sum", "pairs", "correct_px", "known_px"):
        assert a._reductions[name] is not None  # sum reduction registered for DDP sync
    a.merge_state(b)
    for key, value in whole.compute().items():
        assert a.compute()[key].item() == pytest.approx(value.item())
