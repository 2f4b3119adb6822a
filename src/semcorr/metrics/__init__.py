"""Metrics by family, each an :class:`~semcorr.metrics.base.Evaluator` that owns its torchmetrics
states and result keys: :mod:`.pck` (PCK, three averages), :mod:`.flow` (TSS flow accuracy),
:mod:`.masks` (mask transfer, Caltech-101 protocols); :mod:`.evaluators` builds the families a
dataset declares (:mod:`.base` is the interface); :mod:`.warping` warps images and masks
through flows and resizes flows.
"""
