"""SAM-Net training (lit/samnet/): the module from its config, stage data checks before any step, the
progress bar and the GPU-schedule warning, checkpoints, exact resume, the matcher, train.py."""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from PIL import Image
from pytorch_lightning.accelerators import CPUAccelerator, CUDAAccelerator

from conftest import ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from fixtures_samnet import TinyBackbone, one_thread, write_photos  # noqa: F401 (autouse fixture)
from semcorr.backbones import load_backbone
from semcorr.cli import find_user_error
from semcorr.errors import ConfigError, DatasetNotFoundError, WeightsError
from semcorr.lit.evaluation_runner import build_method, run_evaluation
from semcorr.lit.samnet import EpochSampler, MemoryCache, SAMNetModule, ScheduleCheck, warmup_cosine
from semcorr.lit.samnet.data import build_stage_data, describe, train_config
from semcorr.lit.interrupt import ResumeOnInterrupt
from semcorr.lit.samnet.stages import build_module, build_trainer, run_stages
from semcorr.methods.base import MatchOutput
from semcorr.methods.samnet import SAMNetMatcher
from semcorr.methods.samnet.affine import transfer_image_points
from semcorr.methods.samnet.matcher import chosen_checkpoint, network_state, read_checkpoint
from semcorr.metrics.pck import PCKEvaluator


def train_overrides(images, willow, steps: int, extra: list[str] = ()) -> list[str]:
    """The CPU preset shrunk to seconds: 48x48 images, tiny U-Net, 2 iterations, synthetic + PF-WILLOW validation."""
    return [
        "model=samnet",
        "experiment=samnet_cpu",
        "backbone.net.weights=none",
        "logger=csv",
        "model.image_size=[48,48]",
        "model.batch_size=2",
        "model.network.matching_channels=[8,8]",
        "model.network.iterations=2",
        "model.val_iterations=2",
        "model.detached_iterations=1",
        f"model.stage1.max_steps={steps}",
        "model.stage2.max_steps=2",
        "model.val_every_n_steps=2",
        f"model.stage1.data.root={images}",
        "model.stage1.data.categories=null",
        "model.stage1.data.pairs_per_image=1",
        "model.stage1.kps=10",
        "model.val.synthetic={split:all,max_pairs:2,n_kps:5}",
        "model.val.dataset.categories=null",
        "model.val.dataset.max_pairs=2",
        "model.stage2.data.categories=null",
        "model.images.every_n_steps=2",
        "model.images.pairs=1",
        "model.trainer.log_every_n_steps=1",
        f"dataset.root={willow}",
        "dataset.max_pairs=4",
        *extra,
    ]


class ProgressProbe(pl.Callback):
    """Records, at the end of each fit, the progress bar's training tasks (total, completed)."""

    seen: list[list[tuple[float, float]]] = []

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        bar = trainer.progress_bar_callback
        tasks = [t for t in bar.progress.tasks if t.description.strip().startswith("SAM-Net stage")]
        ProgressProbe.seen.append([(t.total, t.completed) for t in tasks])


