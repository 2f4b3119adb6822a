"""The metric families by name, and the evaluators of a dataset (detectron2's ``build_evaluator``).

A dataset names the families it is scored with (:attr:`semcorr.data.base.PairDataset.evaluators`:
``("pck",)`` for keypoint benchmarks, ``("flow",)`` for TSS, ``("masks",)`` for Caltech-101,
``("pck", "masks")`` for CUB with masks); :func:`build_evaluators` builds them from the dataset and
the run's metric settings. Loops then never branch on the dataset: they ask the method, in one
call, for what the families need (:func:`dense_request`), feed every family the batch and the
output, and merge the families' results.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from semcorr.errors import ConfigError
from semcorr.metrics.base import Evaluator
from semcorr.metrics.flow import FlowEvaluator
from semcorr.metrics.masks import MaskEvaluator
from semcorr.metrics.pck import PCKEvaluator

#: Family name -> its evaluator class.
FAMILIES: dict[str, type[Evaluator]] = {"pck": PCKEvaluator, "flow": FlowEvaluator, "masks": MaskEvaluator}


def build_evaluators(dataset: Any, alphas: Sequence[float], resolution: str = "resized") -> nn.ModuleDict:
    """The evaluators of ``dataset``'s families, by family name.

    Args:
        dataset: a :class:`~semcorr.data.base.PairDataset` (its ``evaluators``, categories, fields).
        alphas: PCK alphas.
        resolution: ``metrics.resolution`` of the PCK family.

    Returns:
        ``nn.ModuleDict`` family name -> :class:`Evaluator` (empty for datasets without ground truth).
    """
    out = {}
    for name in dataset.evaluators:
        if name not in FAMILIES:
            raise ConfigError(f"{dataset.name}: unknown metric family {name!r}; valid: {', '.join(FAMILIES)}")
        if name == "pck":
            out[name] = PCKEvaluator.from_dataset(dataset, alphas, resolution)
        else:
            out[name] = FAMILIES[name].from_dataset(dataset)
    return nn.ModuleDict(out)


def dense_request(evaluators: nn.ModuleDict) -> str | None:
    """The ``dense`` argument of the method call the evaluators need: ``"forward"`` (TSS flow
    accuracy), ``"backward"`` (mask transfer by warping) or None (points only).

    Raises:
        ConfigError: the families need both directions (one call gives one flow).
    """
    directions = sorted({n for e in evaluators.values() for n in e.needs} - {"points"})
    if len(directions) > 1:
        raise ConfigError(
            f"the metric families {', '.join(evaluators)} need the dense flow in both directions, which one method "
            "call does not give; evaluate them in two runs"
        )
    return directions[0] if directions else None
