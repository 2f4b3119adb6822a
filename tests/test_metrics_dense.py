"""Flow accuracy, mask transfer (LT-ACC, IoU, LOC-ERR) and flow warping on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from semcorr.grid import pixel_grid
from semcorr.metrics.flow import FlowAccuracy, flow_accuracy_per_pair, flow_endpoint_error
from semcorr.metrics.masks import MaskTransfer, localization_error, mask_transfer_scores
from semcorr.metrics.warping import (
    flow_to_points,
    flow_valid,
    points_to_flow,
    resize_flow,
    warp_by_flow,
    warp_mask,
)

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


# -- mask transfer ------------------------------------------------------------------------------------
def test_lt_acc_and_iou_by_hand():
    pred = torch.tensor([[[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]]], dtype=torch.bool)
    gt = torch.tensor([[[1, 0, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 0]]], dtype=torch.bool)
    lt, iou = mask_transfer_scores(pred, gt)
    assert lt.tolist() == [pytest.approx(4 / 6), 1.0]
    assert iou.tolist() == [pytest.approx(1 / 3), 1.0]  # both empty: IoU 1
    soft = torch.tensor([[[0.6, 0.51, 0.5], [0.2, 0.0, 0.0]]])  # binarised at > 0.5
    assert mask_transfer_scores(soft, gt[:1].float())[1].item() == pytest.approx(1 / 3)


def test_mask_transfer_metric_groups_and_loc_err():
    src = torch.zeros(1, 4, 4, dtype=torch.bool)
    src[0, :2, :2] = True
    trg = torch.zeros(1, 4, 4, dtype=torch.bool)
    trg[0, 2:, 2:] = True
    flow = torch.zeros(1, 2, 4, 4)
    flow[:, 0], flow[:, 1] = -2.0, -2.0  # target -> source, exact
    pred = warp_mask(src, flow)
    assert torch.equal(pred, trg)
    metric = MaskTransfer(group_names=["a", "b"])
    metric.update(pred, trg, groups=torch.tensor([1]), src_mask=src, flow_trg_to_src=flow)
    flow_off = flow.clone()
    flow_off[:, 0] = -1.0
    metric.update(warp_mask(src, flow_off), trg, groups=torch.tensor([1]), src_mask=src, flow_trg_to_src=flow_off)
    out = metric.compute()
    # second pair: predicted columns 1..2 of rows 2..3 vs gt columns 2..3 -> LT-ACC 12/16, IoU 2/6
    assert out["lt_acc"].item() == pytest.approx((1 + 12 / 16) / 2)
    assert out["iou"].item() == pytest.approx((1 + 2 / 6) / 2)
    assert out["loc_err"].item() == pytest.approx((0 + 0.5) / 2)
    assert out["mask_pairs"].item() == 2 and math.isnan(out["lt_acc/a"].item()) and out["iou/b"] == out["iou"]


def test_localization_error_by_hand():
    src = torch.zeros(1, 4, 4, dtype=torch.bool)
    src[0, :2, :2] = True
    trg = torch.zeros(1, 4, 4, dtype=torch.bool)
    trg[0, 2:, 2:] = True
    flow = torch.zeros(1, 2, 4, 4)
    flow[:, 1] = -2.0
    flow[:, 0] = -1.0
    # Landing x - 1 inside for x >= 1, y - 2 for y >= 2: 6 pixels, each off by half a box width.
    assert localization_error(src, trg, flow).item() == pytest.approx(0.5)
    flow[:, 0] = -1.5  # truncated landing: x = 2 -> 0, x = 3 -> 1: no error
    assert localization_error(src, trg, flow).item() == pytest.approx(0.0)
    assert math.isnan(localization_error(torch.zeros_like(src), trg, flow).item())  # empty mask: skipped
    assert math.isnan(localization_error(src, trg, torch.full_like(flow, NAN)).item())


# -- warping ------------------------------------------------------------------------------------------
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


# -- the reference Caltech-101 protocol: polygon vertices transferred, then rasterised -------------
def test_rasterise_polygon_by_hand():
    """A right triangle (0, 0), (4, 0), (0, 4) on a 6x6 grid: pixel centres (x, y) with x + y <= 4,
    borders included (15 pixels); a NaN vertex is left out, fewer than 3 vertices give nothing."""
    from semcorr.metrics.masks import rasterise_polygon

    mask = rasterise_polygon(torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]), (6, 6))
    ys, xs = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(mask, (xs + ys) <= 4) and int(mask.sum()) == 15
    with_nan = rasterise_polygon(torch.tensor([[0.0, 0.0], [float("nan"), 1.0], [4.0, 0.0], [0.0, 4.0]]), (6, 6))
    assert torch.equal(with_nan, mask)
    assert not rasterise_polygon(torch.tensor([[0.0, 0.0], [4.0, 0.0], [float("nan")] * 2]), (6, 6)).any()


def test_polygon_mask_evaluator_uses_the_transferred_vertices():
    """Source square vertices moved by +2 px in x by a 'method': the transferred square covers columns
    3..6, rows 1..4 of an 8x8 target whose mask is columns 1..4, rows 1..4: intersection 2 x 4 = 8,
    union 24, IoU 1/3; LT-ACC: 64 - (24 - 8) = 48 of 64 pixels agree."""
    from semcorr.methods.base import MatchOutput
    from semcorr.metrics.masks import MaskEvaluator

    square = torch.tensor([[[1.0, 1.0], [4.0, 1.0], [4.0, 4.0], [1.0, 4.0]]])
    trg_mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    trg_mask[0, 1:5, 1:5] = True
    batch = {"src_mask": trg_mask.clone(), "trg_mask": trg_mask, "n_kps": torch.tensor([4]), "category_id": torch.tensor([0])}
    evaluator = MaskEvaluator(["c"], "polygon")
    assert evaluator.needs == {"points"}
    evaluator.update(batch, MatchOutput(square + torch.tensor([2.0, 0.0])))
    out = evaluator.compute()
    assert out["iou"] == pytest.approx(100 / 3) and out["lt_acc"] == pytest.approx(75.0) and out["mask_pairs"] == 1
    assert "loc_err" not in out
    flow = MaskEvaluator(["c"], "flow")
    assert flow.needs == {"backward"}
    flow.update(batch, MatchOutput(square, flow=torch.zeros(1, 2, 8, 8)))  # identity flow: perfect transfer
    assert flow.compute()["iou"] == pytest.approx(100.0) and "loc_err" in flow.compute()
