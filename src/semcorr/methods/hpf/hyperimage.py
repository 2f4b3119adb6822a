"""Hyperimages: multi-layer features on the base layer's grid (cached per image by the matcher).

The hyperimage of HPF (eq. 1) concatenates the features of the selected layers along channels:
the smallest id is the base; every other layer is upsampled to the base size (bilinear,
``align_corners=True``) first. No per-layer normalisation.

:class:`HyperImage` keeps the raw layer features (the straightforward path builds the full
concatenation from them) and what the fast path needs instead of the concatenation: layers of the
base's jump merged into the base features; coarser layers grouped by jump, thin groups
upsampled onto the kept grid and merged into the base features too, wide ones kept coarse with
the 1-D interpolation taps that map them onto the kept base rows and columns; and the inverse
norm of every concatenated hyperpixel vector.

Bilinear upsampling with ``align_corners=True`` is separable: output ``o`` of an axis of length
``n_out`` reads input ``floor(s)`` and ``floor(s) + 1`` (clamped) with weights ``1 - frac(s)`` and
``frac(s)``, ``s = o (n_in - 1) / (n_out - 1)``. :func:`linear_taps` reproduces those taps so the
fast path can apply the same interpolation to similarity matrices (see :mod:`.similarity`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .geometry import HyperpixelGrid, hyperpixel_grid

#: Norms below this count as this (a zero feature vector gets similarity 0, not NaN).
NORM_EPS = 1e-12
#: Channels upsampled at once when computing norms (bounds the temporary memory).
NORM_CHUNK = 512
#: Coarse layer groups with at most this many channels are upsampled and joined to the base.
FOLD_CHANNELS = 64


@dataclass(frozen=True)
class InterpTaps:
    """1-D linear interpolation (``align_corners=True``) onto a range of output positions.

    Attributes:
        index0 / index1: (n,) int64 input positions read by each output position.
        weight0 / weight1: (n,) float32 their weights (sum 1).
        n_in: input length.
    """

    index0: Tensor
    index1: Tensor
    weight0: Tensor
    weight1: Tensor
    n_in: int

    def matrix(self) -> Tensor:
        """Dense interpolation matrix.

        Returns:
            (n, n_in) float32 ``M`` with ``M @ v`` the interpolated values of a length-``n_in``
            signal ``v`` at the output positions.
        """
        n = self.index0.numel()
        m = torch.zeros(n, self.n_in, dtype=torch.float32, device=self.index0.device)
        rows = torch.arange(n, device=m.device)
        m.index_put_((rows, self.index0), self.weight0, accumulate=True)
        m.index_put_((rows, self.index1), self.weight1, accumulate=True)
        return m


def linear_taps(n_in: int, n_out: int, keep: range, device: torch.device | str | None = None) -> InterpTaps:
    """Taps of ``F.interpolate(..., mode="bilinear", align_corners=True)`` along one axis.

    Args:
        n_in: input length.
        n_out: full output length (the base map's extent on this axis).
        keep: the output positions wanted (e.g. the kept base rows).
        device: where the tensors go.

    Returns:
        :class:`InterpTaps` for the positions in ``keep``.
    """
    out = torch.arange(keep.start, keep.stop, device=device, dtype=torch.float32)
    if n_out > 1:
        scale = torch.tensor(float(n_in - 1), dtype=torch.float32) / float(n_out - 1)
        src = out * scale.to(device)
    else:
        src = torch.zeros_like(out)
    index0 = src.long().clamp(max=n_in - 1)
    frac = src - index0.float()
    index1 = torch.where(index0 < n_in - 1, index0 + 1, index0)
    return InterpTaps(index0, index1, 1.0 - frac, frac, n_in)


@dataclass(frozen=True)
class CoarseGroup:
    """Layers of one jump other than the base's, concatenated.

    Attributes:
        features: (C, h, w) the concatenated raw features.
        rows: taps from the ``h`` feature rows onto the kept base rows.
        cols: taps from the ``w`` feature columns onto the kept base columns.
    """

    features: Tensor
    rows: InterpTaps
    cols: InterpTaps


@dataclass(frozen=True)
class HyperImage:
    """Hyperpixels of one image.

    Attributes:
        grid: geometry of the kept hyperpixels (``N = grid.size``).
        layers: the raw features of the selected layers in id order, each (C_l, h_l, w_l)
            (``layers[0]`` is the base), or ``()`` when built without them (fast path only).
        base: (N, C0) kept base-resolution features: the base, layers of the base's jump, and
            thin coarser groups upsampled (see ``fold_channels`` of :func:`build_hyperimage`).
        groups: the other layers grouped by jump, in order of first appearance, kept coarse.
        inv_norm: (N,) ``1 / max(||f||, NORM_EPS)`` of every concatenated hyperpixel vector ``f``.
    """

    grid: HyperpixelGrid
    layers: tuple[Tensor, ...]
    base: Tensor
    groups: tuple[CoarseGroup, ...]
    inv_norm: Tensor

    def hyperfeatures(self) -> Tensor:
        """The straightforward hyperimage (eq. 1): upsample, concatenate, keep the grid.

        Returns:
            (N, C) float32 unnormalised hyperpixel features, row-major over the kept grid.

        Raises:
            ValueError: the hyperimage was built without its raw layers.
        """
        if not self.layers:
            raise ValueError("this HyperImage was built with keep_layers=False; rebuild it with the raw layers")
        h, w = self.grid.feature_hw
        maps = [self.layers[0]] + [
            F.interpolate(f[None], size=(h, w), mode="bilinear", align_corners=True)[0] for f in self.layers[1:]
        ]
        full = torch.cat(maps, dim=0)
        kept = full[:, self.grid.rows.start : self.grid.rows.stop, self.grid.cols.start : self.grid.cols.stop]
        return kept.reshape(full.shape[0], -1).t()


def upsample_kept(features: Tensor, rows: InterpTaps, cols: InterpTaps) -> Tensor:
    """Bilinear (``align_corners=True``) upsampling of a feature map onto kept base positions.

    ``M_r F_c M_c^T`` for every channel ``c``, as two plain matrix products with the dense 1-D
    interpolation matrices.

    Args:
        features: (C, h, w).
        rows / cols: taps onto the ``Hk`` kept rows and ``Wk`` kept columns.

    Returns:
        (C, Hk, Wk) float32.
    """
    c, h, w = features.shape
    mr, mc = rows.matrix(), cols.matrix()
    by_rows = (mr @ features.permute(1, 0, 2).reshape(h, c * w)).reshape(-1, w)  # (Hk*C, w)
    return (by_rows @ mc.t()).reshape(mr.shape[0], c, mc.shape[0]).permute(1, 0, 2)


def upsampled_sqnorm(features: Tensor, rows: InterpTaps, cols: InterpTaps) -> Tensor:
    """Squared channel norm of :func:`upsample_kept`, channel chunk by chunk (bounded memory).

    Args:
        features: (C, h, w).
        rows / cols: taps onto the ``Hk`` kept rows and ``Wk`` kept columns.

    Returns:
        (Hk, Wk) float32.
    """
    total = features.new_zeros(rows.index0.numel(), cols.index0.numel())
    for start in range(0, features.shape[0], NORM_CHUNK):
        total += upsample_kept(features[start : start + NORM_CHUNK], rows, cols).square().sum(dim=0)
    return total


def build_hyperimage(
    layers: Sequence[Tensor],
    strides: Sequence[int],
    image_hw: tuple[int, int],
    jump: int,
    receptive_field: int,
    margin_pruning: bool = True,
    fold_channels: int = FOLD_CHANNELS,
    keep_layers: bool = True,
) -> HyperImage:
    """Assemble the hyperpixels of one image from its layer features.

    Args:
        layers: features of the selected layers in increasing id order, each (C_l, h_l, w_l);
            the first is the base.
        strides: the jump of each layer. Layers sharing the base's jump are concatenated with
            it; the others are grouped by jump (so two images always get the same groups).
        image_hw: ``(H, W)`` of the image.
        jump / receptive_field: geometry of the base layer.
        margin_pruning: see :func:`.geometry.hyperpixel_grid`.
        fold_channels: groups with at most this many channels are upsampled onto the kept grid
            and concatenated with the base features (cheaper than the Gram path for thin layers);
            the others stay coarse (:attr:`HyperImage.groups`).
        keep_layers: keep the raw layer features (needed by the straightforward path only).

    Returns:
        The :class:`HyperImage`.
    """
    base_map = layers[0]
    h, w = base_map.shape[-2:]
    grid = hyperpixel_grid((h, w), image_hw, jump, receptive_field, margin_pruning)
    rows, cols = grid.rows, grid.cols
    by_stride: dict[int, list[Tensor]] = {}
    for f, s in zip(layers, strides):
        by_stride.setdefault(int(s), []).append(f)
    for s, maps in by_stride.items():
        if any(f.shape[-2:] != maps[0].shape[-2:] for f in maps):
            sizes = [tuple(f.shape[-2:]) for f in maps]
            raise ValueError(f"layers with jump {s} have different sizes {sizes}; cannot concatenate them")
    base_full = torch.cat(by_stride.pop(int(strides[0])), dim=0)[:, rows.start : rows.stop, cols.start : cols.stop]
    base_parts = [base_full.reshape(base_full.shape[0], -1).t()]  # (N, C0)
    sqnorm = base_parts[0].square().sum(dim=1)
    groups = []
    for maps in by_stride.values():
        feats = torch.cat(maps, dim=0).contiguous()
        gh, gw = feats.shape[-2:]
        row_taps = linear_taps(gh, h, rows, feats.device)
        col_taps = linear_taps(gw, w, cols, feats.device)
        if feats.shape[0] <= fold_channels:
            up = upsample_kept(feats, row_taps, col_taps).reshape(feats.shape[0], -1).t()
            base_parts.append(up)
            sqnorm = sqnorm + up.square().sum(dim=1)
        else:
            groups.append(CoarseGroup(feats, row_taps, col_taps))
            sqnorm = sqnorm + upsampled_sqnorm(feats, row_taps, col_taps).reshape(-1)
    base = torch.cat(base_parts, dim=1).contiguous()
    inv_norm = 1.0 / sqnorm.sqrt().clamp_min(NORM_EPS)
    kept = tuple(f.clone() for f in layers) if keep_layers else ()  # own copies, not views of a batch
    return HyperImage(grid, kept, base, tuple(groups), inv_norm)