class StopAfterFirstValidation(pl.Callback):
    """Interrupts a run after its first validation (and checkpoint), like a killed job."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("samnet_data")
    write_photos(root / "images", count=4, size=64)
    build_pfwillow(root / "willow", subclasses={"car(G)": 2, "duck(S)": 2}, size=(96, 64))
    return root / "images", root / "willow"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dirs):
    """A 2-stage run (stage 1: 4 steps in 2 epochs, stage 2: 2 steps) with CSV logging."""
    out = tmp_path_factory.mktemp("samnet_run")
    ProgressProbe.seen.clear()
    probe = ["~callbacks.progress", "+callbacks.rich={_target_:pytorch_lightning.callbacks.RichProgressBar}",
             "+callbacks.probe={_target_:test_samnet_training.ProgressProbe}"]
    final = run_stages(compose_config("train", train_overrides(*data_dirs, steps=4, extra=probe), out))
    return out, final, list(ProgressProbe.seen)


# -- the module from its config -------------------------------------------------------------------
def test_module_is_instantiated_from_the_config_with_the_stage_optimizer(tmp_path, data_dirs):
    cfg = compose_config("train", train_overrides(*data_dirs, steps=2, extra=["model.stage1.optimizer.lr=0.003"]), tmp_path)
    data = build_stage_data(cfg, [1, 2])
    one, two = build_module(cfg, 1, data[1]), build_module(cfg, 2, data[2])
    assert isinstance(one, SAMNetModule) and one.hparams.stage == 1 and two.hparams.stage == 2
    assert one.net.layers == list(cfg.model.network.layers) and one.net.init == cfg.model.network.init == "translation"
    assert one.size == (48, 48) and one.val_sets == ["synthetic", "pfwillow"]
    assert one.hparams.supervised and not two.hparams.supervised  # stage 2 never reads keypoints
    params = [p for p in one.parameters() if p.requires_grad]
    assert isinstance(one.make_optimizer(params), torch.optim.Adam)
    assert one.make_optimizer(params).defaults["lr"] == 0.003 and two.make_optimizer(params).defaults["lr"] == 2e-5
    schedule = one.make_scheduler(one.make_optimizer(params), 100)
    assert isinstance(schedule, torch.optim.lr_scheduler.LambdaLR)
    assert not any(p.requires_grad for p in one.net.backbone.parameters())  # frozen (model.trainable_backbone)


def test_validation_scores_with_the_pck_family_by_hand(tmp_path, data_dirs):
    """validation_step feeds the project's PCK family the transferred points against trg_kps with
    the batch's T: targets placed at known distances from the network's own predictions."""
    cfg = compose_config("train", train_overrides(*data_dirs, steps=2), tmp_path)
    module = build_module(cfg, 1, build_stage_data(cfg, [1])[1]).eval()
    torch.manual_seed(0)
    src, trg = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    src_kps = torch.tensor([[[10.0, 12.0], [30.0, 20.0]], [[5.0, 40.0], [float("nan"), float("nan")]]])
    with torch.no_grad():
        fields = [it.field for it in module(src, trg, 2).iterations]
    preds = [transfer_image_points(f, src_kps, (48, 48), (48, 48), (48, 48)) for f in fields]
    # T = 10, alpha 0.1: within 1 px is correct. Pair 0: 0.5 px (yes), 2 px (no); pair 1: 0.8 px (yes), padding
    offset = torch.tensor([[[0.5, 0.0], [0.0, 2.0]], [[0.0, 0.8], [0.0, 0.0]]])
    batch = {"src_img": src, "trg_img": trg, "src_kps": src_kps, "trg_kps": preds[-1] + offset,
             "pck_threshold": torch.tensor([10.0, 10.0]), "category_id": torch.tensor([0, 0])}
    with torch.no_grad():
        module.validation_step(batch, 0, dataloader_idx=1)
    assert module.val_pck[1][1].compute()["pck@0.1"] == pytest.approx(75.0)  # mean over pairs of 50 % and 100 %
    assert module.val_epe[1].compute() == pytest.approx((0.5 + 2.0 + 0.8) / 3)
    first = PCKEvaluator([0.1], module.val_pck[1][0].categories)
    first.update(batch, MatchOutput(preds[0]))
    assert module.val_pck[1][0].compute()["pck@0.1"] == pytest.approx(first.compute()["pck@0.1"])
    assert module.val_pck[0][1].per_pair.counts.sum() == 0  # the other set's family saw nothing
    module.on_validation_epoch_end()  # logs (no trainer here) and resets for the next validation
    assert module.val_pck[1][1].per_pair.counts.sum() == 0


def test_warmup_cosine_by_hand():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    factor = warmup_cosine(opt, total_steps=12, warmup_steps=2, min_lr_ratio=0.1).lr_lambdas[0]
    assert [factor(s) for s in (0, 1)] == [0.5, 1.0]
    assert factor(2) == pytest.approx(1.0) and factor(7) == pytest.approx(0.55) and factor(12) == pytest.approx(0.1)


# -- stage data, checked before any step -----------------------------------------------------------
def test_missing_stage1_folder_fails_before_any_step_naming_the_download(tmp_path, data_dirs):
    _, willow = data_dirs
    cfg = compose_config("train", ["model=samnet", "backbone.net.weights=none", f"paths.data_dir={tmp_path / 'data'}",
                                   "dataset=pfwillow", f"dataset.root={willow}", "logger=none"], tmp_path / "run")
    with pytest.raises(DatasetNotFoundError) as err:
        run_stages(cfg)
    message = str(err.value)
    assert "python -m semcorr.data.download voc" in message and "model.stage1.data.root" in message
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "stage1").exists()


def test_missing_stage2_dataset_fails_before_stage1_naming_its_download(tmp_path, data_dirs):
    images, _ = data_dirs
    cfg = compose_config("train", ["model=samnet", "backbone.net.weights=none", f"model.stage1.data.root={images}",
                                   "model.stage1.data.split=all", "model.val.synthetic.split=all",
                                   "dataset=pfpascal", f"dataset.root={tmp_path / 'PF-PASCAL'}", "logger=none"],
                         tmp_path / "run")
    with pytest.raises(DatasetNotFoundError) as err:
        run_stages(cfg)
    assert "python -m semcorr.data.download pfpascal" in str(err.value) and "dataset.root" in str(err.value)
    assert not (tmp_path / "run" / "stage1").exists()


def test_missing_split_names_the_splits_and_the_knob(tmp_path, data_dirs):
    images, willow = data_dirs
    base = ["model=samnet", "backbone.net.weights=none", f"model.stage1.data.root={images}", "model.stage1.data.split=all",
            "model.val.synthetic.split=all", "dataset=pfwillow", f"dataset.root={willow}", "logger=none"]
    with pytest.raises(ConfigError) as err:  # PF-WILLOW has no `val` split for the validation pairs
        run_stages(compose_config("train", base, tmp_path / "a"))
    assert "'val'" in str(err.value) and "splits test" in str(err.value) and "model.val.dataset.split" in str(err.value)
    with pytest.raises(ConfigError) as err:  # ... nor a `train` split for stage 2
        run_stages(compose_config("train", [*base, "model.val.dataset.split=test"], tmp_path / "b"))
    assert "'train'" in str(err.value) and "model.stage2.data.split" in str(err.value)
    assert not (tmp_path / "b" / "stage1").exists()


def test_bare_command_stops_at_once_with_the_fix(tmp_path):
    """`python train.py model=samnet` on a fresh clone: one line naming the download, no traceback."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "train.py", "model=samnet", f"paths.data_dir={tmp_path / 'data'}",
                           "backbone.net.weights=none", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stderr[-2000:]
    message = " ".join(proc.stderr.split())  # the console wraps long lines
    assert "python -m semcorr.data.download voc" in message and "model.stage1.data.root" in message
    assert "Traceback" not in proc.stderr


