"""Which best buddies the dense map interpolates: all of them, or those consistent with their
neighbours (not part of the NBB paper, which stops at sparse pairs; semcorr's choice, configurable).

The paper produces sparse pairs; keypoint transfer, the dense flow and the warped pictures need a
dense map, which :mod:`.mls` interpolates through the pairs. MLS passes through every control
point exactly, so one wrong buddy next to a keypoint decides its prediction. Rules:

- ``"all"``: every final buddy is a control point (the reference code feeds its full list to MLS).
- ``"local"``: a buddy is an outlier when its own image disagrees with the MLS prediction of the
  other buddies at its position (:func:`~.mls.leave_one_out`) by more than ``threshold`` pixels.
  Outliers are removed and the test repeated on the rest, up to ``rounds`` times or until nothing
  changes (removing a bad buddy can reveal others); then every removed buddy is tested once more
  against the MLS map of the buddies kept, and those within ``threshold`` come back (a good buddy
  next to an outlier is removed with it in the first round, because the outlier pulled its
  prediction). Local, not global: MLS weights fall off with distance, so a non-rigid deformation
  (the paper's cross-domain pairs: a cow's head and a horse's) keeps its buddies while a lone
  crossing pair goes. If fewer than ``min_pairs`` would remain, the set is left as it is.

The threshold comes from the pyramid's geometry (:meth:`NeuralBestBuddies` sets it): a number of
cells of the coarsest level matched, whose pairs decide every finer pair's search region.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .mls import leave_one_out, mls_map

#: The densification rules.
DENSIFY_RULES = ("all", "local")


def consistent_buddies(
    src: Tensor,
    trg: Tensor,
    rule: str,
    threshold: float,
    alpha: float = 1.0,
    kind: str = "affine",
    rounds: int = 3,
    min_pairs: int = 3,
) -> Tensor:
    """The buddies the dense map should interpolate.

    Args:
        src: (M, 2) buddy positions (x, y) in the source image.
        trg: (M, 2) their partners in the target image.
        rule: ``"all"`` or ``"local"`` (module docstring).
        threshold: largest leave-one-out disagreement in pixels (``"local"``).
        alpha / kind: the MLS weight exponent and kind of the leave-one-out predictions.
        rounds: most rejection rounds.
        min_pairs: fewest buddies a rejection may leave.

    Returns:
        (M,) bool mask of the buddies kept.

    Raises:
        ValueError: unknown rule.
    """
    if rule not in DENSIFY_RULES:
        raise ValueError(f"unknown densification rule {rule!r}; valid: {', '.join(DENSIFY_RULES)}")
    keep = torch.ones(src.shape[0], dtype=torch.bool, device=src.device)
    if rule == "all":
        return keep
    for _ in range(rounds):
        index = torch.nonzero(keep).flatten()
        if index.numel() <= min_pairs:
            break
        predicted = leave_one_out(src[index], trg[index], alpha, kind)
        bad = (predicted - trg[index].to(predicted)).norm(dim=1) > threshold
        if not bad.any() or index.numel() - int(bad.sum()) < min_pairs:
            break
        keep[index[bad]] = False
    removed = torch.nonzero(~keep).flatten()
    if removed.numel():
        predicted = mls_map(src[keep], trg[keep], src[removed], alpha, kind)
        keep[removed[(predicted - trg[removed].to(predicted)).norm(dim=1) <= threshold]] = True
    return keep
