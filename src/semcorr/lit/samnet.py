"""Training SAM-Net with Lightning: ``python train.py model=samnet`` (runner :func:`run_training`).

Two stages (paper, Sec. 5.1), both with the weakly supervised loss of :mod:`semcorr.methods.samnet.losses`:

1. synthetic pairs (:class:`~semcorr.data.synthetic.SyntheticPairsDataset` over any image folder,
   ``model.stage1.data``; the paper uses PASCAL VOC, ``python -m semcorr.data.download voc``).
   Their exact flow supervises the matching (``model.loss.flow``, see
   :mod:`semcorr.methods.samnet.losses`) and, with their keypoints, the validation metrics;
2. fine-tuning on image pairs of the ``dataset`` group (paper: PF-PASCAL ``train``), starting
   from the stage-1 weights. It validates on ``model.stage2.val_split`` of that dataset, or on the
   stage-1 synthetic validation pairs when the dataset has no such split (``val_split: null``;
   PF-WILLOW has only its test pairs, so model selection never reads their keypoints).

Layout of a run directory (``paths.output_dir``)::

    config.yaml                   the composed config
    stage{1,2}/                   Lightning's root per stage: logger files, panels/*.png
    checkpoints/stage{1,2}/       best-step*.ckpt (by model.checkpoint.monitor) and last.ckpt
    checkpoints/final.json        the checkpoint to evaluate and the command that does it

Resuming: a stage whose ``checkpoints/stage<k>/last.ckpt`` exists resumes from it (run again with
``hydra.run.dir=<run dir>``); ``model.resume=PATH`` resumes from any SAM-Net checkpoint (its
stage is read from it). An "epoch" here is ``model.val_every_n_steps`` optimiser steps drawn by
:class:`EpochSampler` from a generator seeded by (seed, global step at the epoch start);
checkpoints are written at epoch ends with the torch RNG state (droplink draws; the loaders have
generators of their own), so a resumed run takes exactly the steps the uninterrupted run would
have taken (``tests/test_samnet.py`` checks the weights bit for bit).

Choices where the paper is silent (defaults of ``conf/model/samnet.yaml``): Adam, lr 1e-4
(stage 1) and 1e-5 (stage 2), no weight decay, linear warm-up then cosine decay to 1% per stage,
gradient-norm clipping at 1.0, batch 8, 240x240 images, 20k + 5k steps, validation every 1000 steps
with 10 iterations (the test setting), and optionally up to ``model.detached_iterations`` iterations
without gradients before the L trained ones (drawn per step from the global RNG, so resuming stays
exact; see :class:`~semcorr.methods.samnet.SAMNet`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision.utils
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler
from torchmetrics import MeanMetric

from semcorr.backbones import load_backbone
from semcorr.data.collate import collate_pairs
from semcorr.data.warps import make_generator
from semcorr.errors import ConfigError
from semcorr.io import atomic_write, write_json, write_text
from semcorr.lit.evaluate import finish_run
from semcorr.methods.samnet import SAMNet, SAMNetLoss, SAMNetOutput
from semcorr.methods.samnet.affine import warp_image
from semcorr.methods.samnet.matcher import (
    dense_image_flow,
    network_state,
    read_checkpoint,
    resize,
    transfer_image_points,
)
from semcorr.metrics.pck import pck_per_pair

log = logging.getLogger(__name__)

#: Key of SAM-Net's own entries in a Lightning checkpoint.
CKPT_KEY = "samnet"


class EpochSampler(Sampler[int]):
    """``num_samples`` indices per epoch, shuffled by a generator seeded with (seed, training progress).

    Each epoch walks fresh permutations of the dataset (concatenated as needed), so short and long
    datasets give epochs of the same number of steps. The order is drawn when the epoch's first
    index is requested, from ``progress()`` at that moment (the optimiser steps taken so far): an
    uninterrupted run and a run resumed from a checkpoint at an epoch end see the same orders,
    whatever epoch counter the loop keeps.

    Args:
        size: dataset length. num_samples: indices per epoch. seed: base seed.
        progress: callable returning the current optimiser step (e.g. ``module.global_step``).
    """

    def __init__(self, size: int, num_samples: int, seed: int = 0, progress: Callable[[], int] = lambda: 0) -> None:
        if size < 1:
            raise ConfigError("SAM-Net training needs at least one training pair")
        self.size, self.num_samples, self.seed, self.progress = int(size), int(num_samples), int(seed), progress

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = make_generator(self.seed, "samnet-epoch", int(self.progress()))
        reps = math.ceil(self.num_samples / self.size)
        order = torch.cat([torch.randperm(self.size, generator=generator) for _ in range(reps)])
        yield from order[: self.num_samples].tolist()


def warmup_cosine(warmup_steps: int, total_steps: int, min_ratio: float):
    """LR factor: linear warm-up over ``warmup_steps``, then cosine decay to ``min_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


