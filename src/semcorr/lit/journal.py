"""Resumable evaluation: each process journals the pairs it has evaluated.

An interrupted ``python evaluate.py`` (killed job, pre-empted node, Ctrl-C) picks up where it stopped
when it is run again with the same ``hydra.run.dir``: the pairs already done are skipped, and their
metric states and per-pair records are restored, so the final ``metrics.json`` and predictions equal
those of an uninterrupted run.

Layout: ``<run dir>/partial/rank<r>.pt``, one file per process, rewritten atomically every
``every`` pairs; it holds::

    fingerprint   what was evaluated (method, dataset, backbone, alphas, seed, batch size, processes)
    done          sorted pair indices evaluated by this process
    metrics       {metric module name: {"state": {name: tensor}, "updates": int}}
    records       the per-pair records of those pairs (see EvaluationModule)

Besides these periodic writes, the evaluation journals the pairs left over at the end of the test
epoch and on Ctrl-C (:mod:`semcorr.lit.evaluation_runner`), so a run whose results cannot be written (full
disk) or that is interrupted loses no evaluated pair. A journal that cannot be written (full disk)
is a warning, not the end of the run: the previous journal stays as it was.

The folder is removed once the run has written its results. A journal of another configuration in
the same run directory is an error (not silently mixed in), and so is an unreadable one.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from torch import nn
from torchmetrics import Metric

from semcorr.errors import ConfigError
from semcorr.io import atomic_write, read_torch

log = logging.getLogger(__name__)

#: Config entries that decide what a journal's pairs were evaluated with.
FINGERPRINT_KEYS = ("method", "dataset", "backbone", "alphas", "metrics", "seed")


def fingerprint(cfg: DictConfig, world_size: int) -> str:
    """A hash of the config entries that determine the per-pair results, plus the process count
    (the shards of the pairs depend on it). Each entry is resolved in place, so interpolations into
    the rest of the config (``${paths.data_dir}``, ``${backbone.net}``) resolve as in the run."""
    parts = {key: cfg.get(key) for key in FINGERPRINT_KEYS}
    parts["batch_size"] = OmegaConf.select(cfg, "datamodule.batch_size", default=1)
    plain = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in parts.items()}
    text = OmegaConf.to_yaml(OmegaConf.create(plain))
    return hashlib.sha256(f"{text}processes: {int(world_size)}\n".encode()).hexdigest()[:16]


def metric_modules(module: nn.Module) -> dict[str, Metric]:
    """The torchmetrics of a module by their module names."""
    return {name: m for name, m in module.named_modules() if isinstance(m, Metric)}


class EvaluationJournal:
    """The ``partial/`` folder of one evaluation run.

    Args:
        folder: ``<run dir>/partial``.
        cfg: the run's config (for :func:`fingerprint`).
        every: pairs between two writes of a process's journal (>= 1).
    """

    def __init__(self, folder: str | Path, cfg: DictConfig, every: int = 50) -> None:
        if int(every) < 1:
            raise ConfigError(f"resume_every must be >= 1 pairs (or 0 to turn resuming off), got {every}")
        self.folder = Path(folder)
        self.cfg = cfg
        self.every = int(every)
        #: records in this process's last journal written or read (pairs safe from an interruption)
        self.saved = 0
        self._warned = False

    def path(self, rank: int) -> Path:
        """The journal file of process ``rank``."""
        return self.folder / f"rank{int(rank)}.pt"

    def load(self, rank: int, world_size: int) -> dict[str, Any] | None:
        """Process ``rank``'s journal, or None when there is none.

        Raises:
            ConfigError: the journal belongs to another configuration or process count, or is unreadable.
        """
        path = self.path(rank)
        if not path.is_file():
            return None
        entry = read_torch(path, ConfigError, f"Delete {str(self.folder)!r} to start over.", weights_only=False)
        if not isinstance(entry, dict) or "fingerprint" not in entry:
            raise ConfigError(f"{str(path)!r} is not a partial evaluation; delete {str(self.folder)!r} to start over")
        if entry.get("fingerprint") != fingerprint(self.cfg, world_size):
            raise ConfigError(
                f"{str(self.folder)!r} holds a partial evaluation of another configuration or process count; "
                f"run it again with its own settings (its config.yaml), pick a new hydra.run.dir, or delete "
                f"{str(self.folder)!r} to start over"
            )
        self.saved = len(entry["records"])
        return entry

    def exists(self) -> bool:
        """Whether the folder holds a journal of any process (a run to resume)."""
        return any(self.folder.glob("rank*.pt"))

    def count(self) -> int:
        """Pairs journalled by all processes (read from the files; 0 where one is unreadable)."""
        total = 0
        for path in self.folder.glob("rank*.pt"):
            try:
                total += len(read_torch(path, ConfigError, "", weights_only=False)["done"])
            except (ConfigError, KeyError, TypeError):  # only counting for a message
                continue
        return total

    def save(self, rank: int, world_size: int, module: nn.Module, records: list[dict[str, Any]]) -> Path | None:
        """Write process ``rank``'s journal atomically: the pairs done (those of ``records``), the
        metric states of ``module``, the records.

        Returns:
            The file, or None when it could not be written (a warning says why, once; the previous
            journal is left as it was).
        """
        metrics = {
            name: {"state": {k: v.detach().cpu().clone() for k, v in m.metric_state.items()}, "updates": m.update_count}
            for name, m in metric_modules(module).items()
        }
        entry = {
            "fingerprint": fingerprint(self.cfg, world_size),
            "done": sorted(int(r["index"]) for r in records),
            "metrics": metrics,
            "records": records,
        }
        try:
            path = atomic_write(self.path(rank), lambda tmp: torch.save(entry, tmp))
        except OSError as err:
            if not self._warned:
                self._warned = True
                log.warning("could not journal the progress in %s (%s); the run goes on, but an interruption now "
                            "loses the pairs after the last journal (%d pairs)", self.folder, err, self.saved)
            return None
        self.saved = len(records)
        return path

    def clear(self) -> None:
        """Remove the journal folder (the run is complete)."""
        shutil.rmtree(self.folder, ignore_errors=True)


class JournalCallback(Callback):
    """Owns an evaluation module's journal: in ``setup`` it restores the pairs this process had done
    (metric states, records) and has the DataModule skip them (``exclude``); it journals the
    progress every ``journal.every`` pairs, at the end of the test epoch (before the records are
    gathered across processes) and, through :meth:`save_now`, on an interruption. Later test passes
    (other modules, e.g. the ``pictures=worst`` pass) are left alone.

    Args:
        module: the :class:`~semcorr.lit.evaluation_module.EvaluationModule` (``records``).
        journal: its journal; None (``resume_every=0``): the callback does nothing.
    """

    def __init__(self, module: pl.LightningModule, journal: EvaluationJournal | None) -> None:
        self.module = module
        self.journal = journal
        self._finished = False
        self._unsaved = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Restore this process's journal, if any, and have the DataModule skip its pairs."""
        if pl_module is not self.module or self.journal is None:
            return
        entry = self.journal.load(trainer.global_rank, trainer.world_size)
        if entry is None:
            return
        restore_metrics(pl_module, entry["metrics"])
        pl_module.records = list(entry["records"])
        if trainer.datamodule is not None:
            trainer.datamodule.exclude = set(entry["done"])
        log.info("resuming from %s: %d pairs already evaluated", self.journal.path(trainer.global_rank), len(entry["done"]))

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if pl_module is not self.module or self.journal is None:
            return
        self._unsaved += int(batch["src_img"].shape[0])
        if self._unsaved >= self.journal.every:
            self.journal.save(trainer.global_rank, trainer.world_size, pl_module, pl_module.records)
            self._unsaved = 0

    def save_now(self, trainer: pl.Trainer) -> None:
        """Journal the module's pairs if some are not journalled yet and its epoch is not over (after
        it, rank 0's records are every process's)."""
        if self.journal is not None and not self._finished and len(self.module.records) > self.journal.saved:
            self.journal.save(trainer.global_rank, trainer.world_size, self.module, self.module.records)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module is self.module:
            self.save_now(trainer)
            self._finished = True


def restore_metrics(module: nn.Module, saved: dict[str, dict[str, Any]]) -> None:
    """Put journalled metric states back into a module's torchmetrics (on their current device)."""
    metrics = metric_modules(module)
    for name, entry in saved.items():
        metric = metrics[name]
        for key, value in entry["state"].items():
            current = getattr(metric, key)
            setattr(metric, key, value.to(current.device) if isinstance(current, torch.Tensor) else value)
        metric._update_count = int(entry["updates"])  # torchmetrics has no public setter
        metric._computed = None
