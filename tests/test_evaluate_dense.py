"""The evaluation loop on dense benchmarks: TSS flow accuracy and Caltech mask transfer wiring."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config, shared_data
from fixtures_dense import make_caltech, make_tss
from semcorr.data.tss import TSSDataset
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.methods.identity import IdentityMatcher


class GroundTruthFlow(IdentityMatcher):
    """An oracle whose dense flow is the dataset's ground truth (unknown pixels: identity)."""

    def __init__(self, dataset: TSSDataset) -> None:
        super().__init__()
        self.flows = {}
        for i in range(len(dataset)):
            sample = dataset[i]
            self.flows[(sample["src_path"], sample["trg_path"])] = sample["flow"]

    def forward(self, src_img, trg_img, src_points, src_ids=None, trg_ids=None, dense=None):
        out = super().forward(src_img, trg_img, src_points, src_ids, trg_ids)
        if dense == "forward":
            out.flow = torch.stack([self.flows[(s, t)] for s, t in zip(src_ids, trg_ids)])
        return out


def test_ground_truth_flow_scores_100_and_identity_less(tmp_path):
    root = make_tss(tmp_path / "tss")
    cfg = compose_config("evaluate", ["method=identity", "dataset=tss", f"dataset.root={root}", "logger=none"], tmp_path / "a")
    identity = run_evaluation(cfg)
    assert identity["n_pairs"] == 8 and 0 <= identity["flow_acc"] < 100
    assert {"flow_acc/FG3DCar", "flow_acc/JODS", "flow_acc/PASCAL"} <= identity.keys()
    assert "pck@0.1" not in identity

    cfg = compose_config("evaluate", ["method=identity", "dataset=tss", f"dataset.root={root}", "logger=none"], tmp_path / "b")
    oracle = run_evaluation(cfg, method=GroundTruthFlow(instantiate(cfg.dataset)))
    assert oracle["flow_acc"] == pytest.approx(100.0)


def test_identity_on_real_tss_sample(tmp_path):
    root = shared_data("TSS-sample")
    metrics = run_evaluation(compose_config("evaluate", ["method=identity", "dataset=tss", f"dataset.root={root}", "logger=none"], tmp_path))
    assert metrics["n_pairs"] == 12 and metrics["flow_acc_pairs"] == 12
    assert 0 < metrics["flow_acc"] < 100


def test_mask_transfer_on_caltech_fixture_reference_polygon_protocol(tmp_path):
    """dataset=caltech scores the HPF reference's way: the identity map moves the source square's
    vertices to the same relative position, the moved square is rasterised and compared with the
    target square. By hand (pixel centres inside or on the polygon), per pair:
    Faces 1->2: vertices x*1.1, y*1.125 -> cols 5..11, rows 4..9 (42 px) inside the 11x11 target:
    IoU 42/121, LT-ACC 317/396; Faces 2->1: x*20/22, y*16/18 -> cols 2..10, rows 2..10 (81 px)
    holding the 7x6 target: IoU 42/81, LT-ACC 281/320; airplanes (same size): 21x12 vs 20x10 boxes
    meeting in 16x7: IoU 112/340, LT-ACC 372/600."""
    root = tmp_path / "caltech"
    make_caltech(root)
    metrics = run_evaluation(compose_config("evaluate", ["method=identity", "dataset=caltech", f"dataset.root={root}", "logger=none"], tmp_path / "r"))
    assert metrics["n_pairs"] == 3 and metrics["mask_pairs"] == 3
    iou = [42 / 121, 42 / 81, 112 / 340]
    lt_acc = [317 / 396, 281 / 320, 372 / 600]
    assert metrics["iou"] == pytest.approx(100 * sum(iou) / 3)
    assert metrics["lt_acc"] == pytest.approx(100 * sum(lt_acc) / 3)
    assert metrics["iou/Faces"] == pytest.approx(100 * (iou[0] + iou[1]) / 2)
    assert metrics["lt_acc/airplanes"] == pytest.approx(100 * lt_acc[2])
    assert "loc_err" not in metrics and "pck@0.1" not in metrics  # no dense flow, no keypoints
    assert metrics["protocol"]["options"]["mask_transfer"] == "polygon"


def test_mask_transfer_on_caltech_fixture_flow_protocol(tmp_path):
    root = tmp_path / "caltech"
    make_caltech(root)
    args = ["method=identity", "dataset=caltech", f"dataset.root={root}", "dataset.mask_transfer=flow", "logger=none"]
    metrics = run_evaluation(compose_config("evaluate", args, tmp_path / "r"))
    assert metrics["n_pairs"] == 3 and metrics["mask_pairs"] == 3
    for key in ("lt_acc", "iou", "loc_err", "lt_acc/Faces", "iou/airplanes"):
        assert key in metrics
    assert 0 < metrics["iou"] < 100 and 0 < metrics["lt_acc"] <= 100


def test_hpf_prunes_no_margin_on_caltech(tmp_path):
    cfg = compose_config("evaluate", ["method=hpf", "dataset=caltech", "logger=none"], tmp_path)
    assert cfg.method.margin_pruning is False
    assert compose_config("evaluate", ["method=nn", "method.readout=box", "dataset=pfwillow", "logger=none"], tmp_path).method.margin_pruning is True