class SAMNetModule(pl.LightningModule):
    """SAM-Net training and validation.

    Args:
        backbone: ``{"name": ..., "weights": ...}`` for :func:`~semcorr.backbones.load_backbone`.
        network: keyword arguments of :class:`~semcorr.methods.samnet.SAMNet` (``iterations`` is L
            in training).
        loss: keyword arguments of :class:`~semcorr.methods.samnet.SAMNetLoss`.
        optimizer: a Hydra config of the optimiser (``_target_`` and its arguments but ``params``).
        scheduler: ``{"warmup_steps": int, "min_lr_ratio": float}`` (see :func:`warmup_cosine`).
        image_size: (H, W) the network sees (batches are resized to it).
        stage: 1 (synthetic pairs) or 2 (image pairs); stored in checkpoints.
        val_iterations: iterations at validation (the test setting, 10).
        trainable_backbone: fine-tune the feature extractor too.
        detached_iterations: at most this many iterations without gradients before the L trained
            ones, drawn uniformly per step (0: none, the paper), so that the trained iterations also
            see fields already under way, as the test's iterations beyond L do.
        image_every_n_steps: log image panels every this many steps (0: never).
        image_pairs: pairs shown in a panel.

    Batches follow :mod:`semcorr.data.base`. Validation logs ``val/pck@0.1`` when the pairs have
    keypoints and ``val/epe`` (mean end-point error in the batch's target pixels) when they have a ``flow``.
    """

    def __init__(
        self,
        backbone: dict[str, Any],
        network: dict[str, Any],
        loss: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any],
        image_size: Sequence[int],
        stage: int = 1,
        val_iterations: int = 10,
        trainable_backbone: bool = False,
        detached_iterations: int = 0,
        image_every_n_steps: int = 100,
        image_pairs: int = 4,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        extractor = load_backbone(backbone["name"], backbone.get("weights", "imagenet"), trainable=trainable_backbone)
        self.net = SAMNet(extractor, **network)
        self.criterion = SAMNetLoss(**loss)
        self.size = (int(image_size[0]), int(image_size[1]))
        self.val_pck = MeanMetric()
        self.val_epe = MeanMetric()

    def forward(self, src_img: Tensor, trg_img: Tensor, iterations: int | None = None) -> SAMNetOutput:
        """The network on a pair batch resized to :attr:`size` (see :class:`SAMNet`)."""
        return self.net(resize(src_img, self.size), resize(trg_img, self.size), iterations)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        src, trg = resize(batch["src_img"], self.size), resize(batch["trg_img"], self.size)
        most = int(self.hparams.detached_iterations)
        detached = int(torch.randint(0, most + 1, ())) if most > 0 else 0  # global RNG: resumes exactly
        out = self.net(src, trg, detached=detached)
        flow = batch.get("flow")
        if flow is not None and tuple(flow.shape[-2:]) != self.size:
            raise ConfigError(
                f"ground-truth flow of size {tuple(flow.shape[-2:])} for a network of size {self.size}: "
                "give the synthetic pairs model.image_size (model.stage1.data.size)"
            )
        losses = self.criterion(out, flow, batch.get("src_mask"))
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=src.shape[0])
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=src.shape[0])
        every = int(self.hparams.image_every_n_steps)
        if every > 0 and self.global_step % every == 0:
            self.log_panels(src, trg, out)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        src_hw, trg_hw = tuple(batch["src_img"].shape[-2:]), tuple(batch["trg_img"].shape[-2:])
        field = self(batch["src_img"], batch["trg_img"], int(self.hparams.val_iterations)).final.field
        b = field.shape[0]
        if batch["src_kps"].shape[1] > 0:
            pred = transfer_image_points(field, batch["src_kps"].to(field.dtype), src_hw, trg_hw, self.size)
            pck = pck_per_pair(pred, batch["trg_kps"], batch["pck_threshold"], [0.1])[:, 0]
            pck = pck[torch.isfinite(pck)]
            if pck.numel():
                self.val_pck.update(100.0 * pck)
                self.log("val/pck@0.1", self.val_pck, prog_bar=True, batch_size=pck.numel())
        if "flow" in batch:
            error = (dense_image_flow(field, src_hw, trg_hw, self.size) - batch["flow"]).norm(dim=1)
            error = error[batch["src_mask"]]
            if error.numel():
                self.val_epe.update(error)
                self.log("val/epe", self.val_epe, batch_size=b)

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = instantiate(self.hparams.optimizer, params=params)
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else 1
        factor = warmup_cosine(
            int(self.hparams.scheduler["warmup_steps"]), total, float(self.hparams.scheduler["min_lr_ratio"])
        )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the stage and the torch RNG state (droplink draws) for an exact resume."""
        entry: dict[str, Any] = {"stage": int(self.hparams.stage), "cpu_rng": torch.get_rng_state()}
        if torch.cuda.is_available():
            entry["cuda_rng"] = torch.cuda.get_rng_state_all()
        checkpoint[CKPT_KEY] = entry

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the RNG state saved by :meth:`on_save_checkpoint`."""
        entry = checkpoint.get(CKPT_KEY, {})
        if "cpu_rng" in entry:
            torch.set_rng_state(entry["cpu_rng"])
        if "cuda_rng" in entry and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(entry["cuda_rng"])

    # -- pictures -------------------------------------------------------------------------------
    @torch.no_grad()
    def log_panels(self, src: Tensor, trg: Tensor, out: SAMNetOutput) -> None:
        """Log two panels: the pairs, and the iterations of the first pair.

        ``pairs``: one row per pair: source, target, attribute-transferred ``I^{s<-t,L}``, target
        warped onto the source by ``T^L``. ``iterations``: row 1 ``I^{s<-t,l}``, row 2 the target
        warped by ``T^l``, for l = 1..L. To W&B with ``log_image``; otherwise PNG files in
        ``<stage dir>/panels/``.
        """
        if not self.trainer.is_global_zero:
            return
        n = min(int(self.hparams.image_pairs), src.shape[0])
        hw = tuple(src.shape[-2:])
        warped = [warp_image(trg[:n], dense_image_flow(it.field[:n], hw, hw, hw)) for it in out.iterations]
        pairs = torch.stack([src[:n], trg[:n], out.final.image[:n], warped[-1]], dim=1).flatten(0, 1)
        steps = torch.cat([torch.stack([it.image[0] for it in out.iterations]), torch.stack([w[0] for w in warped])])
        panels = {
            "pairs": (
                torchvision.utils.make_grid(pairs, nrow=4, padding=2),
                "source | target | attribute-transferred | target warped to source",
            ),
            "iterations": (
                torchvision.utils.make_grid(steps, nrow=len(out.iterations), padding=2),
                "top: attribute-transferred per iteration; bottom: target warped to source per iteration",
            ),
        }
        stage = int(self.hparams.stage)
        for name, (grid, caption) in panels.items():
            key = f"stage{stage}/{name}"
            if isinstance(self.logger, WandbLogger):
                self.logger.log_image(key=key, images=[grid.float().cpu()], step=self.global_step, caption=[caption])
            else:
                path = Path(self.trainer.default_root_dir) / "panels" / f"{name}-step{self.global_step:07d}.png"
                atomic_write(path, lambda p, g=grid: torchvision.utils.save_image(g.float().cpu(), p, format="png"))


