"""The evaluation LightningModule: one module evaluates any method on any dataset of the loop (the
runner that builds and runs it is :mod:`semcorr.lit.evaluation_runner`).

``test_step`` calls the method once per batch through the :class:`semcorr.methods.base.Matcher`
interface, asking for what the dataset's metric families need (:mod:`semcorr.metrics.evaluators`,
:func:`~semcorr.metrics.evaluators.dense_request`): the transferred query points (PCK, the polygon
mask transfer), plus the dense source -> target flow for TSS flow accuracy or the dense target ->
source flow for the flow mask transfer, and hands the output to every family. Metric states are
torchmetrics inside the families, so they reduce across processes.

Distributed runs (``trainer=ddp``): :class:`~semcorr.data.datamodule.PairDataModule` gives each process the pairs
``rank, rank + W, rank + 2W, ...`` through :class:`~semcorr.data.datamodule.ShardSampler`, which -- unlike the
``DistributedSampler`` that Lightning injects, which pads the dataset with repeated pairs until it
divides by the world size -- never repeats a pair, so every pair is counted exactly once (the
evaluation trainer runs with ``use_distributed_sampler=False``). At the end of the test epoch the
metrics are synced and computed on every process (identical numbers everywhere) and the per-pair
records are gathered onto rank 0, deduplicated and sorted by pair index.

Files are written by Lightning callbacks, not by the module: ``test_step`` returns ``{"output":
MatchOutput, "pair_pck": (B, A)}`` (NaN without PCK) for them. Pictures:
:class:`semcorr.lit.pictures.PictureWriter`; resuming: :class:`semcorr.lit.journal.JournalCallback`
(restores the pairs a process had done before an interruption, has the DataModule skip them, and
journals the progress every ``journal.every`` pairs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn

from semcorr.methods.base import Matcher, MatchOutput
from semcorr.metrics.evaluators import dense_request
from semcorr.metrics.pck import GroupedMean

log = logging.getLogger(__name__)


def distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All processes' per-pair records on rank 0 (other ranks: their own), one per pair index,
    sorted by index. Without a process group: ``records`` deduplicated and sorted."""
    if distributed():
        parts: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
        dist.gather_object(records, parts, dst=0)
        if dist.get_rank() != 0:
            return sorted(records, key=lambda r: r["index"])
        records = [r for part in parts or () for r in part]
    unique: dict[int, dict[str, Any]] = {}
    for record in records:
        unique.setdefault(int(record["index"]), record)
    if len(unique) < len(records):
        log.warning("%d repeated pair records dropped", len(records) - len(unique))
    return [unique[i] for i in sorted(unique)]