def test_preset_records_the_sub_classes_it_trains_on(tmp_path, data_dirs):
    cfg = compose_config("train", ["model=samnet", "experiment=samnet_cpu", f"dataset.root={data_dirs[1]}"], tmp_path)
    assert describe(train_config(cfg, 1)) == "synthetic/all (duck(S), motorbike(G))"
    assert describe(train_config(cfg, 2)) == "pfwillow/test (duck(S), motorbike(G))"
    assert list(cfg.model.val.dataset.categories) == ["winebottle(wC)"]  # validation on another sub-class


def test_memory_cache_returns_the_pairs_rounded_to_8_bits(tmp_path):
    from semcorr.data.synthetic import SyntheticPairsDataset

    write_photos(tmp_path / "img", count=2, size=32)
    data = SyntheticPairsDataset(tmp_path / "img", split="all", size=(32, 32), n_kps=4, with_flow=False)
    cache = MemoryCache(data)
    first = cache[1]
    assert len(cache) == 2 and list(cache.items) == [1]
    assert (first["trg_img"] - data[1]["trg_img"]).abs().max() <= 0.5 / 255 + 1e-6
    assert torch.equal(first["src_kps"], data[1]["src_kps"]) and first["pair_id"] == data[1]["pair_id"]
    cache.dataset = None  # a second read comes from memory
    assert torch.equal(cache[1]["trg_img"], first["trg_img"])


