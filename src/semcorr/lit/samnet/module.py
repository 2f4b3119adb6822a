"""The SAM-Net LightningModule: one training stage's steps, validation, checkpoint record and panels.

Built by Hydra from ``model.module`` (``conf/model/samnet.yaml``): the network, the loss and the
learning-rate schedule are instantiated from their ``_target_``, the optimiser is a ``_partial_``
(called here with the trainable parameters), as in lightning-hydra-template. The stage runner
(:mod:`.stages`) passes each stage's optimiser and number.

A checkpoint carries, besides Lightning's entries, ``checkpoint["samnet"]``: what
:class:`~semcorr.methods.samnet.SAMNetMatcher` needs to rebuild the network (its settings, the
backbone's name, the image size, the validation iteration count), the stage, and the torch RNG
state (droplink and detached-iteration draws) for an exact resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision.utils
from pytorch_lightning.loggers import WandbLogger
from torch import Tensor, nn
from torchmetrics import MeanMetric

from semcorr.errors import ConfigError
from semcorr.io import atomic_write
from semcorr.methods.samnet import SAMNet, SAMNetLoss, SAMNetOutput
from semcorr.methods.samnet.affine import dense_image_flow, transfer_image_points, warp_image
from semcorr.methods.samnet.matcher import CKPT_KEY, resize
from semcorr.methods.base import MatchOutput
from semcorr.metrics.pck import PCKEvaluator

#: The PCK alpha of the validation metrics (``val/<set>/pck@0.1``).
VAL_ALPHA = 0.1


def warmup_cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 500, min_lr_ratio: float = 0.01
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: linear warm-up over ``warmup_steps``, then cosine decay to ``min_lr_ratio``
    of the base rate at ``total_steps`` (the config gives it as a ``_partial_`` without the first two).
    """

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class SAMNetModule(pl.LightningModule):
    """SAM-Net training and validation for one stage.

    Args:
        net: the network (:class:`~semcorr.methods.samnet.SAMNet`; ``iterations`` is L in training).
        loss: the criterion (:class:`~semcorr.methods.samnet.SAMNetLoss`).
        optimizer: called with the trainable parameters (a Hydra ``_partial_``).
        scheduler: called with ``(optimizer, total_steps)`` (a ``_partial_`` of :func:`warmup_cosine`),
            stepped every optimiser step; None: a constant rate.
        image_size: (H, W) the network sees (batches are resized to it).
        val_sets: the validation loaders' names (``val/<name>/...`` metrics), in their order, each with its
            dataset's category names (``category_id`` indexes them).
        stage: 1 (synthetic pairs) or 2 (image pairs).
        supervised: pass the batches' keypoints to the loss's flow term (stage 1 on synthetic pairs;
            stage 2 is weakly supervised and never reads them).
        val_iterations: iterations at validation (the test setting, 10); PCK is logged after each.
        detached_iterations: at most this many iterations without gradients before the L trained
            ones, drawn uniformly per step (0: none, the paper), so that the trained iterations also
            see fields already under way, as the test's iterations beyond L do.
        trained_on: what the weights have been fit on by the end of this stage (``<dataset>/<split>``),
            recorded in checkpoints for the matcher's protocol record.
        image_every_n_steps: log image panels every this many steps (0: never).
        image_pairs: pairs shown in a panel.

    Batches follow :mod:`semcorr.data.base`. Validation logs, per set, ``val/<set>/pck@0.1``
    (after ``val_iterations``), ``val/<set>/pck@0.1/it<l>`` (after each iteration l, to choose
    the test count) and ``val/<set>/epe`` (mean keypoint end-point error in target pixels). The
    PCK is the ``pck@0.1`` of the project's PCK family (:class:`~semcorr.metrics.pck.PCKEvaluator`,
    one per set and iteration: the mean over pairs of the per-pair PCK, in resized target pixels
    with the batch's ``pck_threshold``), the number ``evaluate.py`` reports on the same pairs at the
    network's size (``dataset.size=<model.image_size>``, the size the validation sets are resized to)
    under ``metrics.resolution=resized`` (its default); a set none of whose pairs has keypoints logs no PCK.
    """

    def __init__(
        self,
        net: SAMNet,
        loss: SAMNetLoss,
        optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer, int], Any] | None,
        image_size: Sequence[int],
        val_sets: Mapping[str, Sequence[str]],
        stage: int = 1,
        supervised: bool = True,
        val_iterations: int = 10,
        detached_iterations: int = 0,
        trained_on: Sequence[str] = (),
        image_every_n_steps: int = 100,
        image_pairs: int = 4,
    ) -> None:
        super().__init__()
        if int(stage) not in (1, 2):
            raise ConfigError(f"model.stage: a SAM-Net stage is 1 or 2, got {stage!r}")
        if int(val_iterations) < 1 or int(detached_iterations) < 0:
            raise ConfigError(
                f"model.val_iterations must be >= 1 and model.detached_iterations >= 0, "
                f"got {val_iterations}, {detached_iterations}"
            )
        self.save_hyperparameters(ignore=["net", "loss", "optimizer", "scheduler"])
        self.net = net
        self.criterion = loss
        self.make_optimizer = optimizer
        self.make_scheduler = scheduler
        self.size = (int(image_size[0]), int(image_size[1]))
        self.val_sets = [str(name) for name in val_sets]
        iterations = int(val_iterations)
        self.val_pck = nn.ModuleList(
            [nn.ModuleList([PCKEvaluator([VAL_ALPHA], categories) for _ in range(iterations)])
             for categories in val_sets.values()]
        )
        self.val_epe = nn.ModuleList([MeanMetric() for _ in self.val_sets])

    def forward(self, src_img: Tensor, trg_img: Tensor, iterations: int | None = None) -> SAMNetOutput:
        """The network on a pair batch resized to :attr:`size` (see :class:`SAMNet`)."""
        return self.net(resize(src_img, self.size), resize(trg_img, self.size), iterations)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        src, trg = resize(batch["src_img"], self.size), resize(batch["trg_img"], self.size)
        most = int(self.hparams.detached_iterations)
        detached = int(torch.randint(0, most + 1, ())) if most > 0 else 0  # global RNG: resumes exactly
        out = self.net(src, trg, detached=detached)
        kps: tuple[Tensor | None, Tensor | None] = (None, None)
        if self.hparams.supervised:
            if tuple(batch["src_img"].shape[-2:]) != self.size or tuple(batch["trg_img"].shape[-2:]) != self.size:
                raise ConfigError(
                    f"supervised pairs of size {tuple(batch['src_img'].shape[-2:])} for a network of size "
                    f"{self.size}: give the synthetic pairs model.image_size (model.stage1.data.size)"
                )
            kps = (batch["src_kps"], batch["trg_kps"])
        losses = self.criterion(out, *kps)
        self.log_dict({f"train/{k}": v for k, v in losses.items()}, prog_bar=False, batch_size=src.shape[0])
        self.log("loss", losses["loss"], prog_bar=True, logger=False, batch_size=src.shape[0])
        every = int(self.hparams.image_every_n_steps)
        if every > 0 and self.global_step % every == 0:
            self.log_panels(src, trg, out)
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = self.val_sets[dataloader_idx]
        src_hw, trg_hw = tuple(batch["src_img"].shape[-2:]), tuple(batch["trg_img"].shape[-2:])
        out = self(batch["src_img"], batch["trg_img"], int(self.hparams.val_iterations))
        if batch["src_kps"].shape[1] == 0:
            return
        kps = batch["src_kps"].to(out.final.field.dtype)
        for k, it in enumerate(out.iterations):
            pred = transfer_image_points(it.field, kps, src_hw, trg_hw, self.size)
            self.val_pck[dataloader_idx][k].update(batch, MatchOutput(pred))
        error = (pred - batch["trg_kps"]).norm(dim=-1)
        error = error[torch.isfinite(error)]
        if error.numel():
            self.val_epe[dataloader_idx].update(error)
            self.log(f"val/{name}/epe", self.val_epe[dataloader_idx], batch_size=error.numel(), add_dataloader_idx=False)

    def on_validation_epoch_end(self) -> None:
        """Log each set's PCK after each iteration (synced across processes) and start the next
        validation afresh."""
        key = f"pck@{VAL_ALPHA:g}"
        for name, per_iteration in zip(self.val_sets, self.val_pck):
            values = [evaluator.compute()[key] for evaluator in per_iteration]
            for evaluator in per_iteration:
                evaluator.reset()
            if math.isnan(values[-1]):  # no pair of the set has keypoints
                continue
            for k, value in enumerate(values):
                self.log(f"val/{name}/{key}/it{k + 1}", value)
            self.log(f"val/{name}/{key}", values[-1], prog_bar=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = self.make_optimizer([p for p in self.parameters() if p.requires_grad])
        if self.make_scheduler is None:
            return {"optimizer": optimizer}
        total = self.trainer.max_steps if self.trainer.max_steps > 0 else 1
        scheduler = self.make_scheduler(optimizer, total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def checkpoint_record(self) -> dict[str, Any]:
        """What a checkpoint stores for the matcher: network settings, backbone, sizes, stage, training data."""
        return {
            "stage": int(self.hparams.stage),
            "trained_on": [str(t) for t in self.hparams.trained_on],
            "network": self.net.settings(),
            "backbone": self.net.backbone.name,
            "image_size": list(self.size),
            "val_iterations": int(self.hparams.val_iterations),
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store :meth:`checkpoint_record` and the torch RNG state (droplink draws) for an exact resume."""
        entry: dict[str, Any] = {**self.checkpoint_record(), "cpu_rng": torch.get_rng_state()}
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
        warped onto the source by ``T^L``. ``iterations``: row 1 ``I^{s<-t,l}`` (black for the
        iterations that made none, see :class:`~semcorr.methods.samnet.SAMNetIteration`), row 2
        the target warped by ``T^l``, for l = 1..L. To W&B with ``log_image``; otherwise PNG files in
        ``<stage dir>/panels/``.
        """
        if not self.trainer.is_global_zero:
            return
        n = min(int(self.hparams.image_pairs), src.shape[0])
        hw = tuple(src.shape[-2:])
        warped = [warp_image(trg[:n], dense_image_flow(it.field[:n], hw, hw, hw)) for it in out.iterations]
        pairs = torch.stack([src[:n], trg[:n], out.final.image[:n], warped[-1]], dim=1).flatten(0, 1)
        images = [torch.zeros_like(src[0]) if it.image is None else it.image[0] for it in out.iterations]
        steps = torch.cat([torch.stack(images), torch.stack([w[0] for w in warped])])
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
