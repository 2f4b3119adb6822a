"""HPF layer search (Algorithm 1 of the paper) driven by Lightning: ``python train.py model=hpf_search``.

The beam search (:func:`semcorr.methods.layer_search.beam_search`) asks for the scores of all
candidate layer sets of a depth at once; :class:`LayerSetScorer` answers with one Lightning test
pass over the validation pairs (rich progress bar, DDP-ready: the per-set PCK sums are torchmetrics
states). Backbone features of every candidate layer are computed once per image and kept in an
LRU store, so each candidate set costs only hyperimage assembly, matching and transfer; the source
hyperimages of consecutive pairs sharing a source image are reused through the matcher's cache.

Outputs in the run directory: ``beam_state.json`` (resume point, written after each depth),
``search_scores.csv`` (every scored set), ``method/hpf_searched.yaml`` (a method config that
``evaluate.py --config-dir <run dir> method=hpf_searched`` accepts) and ``search_result.json``.
"""

from __future__ import annotations

import csv
import io
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import Dataset, Subset

from semcorr.data.datamodule import PairDataModule
from semcorr.errors import ConfigError
from semcorr.io import write_json, write_text
from semcorr.lit.evaluate import build_logger, build_method, build_trainer, finish_run
from semcorr.lit.interrupt import ResumeOnInterrupt, resume_command
from semcorr.lit.progress import SearchProgress
from semcorr.methods.cache import LRUCache
from semcorr.methods.hpf import HyperpixelFlow
from semcorr.methods.layer_search import LayerSet, SearchState, beam_search, key_of
from semcorr.metrics.pck import GroupedMean, pck_per_pair

log = logging.getLogger(__name__)


class LayerSetScorer(pl.LightningModule):
    """Mean PCK@alpha of each candidate layer set over the pairs of a test pass.

    Args:
        matcher: the HPF method (its settings: RHM, exponent, cells, pruning) used for scoring.
        candidate_layers: every layer id a set may contain.
        alpha: PCK alpha of the score.
        feature_cache_images: images whose features stay in memory between passes.
    """

    def __init__(self, matcher: HyperpixelFlow, candidate_layers: Sequence[int], alpha: float = 0.1,
                 feature_cache_images: int = 64) -> None:
        super().__init__()
        self.matcher = matcher
        self.candidate_layers = tuple(sorted({int(i) for i in candidate_layers}))
        self.alpha = float(alpha)
        self.store: LRUCache[dict[int, torch.Tensor]] = LRUCache(feature_cache_images)
        self.sets: list[LayerSet] = []
        self.pck = GroupedMean(1, 1)
        self._scores: list[float] = []

    def set_candidates(self, sets: Sequence[LayerSet]) -> None:
        """Choose the layer sets the next test pass scores."""
        unknown = sorted({l for s in sets for l in s} - set(self.candidate_layers))
        if unknown:
            raise ConfigError(f"layer ids {unknown} are not among the candidate layers {self.candidate_layers}")
        self.sets = [tuple(s) for s in sets]
        self.pck = GroupedMean(len(self.sets), 1).to(self.device)

    def _features(self, img: torch.Tensor, image_id: str) -> dict[int, torch.Tensor]:
        def compute() -> dict[int, torch.Tensor]:
            feats = self.matcher.backbone(img[None], self.candidate_layers)
            return {l: f[0] for l, f in zip(self.candidate_layers, feats)}

        return self.store.get_or_compute((image_id, tuple(img.shape[-2:])), compute)

    @torch.no_grad()
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        for i in range(batch["src_img"].shape[0]):
            src_img, trg_img = batch["src_img"][i], batch["trg_img"][i]
            src_id, trg_id = batch["src_path"][i], batch["trg_path"][i]
            src_feats = self._features(src_img, src_id)
            trg_feats = self._features(trg_img, trg_id)
            n = int(batch["n_kps"][i])
            for k, layers in enumerate(self.sets):
                src = self.matcher.hyperimage_from_features(src_feats, layers, tuple(src_img.shape[-2:]), src_id)
                trg = self.matcher.hyperimage_from_features(trg_feats, layers, tuple(trg_img.shape[-2:]), trg_id)
                pred = self.matcher.transfer(src, trg, batch["src_kps"][i, :n])
                score = pck_per_pair(pred[None], batch["trg_kps"][i : i + 1, :n], batch["pck_threshold"][i : i + 1], [self.alpha])
                self.pck.update(score, torch.tensor([k], device=score.device))

    def on_test_epoch_end(self) -> None:
        # synced across processes here, while the states are still on the device (NCCL)
        means, _ = self.pck.grouped()
        self._scores = [100.0 * float(v) for v in means[:, 0]]

    def scores(self) -> list[float]:
        """Mean PCK (in %) of each set of the last pass, in the order of :meth:`set_candidates`."""
        return list(self._scores)


def pairs_per_category(dataset: Dataset, k: int | None, seed: int) -> Dataset:
    """At most ``k`` random pairs per category (the paper's small-set experiments); None: all."""
    if k is None:
        return dataset
    by_cat: dict[str, list[int]] = {}
    for i, record in enumerate(dataset.records):
        by_cat.setdefault(record.category, []).append(i)
    rng = random.Random(seed)
    keep = sorted(i for ids in by_cat.values() for i in rng.sample(ids, min(k, len(ids))))
    subset = Subset(dataset, keep)
    subset.categories = dataset.categories  # type: ignore[attr-defined]
    return subset


def searched_method_config(layers: Sequence[int], score: float, cfg: DictConfig) -> str:
    """YAML of a method config extending ``hpf`` with the found layers (for ``--config-dir``)."""
    return (
        f"# Found by `python train.py model=hpf_search` on {cfg.dataset.name} ({cfg.model.split} split), "
        f"backbone {cfg.backbone.net.name}: PCK@{cfg.model.alpha:g} = {score:.2f}\n"
        "defaults:\n  - hpf\n  - _self_\n\n"
        f"layers: {list(layers)}\n"
    )


def run_search(cfg: DictConfig) -> dict[str, Any]:
    """Run the HPF layer beam search of ``cfg.model`` on ``cfg.dataset``; resumes from the run dir.

    Returns:
        dict with ``layers`` (the best set), ``score`` and ``beams``.
    """
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    model = cfg.model
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))

    dataset = pairs_per_category(instantiate(cfg.dataset, split=model.split), model.pairs_per_category, model.subset_seed)
    matcher: HyperpixelFlow = build_method(model.matcher)
    candidates = model.candidate_layers if model.candidate_layers is not None else matcher.backbone.layer_ids
    scorer = LayerSetScorer(matcher, candidates, model.alpha, model.feature_cache_images)
    logger = build_logger(cfg, run_dir)
    state = run_dir / "beam_state.json"
    kept = lambda trainer, module: (  # noqa: E731 - what an interruption keeps
        f"the scores of the depths finished are in {state}" if state.is_file() else "no depth was finished yet"
    )
    trainer = build_trainer(cfg, logger, run_dir, [ResumeOnInterrupt(kept, resume_command(run_dir, "train.py"))])
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
               "beams": [[[list(s), v] for s, v in beam] for beam in result.beams]}
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
