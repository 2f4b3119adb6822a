"""Progress of a SAM-Net stage: one bar over the whole stage, and a warning when a GPU schedule runs on a CPU.

A stage's "epochs" are ``model.val_every_n_steps`` steps (the validation interval,
:class:`~.data.EpochSampler`); Lightning's bar would restart at every one of them and read
``Epoch 3/-2``. :class:`StageProgressBar` shows the optimiser step against the stage's
``max_steps`` instead, with the elapsed time and the remaining time of the whole stage.

:class:`ScheduleCheck` times the first steps of a run on a machine without a GPU; when the
schedule is marked as a GPU one (``model.gpu_schedule``: the paper's 20k + 5k steps), it prints the
measured seconds per step, the estimated total and the CPU preset command.
"""

from __future__ import annotations

import logging
from time import perf_counter
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import Callback

from semcorr.lit.progress import ProgressBar

log = logging.getLogger(__name__)

#: The command of the CPU preset, printed by :class:`ScheduleCheck`.
CPU_PRESET = "python train.py model=samnet experiment=samnet_cpu dataset.root=<PF-WILLOW folder>"


class StageProgressBar(ProgressBar):
    """The project's progress bar (:class:`semcorr.lit.progress.ProgressBar`: Rich in a terminal,
    lines elsewhere) whose Rich training task counts optimiser steps up to ``max_steps`` (the lines
    already count steps against ``max_steps``).

    Args:
        description: the bar's label, e.g. ``"SAM-Net stage 1"``.
        **kwargs: :class:`~semcorr.lit.progress.ProgressBar` arguments (``every_n``, ``every_s``, ``lines``).
    """

    def __init__(self, description: str = "training", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.description = description

    @property
    def total_train_batches(self) -> int | float:
        """The stage's steps (``max_steps``), not those of one epoch."""
        return self.trainer.max_steps if self.trainer.max_steps > 0 else super().total_train_batches

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{self.description:{len(self.validation_description)}}"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Create the stage's task once (at the resumed step), instead of one task per epoch."""
        if self.is_disabled or self.progress is None or self.train_progress_bar_id is not None:
            return
        self.train_progress_bar_id = self.progress.add_task(
            self._get_train_description(trainer.current_epoch),
            total=self.total_train_batches,
            completed=trainer.global_step,
        )
        self.refresh()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        """Advance to the optimiser step (batch indices restart every epoch)."""
        if self.lines:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if not self.is_disabled and self.train_progress_bar_id is None:
            self.on_train_epoch_start(trainer, pl_module)
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()


class ScheduleCheck(Callback):
    """Time the first steps of a fit; on a CPU, warn when the schedule is a GPU one.

    Args:
        gpu_schedule: whether the configured schedule is meant for a GPU (``model.gpu_schedule``).
        remaining_steps: optimiser steps of the run still to take when the fit starts (this stage's
            and the later stages'), for the estimate.
        measure_steps: steps timed after the first one (which includes start-up).
    """

    def __init__(self, gpu_schedule: bool, remaining_steps: int, measure_steps: int = 5) -> None:
        self.gpu_schedule = bool(gpu_schedule)
        self.remaining_steps = int(remaining_steps)
        self.measure_steps = int(measure_steps)
        self.seconds_per_step: float | None = None
        self._start: tuple[float, int] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.seconds_per_step is not None:
            return
        now, step = perf_counter(), trainer.global_step
        if self._start is None:
            self._start = (now, step)
            return
        if step - self._start[1] < self.measure_steps:
            return
        self.seconds_per_step = (now - self._start[0]) / (step - self._start[1])
        if self.gpu_schedule and isinstance(trainer.accelerator, CPUAccelerator) and trainer.is_global_zero:
            log.warning(self.message())

    def message(self) -> str:
        """The warning: measured s/step, estimated total and the CPU preset command."""
        seconds = (self.seconds_per_step or 0.0) * self.remaining_steps
        return (
            f"This is a GPU schedule ({self.remaining_steps} steps to go) running on a CPU at "
            f"{self.seconds_per_step:.2f} s/step: about {format_duration(seconds)} in total. "
            f"For a CPU run use the CPU preset: {CPU_PRESET}"
        )


def format_duration(seconds: float) -> str:
    """``93784`` -> ``"1 d 2 h 3 min"``; under an hour: ``"12 min"``."""
    days, minutes = divmod(int(round(seconds / 60.0)), 24 * 60)
    hours, minutes = divmod(minutes, 60)
    parts = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    return " ".join([*parts, f"{minutes} min"])
