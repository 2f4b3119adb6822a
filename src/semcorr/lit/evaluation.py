"""One LightningModule that evaluates any method on any dataset of the loop.

``test_step`` calls the method once per batch through the :class:`semcorr.methods.base.Matcher`
interface, asking for what the batch needs (:func:`dense_request`): keypoint transfer (PCK), plus
the dense source->target flow when the batch has a ground-truth ``flow`` (TSS flow accuracy), or
the dense target->source flow when it has masks (mask transfer: LT-ACC and IoU). Metric states are
torchmetrics, so they reduce across processes.

Distributed runs (``trainer=ddp``): :class:`~semcorr.data.datamodule.PairDataModule` gives each process the pairs
``rank, rank + W, rank + 2W, ...`` through :class:`~semcorr.data.datamodule.ShardSampler`, which -- unlike the
``DistributedSampler`` that Lightning injects, which pads the dataset with repeated pairs until it
divides by the world size -- never repeats a pair, so every pair is counted exactly once (the
evaluation trainer runs with ``use_distributed_sampler=False``). At the end of the test epoch the
metrics are synced and computed on every process (identical numbers everywhere) and the per-pair
records are gathered onto rank 0, deduplicated and sorted by pair index.

Resuming (:mod:`semcorr.lit.journal`): with a journal, every process restores the pairs it had done
before an interruption in ``setup`` (metric states, records) and tells the DataModule to skip them,
then journals its progress every ``journal.every`` pairs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch import nn
from torchmetrics import Metric

from semcorr.lit.journal import EvaluationJournal, restore_metrics
from semcorr.methods.base import Matcher, MatchOutput
from semcorr.metrics.flow import FlowAccuracy
from semcorr.metrics.masks import MaskTransfer
from semcorr.metrics.pck import GroupedMean, pck_per_pair
from semcorr.metrics.warping import warp_mask

#: Upper bound on the number of levels of a grouping field (SPair-71k difficulty fields).
MAX_GROUP_LEVELS = 8

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


def dense_request(batch: dict[str, Any]) -> str | None:
    """The ``dense`` argument of the method call a batch needs: ``"forward"`` for dense flow ground
    truth (TSS), ``"backward"`` for mask transfer (source and target masks, no flow), else None."""
    if "flow" in batch:
        return "forward"
    if "src_mask" in batch and "trg_mask" in batch:
        return "backward"
    return None


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


def as_reported(key: str, value: float) -> float:
    """Accuracies (fractions) are reported in percent; counts and LOC-ERR as they are."""
    return value if key.endswith("_pairs") or key.startswith("loc_err") else 100.0 * value


class EvaluationModule(pl.LightningModule):
    """Runs a method over test pairs and accumulates the metrics that the batches allow.

    Metrics per batch content: keypoints -> PCK (``pck@A``, per category and group field);
    ``flow`` -> TSS flow accuracy (``flow_acc`` in %, per category); ``src_mask`` and
    ``trg_mask`` without ``flow`` -> mask transfer (``lt_acc``, ``iou`` in %, ``loc_err``).

    Args:
        method: any :class:`Matcher`.
        categories: the dataset's category names (``category_id`` indexes them).
        group_fields: per-pair grouping fields to report PCK by (e.g. SPair-71k difficulty).
        alphas: PCK alphas.
        on_pair: optional callback ``(batch, output, pair_pck) -> None`` called after each batch
            (pictures); ``pair_pck`` is (B, A).
        journal: where to journal progress and what to resume from (None: no resuming).
    """

    def __init__(
        self,
        method: Matcher,
        categories: Sequence[str],
        group_fields: Sequence[str] = (),
        alphas: Sequence[float] = (0.05, 0.1, 0.15),
        on_pair: Callable[[dict, MatchOutput, torch.Tensor], None] | None = None,
        journal: EvaluationJournal | None = None,
    ) -> None:
        super().__init__()
        self.method = method
        self.categories = list(categories)
        self.group_fields = list(group_fields)
        self.alphas = [float(a) for a in alphas]
        self.on_pair = on_pair
        n_alpha = len(self.alphas)
        self.pck_all = GroupedMean(1, n_alpha)
        self.pck_category = GroupedMean(len(self.categories), n_alpha)
        self.pck_group = nn.ModuleDict({f: GroupedMean(MAX_GROUP_LEVELS, n_alpha) for f in self.group_fields})
        self.flow_accuracy = FlowAccuracy(num_groups=len(self.categories), group_names=self.categories)
        self.mask_transfer = MaskTransfer(num_groups=len(self.categories), group_names=self.categories)
        self.timing = GroupedMean(1, 1)
        #: per-pair predictions; after the test epoch: every pair on rank 0, sorted by index
        self.records: list[dict[str, Any]] = []
        self._results: dict[str, float] | None = None
        self.journal = journal
        self._unsaved = 0

    def setup(self, stage: str) -> None:
        """Restore this process's journal, if any, and have the DataModule skip its pairs."""
        if self.journal is None:
            return
        entry = self.journal.load(self.global_rank, self.trainer.world_size)
        if entry is None:
            return
        restore_metrics(self, entry["metrics"])
        self.records = list(entry["records"])
        datamodule = self.trainer.datamodule
        if datamodule is not None:
            datamodule.exclude = set(entry["done"])
        log.info("resuming from %s: %d pairs already evaluated", self.journal.path(self.global_rank), len(entry["done"]))

    def _timed(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = fn()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return out, time.perf_counter() - start

    @torch.no_grad()
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        b = batch["src_img"].shape[0]
        src_img, trg_img = batch["src_img"], batch["trg_img"]
        src_ids, trg_ids = batch["src_path"], batch["trg_path"]
        dense = dense_request(batch)
        output, seconds = self._timed(lambda: self.method(src_img, trg_img, batch["src_kps"], src_ids, trg_ids, dense))
        if dense == "forward":  # dense source -> target ground truth (TSS)
            self.flow_accuracy.update(
                output.flow.to(self.device), batch["flow"], batch["src_mask"], threshold=batch["flow_threshold"],
                trg_scale=batch["trg_scale"], groups=batch["category_id"],
            )
        elif dense == "backward":  # mask transfer (Caltech-101, CUB): the target -> source flow
            back = output.flow.to(self.device)
            self.mask_transfer.update(
                warp_mask(batch["src_mask"], back), batch["trg_mask"], groups=batch["category_id"],
                src_mask=batch["src_mask"], flow_trg_to_src=back,
            )
        pair_pck = torch.full((b, len(self.alphas)), float("nan"))
        if batch["src_kps"].shape[1] > 0:
            pair_pck = pck_per_pair(output.points.to(self.device), batch["trg_kps"], batch["pck_threshold"], self.alphas)
            self.pck_all.update(pair_pck, torch.zeros(b, dtype=torch.long))
            self.pck_category.update(pair_pck, batch["category_id"])
            for field in self.group_fields:
                self.pck_group[field].update(pair_pck, batch[field])
        self.timing.update(torch.full((b, 1), seconds / b, device=self.device), torch.zeros(b, dtype=torch.long))
        self._results = None
        self._record(batch, output, pair_pck, seconds / b)
        if self.on_pair is not None:
            self.on_pair(batch, output, pair_pck)
        self._unsaved += b
        if self.journal is not None and self._unsaved >= self.journal.every:
            self.journal.save(self.global_rank, self.trainer.world_size, self, self.records)
            self._unsaved = 0

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

    def _updated_anywhere(self, metric: Metric) -> bool:
        """Whether any process updated ``metric`` (the same answer on every process)."""
        count = torch.tensor(float(metric.update_count), device=self.device)
        if distributed():
            dist.all_reduce(count, op=dist.ReduceOp.MAX)
        return bool(count > 0)

    def results(self) -> dict[str, float]:
        """Flat metrics: ``pck@A``, ``pck@A/<category>``, ``pck@A/<field>=<level>``, timing, counts.

        Synced over all processes: the same numbers on every rank. After a test epoch these are the
        values computed at its end; otherwise they are computed now (a collective call under DDP).
        """
        if self._results is None:
            self._results = self._compute_results()
        return dict(self._results)

    def _compute_results(self) -> dict[str, float]:
        out: dict[str, float] = {}
        # every process takes the same branches and calls the same collectives in the same order
        have_pck = self._updated_anywhere(self.pck_all)
        have_dense = [self._updated_anywhere(m) for m in (self.flow_accuracy, self.mask_transfer)]
        time_means, time_counts = self.timing.grouped()
        n_pairs = int(time_counts[0])
        out["n_pairs"] = n_pairs
        if have_pck:
            means, _ = self.pck_all.grouped()
            for a, v in zip(self.alphas, means[0].tolist()):
                out[f"pck@{a:g}"] = 100.0 * v
            cat_means, cat_counts = self.pck_category.grouped()
            for c, name in enumerate(self.categories):
                if cat_counts[c] > 0:
                    for a, v in zip(self.alphas, cat_means[c].tolist()):
                        out[f"pck@{a:g}/{name}"] = 100.0 * v
            for field in self.group_fields:
                g_means, g_counts = self.pck_group[field].grouped()
                for level in range(MAX_GROUP_LEVELS):
                    if g_counts[level] > 0:
                        for a, v in zip(self.alphas, g_means[level].tolist()):
                            out[f"pck@{a:g}/{field}={level}"] = 100.0 * v
        for dense, present in zip((self.flow_accuracy, self.mask_transfer), have_dense):
            if present:
                out.update({k: as_reported(k, float(v)) for k, v in dense.compute().items()})
        out["time_per_pair_s"] = float(time_means[0, 0]) if n_pairs else float("nan")
        return out
