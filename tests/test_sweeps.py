"""Sweeps: a Hydra multirun makes one run directory per combination; the W&B sweep files of
conf/sweep/ are well-formed and their parameters are overrides the configs accept; W&B runs are
named and grouped from the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

from conftest import CONF, ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.lit.evaluation_runner import build_logger

SWEEPS = sorted((CONF / "sweep").glob("*.yaml"))


def test_multirun_makes_one_run_dir_per_combination(tmp_path):
    willow = tmp_path / "willow"
    build_pfwillow(willow, subclasses={"car(G)": 2, "duck(S)": 2})
    sweep_dir = tmp_path / "multirun"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "SEMCORR_OUTPUTS": str(tmp_path / "outputs")}
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "-m", "method=identity,nn", "dataset=pfwillow", f"dataset.root={willow}",
         "backbone.net.weights=none", "logger=none", f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["identity-pfwillow-0", "nn-pfwillow-1"]
    for run, method in zip(runs, ("identity", "nn")):
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["method"] == method and metrics["n_pairs"] == 4 and "pck@0.1" in metrics
        assert (run / "config.yaml").is_file() and (run / "predictions.csv").is_file()
    assert not (tmp_path / "outputs").exists()  # everything went into the sweep dir


def sample_value(spec: dict):
    """A value W&B could draw for a parameter spec."""
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return spec["values"][0]
    if "min" in spec:
        return spec["min"]
    raise AssertionError(f"parameter without value/values/min: {spec}")


def test_there_are_sweeps():
    assert {p.stem for p in SWEEPS} >= {"hpf_pfwillow", "samnet_stage1"}


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_wandb_sweep_file(tmp_path, path):
    sweep = yaml.safe_load(path.read_text())
    assert sweep["program"] in ("evaluate.py", "train.py") and (ROOT / sweep["program"]).is_file()
    assert sweep["method"] in ("grid", "random", "bayes")
    assert sweep["metric"]["goal"] in ("maximize", "minimize") and sweep["metric"]["name"]
    if sweep["program"] == "evaluate.py":
        assert sweep["metric"]["name"].startswith("pck@")  # a key of metrics.json, logged as it is
    command = sweep["command"]
    assert command[:3] == ["${env}", "${interpreter}", "${program}"] and command[-1] == "${args_no_hyphens}"
    fixed = [c for c in command if not c.startswith("${")]
    assert all("=" in c and not c.startswith("-") for c in fixed), fixed
    params = sweep["parameters"]
    assert params
    if sweep["method"] == "grid":
        assert all("value" in s or "values" in s for s in params.values())
    # what the agent runs: the fixed overrides, then one `key=value` per parameter (as W&B formats it)
    samples = {name: sample_value(spec) for name, spec in params.items()}
    overrides = fixed + [f"{name}={value}" for name, value in samples.items()]
    cfg = compose_config(sweep["program"].removesuffix(".py"), overrides, tmp_path)
    for name, value in samples.items():
        assert OmegaConf.select(cfg, name) == value, name
    assert cfg.logger.offline is False  # sweeps talk to the W&B server


def test_wandb_runs_are_named_and_grouped_from_the_run(tmp_path):
    cfg = compose_config("evaluate", ["method=identity", "dataset=pfwillow", "logger=wandb"], tmp_path)
    logger = build_logger(cfg, tmp_path)
    init = logger._wandb_init  # the wandb.init arguments (no run is started before logger.experiment)
    assert init["group"] == "pfwillow" and init["name"] == "identity-pfwillow"
    assert init["job_type"] == "evaluate" and set(init["tags"]) == {"identity", "pfwillow", "mobilenet_v2", "evaluate"}
    assert logger._offline

    cfg = compose_config("evaluate", ["method=identity", "dataset=pfwillow", "logger=wandb", "logger.name=mine",
                                      "logger.group=g", "logger.tags=[a]"], tmp_path)
    init = build_logger(cfg, tmp_path)._wandb_init
    assert (init["name"], init["group"], list(init["tags"])) == ("mine", "g", ["a"])

    cfg = compose_config("train", ["model=hpf_search", "dataset=pfwillow", "logger=wandb"], tmp_path)
    init = build_logger(cfg, tmp_path)._wandb_init
    assert init["job_type"] == "train" and init["group"] == "pfwillow" and init["name"].endswith("-pfwillow")