# -- the runner of train.py ---------------------------------------------------------------------
def checkpoint_stage(path: str | Path) -> int:
    """The stage (1 or 2) a SAM-Net checkpoint was written in."""
    ckpt = read_checkpoint(path)
    return int(ckpt.get(CKPT_KEY, {}).get("stage", ckpt["hyper_parameters"].get("stage", 1)))


def build_datasets(cfg: DictConfig, stage: int) -> tuple[Dataset, Dataset]:
    """(train, val) datasets of a stage from the Hydra config.

    Stage 1: ``model.stage1.data`` (a synthetic-pairs config) at ``train_split`` without keypoints
    (with the flow when ``model.loss.flow > 0``), and at ``val_split`` with ``val_kps`` keypoints
    and flow (``val_pairs`` at most).
    Stage 2: the ``dataset`` group at ``model.stage2.train_split`` resized to ``model.image_size``;
    validation on its ``val_split``, or on the stage-1 validation pairs when that is null.
    """
    m = cfg.model
    size = list(m.image_size)
    s1 = m.stage1
    synthetic_val = lambda: instantiate(  # noqa: E731 - built only when needed
        s1.data, split=s1.val_split, n_kps=s1.val_kps, with_flow=True, max_pairs=s1.val_pairs
    )
    if stage == 1:
        supervised = float(m.loss.get("flow", 0.0)) > 0  # the flow term needs the ground truth
        return instantiate(s1.data, split=s1.train_split, n_kps=0, with_flow=supervised), synthetic_val()
    s2 = m.stage2
    train = instantiate(cfg.dataset, split=s2.train_split, size=size)
    if s2.val_split is None:
        return train, synthetic_val()
    return train, instantiate(cfg.dataset, split=s2.val_split, size=size, max_pairs=s2.val_pairs)


