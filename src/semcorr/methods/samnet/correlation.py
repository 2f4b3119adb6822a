"""Matching cost of SAM-Net: the local correlation of eq. 5 and the confidence of eq. 9.

Eq. 5 mixes the cosine similarity of the source feature ``F^s_i`` and of the attribute-transferred
source feature ``F^{s<-t,l}_i`` with the warped target feature ``F^{t,l}_p`` over a 9x9 window
``P_i``, weighted by ``lambda^l = 1 - exp(-l)``. Since the cosine is linear in its (normalised)
first argument, the two cosines are computed at once as one inner product with
``(1 - lambda) F^s/|F^s| + lambda F^{s<-t}/|F^{s<-t}|``.

How it is computed: the cosines of every source cell with every target cell (one matrix product,
:func:`correlation_volume`), then each source cell's similarity map is sampled bilinearly at the
window positions (:func:`sample_volume`, :func:`local_correlation`). The cost does not grow with
the window (K entries) times the channels, which matters for multi-layer features of several
hundred channels. Eq. 5's mix is linear in the two cosines, so the network computes the volume of
``F^s`` once per pair and mixes it with that of ``F^{s<-t,l}`` (:func:`mixed_volume`); with
``lambda = 0`` no second volume is needed.

Choices where the paper is silent:

* ``F^{t,l}_p`` for ``p`` in ``P_i``: the target on the window of cell ``i`` transformed by the
  current field, positions ``i + f_i + A_i d``, ``d`` in {-4..4}^2 feature cells times the window
  ``dilation`` (RTN-style: the window follows both the translation and the affine part, so ``A``
  matters for matching; ``dilation`` > 1 is the coarse search of :class:`~.network.SAMNet`).
  Target features are L2-normalised per cell and the cosine map is interpolated bilinearly
  between cells (at integer positions this is the cosine itself).
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

from .affine import cell_grid, identity_field, sample_cells, window_offsets, window_positions

#: Readings of ``lambda^l`` in eq. 5 (:func:`matching_weight`).
ATTRIBUTE_WEIGHTS = ("paper", "zero")


def attribute_weight(iteration: int) -> float:
    """``lambda^l = 1 - exp(-l)`` of eqs. 5 and 8 for iteration ``l`` (1-based)."""
    return 1.0 - math.exp(-float(iteration))


def matching_weight(iteration: int, reading: str = "paper") -> float:
    """``lambda^l`` of eq. 5: ``"paper"`` = :func:`attribute_weight`, ``"zero"`` = 0 (the matching
    reads the source features only: the paper's "SAM-Net wo/Att." for the matching)."""
    return attribute_weight(iteration) if reading == "paper" else 0.0


def correlation_volume(src: Tensor, trg: Tensor) -> Tensor:
    """Cosine similarity of every source cell with every target cell.

    Args:
        src: (B, C, h, w) source-side features (normalised here).
        trg: (B, C, h', w') target features (normalised here).

    Returns:
        (B, h * w, h', w'): entry (b, y * w + x) is the similarity map of source cell (x, y).
    """
    b, c, h, w = src.shape
    th, tw = trg.shape[-2:]
    query = F.normalize(src, dim=1).reshape(b, c, h * w).transpose(1, 2)
    volume = torch.bmm(query, F.normalize(trg, dim=1).reshape(b, c, th * tw))
    return volume.reshape(b, h * w, th, tw)


def mixed_volume(src_volume: Tensor, attr: Tensor, trg: Tensor, lam: float) -> Tensor:
    """Eq. 5's volume: ``(1 - lambda) cos(F^s, F^t) + lambda cos(F^{s<-t}, F^t)`` for every cell pair.

    Args:
        src_volume: (B, h * w, h', w') :func:`correlation_volume` of ``F^s`` and ``F^t``.
        attr: (B, C, h, w) ``F^{s<-t,l}``.
        trg: (B, C, h', w') ``F^t``.
        lam: ``lambda^l`` in [0, 1]; 0 returns ``src_volume`` (``attr`` is not read).

    Returns:
        (B, h * w, h', w').
    """
    if lam == 0.0:
        return src_volume
    return (1.0 - lam) * src_volume + lam * correlation_volume(attr, trg)


def sample_volume(volume: Tensor, positions: Tensor) -> Tensor:
    """Each source cell's similarity map sampled at its own target positions (zero outside the map).

    Args:
        volume: (B, h * w, h', w') from :func:`correlation_volume`.
        positions: (B, K, h, w, 2) target cell coordinates (x, y) per source cell.

    Returns:
        (B, K, h, w).
    """
    b, k, h, w, _ = positions.shape
    maps = volume.reshape(b * h * w, 1, *volume.shape[-2:])
    points = positions.permute(0, 2, 3, 1, 4).reshape(b * h * w, k, 2)
    return sample_cells(maps, points).reshape(b, h, w, k).permute(0, 3, 1, 2)


def local_correlation(volume: Tensor, field: Tensor, radius: int = 4, dilation: int = 1) -> Tensor:
    """Eq. 5 over the (2r+1)^2 window of every source cell, transformed by the field.

    Args:
        volume: (B, h * w, h', w') eq.-5 similarities of every cell pair (:func:`mixed_volume`).
        field: (B, 6, h, w) current source -> target field.
        radius: window radius r (4: the paper's 9x9 ``P_i``).
        dilation: spacing of the window entries in cells (1: the paper's window).

    Returns:
        (B, K, h, w), K = (2r+1)^2, values in [-1, 1]; channel K // 2 is the window centre, entry k
        the similarity at ``i + f_i + A_i (dilation * offsets[k])``.
    """
    offsets = window_offsets(radius, field.device, field.dtype) * float(dilation)
    return sample_volume(volume, window_positions(field, offsets))


def argmax_field(volume: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """The field sending every source cell to its most similar target cell over the whole map (``A = I``).

    Args:
        volume: (B, h * w, h', w') from :func:`correlation_volume`.
        grid_hw: (h, w) of the source grid.

    Returns:
        (B, 6, h, w); ``i + f_i`` is the argmax of cell ``i``'s similarity map (first on ties).
    """
    b, _, th, tw = volume.shape
    h, w = grid_hw
    best = volume.reshape(b, h * w, th * tw).argmax(dim=2).reshape(b, h, w)
    target = torch.stack([best % tw, torch.div(best, tw, rounding_mode="floor")], dim=1).to(volume.dtype)
    field = identity_field(b, h, w, volume.device, volume.dtype)
    field[:, 4:] = target - cell_grid(h, w, volume.device, volume.dtype)[None]
    return field


def voted_translation(volume: Tensor, grid_hw: tuple[int, int]) -> Tensor:
    """The translation most cells' best matches agree on: a Hough vote of the argmax offsets.

    Every source cell votes for the offset (in whole cells) to its most similar target cell with
    weight ``clamp(cos, 0)^3`` (HPF's similarity exponent); the votes are smoothed with the 3x3
    binomial kernel ``[1, 2, 1]^T [1, 2, 1] / 16`` (neighbouring offsets support each other, the
    centre counts most, so a lone peak keeps its place) and the top one wins.

    Args:
        volume: (B, h * w, h', w') from :func:`correlation_volume`.
        grid_hw: (h, w) of the source grid.

    Returns:
        (B, 2) translation (x, y) in cells.
    """
    b, _, th, tw = volume.shape
    h, w = grid_hw
    best, index = volume.reshape(b, h * w, th * tw).max(dim=2)
    grid = cell_grid(h, w, volume.device, volume.dtype).reshape(2, h * w)
    dx = (index % tw).to(volume.dtype) - grid[0]  # in -(w - 1) .. tw - 1
    dy = torch.div(index, tw, rounding_mode="floor").to(volume.dtype) - grid[1]
    bins_x, bins_y = w + tw - 1, h + th - 1
    bins = (dy + (h - 1)).long() * bins_x + (dx + (w - 1)).long()  # (B, h * w)
    votes = volume.new_zeros(b, bins_y * bins_x).scatter_add_(1, bins, best.clamp(min=0.0).pow(3))
    taps = volume.new_tensor([1.0, 2.0, 1.0])
    kernel = (taps[:, None] * taps[None, :] / 16.0).view(1, 1, 3, 3)
    votes = F.conv2d(votes.reshape(b, 1, bins_y, bins_x), kernel, padding=1).reshape(b, -1)
    top = votes.argmax(dim=1)
    return torch.stack([(top % bins_x) - (w - 1), torch.div(top, bins_x, rounding_mode="floor") - (h - 1)], dim=1).to(volume.dtype)


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