def test_epoch_sampler_depends_on_seed_and_progress_only():
    step = {"value": 0}
    a, b = EpochSampler(5, 12, seed=3, progress=lambda: step["value"]), EpochSampler(5, 12, seed=3)
    first = list(a)
    assert len(first) == 12 and sorted(first[:5]) == list(range(5))
    assert list(b) == first
    step["value"] = 6
    assert list(a) != first


# -- progress -------------------------------------------------------------------------------------
def test_progress_bar_counts_the_stage_steps(trained):
    _, _, seen = trained
    # one task per stage (not one per 2-step epoch), total = completed = max_steps
    assert seen == [[(4, 4)], [(2, 2)]]


def fake_trainer(accelerator, step: int = 0) -> SimpleNamespace:
    return SimpleNamespace(global_step=step, accelerator=accelerator, is_global_zero=True)


def test_schedule_check_warns_on_a_cpu_with_the_estimate_and_the_preset(caplog, monkeypatch):
    clock = itertools.count(100.0, 12.0)  # 12 s between two calls
    monkeypatch.setattr("semcorr.lit.samnet.progress.perf_counter", lambda: next(clock))
    check = ScheduleCheck(gpu_schedule=True, remaining_steps=25000, measure_steps=4)
    with caplog.at_level(logging.WARNING, logger="semcorr.lit.samnet.progress"):
        check.on_train_batch_end(fake_trainer(CPUAccelerator(), 1), None, None, None, 0)
        check.on_train_batch_end(fake_trainer(CPUAccelerator(), 5), None, None, None, 4)  # 12 s for 4 steps
    assert check.seconds_per_step == pytest.approx(3.0)
    text = caplog.text
    assert "3.00 s/step" in text and "25000 steps" in text and "20 h 50 min" in text  # 75000 s
    assert "python train.py model=samnet experiment=samnet_cpu" in text
    for quiet in (ScheduleCheck(False, 100, measure_steps=1), ScheduleCheck(True, 100, measure_steps=1)):
        accelerator = CPUAccelerator() if not quiet.gpu_schedule else CUDAAccelerator()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="semcorr.lit.samnet.progress"):
            quiet.on_train_batch_end(fake_trainer(accelerator, 1), None, None, None, 0)
            quiet.on_train_batch_end(fake_trainer(accelerator, 2), None, None, None, 1)
        assert not caplog.text  # a CPU schedule, or a GPU


