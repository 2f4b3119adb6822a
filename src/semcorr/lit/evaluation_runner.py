"""The evaluation runner behind ``python evaluate.py`` (:func:`run_evaluation`): config in, metrics
and files out. The LightningModule it runs is :mod:`semcorr.lit.evaluation_module`.

Steps: check the config against its schemas (:mod:`semcorr.config`: one line per wrong value,
before any work); seed; build the dataset, its metric families (:mod:`semcorr.metrics.evaluators`),
the DataModule, method, trainer and its callbacks (the ``callbacks`` group,
``conf/callbacks/evaluate.yaml``: progress, running PCK, the resume journal, the pictures, Ctrl-C;
:mod:`semcorr.lit.callbacks`) from the Hydra config; record the protocol
(:mod:`semcorr.protocol`); log the config (with the protocol record) to the logger; run
``Trainer.test`` (running PCK to the logger every ``log_every_n_pairs`` pairs); print the results
table and the protocol; write ``metrics.json`` (with the ``protocol`` record),
``predictions.pt``/``.csv`` (and the composed config, written first) into the run directory; make
the ``pictures=worst`` pictures; send the final metrics, the per-pair and per-subset tables and the
captioned pictures to the logger (W&B offline by default, runs grouped by dataset and named
``<method>-<dataset>`` from the configs' ``name``); print a summary of the files.

Distributed (``trainer=ddp trainer.devices=N [trainer.num_nodes=M]``): each process evaluates its
own shard of the pairs (no pair twice, see :mod:`semcorr.lit.evaluation_module`); the metrics are synced
through torchmetrics and every process returns the same numbers; only global rank 0 writes
``metrics.json``/predictions, prints and logs. Pictures are written by the process that evaluated
the pair: the same files as in a single-process run.

Nothing lost:

* Resuming: every ``resume_every`` pairs, at the end of the pass and on Ctrl-C each process
  journals its progress in ``partial/`` (:mod:`semcorr.lit.journal`); running the same command
  again with ``hydra.run.dir=<that run>`` evaluates only the pairs left and gives the metrics of an
  uninterrupted run. ``partial/`` is removed once the results are written.
* Ctrl-C: the pairs done are journalled and the exact resume command is printed
  (:mod:`semcorr.lit.interrupt`); the W&B run of a resumed evaluation continues the interrupted
  one (same run id), and its config was logged when it started.
* A result that cannot be written (full disk): the results table is printed before anything is
  written, the journal is kept, and the run ends with one line saying what was not written and
  the command that writes it without evaluating again (:class:`~semcorr.errors.OutputError`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.markup import escape

from semcorr.config import EVALUATE, validate_config
from semcorr.data.datamodule import PairDataModule
from semcorr.errors import ConfigError, OutputError
from semcorr.io import write_text
from semcorr.lit.callbacks import instantiate_callbacks
from semcorr.lit.evaluation_module import EvaluationModule
from semcorr.lit.interrupt import resume_command
from semcorr.lit.journal import EvaluationJournal, JournalCallback
from semcorr.lit.loggers import log_pictures, log_tables, wandb_run_id
from semcorr.methods.base import Matcher
from semcorr.metrics.evaluators import build_evaluators
from semcorr.protocol import describe, run_record
from semcorr.results import print_results, unanswered_keypoints, write_metrics, write_predictions

log = logging.getLogger(__name__)


def _choices() -> dict[str, str]:
    return dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}


def method_name(node: DictConfig) -> str:
    """A method config's ``name`` (else its class name, for configs written without one)."""
    return str(node.get("name") or str(node._target_).rsplit(".", 1)[-1])


def run_name(cfg: DictConfig) -> dict[str, str]:
    """Names of the method / dataset / backbone, from the configs' ``name`` keys (the same under
    the command line, ``hydra.compose`` and a multirun)."""
    return {"method": method_name(cfg.method), "dataset": str(cfg.dataset.name), "backbone": str(cfg.backbone.net.name)}


def run_labels(cfg: DictConfig) -> dict[str, str]:
    """What a run is, for the logger: ``job`` (evaluate / train), ``what`` (the method, or the model
    of a training run), ``dataset`` and ``backbone``."""
    if cfg.get("method") is not None:
        job, what = "evaluate", method_name(cfg.method)
    else:
        model = cfg.get("model") or {}
        job, what = "train", _choices().get("model") or str(model.get("runner", "model")).rsplit(".", 1)[-1]
    backbone = str(cfg.backbone.net.name) if cfg.get("backbone") is not None else ""
    return {"job": job, "what": what, "dataset": str(cfg.dataset.name), "backbone": backbone}


