"""The evaluation run behind ``python evaluate.py``: config in, metrics and files out.

Steps: seed; build the dataset, DataModule, method and trainer from the Hydra config; run
``Trainer.test``; write ``metrics.json``, ``predictions.pt``/``.csv`` and the composed config into
the run directory; print the results table; send metrics to the logger (W&B offline by default).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from semcorr.data.datamodule import PairDataModule
from semcorr.io import write_text
from semcorr.lit.evaluation import EvaluationModule
from semcorr.methods.base import Matcher
from semcorr.results import print_results, write_metrics, write_predictions
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


def build_logger(cfg: DictConfig, run_dir: Path) -> Any:
    """The Lightning logger of ``cfg.logger`` (None when ``logger=none``)."""
    if cfg.get("logger") is None:
        return None
    return instantiate(cfg.logger, save_dir=str(run_dir))


def finish_run(logger: Any) -> None:
    """Close a W&B run so the offline run directory is complete (other loggers: nothing to do)."""
    if type(logger).__name__ == "WandbLogger":
        logger.experiment.finish()


def run_evaluation(cfg: DictConfig, method: Matcher | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.method`` (or ``method``, a Matcher built in Python) on ``cfg.dataset``.

    Returns the flat metrics dict.

    Files written to ``cfg.paths.output_dir``: ``config.yaml``, ``metrics.json``,
    ``predictions.pt``, ``predictions.csv`` and, with ``save_pictures=true``, ``pictures/``.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    names = run_name(cfg)

    dataset = instantiate(cfg.dataset)
    datamodule = PairDataModule(test=dataset, **cfg.datamodule)
    method = method if method is not None else instantiate(cfg.method)
    pictures = (
        PictureWriter(run_dir / "pictures", limit=cfg.max_pictures, alphas=cfg.alphas, method=method)
        if cfg.save_pictures
        else None
    )
    module = EvaluationModule(
        method,
        categories=dataset.categories,
        group_fields=dataset.group_fields,
        alphas=cfg.alphas,
        on_pair=pictures,
    )
    logger = build_logger(cfg, run_dir)
    trainer = instantiate(cfg.trainer, logger=logger if logger is not None else False, default_root_dir=str(run_dir))
    trainer.test(module, datamodule=datamodule, verbose=False)

    metrics = {**names, **module.results()}
    if trainer.is_global_zero:
        write_metrics(run_dir, metrics)
        write_predictions(run_dir, module.records)
        title = f"{names['method']} on {names['dataset']} ({names['backbone']})"
        print_results(metrics, title)
        log.info("Results written to %s", run_dir)
    if logger is not None:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        logger.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        if pictures is not None:
            pictures.log_to(logger)
        logger.finalize("success")
        finish_run(logger)
    return metrics
