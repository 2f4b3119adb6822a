"""Latent image reconstruction (section 4.3, eqs. 4-6): features of A' and B at the next finer level.

For A' (B is symmetric, with the roles of A and B' swapped and phi_{b->a}):

1. warp: ``F_B'^L(phi_{a->b}^L)``, the B' features at level L carried onto A's grid by patch
   voting through the NNF (:func:`~.aggregate.vote` with the level's patch size, the reference
   code's ``avg_vote``);
2. deconvolve: ``R_B'^{L-1} = argmin_R ||CNN_{L-1}^L(R) - F_B'^L(phi_{a->b}^L)||^2`` (eq. 5,
   :class:`~.deconv.Deconvolution`, in the paper's form or the reference code's);
3. blend: ``F_A'^{L-1} = F_A^{L-1} o W + R_B'^{L-1} o (1 - W)`` (eq. 4) with
   ``W = alpha^{L-1} M`` (eq. 6), ``M = sigmoid(kappa (|F_A^{L-1}|^2_norm - tau))``
   (:func:`response_mask`), ``|F|^2_norm`` the squared feature norm min-max normalised to [0, 1]
   over the map (the reference code's normalisation), kappa = 300, tau = 0.05. The blend weights
   default to ``{0.8, 0.7, 0.6, 0.1}`` for L = 4, 3, 2, 1. (The reference code thresholds M at
   tau instead of the paper's sigmoid; the sigmoid is used here.)

When both directions' maps have the same shape they are deconvolved as one batch of two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .aggregate import vote
from .deconv import Deconvolution

#: Floor on the range of squared norms in :func:`response_mask` (a constant map gives M(tau)).
_EPS = 1e-12


def response_mask(feature: Tensor, kappa: float = 300.0, tau: float = 0.05) -> Tensor:
    """``M(x) = 1 / (1 + exp(-kappa (|F(x)|^2_norm - tau)))`` (section 4.3).

    Args:
        feature: (C, H, W) e.g. F_A^{L-1}.
        kappa: sigmoid slope.
        tau: threshold on the normalised squared norm.

    Returns:
        (H, W) values in (0, 1).
    """
    energy = feature.pow(2).sum(0)
    low, high = energy.min(), energy.max()
    normalised = (energy - low) / (high - low).clamp_min(_EPS)
    return torch.sigmoid(kappa * (normalised - tau))


def blend(content: Tensor, detail: Tensor, alpha: float, kappa: float = 300.0, tau: float = 0.05) -> Tensor:
    """Eq. 4 with eq. 6: ``content o W + detail o (1 - W)``, ``W = alpha * M(content)``.

    Args:
        content: (C, H, W) e.g. F_A^{L-1}.
        detail: (C, H, W) e.g. R_B'^{L-1}.
        alpha: the level's alpha.
        kappa / tau: see :func:`response_mask`.

    Returns:
        (C, H, W) e.g. F_A'^{L-1}.
    """
    weight = alpha * response_mask(content, kappa, tau)
    return content * weight + detail * (1.0 - weight)


def reconstruct_latents(
    deconv: Deconvolution,
    uppers: Sequence[Tensor],
    nnfs: Sequence[Tensor],
    patch: int,
    contents: Sequence[Tensor],
    inits: Sequence[Tensor],
    alpha: float,
    kappa: float,
    tau: float,
) -> list[Tensor]:
    """Warp, deconvolve and blend for each direction (eqs. 4-6).

    For A': ``uppers = F_B'^L``, ``nnfs = phi_{a->b}^L``, ``contents = F_A^{L-1}``; for B:
    ``F_A^L``, ``phi_{b->a}^L``, ``F_B'^{L-1}``.

    Args:
        deconv: the deconvolution from level L to L-1.
        uppers: per direction, (C_L, Ht_L, Wt_L) target-side features at level L.
        nnfs: per direction, (Hs_L, Ws_L, 2) long NNF at level L.
        patch: level L's patch size (the voting patch of the warp).
        contents: per direction, (C_{L-1}, Hs_{L-1}, Ws_{L-1}) source-side features at L-1.
        inits: per direction, the deconvolution's start point (shaped like its variable).
        alpha: alpha^{L-1}.
        kappa / tau: see :func:`response_mask`.

    Returns:
        Per direction, (C_{L-1}, Hs_{L-1}, Ws_{L-1}) latent features (F_A'^{L-1}, F_B^{L-1}).
    """
    targets = [vote(upper, nnf, patch) for upper, nnf in zip(uppers, nnfs)]
    if len({tuple(t.shape) for t in targets}) == 1 and len({tuple(i.shape) for i in inits}) == 1:
        details = list(deconv(torch.stack(targets), torch.stack(list(inits))))
    else:
        details = [deconv(t[None], i[None])[0] for t, i in zip(targets, inits)]
    return [blend(content, detail, alpha, kappa, tau) for content, detail in zip(contents, details)]