def sparse_matches(output: MatchOutput, i: int, src_scale: torch.Tensor, trg_scale: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pair ``i``'s sparse matches of a method (``extras`` ``sparse_src``/``sparse_trg``/``sparse_score``)
    in ORIGINAL image pixels, NaN rows dropped; empty when the method returns none."""
    if "sparse_src" not in output.extras or "sparse_trg" not in output.extras:
        return {}
    src, trg = output.extras["sparse_src"][i].detach().cpu(), output.extras["sparse_trg"][i].detach().cpu()
    keep = torch.isfinite(src).all(1) & torch.isfinite(trg).all(1)
    out = {"sparse_src": src[keep] / src_scale, "sparse_trg": trg[keep] / trg_scale}
    if "sparse_score" in output.extras:
        out["sparse_score"] = output.extras["sparse_score"][i].detach().cpu()[keep]
    return out


class EvaluationModule(pl.LightningModule):
    """Runs a method over test pairs and accumulates the metric families of the dataset.

    Args:
        method: any :class:`Matcher`.
        evaluators: the dataset's metric families by name
            (:func:`semcorr.metrics.evaluators.build_evaluators`); empty for pairs without ground
            truth (predictions only).
        alphas: PCK alphas (the width of the per-pair PCK returned by ``test_step`` and recorded).
    """

    def __init__(
        self,
        method: Matcher,
        evaluators: nn.ModuleDict,
        alphas: list[float],
    ) -> None:
        super().__init__()
        self.method = method
        self.evaluators = evaluators
        self.dense = dense_request(evaluators)
        self.alphas = [float(a) for a in alphas]
        self.timing = GroupedMean(1, 1)
        #: per-pair predictions; after the test epoch: every pair on rank 0, sorted by index
        self.records: list[dict[str, Any]] = []
        self._results: dict[str, float] | None = None

    def _timed(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out, time.perf_counter() - start

    @torch.no_grad()
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Evaluate a batch; returns ``{"output": MatchOutput, "pair_pck": (B, A)}`` for the callbacks."""
        b = batch["src_img"].shape[0]
        src_img, trg_img = batch["src_img"], batch["trg_img"]
        src_ids, trg_ids = batch["src_path"], batch["trg_path"]
        output, seconds = self._timed(
            lambda: self.method(src_img, trg_img, batch["src_kps"], src_ids, trg_ids, self.dense)
        )
        per_pair: dict[str, torch.Tensor] = {}
        for evaluator in self.evaluators.values():
            per_pair.update(evaluator.update(batch, output))
        pair_pck = per_pair.get("pck", torch.full((b, len(self.alphas)), float("nan")))
        self.timing.update(torch.full((b, 1), seconds / b, device=self.device), torch.zeros(b, dtype=torch.long))
        self._results = None
        self._record(batch, output, pair_pck, seconds / b)
        return {"output": output, "pair_pck": pair_pck}

    def _record(self, batch: dict[str, Any], output: MatchOutput, pair_pck: torch.Tensor, seconds: float) -> None:
        """Keep each pair's predictions in ORIGINAL image pixels for predictions.pt/.csv."""
        for i in range(batch["src_img"].shape[0]):
            n = int(batch["n_kps"][i])
            src_scale, trg_scale = batch["src_scale"][i].cpu(), batch["trg_scale"][i].cpu()
            self.records.append(
                {
                    "index": int(batch["index"][i]),
                    "pair_id": batch["pair_id"][i],
                    "category": batch["category"][i],
                    "src_kps": (batch["src_kps"][i, :n].cpu() / src_scale),
                    "trg_kps": (batch["trg_kps"][i, :n].cpu() / trg_scale),
                    "pred_kps": (output.points[i, :n].detach().cpu() / trg_scale),
                    "pck": {a: float(v) for a, v in zip(self.alphas, pair_pck[i].tolist())},
                    "time_s": seconds,
                    **sparse_matches(output, i, src_scale, trg_scale),
                }
            )

    def on_test_epoch_end(self) -> None:
        """Compute the (synced) results and gather the records while every process is still in the
        loop and the metric states are still on their device (Lightning moves the module to the CPU
        after ``trainer.test``, where an NCCL group could not sync them)."""
        self._results = self._compute_results()
        self.records = gather_records(self.records)

    def results(self) -> dict[str, float]:
        """Flat metrics: ``n_pairs``, every family's keys (``pck@A``, ``pck_kp@A``, ``pck_cat@A``,
        ``pck@A/<category>``, ``flow_acc``, ``lt_acc``, ...) and ``time_per_pair_s``.

        Synced over all processes: the same numbers on every rank. After a test epoch these are the
        values computed at its end; otherwise they are computed now (a collective call under DDP).
        """
        if self._results is None:
            self._results = self._compute_results()
        return dict(self._results)

    def _compute_results(self) -> dict[str, float]:
        # every process calls the same collectives in the same order
        time_means, time_counts = self.timing.grouped()
        n_pairs = int(time_counts[0])
        out: dict[str, float] = {"n_pairs": n_pairs}
        for evaluator in self.evaluators.values():
            out.update(evaluator.compute())
        out["time_per_pair_s"] = float(time_means[0, 0]) if n_pairs else float("nan")
        return out
