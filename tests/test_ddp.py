"""Distributed evaluation: `trainer=ddp` with 2 CPU processes (gloo) gives exactly the single-process results.

The fixture has an odd number of pairs, so Lightning's own DistributedSampler would have padded one
process's shard with a repeated pair; the evaluation's ShardSampler must not.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter

import pytest
import torch
from torch.utils.data import DistributedSampler

from conftest import ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.data.datamodule import ShardSampler
from semcorr.lit.evaluation_module import gather_records

N_PAIRS = 7  # odd: 2 processes get 4 and 3 pairs


@pytest.fixture(scope="module")
def willow(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp") / "willow"
    build_pfwillow(root, subclasses={"car(G)": 3, "duck(S)": 2})  # 6 + 2 ordered pairs, the first 7 used
    return root


@pytest.mark.parametrize(("n", "world"), [(7, 2), (8, 2), (10, 3), (2, 3), (1, 1)])
def test_shards_cover_every_pair_once(n, world):
    shards = [list(ShardSampler(n, r, world)) for r in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(n))
    assert [len(ShardSampler(n, r, world)) for r in range(world)] == [len(s) for s in shards]
    # what this replaces: torch's DistributedSampler repeats pairs to even out the shards
    padded = sum(len(DistributedSampler(range(n), num_replicas=world, rank=r, shuffle=False)) for r in range(world))
    assert padded == n + (-n) % world


def test_records_are_deduplicated_and_sorted():
    records = [{"index": i, "pair_id": str(i)} for i in (3, 1, 2, 1, 0)]
    assert [r["index"] for r in gather_records(records)] == [0, 1, 2, 3]


def _ddp_run(args: list[str], run_dir, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "SEMCORR_OUTPUTS": str(tmp_path / "outputs")}
    cmd = [sys.executable, "evaluate.py", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu",
           *args, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def _single_run(args: list[str], run_dir) -> dict:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the DDP processes (OMP_NUM_THREADS=1): same arithmetic
    try:
        return run_evaluation(compose_config("evaluate", args, run_dir))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("method", "extra"),
    [("identity", ["pictures=worst", "max_pictures=3"]), ("nn", ["backbone.net.weights=none"])],
)
def test_ddp_on_two_cpu_processes_equals_single_process(tmp_path, willow, method, extra):
    args = [f"method={method}", "dataset=pfwillow", f"dataset.root={willow}", f"dataset.max_pairs={N_PAIRS}",
            "logger=none", *extra]
    single = _single_run(args, tmp_path / "single")
    proc = _ddp_run(args, tmp_path / "ddp", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the results title (wrapped to the table's width) says 2 processes ran
    assert f"{method} on pfwillow (mobilenet_v2), 2 processes" in " ".join(proc.stdout.split())

    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    saved = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert ddp["n_pairs"] == saved["n_pairs"] == N_PAIRS
    pck = sorted(k for k in saved if k.startswith("pck@"))
    assert len(pck) == 9 and sorted(k for k in ddp if k.startswith("pck@")) == pck
    for key in pck:
        assert ddp[key] == saved[key] == single[key], key  # exactly, not approximately
    assert ddp["method"] == method and ddp["time_per_pair_s"] > 0

    # every pair once, in index order, with the single-process predictions
    rows = list(csv.DictReader((tmp_path / "ddp" / "predictions.csv").open()))
    assert Counter(r["pair_id"] for r in rows) == Counter({pid: 10 for pid in {r["pair_id"] for r in rows}})
    assert len(rows) == N_PAIRS * 10
    assert (tmp_path / "ddp" / "predictions.csv").read_text() == (tmp_path / "single" / "predictions.csv").read_text()
    records = torch.load(tmp_path / "ddp" / "predictions.pt", weights_only=False)
    assert [r["index"] for r in records] == list(range(N_PAIRS))
    if "pictures=worst" in extra:  # rank 0 chose the 3 worst pairs, the processes drew their shares of them
        names = sorted(p.name for p in (tmp_path / "ddp" / "pictures").glob("*.png"))
        assert names == sorted(p.name for p in (tmp_path / "single" / "pictures").glob("*.png")) and len(names) == 3
        worst = sorted(records, key=lambda r: (r["pck"][0.1], r["index"]))[:3]
        assert [n[:6] for n in names] == [f"{r['index']:06d}" for r in sorted(worst, key=lambda r: r["index"])]


def test_hpf_search_on_two_cpu_processes_equals_single_process(tmp_path, willow):
    """train.py under DDP: the layer search scores every pair once (same scores as one process)."""
    args = ["model=hpf_search", "dataset=pfwillow", f"dataset.root={willow}", f"dataset.max_pairs={N_PAIRS}",
            "model.split=test", "backbone.net.weights=none", "model.base_candidates=[2,3]",
            "model.candidate_layers=[2,3,5]", "model.max_layers=2", "model.beam_size=2", "logger=none"]
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "SEMCORR_OUTPUTS": str(tmp_path / "outputs")}
    runs = {}
    for name, extra in (("single", []), ("ddp", ["trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu"])):
        proc = subprocess.run([sys.executable, "train.py", *args, *extra, f"hydra.run.dir={tmp_path / name}"],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "beam_state.json").read_text())
    assert runs["ddp"]["scores"].keys() == runs["single"]["scores"].keys()
    for key, value in runs["single"]["scores"].items():
        assert runs["ddp"]["scores"][key] == pytest.approx(value, abs=1e-9), key
    assert runs["ddp"]["beams"] == runs["single"]["beams"]
