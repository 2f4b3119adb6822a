"""Nothing lost: an interrupted evaluation (killed, Ctrl-C) resumes, only the pairs left are
evaluated, and the results equal those of an uninterrupted run; a full disk at the end prints the
results first, keeps the journal and says how to write them; the W&B run of a resumed evaluation
continues the interrupted one. (Single process: under DDP every process journals its own shard the
same way, keyed by its rank and the process count, but an interrupted DDP run is not simulated here.)"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import wandb_records
from conftest import ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.data.datamodule import ShardSampler
from semcorr.errors import ConfigError, OutputError
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.lit.journal import fingerprint
from semcorr.methods.identity import IdentityMatcher


class Interrupted(RuntimeError):
    """Stands for a killed job."""


class CountingIdentity(IdentityMatcher):
    """The identity map, counting the pairs it matches (not the backward passes of the pictures)
    and raising ``error`` on pair ``fail_at`` (1-based), if given."""

    def __init__(self, fail_at: int | None = None, error: type[BaseException] = Interrupted) -> None:
        super().__init__()
        self.calls, self.fail_at, self.error = 0, fail_at, error

    def forward(self, src_img, trg_img, src_points, src_ids=None, trg_ids=None, dense=None):
        if dense != "backward":
            self.calls += 1
            if self.calls == self.fail_at:
                raise self.error("killed")
        return super().forward(src_img, trg_img, src_points, src_ids, trg_ids, dense)


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "willow"
    build_pfwillow(root, subclasses={"car(G)": 3, "duck(S)": 3})  # 12 pairs
    return root


def config(tmp_path, willow, out, *extra):
    return compose_config(
        "evaluate",
        ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none", "resume_every=2",
         "save_pictures=true", "max_pictures=6", *extra],
        tmp_path / out,
    )


def test_shard_sampler_leaves_out_excluded_pairs():
    assert list(ShardSampler(10, 1, 3, exclude={4, 5})) == [1, 7]
    assert len(ShardSampler(10, 0, 1, exclude=range(0, 10, 2))) == 5


def test_interrupted_evaluation_resumes_with_the_same_results(tmp_path, willow):
    reference = run_evaluation(config(tmp_path, willow, "whole"), method=CountingIdentity())
    cfg = config(tmp_path, willow, "resumed")
    with pytest.raises(Interrupted):
        run_evaluation(cfg, method=CountingIdentity(fail_at=6))  # dies on the 6th pair
    partial = tmp_path / "resumed" / "partial" / "rank0.pt"
    journal = torch.load(partial, weights_only=False)
    assert journal["done"] == [0, 1, 2, 3]  # written every 2 pairs: pair 4 is redone
    assert not (tmp_path / "resumed" / "metrics.json").exists()

    method = CountingIdentity()
    resumed = run_evaluation(cfg, method=method)
    assert method.calls == 8  # the 12 pairs less the 4 journalled
    assert resumed.keys() == reference.keys() and resumed["n_pairs"] == 12
    for key, value in reference.items():
        if key != "time_per_pair_s":  # everything but the clock is the same
            assert resumed[key] == (pytest.approx(value, abs=1e-9) if isinstance(value, float) else value), key
    assert (tmp_path / "resumed" / "predictions.csv").read_text() == (tmp_path / "whole" / "predictions.csv").read_text()
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["n_pairs"] == 12
    assert not (tmp_path / "resumed" / "partial").exists()  # removed once the results are written
    pictures = sorted(p.name for p in (tmp_path / "resumed" / "pictures").glob("*.png"))
    assert pictures == sorted(p.name for p in (tmp_path / "whole" / "pictures").glob("*.png")) and len(pictures) == 6


def test_fingerprint_resolves_interpolations_into_the_rest_of_the_config(tmp_path):
    # dataset.root is ${paths.data_dir}/PF-WILLOW and method.backbone ${backbone.net}: outside the entries hashed
    cfg = compose_config("evaluate", ["method=nbb", "dataset=pfwillow"], tmp_path)
    other = compose_config("evaluate", ["method=nbb", "dataset=pfwillow", "paths.data_dir=/elsewhere"], tmp_path)
    assert fingerprint(cfg, 1) != fingerprint(other, 1) != fingerprint(other, 2)
    assert fingerprint(cfg, 1) == fingerprint(compose_config("evaluate", ["method=nbb", "dataset=pfwillow"], tmp_path), 1)


def test_a_journal_of_another_configuration_is_an_error(tmp_path, willow):
    with pytest.raises(Interrupted):
        run_evaluation(config(tmp_path, willow, "run"), method=CountingIdentity(fail_at=4))
    with pytest.raises(ConfigError, match="another configuration.*delete"):
        run_evaluation(config(tmp_path, willow, "run", "alphas=[0.1]"), method=CountingIdentity())


# -- Ctrl-C ----------------------------------------------------------------------------------------
BASE = ["method=identity", "dataset=pfwillow", "logger=none", "resume_every=50"]


@pytest.fixture()
def sigint():
    """Lightning ignores SIGINT after a Ctrl-C (against a second one during its shutdown): restore it."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def same_metrics(resumed: dict, reference: dict) -> None:
    assert resumed.keys() == reference.keys()
    for key, value in reference.items():
        if key != "time_per_pair_s":
            assert resumed[key] == (pytest.approx(value, abs=1e-9) if isinstance(value, float) else value), key


