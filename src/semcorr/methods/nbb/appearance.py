"""Common local appearance of a pair of corresponding regions (NBB paper, section 3.3, eqs. 4-6).

Each pair of regions (P_i, Q_i) is moved to the average of its two "styles": per channel, the
features of P_i are whitened with their own spatial mean/std over P_i and re-coloured with the
mean of the two means and the mean of the two standard deviations (AdaIN-like, applied locally).
All regions of a level are transformed at once; regions are padded to a common size and a mask
says which positions belong to each region.

The statistics are taken over the region only (its valid positions), and the transform is
applied to every gathered position, including the halo of neighbours that the patches of
border positions reach (eq. 3 compares patches, not single neurons).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Added to the standard deviations before dividing (channels that are constant in a region).
EPS = 1e-5


def masked_stats(feat: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel spatial mean and standard deviation over the masked positions of each region.

    Args:
        feat: (N, L, C) features of N regions, L positions each.
        mask: (N, L) bool, positions that belong to the region (at least one per region).

    Returns:
        ``(mu, sigma)``, each (N, C): mu(P) and sigma(P) of eqs. 4-6 (population std), from two
        batched products ``mask @ F`` and ``mask @ F^2``.
    """
    weights = (mask / mask.sum(dim=1, keepdim=True).clamp_min(1)).to(feat.dtype)[:, None]  # (N, 1, L)
    mu = torch.bmm(weights, feat).squeeze(1)
    second = torch.bmm(weights, feat * feat).squeeze(1)
    return mu, (second - mu * mu).clamp_min(0).sqrt()


def common_appearance(feat_a: Tensor, mask_a: Tensor, feat_b: Tensor, mask_b: Tensor) -> tuple[Tensor, Tensor]:
    """Transform corresponding regions to their common appearance (eqs. 4-6).

    ``C_A = (F_A - mu_A(P)) / sigma_A(P) * sigma_m + mu_m`` with ``mu_m = (mu_A(P) + mu_B(Q)) / 2``
    and ``sigma_m = (sigma_A(P) + sigma_B(Q)) / 2``; ``C_B`` likewise from ``F_B``.

    Args:
        feat_a: (N, La, C) features gathered around the regions P_i of image A.
        mask_a: (N, La) bool, positions of P_i (statistics are taken over these only).
        feat_b: (N, Lb, C) features around the regions Q_i of image B.
        mask_b: (N, Lb) bool, positions of Q_i.

    Returns:
        ``(C_A, C_B)`` of shapes (N, La, C) and (N, Lb, C): every gathered position transformed
        with its region pair's statistics. After the transform each region's masked positions
        have per-channel mean mu_m and std sigma_m (up to ``EPS``).
    """
    mu_a, sigma_a = masked_stats(feat_a, mask_a)
    mu_b, sigma_b = masked_stats(feat_b, mask_b)
    mu_m = 0.5 * (mu_a + mu_b)
    sigma_m = 0.5 * (sigma_a + sigma_b)
    return _affine(feat_a, mu_a, sigma_a, mu_m, sigma_m), _affine(feat_b, mu_b, sigma_b, mu_m, sigma_m)


def _affine(feat: Tensor, mu: Tensor, sigma: Tensor, mu_m: Tensor, sigma_m: Tensor) -> Tensor:
    """Eq. 4 as one fused multiply-add: (N, L, C) features, (N, C) statistics -> (N, L, C)."""
    scale = sigma_m / (sigma + EPS)
    return torch.addcmul((mu_m - mu * scale)[:, None], feat, scale[:, None])