# -- runs, checkpoints, resume ---------------------------------------------------------------------
def test_training_run_writes_checkpoints_panels_and_final(trained):
    out, final, _ = trained
    info = json.loads((out / "checkpoints" / "final.json").read_text())
    assert info["checkpoint"] == str(final) and info["stage"] in (1, 2) and final.is_file()
    assert info["monitor"] == "val/pfwillow/pck@0.1"
    assert "python evaluate.py method=samnet method.checkpoint=" in info["evaluate"] and "backbone=mobilenet_v2" in info["evaluate"]
    for stage in (1, 2):
        assert (out / "checkpoints" / f"stage{stage}" / "last.ckpt").is_file()
        assert list((out / "checkpoints" / f"stage{stage}").glob("best-step*.ckpt"))
        panels = sorted((out / f"stage{stage}" / "panels").glob("*.png"))
        assert {p.name.split("-")[0] for p in panels} == {"pairs", "iterations"}
    metrics = (out / "stage1" / "csv" / "version_0" / "metrics.csv").read_text()
    for key in ("val/pfwillow/pck@0.1", "val/pfwillow/pck@0.1/it1", "val/synthetic/pck@0.1", "val/synthetic/epe",
                "train/am", "train/flow", "lr-Adam"):
        assert key in metrics, key
    assert "train/flow" not in (out / "stage2" / "csv" / "version_0" / "metrics.csv").read_text()  # weak stage 2
    ckpt = torch.load(out / "checkpoints" / "stage1" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["samnet"]["stage"] == 1 and ckpt["samnet"]["backbone"] == "mobilenet_v2"
    assert ckpt["samnet"]["trained_on"] == ["synthetic/all"]
    second = torch.load(out / "checkpoints" / "stage2" / "last.ckpt", weights_only=True)["samnet"]
    assert second["trained_on"] == ["synthetic/all", "pfwillow/test"]
    assert SAMNetMatcher(out / "checkpoints" / "stage2" / "last.ckpt", load_backbone("mobilenet_v2", "none")).trained_on == (
        "synthetic/all", "pfwillow/test")
    assert ckpt["samnet"]["image_size"] == [48, 48] and ckpt["samnet"]["network"]["init"] == "translation"


def test_ctrl_c_in_training_names_the_last_checkpoint_and_the_resume_command(tmp_path, data_dirs, trained):
    """The stage trainer's interrupt callback (callbacks.interrupt) says what is kept: nothing before
    the first checkpoint, then that stage's last.ckpt; its command resumes in the run directory."""
    run = tmp_path / "run"
    cfg = compose_config("train", train_overrides(*data_dirs, steps=4), run)
    trainer, _, _ = build_trainer(cfg, 1, run / "stage1", run / "checkpoints" / "stage1", "val/pfwillow/pck@0.1", 4)
    (interrupt,) = [c for c in trainer.callbacks if isinstance(c, ResumeOnInterrupt)]
    last = run / "checkpoints" / "stage1" / "last.ckpt"
    assert interrupt.save(trainer, None) == f"no checkpoint was written yet ({last} does not exist): the run starts over"
    last.parent.mkdir(parents=True)
    shutil.copy(trained[0] / "checkpoints" / "stage1" / "last.ckpt", last)
    assert interrupt.save(trainer, None).startswith(f"the last checkpoint is {last} (written ")
    assert interrupt.command.startswith("python train.py") and interrupt.command.endswith(f"hydra.run.dir={run}")


def test_a_run_directory_names_the_checkpoint_its_selection_chose(trained, tmp_path):
    out, final, _ = trained
    assert chosen_checkpoint(out) == final  # checkpoints/final.json's choice
    assert chosen_checkpoint(final) == final  # a file as it is
    moved = tmp_path / "moved"
    shutil.copytree(out / "checkpoints", moved / "checkpoints")
    assert chosen_checkpoint(moved) == moved / "checkpoints" / final.parent.name / final.name
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(WeightsError, match=r"is a folder, and .*final.json cannot be read"):
        chosen_checkpoint(tmp_path / "unfinished")


def test_checkpoint_round_trip_matcher_equals_module(trained, data_dirs, tmp_path):
    out, final, _ = trained
    cfg = compose_config("train", train_overrides(*data_dirs, steps=4), tmp_path)
    module = build_module(cfg, 2, build_stage_data(cfg, [2])[2]).eval()
    module.net.load_state_dict(network_state(read_checkpoint(final)["state_dict"]))
    matcher = SAMNetMatcher(final, load_backbone("mobilenet_v2", "none"), iterations=3)
    assert matcher.size == (48, 48)
    torch.manual_seed(1)
    src, trg = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        expected = module(src, trg, 3).final.field
        got = matcher.run(src, trg).final.field
    assert torch.equal(expected, got)
    # points through the matcher at another image size: resize there and back
    src_big, trg_big = F.interpolate(src, size=(96, 72)), F.interpolate(trg, size=(60, 80))
    pts = torch.tensor([[[10.0, 20.0], [50.0, 70.0], [float("nan"), float("nan")]]])
    with torch.no_grad():
        result = matcher(src_big, trg_big, pts)
        field = matcher.run(src_big, trg_big).final.field
    assert torch.allclose(result.points, transfer_image_points(field, pts, (96, 72), (60, 80), (48, 48)), equal_nan=True)
    assert torch.isnan(result.points[0, 2]).all()
    assert "warped" not in result.extras  # the picture writer's backward pass makes it for pictured pairs only
    assert result.extras["warped_target"].shape == result.extras["attribute_transfer"].shape == (1, 3, 96, 72)
    flow = matcher(src_big, trg_big, pts, dense="forward").flow
    assert flow.shape == (1, 2, 96, 72)
    assert torch.allclose(flow[0, :, 20, 10] + torch.tensor([10.0, 20.0]), result.points[0, 0], atol=1e-4)


def test_resume_continues_exactly(tmp_path, data_dirs, trained):
    """4 steps straight == stopped after 2 steps, then resumed from last.ckpt to 4 (stage 1)."""
    straight, _, _ = trained
    out = tmp_path / "run"
    only1 = ["model.stage=1"]
    stop = "+callbacks.stop={_target_:test_samnet_training.StopAfterFirstValidation}"
    run_stages(compose_config("train", train_overrides(*data_dirs, steps=4, extra=[*only1, stop]), out))
    mid = tmp_path / "mid.ckpt"
    shutil.copy(out / "checkpoints" / "stage1" / "last.ckpt", mid)
    assert torch.load(mid, weights_only=True)["global_step"] == 2
    reference = torch.load(straight / "checkpoints" / "stage1" / "last.ckpt", weights_only=True)
    # resumed in place (last.ckpt of the run dir), and elsewhere with model.resume=PATH
    run_stages(compose_config("train", train_overrides(*data_dirs, steps=4, extra=only1), out))
    other = tmp_path / "other"
    run_stages(compose_config("train", train_overrides(*data_dirs, steps=4, extra=[*only1, f"model.resume={mid}"]), other))
    for run in (out, other):
        resumed = torch.load(run / "checkpoints" / "stage1" / "last.ckpt", weights_only=True)
        assert resumed["global_step"] == reference["global_step"] == 4
        for key, value in reference["state_dict"].items():
            assert torch.equal(resumed["state_dict"][key], value), key


def test_method_config_instantiates_and_errors_name_the_fix(tmp_path, trained, data_dirs):
    out, final, _ = trained
    cfg = compose_config("evaluate", ["method=samnet", f"method.checkpoint={final}", "backbone.net.weights=none"], tmp_path)
    assert cfg.method.iterations is None and cfg.method.attribute_weight is None
    matcher = build_method(cfg.method)
    assert isinstance(matcher, SAMNetMatcher) and matcher.iterations == 2  # the run's model.val_iterations
    trained_with = torch.load(final, weights_only=True)["samnet"]["network"]["attribute_weight"]
    assert matcher.net.attribute_weight == trained_with  # the checkpoint's
    other = {"paper": "zero", "zero": "paper"}[trained_with]
    changed = build_method(compose_config("evaluate", ["method=samnet", f"method.checkpoint={final}",
                                                      f"method.attribute_weight={other}", "backbone.net.weights=none"],
                                         tmp_path).method)
    assert changed.net.attribute_weight == other
    assert SAMNetMatcher(final, load_backbone("mobilenet_v2", "none"), iterations=10).iterations == 10
    missing = compose_config("evaluate", ["method=samnet", "backbone.net.weights=none"], tmp_path)
    with pytest.raises(InstantiationException) as err:
        build_method(missing.method)
    user = find_user_error(err.value)
    assert isinstance(user, ConfigError) and "python train.py model=samnet" in str(user)
    with pytest.raises(WeightsError, match="python train.py model=samnet"):
        SAMNetMatcher(tmp_path / "nope.ckpt", load_backbone("mobilenet_v2", "none"))
    older = torch.load(final, weights_only=True)  # a checkpoint from before the trained_on record
    del older["samnet"]["trained_on"]
    torch.save(older, tmp_path / "older.ckpt")
    with pytest.raises(WeightsError, match="record lacks trained_on.*python train.py model=samnet"):
        SAMNetMatcher(tmp_path / "older.ckpt", load_backbone("mobilenet_v2", "none"))
    with pytest.raises(ConfigError, match="backbone=mobilenet_v2"):
        SAMNetMatcher(final, TinyBackbone())
    # evaluation end to end on the PF-WILLOW fixture, of the checkpoint the training run chose
    _, willow = data_dirs
    ev = compose_config(
        "evaluate",
        ["method=samnet", f"method.checkpoint={out}", "method.iterations=2", "backbone.net.weights=none",
         "dataset=pfwillow", f"dataset.root={willow}", "dataset.max_pairs=2", "logger=none",
         "save_pictures=true", "max_pictures=1"],
        tmp_path / "eval",
    )
    metrics = run_evaluation(ev)
    assert metrics["n_pairs"] == 2 and 0.0 <= metrics["pck@0.1"] <= 100.0
    record = metrics["protocol"]["method"]  # what the run says its weights are and saw
    assert record["backbone"] == "mobilenet_v2" and record["weights"] == "none"
    assert record["trained_on"] == sorted(torch.load(final, weights_only=True)["samnet"]["trained_on"])
    assert "synthetic/all" in record["trained_on"]
    # the pictured pair's attribute transfer: source | target | I^{s<-t} | warped target, and I^{s<-t}
    strips = list((tmp_path / "eval" / "pictures").glob("*/samnet.png"))
    transfers = list((tmp_path / "eval" / "pictures").glob("*/attribute_transfer.png"))
    assert len(strips) == len(transfers) == 1
    transfer, strip = Image.open(transfers[0]), Image.open(strips[0])
    assert strip.height >= transfer.height and strip.width > 3 * transfer.width  # 3 source-sized panels + target


def test_train_script_smoke(tmp_path, data_dirs):
    """`python train.py model=samnet experiment=samnet_cpu ...` end to end (stage 1 only, 1 step, W&B offline)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    overrides = [o for o in train_overrides(*data_dirs, steps=1) if not o.startswith("logger=")]
    overrides += ["model.stage=1", "model.val_every_n_steps=1", "model.images.every_n_steps=1", "logger=wandb", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "train.py", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "python evaluate.py method=samnet method.checkpoint=" in proc.stdout
    info = json.loads((tmp_path / "checkpoints" / "final.json").read_text())
    assert info["stage"] == 1 and os.path.isfile(info["checkpoint"])
    media = list((tmp_path / "stage1" / "wandb").glob("offline-run-*/files/media/images/**/*.png"))
    assert media, "the image panels were not logged to W&B"


def test_train_script_under_ddp_on_two_cpu_processes(tmp_path, data_dirs):
    """`train.py model=samnet trainer=ddp` trains with 2 CPU processes (gloo) and writes one checkpoint."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    overrides = train_overrides(*data_dirs, steps=2) + [
        "model.stage=1", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run([sys.executable, "train.py", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "checkpoints" / "final.json").read_text())
    assert info["stage"] == 1 and os.path.isfile(info["checkpoint"])