def test_ctrl_c_journals_every_pair_done_and_prints_the_resume_command(tmp_path, willow, hydra_run, capsys, sigint):
    overrides = [*BASE, f"dataset.root={willow}"]
    reference = run_evaluation(compose_config("evaluate", overrides, tmp_path / "whole"), method=CountingIdentity())
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit):  # Lightning exits (status 1) after the callbacks have seen the Ctrl-C
        run_evaluation(hydra_run("evaluate", overrides, run_dir), method=CountingIdentity(fail_at=6, error=KeyboardInterrupt))
    journal = torch.load(run_dir / "partial" / "rank0.pt", weights_only=False)
    assert journal["done"] == [0, 1, 2, 3, 4]  # every pair done, though resume_every=50 was never reached
    err = capsys.readouterr().err
    assert f"Interrupted: 5 of 12 pairs are journalled in {run_dir / 'partial'}." in err
    command = f"python evaluate.py {' '.join(overrides)} hydra.run.dir={run_dir}"
    assert command in err

    # the printed command: the same overrides and run directory
    method = CountingIdentity()
    same_metrics(run_evaluation(hydra_run("evaluate", overrides, run_dir), method=method), reference)
    assert method.calls == 7 and not (run_dir / "partial").exists()
    assert (run_dir / "predictions.csv").read_text() == (tmp_path / "whole" / "predictions.csv").read_text()


def test_ctrl_c_without_a_journal_says_so(tmp_path, willow, hydra_run, capsys, sigint):
    cfg = hydra_run("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none",
                                 "resume_every=0"], tmp_path / "run")
    with pytest.raises(SystemExit):
        run_evaluation(cfg, method=CountingIdentity(fail_at=3, error=KeyboardInterrupt))
    assert "resuming is off (resume_every=0), so the pairs evaluated are not kept" in capsys.readouterr().err


# -- full disk ---------------------------------------------------------------------------------------
def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_at_the_end_prints_the_results_first_and_keeps_the_journal(tmp_path, willow, hydra_run, monkeypatch,
                                                                                capsys):
    overrides = [*BASE, f"dataset.root={willow}"]
    reference = run_evaluation(compose_config("evaluate", overrides, tmp_path / "whole"), method=CountingIdentity())
    capsys.readouterr()
    run_dir = tmp_path / "run"
    monkeypatch.setattr("semcorr.lit.evaluation_runner.write_metrics", no_space)
    with pytest.raises(OutputError) as err:
        run_evaluation(hydra_run("evaluate", overrides, run_dir), method=CountingIdentity())
    printed = capsys.readouterr().out
    assert "identity on pfwillow" in printed and f" {reference['pck@0.1']:.1f} " in printed  # the numbers were shown
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"could not write metrics.json and the predictions into {run_dir} (No space left on device); ")
    assert f"12 of 12 pairs are journalled in {run_dir / 'partial'}" in message
    assert (f"once they can be written, run `python evaluate.py {' '.join(overrides)} hydra.run.dir={run_dir}` to write "
            "them without evaluating again") in message
    assert not (run_dir / "metrics.json").exists() and (run_dir / "partial" / "rank0.pt").is_file()

    monkeypatch.undo()
    method = CountingIdentity()
    same_metrics(run_evaluation(hydra_run("evaluate", overrides, run_dir), method=method), reference)
    assert method.calls == 0  # nothing evaluated again
    assert json.loads((run_dir / "metrics.json").read_text())["n_pairs"] == 12
    assert (run_dir / "predictions.csv").read_text() == (tmp_path / "whole" / "predictions.csv").read_text()


