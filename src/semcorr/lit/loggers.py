"""What an evaluation sends to its logger: the config at the start, running PCK during the run,
the final metrics, sortable tables and captioned pictures at the end.

* :class:`WandbLogger` (``logger=wandb``): Lightning's W&B logger, quiet by default (W&B's console
  lines appear with ``logger.quiet=false``).
* :func:`wandb_run_id`: the id of the W&B run an interrupted evaluation started in its run
  directory, so that the resumed run continues it (``wandb sync`` of both offline folders then
  uploads one run).
* :class:`RunningMetrics`: mean PCK of the pairs evaluated so far every ``every_n_pairs`` pairs, as
  ``running/pck@A`` (and ``running/pairs``, ``running/time_per_pair_s``) at step = pairs done. Under
  DDP it is rank 0's shard (the final metrics are synced over all pairs).
* :func:`log_tables`: ``pairs`` (one row per pair: index, pair, category, PCK at each alpha,
  keypoints, seconds) and ``subsets`` (one row per category or difficulty level, every metric) as
  W&B tables, which the UI sorts and filters.
* :func:`log_pictures`: the pictures of ``pictures/`` under one key per kind (``pictures/pairs``,
  ``pictures/matches`` and the method's own outputs, e.g. ``pictures/analogy`` for DIA,
  ``pictures/blend`` for NBB), each captioned with its pair and PCK.

Loggers without tables or images (CSV) get the metrics only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import wandb
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger

from semcorr.viz.pictures import pair_title, picture_kind, picture_pair_index


class WandbLogger(LightningWandbLogger):
    """Lightning's :class:`~pytorch_lightning.loggers.WandbLogger`, quiet unless asked.

    Args:
        quiet: W&B's own console lines off (``wandb.Settings(silent=True)``).
        *args / **kwargs: Lightning's WandbLogger arguments (unknown ones go to ``wandb.init``).
    """

    def __init__(self, *args: Any, quiet: bool = True, **kwargs: Any) -> None:
        if quiet and "settings" not in kwargs:
            kwargs["settings"] = wandb.Settings(silent=True)
        super().__init__(*args, **kwargs)
        self.quiet = bool(quiet)
        # Lightning passes anonymous=None on, and W&B then warns on every run that the (unset) setting has no effect
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


def wandb_run_id(run_dir: str | Path) -> str | None:
    """The id of the newest W&B run (online or offline) in ``<run_dir>/wandb``, or None."""
    runs = sorted(p.name for p in (Path(run_dir) / "wandb").glob("*run-*-*") if p.is_dir())
    return runs[-1].rsplit("-", 1)[-1] if runs else None


def mean_pck(records: Sequence[dict[str, Any]], alphas: Sequence[float]) -> dict[float, float]:
    """Mean per-pair PCK (in %) at each alpha over the records that have one (NaN: none)."""
    out = {}
    for a in alphas:
        values = [r["pck"][a] for r in records if not math.isnan(r["pck"][a])]
        out[a] = 100.0 * sum(values) / len(values) if values else float("nan")
    return out


class RunningMetrics(Callback):
    """Running PCK of ``module``'s pairs every ``every_n_pairs`` pairs (see the module docstring).

    Args:
        module: the :class:`~semcorr.lit.evaluation_module.EvaluationModule` (its ``records``, ``alphas``).
        every_n_pairs: pairs between two logs (0: never).
    """

    def __init__(self, module: pl.LightningModule, every_n_pairs: int) -> None:
        self.module = module
        self.every_n = int(every_n_pairs)
        self._logged = 0

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        records = self.module.records
        if pl_module is not self.module or self.every_n <= 0 or trainer.logger is None or not trainer.is_global_zero:
            return
        if len(records) // self.every_n <= self._logged // self.every_n:
            return
        self._logged = len(records)
        metrics = {f"running/pck@{a:g}": v for a, v in mean_pck(records, self.module.alphas).items() if not math.isnan(v)}
        metrics["running/pairs"] = len(records)
        metrics["running/time_per_pair_s"] = sum(r["time_s"] for r in records) / len(records)
        trainer.logger.log_metrics(metrics, step=len(records))


def _number(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def pair_table(records: Sequence[dict[str, Any]], alphas: Sequence[float]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the per-pair table (PCK in %, None where a pair has none)."""
    columns = ["index", "pair", "category", *(f"pck@{a:g}" for a in alphas), "keypoints", "time_s"]
    rows = [
        [int(r["index"]), r["pair_id"], r["category"], *(_number(100.0 * r["pck"][a]) for a in alphas),
         len(r["src_kps"]), float(r["time_s"])]
        for r in records
    ]
    return columns, rows


def subset_table(metrics: dict[str, Any], records: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the per-subset table: one row per ``<metric>/<subset>`` subset
    (categories, ``<field>=<level>`` difficulty levels), one column per metric, and the number of
    pairs of each category."""
    names: list[str] = []
    values: dict[str, dict[str, Any]] = {}
    for key, value in metrics.items():
        metric, _, subset = key.partition("/")
        if subset and isinstance(value, (int, float)) and not isinstance(value, bool):
            names += [metric] if metric not in names else []
            values.setdefault(subset, {})[metric] = _number(value)
    counts: dict[str, int] = {}
    for r in records:
        counts[r["category"]] = counts.get(r["category"], 0) + 1
    columns = ["subset", "pairs", *names]
    rows = [[subset, counts.get(subset), *(values[subset].get(m) for m in names)] for subset in sorted(values)]
    return columns, rows


def log_tables(logger: Any, metrics: dict[str, Any], records: Sequence[dict[str, Any]], alphas: Sequence[float]) -> None:
    """Log the ``pairs`` and ``subsets`` tables to a logger that takes tables (W&B)."""
    if not hasattr(logger, "log_table"):
        return
    columns, rows = pair_table(records, alphas)
    logger.log_table(key="pairs", columns=columns, data=rows)
    columns, rows = subset_table(metrics, records)
    if rows:
        logger.log_table(key="subsets", columns=columns, data=rows)


def caption(record: dict[str, Any] | None, alphas: Sequence[float]) -> str:
    """The caption of a pair's picture: its name and PCK (:func:`semcorr.viz.pictures.pair_title`)."""
    if record is None:
        return ""
    scores = [record["pck"][a] for a in alphas]
    return pair_title(record["pair_id"], alphas, None if all(math.isnan(s) for s in scores) else scores)


def log_pictures(logger: Any, folder: Path, records: Sequence[dict[str, Any]], alphas: Sequence[float]) -> None:
    """Log the PNG files under ``folder`` to a logger that takes images (W&B), one key per kind of
    picture (:func:`semcorr.viz.pictures.picture_kind`), captioned with the pair and its PCK.

    The folder, not a list kept while writing: it also holds the pictures of the other DDP
    processes and of the pairs done before a resumed run's interruption."""
    if not hasattr(logger, "log_image") or not folder.is_dir():
        return
    by_index = {int(r["index"]): r for r in records}
    kinds: dict[str, tuple[list[str], list[str]]] = {}
    for path in sorted(folder.rglob("*.png")):
        index = picture_pair_index(path, folder)
        images, captions = kinds.setdefault(f"pictures/{picture_kind(path, folder)}", ([], []))
        images.append(str(path))
        captions.append(caption(by_index.get(index) if index is not None else None, alphas))
    for key, (images, captions) in kinds.items():
        logger.log_image(key=key, images=images, caption=captions)

