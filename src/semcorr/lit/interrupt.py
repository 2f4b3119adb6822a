"""Ctrl-C without loss: save what can be saved and print the command that resumes the run.

Lightning turns a ``KeyboardInterrupt`` inside ``fit`` / ``test`` into a call of every callback's
``on_exception`` and then exits with status 1; :class:`ResumeOnInterrupt` uses that moment. The
evaluation journals the pairs done since its last journal (:mod:`semcorr.lit.evaluation_runner`); a
training runner describes its last checkpoint (:func:`checkpoint_note`) and resumes from it when
run again in the same run directory. The command printed is the one that started the run (the
script and the user's overrides, from Hydra) with ``hydra.run.dir`` set to the run directory.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from pytorch_lightning.callbacks import Callback
from rich.console import Console
from rich.markup import escape


def resume_command(run_dir: str | Path, script: str) -> str:
    """The command line that runs this run again in ``run_dir`` (which resumes it).

    Args:
        run_dir: the run directory.
        script: ``"evaluate.py"`` or ``"train.py"``.

    Returns:
        ``python <script> <the run's overrides> hydra.run.dir=<run_dir>`` (each part shell-quoted);
        outside a Hydra run (a config composed in Python) the overrides are unknown and written
        as ``<the same overrides>``.
    """
    run_dir = Path(run_dir).resolve()
    if HydraConfig.initialized():
        overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(("hydra.run.dir=", "paths.output_dir="))]
        parts = [shlex.quote(o) for o in overrides]
    else:
        parts = ["<the same overrides>"]
    return " ".join(["python", script, *parts, shlex.quote(f"hydra.run.dir={run_dir}")])


def checkpoint_note(path: str | Path) -> str:
    """What a training run keeps on interruption: its last checkpoint, or that there is none yet."""
    path = Path(path)
    if not path.is_file():
        return f"no checkpoint was written yet ({path} does not exist): the run starts over"
    minutes = (time.time() - path.stat().st_mtime) / 60.0
    return f"the last checkpoint is {path} (written {minutes:.0f} min ago); the steps after it are redone"


class ResumeOnInterrupt(Callback):
    """On Ctrl-C, call ``save`` and print what was kept and the command that resumes.

    Args:
        save: ``(trainer, pl_module) -> str``: saves what it can and says what is kept
            (e.g. ``"37 of 450 pairs are journalled in RUN/partial"``). Called on every process.
        command: the command that resumes (:func:`resume_command`).
    """

    def __init__(self, save: Callable[[pl.Trainer, pl.LightningModule], str], command: str) -> None:
        self.save = save
        self.command = command

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, KeyboardInterrupt):
            return
        kept = self.save(trainer, pl_module)
        if trainer.is_global_zero:
            Console(stderr=True).print(
                f"[bold yellow]Interrupted:[/] {escape(kept)}.\nResume with:\n  {escape(self.command)}",
                highlight=False, soft_wrap=True,
            )
