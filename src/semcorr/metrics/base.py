"""The interface of a metric family (PCK, flow accuracy, mask transfer), as detectron2's
``DatasetEvaluator``: the dataset declares the families it is scored with
(:attr:`semcorr.data.base.PairDataset.evaluators`), :func:`semcorr.metrics.evaluators.build_evaluators`
builds them, and every loop that scores pairs (the evaluation module, the HPF layer search's scorer)
feeds them batches and the method's outputs and reads their results. Each family owns its
torchmetrics states (summed across processes under DDP) and the names of its result keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn
from torchmetrics import Metric

from semcorr.methods.base import MatchOutput

#: The method outputs a family may need (:attr:`Evaluator.needs`); the flows are the ``dense``
#: directions of :meth:`semcorr.methods.base.Matcher.forward`.
NEEDS = {
    "points": "MatchOutput.points, the target points of the batch's query points src_kps",
    "forward": "MatchOutput.flow of dense='forward', the source -> target flow (B, 2, Hs, Ws)",
    "backward": "MatchOutput.flow of dense='backward', the target -> source flow (B, 2, Ht, Wt)",
}


class Evaluator(nn.Module):
    """One metric family over a stream of batches.

    Subclasses set :attr:`needs` and implement :meth:`update` and :meth:`compute`. States are
    torchmetrics ``Metric`` children (so Lightning moves them to the device, the resume journal
    finds them, and ``compute`` syncs them across processes).
    """

    #: what the family needs from the method besides the batch (keys of :data:`NEEDS`)
    needs: ClassVar[frozenset[str]] = frozenset()

    def update(self, batch: Mapping[str, Any], output: MatchOutput) -> dict[str, torch.Tensor]:
        """Add a batch of pairs.

        Args:
            batch: the collated batch (keys of :mod:`semcorr.data.base` and the dataset's own).
            output: the method's :class:`MatchOutput` for ``batch["src_kps"]``, with the ``flow``
                of the direction in :attr:`needs` when the family needs one.

        Returns:
            Per-pair values worth keeping with the pair's predictions (e.g. ``{"pck": (B, A)}``);
            may be empty.
        """
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        """The family's results as flat ``{key: value}`` (accuracies in %), synced across processes:
        every process must call it (the same number of times, in the same order)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget the batches added so far (every torchmetrics state of the family), for the next pass."""
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()