def build_loaders(cfg: DictConfig, module: SAMNetModule, train: Dataset, val: Dataset) -> tuple[DataLoader, DataLoader]:
    """Training loader (an :class:`EpochSampler` epoch = ``val_every_n_steps`` steps) and validation loader."""
    m = cfg.model
    batch, workers = int(m.batch_size), int(cfg.datamodule.num_workers)
    sampler = EpochSampler(len(train), int(m.val_every_n_steps) * batch, int(cfg.seed), lambda: module.global_step)
    common = {
        "batch_size": batch, "num_workers": workers, "collate_fn": collate_pairs, "persistent_workers": workers > 0
    }
    # Own generators: creating a loader iterator draws a seed, which must not move the global RNG
    # (it drives the droplink draws and is restored from checkpoints).
    seeded = lambda: torch.Generator().manual_seed(int(cfg.seed))  # noqa: E731
    return (
        DataLoader(train, sampler=sampler, drop_last=True, generator=seeded(), **common),
        DataLoader(val, shuffle=False, generator=seeded(), **common),
    )


def build_module(cfg: DictConfig, stage: int) -> SAMNetModule:
    """The LightningModule of a stage from ``cfg.model`` and ``cfg.backbone``."""
    m = cfg.model
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    return SAMNetModule(
        backbone={"name": str(cfg.backbone.net.name), "weights": cfg.backbone.net.weights},
        network=plain(m.network),
        loss=plain(m.loss),
        optimizer=plain(m[f"stage{stage}"].optimizer),
        scheduler=plain(m.scheduler),
        image_size=list(m.image_size),
        stage=stage,
        val_iterations=int(m.val_iterations),
        trainable_backbone=bool(m.trainable_backbone),
        detached_iterations=int(m.get("detached_iterations", 0)),
        image_every_n_steps=int(m.images.every_n_steps),
        image_pairs=int(m.images.pairs),
    )


