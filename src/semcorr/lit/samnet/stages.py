"""The SAM-Net stage runner of ``python train.py model=samnet`` (:func:`run_stages`).

Two stages (paper, Sec. 5.1):

1. synthetic pairs of an image folder (``model.stage1.data``; the paper's images are PASCAL VOC,
   ``python -m semcorr.data.download voc``), their exact keypoints supervising the matching
   (``model.loss.flow``, see :mod:`semcorr.methods.samnet.losses`);
2. weakly supervised fine-tuning on image pairs of the ``dataset`` group (paper: PF-PASCAL
   ``train``), starting from the stage-1 weights.

Both validate on ``model.val`` (synthetic pairs and / or pairs of the dataset, see :mod:`.data`);
every stage's data is built and checked before the first step. Each stage is one Lightning fit of
a :class:`~.module.SAMNetModule` instantiated from ``model.module`` with that stage's
``_partial_`` optimiser (``model.stage<k>.optimizer``).

Layout of a run directory (``paths.output_dir``)::

    config.yaml                   the composed config
    stage{1,2}/                   Lightning's root per stage: logger files, panels/*.png
    checkpoints/stage{1,2}/       best-step*.ckpt (by model.checkpoint.monitor) and last.ckpt
    checkpoints/final.json        the checkpoint to evaluate and the command that does it

The final checkpoint is the best of the last stage by the monitored validation metric (both
stages validate on the same sets, so stage 2 starts from the best stage-1 checkpoint and is kept
only where it does better: ``final.json`` names whichever scored higher).

Resuming: a stage whose ``checkpoints/stage<k>/last.ckpt`` exists resumes from it (run again with
``hydra.run.dir=<run dir>``: on Ctrl-C the run prints that checkpoint and the command,
``callbacks.interrupt``); ``model.resume=PATH`` resumes from any SAM-Net checkpoint (its
stage is read from it). An "epoch" is ``model.val_every_n_steps`` optimiser steps drawn by
:class:`~.data.EpochSampler` from a generator seeded by (seed, global step at the epoch start);
checkpoints are written at epoch ends with the torch RNG state (droplink draws; the loaders have
generators of their own), so a resumed run takes exactly the steps the uninterrupted run would
have taken (``tests/test_samnet_training.py`` checks the weights bit for bit).

Choices where the paper is silent (defaults of ``conf/model/samnet.yaml``): Adam, lr 1e-4
(stage 1) and 1e-5 (stage 2), no weight decay, linear warm-up then cosine decay to 1% per stage,
gradient-norm clipping at 1.0, batch 8, 240x240 images, 20k + 5k steps, validation every 1000 steps
with 10 iterations (the test setting), and optionally up to ``model.detached_iterations`` iterations
without gradients before the L trained ones (drawn per step from the global RNG, so resuming stays
exact; see :class:`~semcorr.methods.samnet.SAMNet`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint, ProgressBar, RichProgressBar

from semcorr.errors import ConfigError
from semcorr.io import write_json
from semcorr.lit.callbacks import instantiate_callbacks
from semcorr.lit.evaluation_runner import finish_run
from semcorr.lit.interrupt import checkpoint_note, resume_command
from semcorr.lit.progress import ProgressBar as SemcorrProgressBar
from semcorr.lit.train import start_run
from semcorr.methods.samnet.matcher import CKPT_KEY, network_state, read_checkpoint

from .data import StageData, build_loaders, build_stage_data, describe, train_config
from .module import VAL_ALPHA, SAMNetModule
from .progress import ScheduleCheck, StageProgressBar

log = logging.getLogger(__name__)

#: ``model.stage`` values and the stages they run.
STAGES = {"1": [1], "2": [2], "both": [1, 2]}


def checkpoint_stage(path: str | Path) -> int:
    """The stage (1 or 2) a SAM-Net checkpoint was written in."""
    return int(read_checkpoint(path)[CKPT_KEY]["stage"])


def monitored(cfg: DictConfig, data: StageData) -> str:
    """``model.checkpoint.monitor``, or (null) the PCK of the last validation set (the dataset's
    pairs when ``model.val.dataset`` is set, else the synthetic ones)."""
    monitor = cfg.model.checkpoint.get("monitor")
    return str(monitor) if monitor else f"val/{list(data.val)[-1]}/pck@{VAL_ALPHA:g}"


def build_module(cfg: DictConfig, stage: int, data: StageData) -> SAMNetModule:
    """The stage's LightningModule from ``model.module`` with the stage's ``_partial_`` optimiser."""
    m = cfg.model
    return instantiate(
        m.module,
        optimizer=m[f"stage{stage}"].optimizer,
        stage=stage,
        supervised=stage == 1 and float(m.loss.flow) > 0,
        val_sets={name: list(dataset.categories) for name, dataset in data.val.items()},
        trained_on=list(data.trained_on),
    )


def stage_bar(callback: Callback, stage: int) -> Callback:
    """The trainer group's progress bar as one bar over the stage (its Rich bar would restart every
    epoch = validation interval); other callbacks as they are."""
    if isinstance(callback, SemcorrProgressBar):
        return StageProgressBar(f"SAM-Net stage {stage}", every_n=callback.every_n, every_s=callback.every_s,
                                lines=callback.lines)
    if isinstance(callback, RichProgressBar):
        return StageProgressBar(f"SAM-Net stage {stage}", lines=False)
    return callback


def build_trainer(
    cfg: DictConfig, stage: int, stage_dir: Path, ckpt_dir: Path, monitor: str, remaining_steps: int
) -> tuple[pl.Trainer, ModelCheckpoint, Any]:
    """A Trainer from ``cfg.trainer`` merged with ``model.trainer``, the ``callbacks`` group
    (:func:`~semcorr.lit.callbacks.instantiate_callbacks`; the progress bar as one bar over the
    stage) and the stage's checkpoints.

    Returns:
        ``(trainer, checkpoint callback, logger or None)``.
    """
    m = cfg.model
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    merged = OmegaConf.merge(OmegaConf.create(plain(cfg.trainer)), plain(m.trainer))  # not in struct mode
    if merged.get("strategy") == "ddp":
        # a step's iterations run the coarse or the fine matching network (and the decoder only at the
        # last with attribute_weight=zero): the others get no gradient in that step
        merged.strategy = "ddp_find_unused_parameters_true"
    last = ckpt_dir / "last.ckpt"
    configured = instantiate_callbacks(
        cfg.get("callbacks"), save=lambda trainer, module: checkpoint_note(last), command=resume_command(stage_dir.parent, "train.py")
    )
    callbacks = [stage_bar(c, stage) for c in configured]
    if not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(StageProgressBar(f"SAM-Net stage {stage}"))
    checkpoint = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="best-step{step:07d}",
        auto_insert_metric_name=False,
        monitor=monitor,
        mode=str(m.checkpoint.mode),
        save_top_k=1,
    )
    # last.ckpt at every validation (Lightning's save_last only follows saves of the best one)
    latest = ModelCheckpoint(
        dirpath=str(ckpt_dir), filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks += [checkpoint, latest, ScheduleCheck(bool(m.gpu_schedule), remaining_steps)]
    logger = None
    if cfg.get("logger") is not None:
        extra = {"name": f"samnet-stage{stage}"} if str(cfg.logger._target_).endswith("WandbLogger") else {}
        logger = instantiate(cfg.logger, save_dir=str(stage_dir), **extra)
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    trainer = instantiate(
        merged,
        callbacks=callbacks,
        logger=logger if logger is not None else False,
        default_root_dir=str(stage_dir),
        max_steps=int(m[f"stage{stage}"].max_steps),
        max_epochs=-1,
        check_val_every_n_epoch=1,
        num_sanity_val_steps=0,
        enable_checkpointing=True,
    )
    return trainer, checkpoint, logger


def evaluate_command(cfg: DictConfig, checkpoint: Path) -> str:
    """The ``python evaluate.py`` command for a trained checkpoint (with the same backbone choice)."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    backbone = choices.get("backbone") or str(cfg.backbone.net.name)
    return f"python evaluate.py method=samnet method.checkpoint={checkpoint} backbone={backbone}"


