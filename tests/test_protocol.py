"""The protocol record of an evaluation run: what metrics.json carries, leakage and protocol warnings,
the original-pixel resolution, and the comparison helpers the report and the expected numbers use."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from hydra.utils import instantiate

from conftest import compose_config
from fixtures_dense import make_caltech
from fixtures_keypoints import PFPASCAL_SPLITS, build_pfpascal, build_pfwillow, require_shared
from semcorr.data.pfpascal import PFPascalDataset
from semcorr.data.pfwillow import FOLDER_PAIRS, PFWillowDataset
from semcorr.lit.evaluation_runner import build_method, run_evaluation
from semcorr.protocol import describe, differing_fields, evaluation_part, run_record


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "willow"
    build_pfwillow(root, subclasses={"car(G)": 3, "duck(S)": 3}, size=(240, 160))
    return root


def test_metrics_json_carries_the_protocol_record(tmp_path, willow):
    out = tmp_path / "run"
    cfg = compose_config("evaluate", ["method=nn", "dataset=pfwillow", f"dataset.root={willow}", "backbone.net.weights=none",
                                      "logger=none"], out)
    metrics = run_evaluation(cfg)
    saved = json.loads((out / "metrics.json").read_text())
    record = saved["protocol"]
    assert record == json.loads(json.dumps(metrics["protocol"]))
    assert {k: record[k] for k in ("dataset", "split", "pairs", "n_pairs", "subset", "threshold", "flips", "metrics")} == {
        "dataset": "pfwillow", "split": "test", "pairs": FOLDER_PAIRS, "n_pairs": 12, "subset": None, "threshold": "bbox",
        "flips": "none", "metrics": ["pck"]}
    assert record["pairs_sha256"] == PFWillowDataset(willow).pairs_sha256()
    assert record["alphas"] == [0.05, 0.1, 0.15] and record["correct_if"] == "distance <= alpha * T"
    assert record["resolution"] == "resized" and set(record["pck_averages"]) == {"pck", "pck_kp", "pck_cat"}
    assert record["image_size"] == {"max_side": 300, "size": None, "upscale": False, "aspect_changed_pairs": 0}
    # the method's name is the run's (Hydra's choice from the command line, the class under hydra.compose)
    assert record["method"] == {"name": saved["method"], "readout": "argmax", "backbone": "mobilenet_v2", "weights": "none",
                                "trained_on": []}
    for key in ("pck@0.1", "pck_kp@0.1", "pck_cat@0.1"):
        assert key in saved
    # PF-WILLOW: 10 keypoints per pair and 6 pairs per sub-class: the three averages coincide
    assert saved["pck_kp@0.1"] == pytest.approx(saved["pck@0.1"]) and saved["pck_cat@0.1"] == pytest.approx(saved["pck@0.1"])
    assert "spanned by the target keypoints" in describe(record)


def test_original_resolution_with_a_fixed_size_that_changes_the_aspect(tmp_path, willow, caplog):
    out = tmp_path / "run"
    args = ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "dataset.size=[120,120]",
            "metrics.resolution=original", "logger=none"]
    with caplog.at_level(logging.WARNING):
        metrics = run_evaluation(compose_config("evaluate", args, out))
    assert any("changes the aspect ratio of the images of 12 of 12" in r.message for r in caplog.records)
    assert metrics["protocol"]["image_size"]["aspect_changed_pairs"] == 12 and metrics["protocol"]["resolution"] == "original"
    # recompute PCK@0.1 in ORIGINAL pixels from the written predictions (T = the original keypoint box)
    records = torch.load(out / "predictions.pt", weights_only=False)
    per_pair = []
    for r in records:
        extent = (r["trg_kps"].max(0).values - r["trg_kps"].min(0).values).max()
        per_pair.append(((r["pred_kps"] - r["trg_kps"]).norm(dim=1) <= 0.1 * extent).float().mean().item())
    assert metrics["pck@0.1"] == pytest.approx(100 * sum(per_pair) / len(per_pair), abs=1e-3)
    resized = run_evaluation(compose_config("evaluate", args[:-2] + ["logger=none"], tmp_path / "resized"))
    assert differing_fields([metrics["protocol"], resized["protocol"]]) == ["resolution"]


def test_pfpascal_model_trained_on_train_is_warned_and_scored_on_clean_pairs(tmp_path, caplog):
    root = tmp_path / "pascal"
    build_pfpascal(root, "test", n=6)
    shutil.copyfile(require_shared(PFPASCAL_SPLITS / "train_pairs.csv"), root / "train_pairs.csv")
    args = ["method=identity", "dataset=pfpascal", f"dataset.root={root}", "logger=none"]
    with caplog.at_level(logging.WARNING):
        quiet = run_evaluation(compose_config("evaluate", args, tmp_path / "a"))
    assert not any("trained on PF-PASCAL train" in r.message for r in caplog.records)
    assert "pck@0.1/clean" in quiet and quiet["protocol"]["subset_flags"] == ["clean"]
    leakage = quiet["protocol"]["options"]["leakage"]
    clean = [bool(r.extra["clean"]) for r in PFPascalDataset(root, split="test").records]
    assert leakage["clean_pairs"] == sum(clean) and quiet["n_pairs"] == 6
    with caplog.at_level(logging.WARNING):
        trained = run_evaluation(compose_config("evaluate", [*args, "trained_on=[pfpascal/train]"], tmp_path / "b"))
    assert any("trained on PF-PASCAL train" in r.message and "pck@A/clean" in r.message for r in caplog.records)
    assert trained["protocol"]["method"]["trained_on"] == ["pfpascal/train"]
    assert differing_fields([quiet["protocol"], trained["protocol"]]) == []  # the method part is not compared


def test_margin_pruning_departing_from_the_dataset_protocol_is_warned(tmp_path, caplog):
    root = tmp_path / "caltech"
    make_caltech(root)
    for pruning, warned in (("${oc.select:dataset.margin_pruning,true}", False), ("true", True)):
        cfg = compose_config("evaluate", ["method=nn", "method.readout=box", f"method.margin_pruning={pruning}",
                                          "dataset=caltech", f"dataset.root={root}", "backbone.net.weights=none"], tmp_path)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            record = run_record(instantiate(cfg.dataset), build_method(cfg.method), ["masks"], cfg.alphas, "resized", "nn")
        assert record["method"]["margin_pruning"] is (pruning == "true")
        assert any("departs from the dataset's protocol" in r.message for r in caplog.records) is warned
        assert "alphas" not in record and record["options"]["mask_transfer"] == "polygon"


def test_differing_fields_compare_the_evaluation_part_only():
    a = {"dataset": "pfwillow", "threshold": "bbox", "image_size": {"max_side": 300, "size": None}, "method": {"readout": "argmax"}}
    b = {**a, "image_size": {"max_side": 300, "size": [240, 240]}, "method": {"readout": "box"}}
    c = {k: v for k, v in a.items() if k != "threshold"}
    assert differing_fields([a, a]) == []
    assert differing_fields([a, b]) == ["image_size.size"]
    assert differing_fields([a, c]) == ["threshold"]
    assert differing_fields([a, None]) == ["dataset", "image_size.max_side", "image_size.size", "threshold"]
    assert "method" not in evaluation_part(a) and evaluation_part(None) == {}