def build_trainer(
    cfg: DictConfig, stage: int, stage_dir: Path, ckpt_dir: Path
) -> tuple[pl.Trainer, ModelCheckpoint, Any]:
    """A Trainer from ``cfg.trainer`` merged with ``model.trainer`` and the stage's needs.

    Returns:
        ``(trainer, checkpoint callback, logger or None)``.
    """
    m = cfg.model
    plain = lambda node: OmegaConf.to_container(node, resolve=True)  # noqa: E731
    merged = OmegaConf.merge(OmegaConf.create(plain(cfg.trainer)), plain(m.trainer))  # not in struct mode
    callbacks = [instantiate(c) for c in merged.pop("callbacks", None) or []]
    if not any(isinstance(c, RichProgressBar) for c in callbacks):
        callbacks.append(RichProgressBar())
    checkpoint = ModelCheckpoint(
        dirpath=str(ckpt_dir),
        filename="best-step{step:07d}",
        auto_insert_metric_name=False,
        monitor=str(m.checkpoint.monitor),
        mode=str(m.checkpoint.mode),
        save_top_k=1,
    )
    # last.ckpt at every validation (Lightning's save_last only follows saves of the best one)
    latest = ModelCheckpoint(
        dirpath=str(ckpt_dir), filename="last", monitor=None, save_top_k=1, enable_version_counter=False
    )
    callbacks += [checkpoint, latest]
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


def run_training(cfg: DictConfig) -> Path:
    """Train SAM-Net as configured (``model.stage`` = 1, 2 or both) and return the final checkpoint.

    Writes the run directory described in the module docstring, prints the evaluation command.
    """
    stages = {"1": [1], "2": [2], "both": [1, 2]}.get(str(cfg.model.stage))
    if stages is None:
        raise ConfigError(f"model.stage must be 1, 2 or both, got {cfg.model.stage!r}")
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    if cfg.model.get("num_threads"):
        torch.set_num_threads(int(cfg.model.num_threads))
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    resume = Path(cfg.model.resume).expanduser() if cfg.model.resume else None
    resume_stage = checkpoint_stage(resume) if resume is not None else None
    if resume_stage is not None and resume_stage not in stages:
        raise ConfigError(f"model.resume is a stage-{resume_stage} checkpoint but model.stage={cfg.model.stage}")
    init = Path(cfg.model.init_from).expanduser() if cfg.model.init_from else None
    final: dict[str, Any] = {}
    for stage in stages:
        if resume_stage == 2 and stage == 1:
            continue  # resuming stage 2: stage 1 is done
        ckpt_dir = run_dir / "checkpoints" / f"stage{stage}"
        last = ckpt_dir / "last.ckpt"
        ckpt_path = resume if resume_stage == stage else (last if last.is_file() else None)
        module = build_module(cfg, stage)
        if ckpt_path is None and init is not None:
            module.net.load_state_dict(network_state(read_checkpoint(init)["state_dict"]))
            log.info("stage %d starts from the weights of %s", stage, init)
        train, val = build_datasets(cfg, stage)
        train_loader, val_loader = build_loaders(cfg, module, train, val)
        trainer, checkpoint, logger = build_trainer(cfg, stage, run_dir / f"stage{stage}", ckpt_dir)
        log.info("SAM-Net stage %d: %d training pairs, %d validation pairs%s", stage, len(train), len(val),
                 f", resuming from {ckpt_path}" if ckpt_path else "")
        trainer.fit(
            module, train_dataloaders=train_loader, val_dataloaders=val_loader,
            ckpt_path=str(ckpt_path) if ckpt_path else None,
        )
        if logger is not None:
            finish_run(logger)
        best = checkpoint.best_model_path or str(last)
        score = checkpoint.best_model_score
        final = {
            "checkpoint": str(Path(best).resolve()),
            "stage": stage,
            "monitor": checkpoint.monitor,
            "score": float(score) if score is not None else None,
            "last": str(last.resolve()) if last.is_file() else None,
        }
        init = Path(best)
    final["evaluate"] = evaluate_command(cfg, Path(final["checkpoint"]))
    write_json(run_dir / "checkpoints" / "final.json", final)
    print(f"SAM-Net final checkpoint: {final['checkpoint']}\nEvaluate it with:\n  {final['evaluate']}")
    return Path(final["checkpoint"])
