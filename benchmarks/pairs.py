"""What every benchmark shares: the project's configs, its datasets and its PCK rule.

A benchmark composes ``conf/evaluate.yaml`` with its defaults and the user's Hydra overrides, reads
the pairs through the project's dataset (so preprocessing and thresholds are exactly those of
``evaluate.py``), and scores with the project's PCK family (:class:`semcorr.metrics.pck.PCKEvaluator`,
one per variant a benchmark compares: :class:`Scores`), so a benchmark's PCK is the ``pck@A`` that
``evaluate.py`` reports for the same predictions. Run the benchmarks from the repository root or
from ``benchmarks/`` (this module sits beside them).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from semcorr.data.collate import collate_pairs
from semcorr.methods.base import MatchOutput
from semcorr.metrics.pck import PCKEvaluator

ROOT = Path(__file__).resolve().parents[1]
WILLOW = ROOT / "../shared/data/PF-dataset-WILLOW"


def add_pair_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every benchmark: pair sample, threads, clock and Hydra overrides."""
    parser.add_argument("--categories", nargs="*", default=None, help="keep these categories only")
    parser.add_argument("--pairs-per-category", type=int, default=None, help="pairs drawn per category (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the pair sample")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (one: see the README)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="cpu", help="cpu: process CPU time")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. method.levels=[5,4] backbone=vgg19")


def parse(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Parse the command line; ``key=value`` words that a list option swallowed (``--mls affine
    backbone=vgg19``) are Hydra overrides and move to ``overrides``."""
    args = parser.parse_args()
    for name, value in vars(args).items():
        if name != "overrides" and isinstance(value, list):
            words = [v for v in value if isinstance(v, str) and "=" in v]
            setattr(args, name, [v for v in value if v not in words] or None)
            args.overrides = [*words, *args.overrides]
    return args


def config(defaults: Sequence[str], overrides: Sequence[str]) -> DictConfig:
    """``conf/evaluate.yaml`` composed with ``defaults`` then ``overrides`` (PF-WILLOW of
    ``../shared/data`` unless the overrides choose another dataset).

    A group the user chooses replaces the benchmark's choice of it (``method=dia_paper`` for
    ``method=dia``); a default that sets a key (``backbone.net.weights=none``) stays under another
    group choice (``backbone=resnet101``) unless the user sets that key too. A dataset choice drops
    PF-WILLOW with its root."""
    chosen = {o.split("=", 1)[0] for o in overrides if "=" in o and "." not in o.split("=", 1)[0]}
    pfwillow = [] if "dataset" in chosen else ["dataset=pfwillow", f"dataset.root={WILLOW}"]
    base = pfwillow + [o for o in ["logger=none", *defaults] if o.split("=", 1)[0] not in chosen]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("evaluate", overrides=[*base, *overrides, "paths.output_dir=/tmp/semcorr-bench"])


def pick(dataset, per_category: int | None, seed: int) -> list[int]:
    """Pair indices of ``dataset``: all, or ``per_category`` pairs of each category drawn with
    ``seed`` (sorted)."""
    if per_category is None:
        return list(range(len(dataset)))
    by_category: dict[str, list[int]] = defaultdict(list)
    for i, record in enumerate(dataset.records):
        by_category[record.category].append(i)
    rng = random.Random(seed)
    return sorted(i for ids in by_category.values() for i in rng.sample(ids, min(per_category, len(ids))))


def setup(args: argparse.Namespace, defaults: Sequence[str]) -> tuple[DictConfig, object, list[int]]:
    """Threads, config, dataset and the pair sample of a benchmark run."""
    from hydra.utils import instantiate

    torch.set_num_threads(args.threads)
    cfg = config(defaults, args.overrides)
    if args.categories:
        cfg.dataset.categories = list(args.categories)
    dataset = instantiate(cfg.dataset)
    return cfg, dataset, pick(dataset, args.pairs_per_category, args.seed)


def one_pair(sample: dict) -> dict:
    """A dataset sample as a batch of one pair (:func:`~semcorr.data.collate.collate_pairs`)."""
    return collate_pairs([sample])


class Scores:
    """PCK of several variants (DIA's levels, NBB's densification rules) on the same pairs, each
    scored by its own :class:`~semcorr.metrics.pck.PCKEvaluator` of the dataset (its categories, the
    run's alphas and ``metrics.resolution``).

    Args:
        dataset: the benchmark's dataset.
        alphas: PCK alphas.
        resolution: ``metrics.resolution``.
    """

    def __init__(self, dataset, alphas: Sequence[float], resolution: str = "resized") -> None:
        self.dataset, self.alphas, self.resolution = dataset, [float(a) for a in alphas], resolution
        self.evaluators: dict = {}

    def add(self, variant, batch: dict, points: torch.Tensor) -> torch.Tensor:
        """Score one pair's predicted target points (N, 2) under ``variant``; ``batch`` is the pair
        collated (:func:`one_pair`, once per pair for all its variants); returns its (A,) PCK."""
        if variant not in self.evaluators:
            self.evaluators[variant] = PCKEvaluator.from_dataset(self.dataset, self.alphas, self.resolution)
        return self.evaluators[variant].update(batch, MatchOutput(points=points[None]))["pck"][0]

    def summary(self, variant, category: str | None = None) -> str:
        """``pck@A`` of a variant (of one category) as ``a/b/c`` percentages."""
        results = self.evaluators[variant].compute()
        suffix = f"/{category}" if category is not None else ""
        return "/".join(f"{results[f'pck@{a:g}{suffix}']:.1f}" for a in self.alphas)