def test_a_journal_that_cannot_be_written_does_not_stop_the_run(tmp_path, willow, monkeypatch, caplog):
    monkeypatch.setattr("semcorr.lit.journal.atomic_write", no_space)
    cfg = compose_config("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none",
                                      "resume_every=2"], tmp_path / "run")
    with caplog.at_level("WARNING", logger="semcorr.lit.journal"):
        metrics = run_evaluation(cfg, method=CountingIdentity())
    assert metrics["n_pairs"] == 12 and (tmp_path / "run" / "metrics.json").is_file()
    assert caplog.text.count("could not journal the progress") == 1 and "No space left on device" in caplog.text


def test_the_cli_ends_a_failed_write_with_one_line(tmp_path, willow):
    run_dir = tmp_path / "run"
    (run_dir / "metrics.json").mkdir(parents=True)  # a folder where the file goes: the rename fails
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "SEMCORR_OUTPUTS": str(tmp_path / "out")}
    overrides = [*BASE, f"dataset.root={willow}"]
    proc = subprocess.run([sys.executable, "evaluate.py", *overrides, f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "identity on pfwillow" in proc.stdout and "pairs: 12" in proc.stdout  # the results table came first
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: OutputError: could not write metrics.json"), proc.stderr
    assert f"hydra.run.dir={run_dir}" in lines[0]
    (run_dir / "metrics.json").rmdir()
    method = CountingIdentity()
    resumed = run_evaluation(compose_config("evaluate", overrides, run_dir), method=method)
    assert method.calls == 0 and resumed["n_pairs"] == 12


# -- W&B ----------------------------------------------------------------------------------------------
def test_wandb_has_the_config_from_the_start_and_a_resumed_run_continues_it(tmp_path, willow, hydra_run, sigint):
    overrides = ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=wandb", "log_every_n_pairs=2",
                 "save_pictures=true", "max_pictures=2"]
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit):
        run_evaluation(hydra_run("evaluate", overrides, run_dir), method=CountingIdentity(fail_at=6, error=KeyboardInterrupt))
    (first,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    kinds = wandb_records.kinds(first)
    assert kinds.index("config") < kinds.index("history")  # logged when the run started
    assert {"method", "dataset", "alphas", "resume_every"} <= wandb_records.config_keys(first)
    running = [row for row in wandb_records.history(first) if "running/pairs" in row]
    assert [row["running/pairs"] for row in running] == [2, 4]
    assert all("running/pck@0.1" in row and "running/time_per_pair_s" in row for row in running)

    run_evaluation(hydra_run("evaluate", overrides, run_dir), method=CountingIdentity())
    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and wandb_records.run_id(files[1]) == wandb_records.run_id(first)  # the same W&B run
    rows = wandb_records.history(files[1])
    assert [r["running/pairs"] for r in rows if "running/pairs" in r] == [6, 8, 10, 12]  # steps go on
    final = next(r for r in rows if "pck@0.1/car(G)" in r)
    assert final["n_pairs"] == 12
    tables = {k.split("/")[0] for r in rows for k, v in r.items() if k.endswith("/_type") and v == "table-file"}
    assert tables == {"pairs", "subsets"}
    pictures = next(r for r in rows if "pictures/keypoints/_type" in r)
    captions = pictures["pictures/keypoints/captions"]
    assert len(captions) == 2 and all("PCK@0.05/0.1/0.15: " in c for c in captions)
    assert captions[0].startswith("car(G)/car_000-car_001")