def build_method(node: DictConfig, **overrides: Any) -> Matcher:
    """Instantiate a method config (its ``name`` is the method's label, not a constructor argument),
    with ``overrides`` of its arguments."""
    params = OmegaConf.to_container(node, resolve=True)
    params.pop("name", None)
    return instantiate({**params, **overrides})


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    """The composed config as plain resolved values, without Hydra's own ``hydra`` node (there
    under ``compose(..., return_hydra_config=True)``)."""
    return {
        str(key): OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }


def is_wandb(cfg: DictConfig) -> bool:
    """Whether ``cfg.logger`` is a W&B logger."""
    return cfg.get("logger") is not None and str(cfg.logger.get("_target_", "")).endswith("WandbLogger")


def build_logger(cfg: DictConfig, run_dir: Path, resume: bool = False) -> Any:
    """The Lightning logger of ``cfg.logger`` (None when ``logger=none``).

    A W&B run left without ``name`` / ``tags`` / ``job_type`` in the config gets them from the run:
    name ``<method>-<dataset>`` (``<model>-<dataset>`` for train.py), tags method, dataset,
    backbone and job, job type ``evaluate`` or ``train``; its ``group`` is the dataset
    (``conf/logger/wandb.yaml``), so the W&B UI groups and compares runs per benchmark. With
    ``resume`` (an interrupted run continued in its run directory) a W&B run without an ``id`` in
    the config continues the W&B run found in ``<run dir>/wandb``.
    """
    if cfg.get("logger") is None:
        return None
    extra: dict[str, Any] = {}
    if is_wandb(cfg):
        labels = run_labels(cfg)
        if cfg.logger.get("name") is None:
            extra["name"] = f"{labels['what']}-{labels['dataset']}"
        if cfg.logger.get("tags") is None:
            extra["tags"] = [v for v in (labels["what"], labels["dataset"], labels["backbone"], labels["job"]) if v]
        if cfg.logger.get("job_type") is None:
            extra["job_type"] = labels["job"]
        previous = wandb_run_id(run_dir) if resume and cfg.logger.get("id") is None else None
        if previous is not None:
            extra.update(id=previous, resume="allow")
    return instantiate(cfg.logger, save_dir=str(run_dir), **extra)


def finish_run(logger: Any, exit_code: int = 0) -> None:
    """Close a W&B run so the offline run directory is complete (other loggers: nothing to do)."""
    if type(logger).__name__ == "WandbLogger":
        logger.experiment.finish(exit_code=exit_code)


def build_trainer(cfg: DictConfig, logger: Any, run_dir: Path, callbacks: list[Callback]) -> pl.Trainer:
    """The ``cfg.trainer`` Trainer of a test pass over pairs, with ``callbacks`` (the run's
    ``callbacks`` group, :func:`~semcorr.lit.callbacks.instantiate_callbacks`), and
    ``use_distributed_sampler=False`` so that the shards of
    :class:`~semcorr.data.datamodule.PairDataModule` stay as they are (Lightning's own sampler would
    pad them with repeated pairs)."""
    return instantiate(
        cfg.trainer,
        logger=logger if logger is not None else False,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,
        callbacks=callbacks,
    )


def launched_as_rank_zero() -> bool:
    """Best guess, before the trainer has started its processes, that this is global rank 0 (the
    child processes of a DDP launch carry LOCAL_RANK / RANK, other nodes NODE_RANK)."""
    return rank_zero_only.rank == 0 and os.environ.get("NODE_RANK", "0") == "0"


def print_summary(run_dir: Path, console: Console | None = None) -> None:
    """The run directory, the files the run wrote into it and what to do with them next (printed
    after the results table)."""
    console = console or Console()
    written = [name for name in ("config.yaml", "metrics.json", "predictions.pt", "predictions.csv", "correspondences.csv")
               if (run_dir / name).is_file()]
    lines = [f"[bold]Run directory:[/] {escape(str(run_dir))}", f"  files: {', '.join(written)}"]
    pictures = run_dir / "pictures"
    if pictures.is_dir():
        lines.append(f"  pictures/: {sum(1 for _ in pictures.rglob('*.png'))} PNG")
    lines += [f"  {escape(str(p.relative_to(run_dir)))}" for p in sorted(run_dir.glob("csv/version_*/metrics.csv"))]
    offline = sorted(run_dir.glob("wandb/offline-run-*"))
    lines += [f"  {escape(str(p.relative_to(run_dir)))} (W&B, offline)" for p in offline]
    if offline:  # the newest run and the interrupted runs it continues (same id): one W&B run
        run_id = offline[-1].name.rsplit("-", 1)[-1]
        lines.append(f"[bold]Upload to W&B:[/] wandb sync {escape(str(run_dir / 'wandb'))}/offline-run-*-{run_id}")
    lines.append(f"[bold]Compare runs:[/] python -m semcorr.report {escape(str(run_dir))} OTHER_RUN_DIRS... --out report/")
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


