"""Neural patch blending of SAM-Net (eq. 8): source features mixed with confidence-weighted target
features fetched through the affine fields of the 3x3 neighbourhood ``N_i``.

``B_i = (1 - lambda) F^s_i + lambda sum_{j in N_i} alpha_j F^t_{i + g_j} / sum_{j in N_i} alpha_j``
with ``i + g_j = j + f_j + A_j (i - j)``: the target position of cell ``i`` predicted by the affine
model of its neighbour ``j`` (the paper writes ``g_j = (A_j - I)(i - j) + f_j``, the same point).
Neighbours outside the feature map get zero weight (``F.unfold`` zero-pads the confidences).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .affine import FIELD_CHANNELS, cell_grid, sample_cells, window_offsets


def neighbour_positions(field: Tensor, radius: int = 1) -> Tensor:
    """Target position of every cell as predicted by each neighbour's affine model.

    Args:
        field: (B, 6, h, w).
        radius: neighbourhood radius (1: the paper's 3x3 ``N_i``).

    Returns:
        (B, K, h, w, 2), K = (2r+1)^2 in :func:`~.affine.window_offsets` order: entry k at cell
        ``i`` is ``j + f_j - A_j e`` for the neighbour ``j = i + e``, ``e = offsets[k]``.
    """
    b, _, h, w = field.shape
    size = 2 * radius + 1
    k = size * size
    cols = F.unfold(field, size, padding=radius).reshape(b, FIELD_CHANNELS, k, h, w)  # field at i + e
    a = cols[:, :4].reshape(b, 2, 2, k, h, w)
    f = cols[:, 4:]  # (B, 2, K, h, w)
    offsets = window_offsets(radius, field.device, field.dtype)  # (K, 2)
    neighbour = cell_grid(h, w, field.device, field.dtype)[:, None] + offsets.T[:, :, None, None]  # (2, K, h, w)
    ae = torch.einsum("brckhw,kc->brkhw", a, offsets)
    return (neighbour[None] + f - ae).permute(0, 2, 3, 4, 1)


def blend_features(src: Tensor, trg: Tensor, field: Tensor, alpha: Tensor, lam: float, radius: int = 1) -> Tensor:
    """Eq. 8: the blended feature ``B^{s<-t,l}``.

    Args:
        src: (B, C, h, w) source features ``F^s``.
        trg: (B, C, h', w') target features ``F^t``.
        field: (B, 6, h, w) current field ``T^l``.
        alpha: (B, 1, h, w) confidence ``alpha^l`` (eq. 9), positive.
        lam: ``lambda^l``.
        radius: neighbourhood radius (1: 3x3 ``N_i``).

    Returns:
        (B, C, h, w). With the identity field it is ``(1 - lam) F^s + lam F^t``; with a constant
        translation ``f`` it is ``(1 - lam) F^s_i + lam F^t(i + f)``.
    """
    b, _, h, w = field.shape
    size = 2 * radius + 1
    sampled = sample_cells(trg, neighbour_positions(field, radius))  # (B, C, K, h, w)
    weights = F.unfold(alpha, size, padding=radius).reshape(b, 1, size * size, h, w)
    weights = weights / weights.sum(dim=2, keepdim=True).clamp_min(1e-12)
    return (1.0 - lam) * src + lam * (sampled * weights).sum(dim=2)
