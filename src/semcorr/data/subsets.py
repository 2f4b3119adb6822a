"""Stratified, seeded subsets of a benchmark's pairs (quick runs, small-set experiments).

A subset is drawn per category, never "the first N pairs" (on SPair-71k the first N pairs are all
one category; on PF-WILLOW the first 9 are one sub-class), and a run on a subset says so in its
protocol record. The rule, deterministic for a seed:

1. categories in the order of their first pair; one ``random.Random(seed)`` draws, category after
   category, ``rng.sample(pairs of the category, min(k, n))`` with ``k = pairs_per_category``
   (all ``n`` pairs, in drawn order, when ``k`` is None);
2. with ``max_pairs = N``, the drawn lists are interleaved round-robin (one pair of each
   category in turn, categories in the order above) and the first N kept: as even a spread over
   the categories as N allows;
3. the kept pairs keep their dataset order.

Step 1 is the rule ``python train.py model=hpf_search`` used for the paper's small-set
experiments before it moved here, so its README result still reproduces.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence

from semcorr.errors import ConfigError


def stratified_subset(
    categories: Sequence[str],
    pairs_per_category: int | None = None,
    max_pairs: int | None = None,
    seed: int = 0,
) -> list[int]:
    """Indices of the pairs kept (ascending), see the module docstring.

    Args:
        categories: the category of every pair, in dataset order.
        pairs_per_category: at most this many pairs per category (None: all).
        max_pairs: at most this many pairs in all (None: no cap).
        seed: seed of the draw.

    Returns:
        Sorted indices into ``categories``; all of them when both limits are None.
    """
    for name, value in (("pairs_per_category", pairs_per_category), ("max_pairs", max_pairs)):
        if value is not None and int(value) < 1:
            raise ConfigError(f"dataset.{name} must be >= 1 or null (all pairs), got {value}")
    if pairs_per_category is None and max_pairs is None:
        return list(range(len(categories)))
    by_category: dict[str, list[int]] = {}
    for i, category in enumerate(categories):
        by_category.setdefault(category, []).append(i)
    rng = random.Random(int(seed))
    drawn = [
        rng.sample(ids, len(ids) if pairs_per_category is None else min(int(pairs_per_category), len(ids)))
        for ids in by_category.values()
    ]
    if max_pairs is not None:
        spread = [i for group in itertools.zip_longest(*drawn) for i in group if i is not None]
        drawn = [spread[: int(max_pairs)]]
    return sorted(i for ids in drawn for i in ids)