@contextmanager
def writing(what: str, run_dir: Path, then: str) -> Iterator[None]:
    """Turn a failed write (full disk, no permission) into one :class:`OutputError` line: what
    could not be written into ``run_dir``, why, and ``then`` (what is kept and how to go on)."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"could not write {what} into {run_dir} ({err.strerror or err}); {then}") from err


def journal_note(journal: EvaluationJournal | None, total: int) -> str:
    """What a stopped run keeps: the pairs in its journal, or that resuming is off."""
    if journal is None:
        return "resuming is off (resume_every=0), so the pairs evaluated are not kept"
    return f"{journal.count()} of {total} pairs are journalled in {journal.folder}"


def worst_pairs(records: list[dict[str, Any]], alpha: float, n: int) -> list[int]:
    """Indices of the ``n`` pairs with the lowest PCK at ``alpha`` (ties: lower index first);
    pairs without PCK are left out."""
    scored = [(r["pck"][alpha], int(r["index"])) for r in records if not math.isnan(r["pck"][alpha])]
    return [index for _, index in sorted(scored)[:n]]


def test_on_every_process(trainer: pl.Trainer, module: EvaluationModule, datamodule: PairDataModule) -> None:
    """``trainer.test``, also where a process has no pair left (a resumed run whose pairs it had all
    journalled, a picture pass of fewer pairs than processes): Lightning skips that process's empty
    loop, epoch end included, while the others' epoch end waits for its share of the collectives
    (synced metrics, gathered records), so the hook is run here, in step with them."""
    module.allow_zero_length_dataloader_with_multiple_devices = True
    trainer.test(module, datamodule=datamodule, verbose=False)
    if sum(trainer.num_test_batches) == 0:
        module.to(trainer.strategy.root_device)
        module.on_test_epoch_end()


def picture_pass(
    trainer: pl.Trainer, cfg: DictConfig, dataset: Any, method: Matcher, evaluators: Any, writers: list[Callback],
    indices: set[int],
) -> None:
    """Evaluate again the pairs of ``indices`` only, for their pictures (every process: the pairs
    are sharded as in the main pass); ``evaluators`` are fresh ones (this pass's metrics are
    discarded); ``writers`` (the ``callbacks.pictures`` writer of these pairs) are the trainer's
    callbacks for this pass only."""
    module = EvaluationModule(method, evaluators, alphas=list(cfg.alphas))
    datamodule = PairDataModule(test=dataset, **cfg.datamodule)
    datamodule.exclude = set(range(len(dataset))) - indices
    trainer.callbacks.extend(writers)
    try:
        test_on_every_process(trainer, module, datamodule)
    finally:
        for writer in writers:
            trainer.callbacks.remove(writer)


def run_evaluation(cfg: DictConfig, method: Matcher | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.method`` (or ``method``, a Matcher built in Python) on ``cfg.dataset``.

    Returns the flat metrics dict (the same on every process of a distributed run).

    Files written to ``cfg.paths.output_dir`` (by global rank 0): ``config.yaml``, ``metrics.json``,
    ``predictions.pt``, ``predictions.csv`` and, with ``save_pictures=true`` or
    ``pictures=worst``, ``pictures/``.

    Raises:
        ConfigError: a config value is invalid (before any work).
        OutputError: a result could not be written (the journal is kept; the message says how to
            write the results without evaluating again).
    """
    validate_config(cfg, EVALUATE)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    command = resume_command(run_dir, "evaluate.py")
    with writing("config.yaml", run_dir, f"nothing was evaluated: once it can be written, run `{command}`"):
        run_dir.mkdir(parents=True, exist_ok=True)
        if launched_as_rank_zero():
            write_text(run_dir / "config.yaml", OmegaConf.to_yaml(config_dict(cfg)))
    names = run_name(cfg)

    dataset = instantiate(cfg.dataset)
    worst = cfg.get("pictures", "first") == "worst"
    datamodule = PairDataModule(test=dataset, **cfg.datamodule)
    method = method if method is not None else build_method(cfg.method)
    resolution = str(OmegaConf.select(cfg, "metrics.resolution", default="resized"))
    evaluators = build_evaluators(dataset, cfg.alphas, resolution)
    if worst and "pck" not in evaluators:
        raise ConfigError(f"pictures=worst picks the pairs of lowest PCK, and {names['dataset']} has no keypoints: "
                          "use save_pictures=true pictures=first")
    weights, trained_on = OmegaConf.select(cfg, "backbone.net.weights", default=None), cfg.get("trained_on")
    protocol = run_record(
        dataset, method, list(evaluators), cfg.alphas, resolution, names["method"],
        weights=str(weights) if weights is not None else None, trained_on=list(trained_on) if trained_on is not None else None,
    )
    folder = run_dir / "pictures"
    every = int(cfg.get("resume_every", 0) or 0)
    journal = EvaluationJournal(run_dir / "partial", cfg, every) if every > 0 else None
    module = EvaluationModule(method, evaluators, alphas=list(cfg.alphas))
    logger = build_logger(cfg, run_dir, resume=journal is not None and journal.exists())
    if logger is not None:  # at the start: an interrupted run has its config too
        logger.log_hyperparams({**config_dict(cfg), "protocol": protocol})

    def interrupted(trainer: pl.Trainer, pl_module: pl.LightningModule) -> str:
        for callback in trainer.callbacks:
            if isinstance(callback, JournalCallback):
                callback.save_now(trainer)
        if logger is not None:
            finish_run(logger, exit_code=1)
        return journal_note(journal, len(dataset))

    first = range(cfg.max_pictures) if cfg.save_pictures and not worst else range(0)
    callbacks = instantiate_callbacks(
        cfg.get("callbacks"), module=module, journal=journal, method=method, folder=folder, indices=first,
        alphas=list(cfg.alphas), every_n_pairs=int(cfg.get("log_every_n_pairs", 0) or 0), save=interrupted, command=command,
    )
    trainer = build_trainer(cfg, logger, run_dir, callbacks)
    test_on_every_process(trainer, module, datamodule)

    # synced in the test loop's epoch end: identical on every process
    metrics = {**names, **module.results(), "protocol": protocol}
    kept = f"{journal_note(journal, len(dataset))}: once they can be written, run `{command}` to write them without evaluating again"
    failure: OutputError | None = None
    if trainer.is_global_zero:
        title = f"{names['method']} on {names['dataset']} ({names['backbone']})"
        if trainer.world_size > 1:
            title += f", {trainer.world_size} processes"
        print_results(metrics, title)  # before anything is written: the numbers survive a failing disk
        Console().print(f"Protocol: {describe(protocol)}", highlight=False, soft_wrap=True, markup=False)
        try:
            with writing("metrics.json and the predictions", run_dir, kept):
                write_metrics(run_dir, metrics)
                write_predictions(run_dir, module.records)
        except OutputError as err:
            failure = err
    if worst:  # every process takes part; rank 0 alone knows every pair's PCK
        alpha = sorted(module.alphas)[len(module.alphas) // 2]
        chosen = worst_pairs(module.records, alpha, cfg.max_pictures) if trainer.is_global_zero and failure is None else []
        chosen = trainer.strategy.broadcast(chosen, src=0)
        writers = instantiate_callbacks(  # none when the writer was dropped (~callbacks.pictures)
            {"pictures": OmegaConf.select(cfg, "callbacks.pictures")}, folder=folder, indices=set(chosen),
            alphas=list(cfg.alphas), method=method,
        )
        if chosen and writers:
            with writing("the pictures", run_dir, kept):
                picture_pass(trainer, cfg, dataset, method, build_evaluators(dataset, cfg.alphas, resolution), writers, set(chosen))
    if not trainer.is_global_zero:
        return metrics
    if failure is not None:
        if logger is not None:
            finish_run(logger, exit_code=1)
        raise failure
    missing, total = unanswered_keypoints(module.records)
    if missing:
        log.warning(
            "%d of %d keypoints got no prediction from %s (NaN in predictions.csv; counted as wrong in PCK). "
            "With HPF or nn this happens when margin pruning drops every box, on images much smaller than "
            "the layers' receptive fields: use larger images or method.margin_pruning=false.",
            missing, total, names["method"],
        )
    if logger is not None:
        with writing("the W&B / CSV logs", run_dir, kept):
            logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=metrics["n_pairs"])
            log_tables(logger, metrics, module.records, module.alphas)
            log_pictures(logger, folder, module.records, module.alphas)
            logger.finalize("success")
            finish_run(logger)
    if journal is not None:
        journal.clear()
    print_summary(run_dir)
    return metrics
