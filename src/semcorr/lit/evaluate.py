"""The evaluation run behind ``python evaluate.py``: config in, metrics and files out.

Steps: seed; build the dataset, its metric families (:mod:`semcorr.metrics.evaluators`), the
DataModule, method and trainer from the Hydra config; record the protocol (:mod:`semcorr.protocol`);
run ``Trainer.test``; write ``metrics.json`` (with the ``protocol`` record), ``predictions.pt``/``.csv``
and the composed config into the run directory; print the results table and a summary of the files;
send metrics to the logger (W&B offline by default, runs grouped by dataset and named
``<method>-<dataset>``; the run config carries the protocol record).

Distributed (``trainer=ddp trainer.devices=N [trainer.num_nodes=M]``): each process evaluates its
own shard of the pairs (no pair twice, see :mod:`semcorr.lit.evaluation`); the metrics are synced
through torchmetrics and every process returns the same numbers; only global rank 0 writes
``metrics.json``/predictions, prints and logs. Pictures (``save_pictures=true``) are written by the
process that evaluated the pair: the same files as in a single-process run.

Resuming: every ``resume_every`` pairs each process journals its progress in ``partial/``
(:mod:`semcorr.lit.journal`); running the same command again with ``hydra.run.dir=<that run>``
evaluates only the pairs left and gives the metrics of an uninterrupted run. ``partial/`` is
removed once the results are written.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_only
from rich.console import Console
from rich.markup import escape

from semcorr.data.datamodule import PairDataModule
from semcorr.io import write_text
from semcorr.lit.evaluation import EvaluationModule
from semcorr.lit.journal import EvaluationJournal
from semcorr.methods.base import Matcher
from semcorr.metrics.evaluators import build_evaluators
from semcorr.protocol import describe, run_record
from semcorr.results import print_results, unanswered_keypoints, write_metrics, write_predictions
from semcorr.viz.pictures import PictureWriter

log = logging.getLogger(__name__)


def run_name(cfg: DictConfig) -> dict[str, str]:
    """Names of the chosen method / dataset / backbone (Hydra's choices when run by Hydra)."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    return {
        "method": choices.get("method") or cfg.method._target_.rsplit(".", 1)[-1],
        "dataset": cfg.dataset.name,
        "backbone": choices.get("backbone") or str(cfg.backbone.net.name),
    }