def run_stages(cfg: DictConfig) -> Path:
    """Train SAM-Net as configured (``model.stage`` = 1, 2 or both) and return the final checkpoint.

    Writes the run directory described in the module docstring, prints the evaluation command.
    """
    stages = STAGES.get(str(cfg.model.stage))
    if stages is None:
        raise ConfigError(f"model.stage must be 1, 2 or both, got {cfg.model.stage!r}")
    run_dir = start_run(cfg)
    resume = Path(cfg.model.resume).expanduser() if cfg.model.resume else None
    resume_stage = checkpoint_stage(resume) if resume is not None else None
    if resume_stage is not None and resume_stage not in stages:
        raise ConfigError(f"model.resume is a stage-{resume_stage} checkpoint but model.stage={cfg.model.stage}")
    if resume_stage == 2:
        stages = [2]  # resuming stage 2: stage 1 is done
    init = Path(cfg.model.init_from).expanduser() if cfg.model.init_from else None
    earlier: list[str] = []
    if init is not None:
        earlier = list(read_checkpoint(init)[CKPT_KEY]["trained_on"])
    elif resume_stage == 2 and str(cfg.model.stage) == "both":
        earlier = [describe(train_config(cfg, 1))]
    data = build_stage_data(cfg, stages, earlier)
    best: tuple[Path, float | None, int] | None = None  # (checkpoint, score, stage)
    for index, stage in enumerate(stages):
        ckpt_dir = run_dir / "checkpoints" / f"stage{stage}"
        last = ckpt_dir / "last.ckpt"
        ckpt_path = resume if resume_stage == stage else (last if last.is_file() else None)
        module = build_module(cfg, stage, data[stage])
        if ckpt_path is None and init is not None:
            module.net.load_state_dict(network_state(read_checkpoint(init)["state_dict"]))
            log.info("stage %d starts from the weights of %s", stage, init)
        train_loader, val_loaders = build_loaders(cfg, lambda m=module: m.global_step, data[stage])
        remaining = sum(int(cfg.model[f"stage{s}"].max_steps) for s in stages[index:])
        monitor = monitored(cfg, data[stage])
        trainer, checkpoint, logger = build_trainer(
            cfg, stage, run_dir / f"stage{stage}", ckpt_dir, monitor, remaining
        )
        log.info("SAM-Net stage %d: %d training pairs; validation %s%s", stage, len(data[stage].train),
                 ", ".join(f"{name} ({len(d)} pairs)" for name, d in data[stage].val.items()),
                 f"; resuming from {ckpt_path}" if ckpt_path else "")
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loaders,
                    ckpt_path=str(ckpt_path) if ckpt_path else None)
        if logger is not None:
            finish_run(logger)
        chosen = Path(checkpoint.best_model_path or last)
        score = float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None
        better = best is None or best[1] is None or (score is not None and is_better(score, best[1], cfg))
        if better:
            best = (chosen, score, stage)
        init = best[0]
    assert best is not None
    final = {
        "checkpoint": str(best[0].resolve()),
        "stage": best[2],
        "monitor": monitor,
        "score": best[1],
        "evaluate": evaluate_command(cfg, best[0].resolve()),
    }
    write_json(run_dir / "checkpoints" / "final.json", final)
    print(f"SAM-Net final checkpoint (stage {best[2]}, {monitor} = {best[1]}): {final['checkpoint']}\n"
          f"Evaluate it with:\n  {final['evaluate']}")
    return Path(final["checkpoint"])


def is_better(score: float, than: float, cfg: DictConfig) -> bool:
    """Whether ``score`` beats ``than`` under ``model.checkpoint.mode`` (ties keep the earlier)."""
    return score > than if str(cfg.model.checkpoint.mode) == "max" else score < than
