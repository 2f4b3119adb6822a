"""Matching cost of SAM-Net: the local correlation of eq. 5 and the confidence of eq. 9.

Eq. 5 mixes the cosine similarity of the source feature ``F^s_i`` and of the attribute-transferred
source feature ``F^{s<-t,l}_i`` with the warped target feature ``F^{t,l}_p`` over a 9x9 window
``P_i``, weighted by ``lambda^l = 1 - exp(-l)``. Since the cosine is linear in its (normalised)
first argument, the two cosines are computed at once as one inner product with
``(1 - lambda) F^s/|F^s| + lambda F^{s<-t}/|F^{s<-t}|``.

Choices where the paper is silent:

* ``F^{t,l}_p`` for ``p`` in ``P_i``: the target feature on the window of cell ``i`` transformed
  by the current field, ``F^t(i + f_i + A_i d)``, ``d`` in {-4..4}^2 feature cells (RTN-style:
  the window follows both the translation and the affine part, so ``A`` matters for matching).
  The target feature is L2-normalised after bilinear sampling.
* "These similarities undergo L2 normalization [42]": ReLU, then L2 normalisation over the 81
  window entries (the rule of the cited reference), :func:`normalise_correlation`.
* The confidence (eq. 9) is the softmax over the window of the raw (un-normalised) eq.-5
  correlation, read at the window centre. It is computed from the correlation ``C^l`` that
  produced ``T^l`` (sampled at ``T^{l-1}``); re-correlating at ``T^l`` would double the cost.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .affine import sample_window, window_offsets


def attribute_weight(iteration: int) -> float:
    """``lambda^l = 1 - exp(-l)`` of eqs. 5 and 8 for iteration ``l`` (1-based)."""
    return 1.0 - math.exp(-float(iteration))


def local_correlation(src: Tensor, attr: Tensor, trg: Tensor, field: Tensor, lam: float, radius: int = 4) -> Tensor:
    """Eq. 5: mixed cosine similarity over the (2r+1)^2 window of every source cell.

    Args:
        src: (B, C, h, w) source features ``F^s``.
        attr: (B, C, h, w) attribute-transferred source features ``F^{s<-t,l}``.
        trg: (B, C, h', w') target features ``F^t`` (sampled through ``field``).
        field: (B, 6, h, w) current source -> target field.
        lam: ``lambda^l`` in [0, 1].
        radius: window radius r (4: the paper's 9x9 ``P_i``).

    Returns:
        (B, K, h, w), K = (2r+1)^2, values in [-1, 1]; channel K // 2 is the window centre.
    """
    offsets = window_offsets(radius, src.device, src.dtype)
    window = F.normalize(sample_window(trg, field, offsets), dim=1)  # (B, C, K, h, w)
    query = (1.0 - lam) * F.normalize(src, dim=1) + lam * F.normalize(attr, dim=1)
    return torch.einsum("bckhw,bchw->bkhw", window, query)


def normalise_correlation(corr: Tensor) -> Tensor:
    """ReLU and L2 normalisation over the window entries (the matching network's input).

    Args:
        corr: (B, K, h, w).

    Returns:
        (B, K, h, w), unit norm along K (zero where every entry was <= 0).
    """
    return F.normalize(F.relu(corr), dim=1)


def confidence(corr: Tensor) -> Tensor:
    """Eq. 9: ``alpha_i = exp(C_i(i)) / sum_{p in P_i} exp(C_i(p))``.

    Args:
        corr: (B, K, h, w) eq.-5 correlation (centre entry at K // 2).

    Returns:
        (B, 1, h, w) confidence in (0, 1).
    """
    centre = corr.shape[1] // 2
    return torch.softmax(corr, dim=1)[:, centre : centre + 1]