def run_labels(cfg: DictConfig) -> dict[str, str]:
    """What a run is, for the logger: ``job`` (evaluate / train), ``what`` (the method, or the model
    of a training run), ``dataset`` and ``backbone`` (Hydra's choices where available)."""
    choices = dict(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else {}
    if cfg.get("method") is not None:
        job, what = "evaluate", choices.get("method") or str(cfg.method._target_).rsplit(".", 1)[-1]
    else:
        model = cfg.get("model") or {}
        job, what = "train", choices.get("model") or str(model.get("runner", "model")).rsplit(".", 1)[-1]
    backbone = choices.get("backbone") or str(cfg.backbone.net.name) if cfg.get("backbone") is not None else ""
    return {"job": job, "what": what, "dataset": str(cfg.dataset.name), "backbone": backbone}


def build_logger(cfg: DictConfig, run_dir: Path) -> Any:
    """The Lightning logger of ``cfg.logger`` (None when ``logger=none``).

    A W&B run left without ``name`` / ``tags`` / ``job_type`` in the config gets them from the run:
    name ``<method>-<dataset>`` (``<model>-<dataset>`` for train.py), tags method, dataset,
    backbone and job, job type ``evaluate`` or ``train``; its ``group`` is the dataset
    (``conf/logger/wandb.yaml``), so the W&B UI groups and compares runs per benchmark.
    """
    if cfg.get("logger") is None:
        return None
    extra: dict[str, Any] = {}
    if str(cfg.logger.get("_target_", "")).endswith("WandbLogger"):
        labels = run_labels(cfg)
        if cfg.logger.get("name") is None:
            extra["name"] = f"{labels['what']}-{labels['dataset']}"
        if cfg.logger.get("tags") is None:
            extra["tags"] = [v for v in (labels["what"], labels["dataset"], labels["backbone"], labels["job"]) if v]
        if cfg.logger.get("job_type") is None:
            extra["job_type"] = labels["job"]
    return instantiate(cfg.logger, save_dir=str(run_dir), **extra)


def finish_run(logger: Any) -> None:
    """Close a W&B run so the offline run directory is complete (other loggers: nothing to do)."""
    if type(logger).__name__ == "WandbLogger":
        logger.experiment.finish()


def build_trainer(cfg: DictConfig, logger: Any, run_dir: Path) -> pl.Trainer:
    """The ``cfg.trainer`` Trainer of a test pass over pairs: ``use_distributed_sampler=False`` so
    that the shards of :class:`~semcorr.data.datamodule.PairDataModule` stay as they are
    (Lightning's own sampler would pad them with repeated pairs)."""
    return instantiate(
        cfg.trainer,
        logger=logger if logger is not None else False,
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,
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
    if offline:
        lines.append(f"[bold]Upload to W&B:[/] wandb sync {escape(str(offline[-1]))}")
    lines.append(f"[bold]Compare runs:[/] python -m semcorr.report {escape(str(run_dir))} OTHER_RUN_DIRS... --out report/")
    console.print("\n".join(lines), highlight=False, soft_wrap=True)


def run_evaluation(cfg: DictConfig, method: Matcher | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.method`` (or ``method``, a Matcher built in Python) on ``cfg.dataset``.

    Returns the flat metrics dict (the same on every process of a distributed run).

    Files written to ``cfg.paths.output_dir`` (by global rank 0): ``config.yaml``, ``metrics.json``,
    ``predictions.pt``, ``predictions.csv`` and, with ``save_pictures=true``, ``pictures/``.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if launched_as_rank_zero():
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    names = run_name(cfg)

    dataset = instantiate(cfg.dataset)
    datamodule = PairDataModule(test=dataset, **cfg.datamodule)
    method = method if method is not None else instantiate(cfg.method)
    resolution = str(OmegaConf.select(cfg, "metrics.resolution", default="resized"))
    evaluators = build_evaluators(dataset, cfg.alphas, resolution)
    weights, trained_on = OmegaConf.select(cfg, "backbone.net.weights", default=None), cfg.get("trained_on")
    protocol = run_record(
        dataset, method, list(evaluators), cfg.alphas, resolution, names["method"],
        weights=str(weights) if weights is not None else None, trained_on=list(trained_on) if trained_on is not None else None,
    )
    pictures = (
        PictureWriter(run_dir / "pictures", limit=cfg.max_pictures, alphas=cfg.alphas, method=method)
        if cfg.save_pictures
        else None
    )
    every = int(cfg.get("resume_every", 0) or 0)
    journal = EvaluationJournal(run_dir / "partial", cfg, every) if every > 0 else None
    module = EvaluationModule(method, evaluators, alphas=list(cfg.alphas), on_pair=pictures, journal=journal)
    logger = build_logger(cfg, run_dir)
    trainer = build_trainer(cfg, logger, run_dir)
    trainer.test(module, datamodule=datamodule, verbose=False)

    # synced in the test loop's epoch end: identical on every process
    metrics = {**names, **module.results(), "protocol": protocol}
    if not trainer.is_global_zero:
        return metrics
    write_metrics(run_dir, metrics)
    write_predictions(run_dir, module.records)
    missing, total = unanswered_keypoints(module.records)
    if missing:
        log.warning(
            "%d of %d keypoints got no prediction from %s (NaN in predictions.csv; counted as wrong in PCK). "
            "With HPF or nn this happens when margin pruning drops every box, on images much smaller than "
            "the layers' receptive fields: use larger images or method.margin_pruning=false.",
            missing, total, names["method"],
        )
    if journal is not None:
        journal.clear()
    title = f"{names['method']} on {names['dataset']} ({names['backbone']})"
    if trainer.world_size > 1:
        title += f", {trainer.world_size} processes"
    print_results(metrics, title)
    Console().print(f"Protocol: {describe(protocol)}", highlight=False, soft_wrap=True, markup=False)
    log.info("Results written to %s", run_dir)
    if logger is not None:
        logger.log_hyperparams({**OmegaConf.to_container(cfg, resolve=True), "protocol": protocol})
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if pictures is not None:  # every process has written its pairs' pictures (the gather waited for them)
            pictures.log_to(logger)
        logger.finalize("success")
        finish_run(logger)
    print_summary(run_dir)
    return metrics
