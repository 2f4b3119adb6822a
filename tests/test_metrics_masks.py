"""Mask transfer (semcorr.metrics.masks: LT-ACC, IoU, LOC-ERR, the polygon protocol) on hand-computed
cases."""

from __future__ import annotations

import math

import pytest
import torch

from semcorr.metrics.masks import MaskTransfer, localization_error, mask_transfer_scores
from semcorr.metrics.warping import warp_mask

NAN = float("nan")


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
