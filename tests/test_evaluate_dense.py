"""The evaluation loop on dense benchmarks: TSS flow accuracy and Caltech mask transfer wiring."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config, shared_data
from fixtures_dense import make_caltech, make_tss
from semcorr.data.tss import TSSDataset
from semcorr.lit.evaluate import run_evaluation
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


def test_mask_transfer_on_caltech_fixture(tmp_path):
    root = tmp_path / "caltech"
    make_caltech(root)
    metrics = run_evaluation(compose_config("evaluate", ["method=identity", "dataset=caltech", f"dataset.root={root}", "logger=none"], tmp_path / "r"))
    assert metrics["n_pairs"] == 3 and metrics["mask_pairs"] == 3
    for key in ("lt_acc", "iou", "loc_err", "lt_acc/Faces", "iou/airplanes"):
        assert key in metrics
    assert 0 < metrics["iou"] < 100 and 0 < metrics["lt_acc"] <= 100
