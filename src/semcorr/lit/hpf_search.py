"""HPF layer search (Algorithm 1 of the paper) driven by Lightning: ``python train.py model=hpf_search``.

The beam search (:func:`semcorr.methods.layer_search.beam_search`) asks for the scores of all
candidate layer sets of a depth at once; :class:`LayerSetScorer` answers with one Lightning test
pass over the validation pairs (rich progress bar, DDP-ready: the per-set PCK sums are torchmetrics
states). Backbone features of every candidate layer are computed once per image and kept in an
LRU store, so each candidate set costs only hyperimage assembly, matching and transfer; the source
hyperimages of consecutive pairs sharing a source image are reused through the matcher's cache.

Scoring as the reference beam search does it: the mean over the validation pairs of the per-pair
PCK@alpha, computed by the project's PCK family (:class:`semcorr.metrics.pck.PCKEvaluator`, one per
candidate set; the same code as ``evaluate.py``), with the threshold ``model.threshold`` --
``bbox`` by default, as the official beam search scores PF-PASCAL (its evaluation default is
``img``); on PF-WILLOW and SPair-71k ``bbox`` is the evaluation default anyway. Pairs: the
dataset's own list (PF-WILLOW: HPF's ``test_pairs.csv`` when the folder has one, else all ordered
pairs), optionally a stratified subset (``dataset.pairs_per_category`` / ``dataset.subset_seed``,
the paper's small-set experiments).

Departure from the reference code, on purpose: the reference's beam loop ``break``s out of a beam
entry's candidates as soon as one candidate set duplicates a set already scored, so the remaining
candidates of that entry are never scored; the paper's Algorithm 1 scores them all, and so does
:func:`semcorr.methods.layer_search.beam_search` (a duplicate is skipped, not a ``break``).

Outputs in the run directory: ``beam_state.json`` (resume point, written after each depth),
``search_scores.csv`` (every scored set), ``method/hpf_searched.yaml`` (a method config that
``evaluate.py --config-dir <run dir> method=hpf_searched`` accepts) and ``search_result.json``
(with the protocol record of the scored pairs, :mod:`semcorr.protocol`).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from torch import nn

from semcorr.data.datamodule import PairDataModule
from semcorr.errors import ConfigError
from semcorr.io import write_json, write_text
from semcorr.lit.evaluation_runner import build_logger, build_method, build_trainer, finish_run
from semcorr.lit.callbacks import instantiate_callbacks
from semcorr.lit.interrupt import resume_command
from semcorr.lit.progress import SearchProgress
from semcorr.lit.train import dataset_split, start_run
from semcorr.methods.base import MatchOutput
from semcorr.methods.cache import LRUCache
from semcorr.methods.hpf import HyperpixelFlow
from semcorr.methods.layer_search import LayerSet, SearchState, beam_search, key_of
from semcorr.metrics.pck import PCKEvaluator
from semcorr.protocol import build_protocol, method_protocol

log = logging.getLogger(__name__)


class LayerSetScorer(pl.LightningModule):
    """Mean PCK@alpha of each candidate layer set over the pairs of a test pass.

    Args:
        matcher: the HPF method (its settings: RHM, exponent, cells, pruning) used for scoring.
        candidate_layers: every layer id a set may contain.
        categories: the scored dataset's category names.
        alpha: PCK alpha of the score.
        feature_cache_images: images whose features stay in memory between passes.
    """

    def __init__(self, matcher: HyperpixelFlow, candidate_layers: Sequence[int], categories: Sequence[str],
                 alpha: float = 0.1, feature_cache_images: int = 64) -> None:
        super().__init__()
        self.matcher = matcher
        self.candidate_layers = tuple(sorted({int(i) for i in candidate_layers}))
        self.categories = list(categories)
        self.alpha = float(alpha)
        self.store: LRUCache[dict[int, torch.Tensor]] = LRUCache(feature_cache_images)
        self.sets: list[LayerSet] = []
        self.evaluators = nn.ModuleList()
        self._scores: list[float] = []

    def set_candidates(self, sets: Sequence[LayerSet]) -> None:
        """Choose the layer sets the next test pass scores (one PCK evaluator each)."""
        unknown = sorted({l for s in sets for l in s} - set(self.candidate_layers))
        if unknown:
            raise ConfigError(f"layer ids {unknown} are not among the candidate layers {self.candidate_layers}")
        self.sets = [tuple(s) for s in sets]
        self.evaluators = nn.ModuleList(PCKEvaluator([self.alpha], self.categories) for _ in self.sets).to(self.device)

    def _features(self, img: torch.Tensor, image_id: str) -> dict[int, torch.Tensor]:
        def compute() -> dict[int, torch.Tensor]:
            feats = self.matcher.backbone(img[None], self.candidate_layers)
            return {l: f[0] for l, f in zip(self.candidate_layers, feats)}

        return self.store.get_or_compute((image_id, tuple(img.shape[-2:])), compute)

    @torch.no_grad()
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        b = batch["src_img"].shape[0]
        predictions = torch.full((len(self.sets), *batch["src_kps"].shape), float("nan"), device=batch["src_kps"].device)
        for i in range(b):
            src_img, trg_img = batch["src_img"][i], batch["trg_img"][i]
            src_id, trg_id = batch["src_path"][i], batch["trg_path"][i]
            src_feats = self._features(src_img, src_id)
            trg_feats = self._features(trg_img, trg_id)
            n = int(batch["n_kps"][i])
            for k, layers in enumerate(self.sets):
                src = self.matcher.hyperimage_from_features(src_feats, layers, tuple(src_img.shape[-2:]), src_id)
                trg = self.matcher.hyperimage_from_features(trg_feats, layers, tuple(trg_img.shape[-2:]), trg_id)
                predictions[k, i, :n] = self.matcher.transfer(src, trg, batch["src_kps"][i, :n])
        for k, evaluator in enumerate(self.evaluators):
            evaluator.update(batch, MatchOutput(predictions[k]))

    def on_test_epoch_end(self) -> None:
        # synced across processes here, while the states are still on the device (NCCL)
        key = f"pck@{self.alpha:g}"
        self._scores = [float(evaluator.compute()[key]) for evaluator in self.evaluators]

    def scores(self) -> list[float]:
        """Mean PCK (in %) of each set of the last pass, in the order of :meth:`set_candidates`."""
        return list(self._scores)


def searched_method_config(layers: Sequence[int], score: float, cfg: DictConfig) -> str:
    """YAML of a method config extending ``hpf`` with the found layers (for ``--config-dir``)."""
    return (
        f"# Found by `python train.py model=hpf_search` on {cfg.dataset.name} ({cfg.model.split} split), "
        f"backbone {cfg.backbone.net.name}: PCK@{cfg.model.alpha:g} = {score:.2f} "
        f"(threshold {cfg.model.threshold or 'the dataset default'})\n"
        "defaults:\n  - hpf\n  - _self_\n\n"
        f"layers: {list(layers)}\n"
    )


def run_search(cfg: DictConfig) -> dict[str, Any]:
    """Run the HPF layer beam search of ``cfg.model`` on ``cfg.dataset``; resumes from the run dir.

    Returns:
        dict with ``layers`` (the best set), ``score`` and ``beams``.
    """
    model = cfg.model
    run_dir = start_run(cfg)

    overrides = {}
    if model.threshold is not None:
        offered = get_class(cfg.dataset._target_).thresholds
        if model.threshold not in offered:
            raise ConfigError(
                f"model.threshold={model.threshold!r} is not offered by {cfg.dataset.name} ({', '.join(offered)}); "
                "set model.threshold=null for the dataset's default"
            )
        overrides["threshold"] = model.threshold
    dataset = dataset_split(cfg.dataset, str(model.split), "model.split", "the HPF layer search", **overrides)
    matcher: HyperpixelFlow = build_method(model.matcher)
    candidates = model.candidate_layers if model.candidate_layers is not None else matcher.backbone.layer_ids
    scorer = LayerSetScorer(matcher, candidates, dataset.categories, model.alpha, model.feature_cache_images)
    protocol = build_protocol(
        dataset, ["pck"], [model.alpha], "resized",
        method_protocol("hpf", matcher, str(OmegaConf.select(cfg, "backbone.net.weights", default=None))),
    )
    logger = build_logger(cfg, run_dir)
    state = run_dir / "beam_state.json"
    kept = lambda trainer, module: (  # noqa: E731 - what an interruption keeps
        f"the scores of the depths finished are in {state}" if state.is_file() else "no depth was finished yet"
    )
    callbacks = instantiate_callbacks(cfg.get("callbacks"), save=kept, command=resume_command(run_dir, "train.py"))
    trainer = build_trainer(cfg, logger, run_dir, callbacks)
    datamodule = PairDataModule(test=dataset, **cfg.datamodule)
    scored: list[tuple[LayerSet, float]] = []
    progress = SearchProgress(list(candidates), model.beam_size, model.max_layers, len(dataset),
                              already=len(SearchState.load(state).scores))

    def score(sets: list[LayerSet]) -> list[float]:
        if trainer.is_global_zero:
            print(progress.line(len(sets[0]), len(sets), min(min(s) for s in sets)), flush=True)
        scorer.set_candidates(sets)
        trainer.test(scorer, datamodule=datamodule, verbose=False)
        progress.done(len(sets))
        return scorer.scores()

    def on_score(layers: LayerSet, value: float) -> None:
        scored.append((layers, value))
        if logger is not None:
            logger.log_metrics({"search/pck": value, "search/n_layers": len(layers)}, step=len(scored))
        log.debug("layers %s: PCK@%g = %.2f", list(layers), model.alpha, value)

    result = beam_search(
        score, candidates, model.base_candidates, model.beam_size, model.max_layers,
        state_path=state, on_score=on_score, write_state=trainer.is_global_zero,
    )
    summary = {"layers": list(result.best), "score": result.best_score,
               "beams": [[[list(s), v] for s, v in beam] for beam in result.beams], "protocol": protocol}
    if not trainer.is_global_zero:
        return summary
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["layers", "n_layers", f"pck@{model.alpha:g}"])
    for key, value in sorted(result.scores.items(), key=lambda kv: -kv[1]):
        writer.writerow([key, len(key.split(",")), f"{value:.4f}"])
    write_text(run_dir / "search_scores.csv", buf.getvalue())
    write_text(run_dir / "method" / "hpf_searched.yaml", searched_method_config(result.best, result.best_score, cfg))
    write_json(run_dir / "search_result.json", summary)
    if logger is not None:
        logger.log_hyperparams({"best_layers": key_of(result.best), "best_pck": result.best_score})
        logger.finalize("success")
        finish_run(logger)
    layers = ",".join(map(str, result.best))
    print(f"Best layers {list(result.best)}: PCK@{model.alpha:g} = {result.best_score:.2f}\n"
          f"Evaluate with: python evaluate.py --config-dir {run_dir} method=hpf_searched backbone={cfg.backbone.net.name} ...\n"
          f"           or: python evaluate.py method=hpf 'method.layers=[{layers}]' ...")
    return summary
