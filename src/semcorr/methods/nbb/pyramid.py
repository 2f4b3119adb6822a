"""Coarse-to-fine percolation of best buddies through a 5-level feature pyramid (NBB Algorithm 1).

Levels are numbered as in the paper, l = 1 (finest) .. 5 (coarsest); level l is VGG-19's
relu{l}_1 or the layer of another backbone standing for it (same stride; see :mod:`.matcher`). At the coarsest level used there is one pair of regions,
the two whole maps (R^5 of section 3.2), matched on the raw features (``C^5 = F^5``). Every pair
that survives a level is refined into a pair of regions at the next finer level (eqs. 9-10): the
cell ``p`` maps to ``c = floor(p * s_l / s_{l-1})`` (the ratio of the two strides, 2 for VGG-19;
the reference code's ``2p``) and the region is the (2 r + 1) x (2 r + 1) window centred on ``c``
clipped to the map, with ``r`` the search radius of the finer level (``radii``: reference code
``[3, 3, 2, 2, 2]`` for levels 1..5; the coarsest level's radius is unused, its region is the whole
map as the paper says; the reference code instead searches only +-2 cells around the same position
at the top level, which presumes roughly aligned images). Each region pair is brought to its common appearance (eqs. 4-6), best buddies are found
inside it (eqs. 1-3), filtered by activation (eqs. 7-8) and ranked (eq. 11: the parent's rank
plus ``H_A + H_B`` at this level).

All regions of a level are processed together: windows (plus the halo their patches reach,
taken by reflection at the map border as the reference code pads) are gathered with one index
operation, and regions are processed in chunks that bound memory. The only Python loops are over
levels and chunks of regions.

Choices the paper leaves open: overlapping regions can give one neuron several partners (its
best buddy differs from region to region). At every level each neuron keeps only its
highest-ranked pair (eq. 11), so that the pairs are one-to-one, as mutual nearest neighbours are
inside one region and as the reference code's single per-level mappings make them. On 45
PF-WILLOW pairs (MobileNetV2, 224 px) this raised PCK@0.1 from 36.9 to 39.3 and halved the
number of pairs (and the time of the finer levels). Optionally (``k_per_level``, the
reference code's option of that name, off by default) the pairs of every level are reduced to the
top-k of :func:`~.selection.select_top_k`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .appearance import common_appearance
from .buddies import mutual_nearest, patch_similarity
from .selection import activation_map, select_top_k, strong_pairs

#: Floats per chunk of regions (bounds the memory of one batched similarity, ~64 MB).
_CHUNK_FLOATS = 1 << 24


@dataclass
class Buddies:
    """Best buddies of one image pair at the finest level matched.

    Attributes:
        pos_a: (M, 2) long (y, x) cells of the pairs in A's finest map.
        pos_b: (M, 2) long (y, x) cells in B's finest map.
        rank: (M,) rank V of eq. 11 over the levels matched.
        shape_a: (h, w) of A's finest map.
        shape_b: (h, w) of B's finest map.
        counts: pairs left after each level, coarsest first.
        seconds: wall time of each level, coarsest first.
    """

    pos_a: Tensor
    pos_b: Tensor
    rank: Tensor
    shape_a: tuple[int, int]
    shape_b: tuple[int, int]
    counts: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def reflect_index(idx: Tensor, n: int) -> Tensor:
    """Map any integer index onto 0..n-1 by mirror reflection without repeating the edge.

    Args:
        idx: long tensor of any shape.
        n: axis length (>= 1).

    Returns:
        Long tensor of ``idx``'s shape: ``-1 -> 1``, ``n -> n - 2`` (``torch.nn.functional.pad``'s
        ``"reflect"``), applied repeatedly for indices further out.
    """
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    m = idx.remainder(period)
    return torch.where(m < n, m, period - m)


def gather_windows(
    feat_hwc: Tensor, top_left: Tensor, size: tuple[int, int], halo: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Cut the same-sized window out of a map at many places, with a halo for patches.

    Args:
        feat_hwc: (H, W, C) features.
        top_left: (N, 2) long (y, x) of each window's first cell (may lie outside the map).
        size: (sy, sx) window size.
        halo: extra cells on each side (reflected at the map border).

    Returns:
        ``(windows, inside, flat)``: (N, sy + 2 halo, sx + 2 halo, C) features; (N, sy * sx) bool,
        window cells inside the map (the region); (N, sy * sx) long, their flat map positions
        ``y * W + x`` (clamped, meaningless where ``inside`` is False).
    """
    h, w, c = feat_hwc.shape
    sy, sx = size
    dev = feat_hwc.device
    ys = top_left[:, :1] + torch.arange(-halo, sy + halo, device=dev)  # (N, Ey)
    xs = top_left[:, 1:] + torch.arange(-halo, sx + halo, device=dev)  # (N, Ex)
    flat_ext = reflect_index(ys, h)[:, :, None] * w + reflect_index(xs, w)[:, None, :]
    windows = feat_hwc.reshape(h * w, c).index_select(0, flat_ext.reshape(-1)).reshape(*flat_ext.shape, c)
    core_y = ys[:, halo : halo + sy]
    core_x = xs[:, halo : halo + sx]
    inside = ((core_y >= 0) & (core_y < h))[:, :, None] & ((core_x >= 0) & (core_x < w))[:, None, :]
    flat = core_y.clamp(0, h - 1)[:, :, None] * w + core_x.clamp(0, w - 1)[:, None, :]
    return windows, inside.reshape(len(top_left), -1), flat.reshape(len(top_left), -1)


def child_regions(pos: Tensor, ratio: float, radius: int, shape: tuple[int, int]) -> Tensor:
    """Search regions at the next finer level for cells of the current level (eqs. 9-10).

    Args:
        pos: (M, 2) long (y, x) cells at level l.
        ratio: stride of level l / stride of level l-1 (2 for VGG-19; 1 where ResNet repeats).
        radius: half-size r of the window at level l-1.
        shape: (H, W) of the level l-1 map (the centre is clamped into it).

    Returns:
        (M, 2) long top-left (y, x) of the (2 r + 1)-sided windows centred on ``floor(pos * ratio)``.
    """
    centre = torch.floor(pos.double() * ratio).long()
    limit = torch.tensor([shape[0] - 1, shape[1] - 1], device=pos.device)
    return torch.minimum(centre.clamp_min(0), limit) - radius


def match_regions(
    feat_a: Tensor,
    feat_b: Tensor,
    top_left_a: Tensor,
    size_a: tuple[int, int],
    top_left_b: Tensor,
    size_b: tuple[int, int],
    patch: int,
    transfer: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """Best buddies of every pair of corresponding regions of one level (eqs. 1-6).

    Args:
        feat_a: (Ha, Wa, C) features of A at this level.
        feat_b: (Hb, Wb, C) features of B.
        top_left_a: (N, 2) long (y, x) of the regions P_i (all of size ``size_a``).
        size_a: (sy, sx) of the regions of A.
        top_left_b: (N, 2) long (y, x) of the regions Q_i.
        size_b: (sy, sx) of the regions of B.
        patch: odd patch side of eq. 3.
        transfer: apply the common appearance of eqs. 4-6 (False at the top level: C^5 = F^5).

    Returns:
        ``(region, flat_a, flat_b)``, each (M,) long: region index of each best-buddy pair and the
        flat positions ``y * W + x`` of its neurons in A's and B's maps.
    """
    halo = patch // 2
    c = feat_a.shape[-1]
    ext_a = (size_a[0] + 2 * halo) * (size_a[1] + 2 * halo)
    ext_b = (size_b[0] + 2 * halo) * (size_b[1] + 2 * halo)
    cells_a, cells_b = size_a[0] * size_a[1], size_b[0] * size_b[1]
    per_region = 3 * (ext_a + ext_b) * c + ext_a * ext_b + ext_a * cells_b + 3 * cells_a * cells_b
    chunk = max(1, _CHUNK_FLOATS // per_region)
    found: list[tuple[Tensor, Tensor, Tensor]] = []
    for start in range(0, top_left_a.shape[0], chunk):
        win_a, in_a, flat_a = gather_windows(feat_a, top_left_a[start : start + chunk], size_a, halo)
        win_b, in_b, flat_b = gather_windows(feat_b, top_left_b[start : start + chunk], size_b, halo)
        n, eya, exa, _ = win_a.shape
        _, eyb, exb, _ = win_b.shape
        if transfer:
            core_a = _core_mask(in_a, size_a, halo)
            core_b = _core_mask(in_b, size_b, halo)
            ca, cb = common_appearance(win_a.reshape(n, -1, c), core_a, win_b.reshape(n, -1, c), core_b)
            win_a, win_b = ca.reshape(n, eya, exa, c), cb.reshape(n, eyb, exb, c)
        sim = patch_similarity(win_a, win_b, patch)
        region, ia, ib = mutual_nearest(sim, in_a, in_b)
        found.append((region + start, flat_a[region, ia], flat_b[region, ib]))
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=feat_a.device)
        return empty, empty, empty
    region, fa, fb = (torch.cat(parts) for parts in zip(*found))
    return region, fa, fb


def _core_mask(inside: Tensor, size: tuple[int, int], halo: int) -> Tensor:
    """Region mask on the haloed window: (N, sy * sx) ``inside`` -> (N, (sy + 2h) * (sx + 2h))."""
    n = inside.shape[0]
    grid = inside.reshape(n, *size)
    return torch.nn.functional.pad(grid, (halo, halo, halo, halo), value=False).reshape(n, -1)


def best_per_key(key: Tensor, rank: Tensor) -> Tensor:
    """Indices of the highest-ranked element of every distinct key.

    Args:
        key: (M,) long keys.
        rank: (M,) ranks.

    Returns:
        (U,) long indices into the M elements, one per distinct key, by decreasing rank.
    """
    order = torch.argsort(rank, descending=True, stable=True)
    uniq, inverse = torch.unique(key[order], return_inverse=True)
    positions = torch.arange(order.shape[0], device=key.device)
    first = torch.full((uniq.shape[0],), order.shape[0], device=key.device).scatter_reduce(
        0, inverse, positions, reduce="amin"
    )
    return order[first.sort().values]


def one_to_one(flat_a: Tensor, flat_b: Tensor, rank: Tensor) -> Tensor:
    """Resolve neurons claimed by several overlapping regions: each keeps its best-ranked pair.

    Args:
        flat_a: (M,) long flat positions in A.
        flat_b: (M,) long flat positions in B.
        rank: (M,) ranks (eq. 11).

    Returns:
        (U,) long indices into the M pairs, by decreasing rank, such that no position of A and no
        position of B occurs twice (best pair per A neuron, then best of those per B neuron).
    """
    keep = best_per_key(flat_a, rank)
    return keep[best_per_key(flat_b[keep], rank[keep])]


def coarse_to_fine(
    feats_a: Sequence[Tensor],
    feats_b: Sequence[Tensor],
    strides: Sequence[float],
    levels: Sequence[int],
    patch_sizes: Sequence[int],
    radii: Sequence[int],
    gamma: float,
    power: float,
    k_per_level: int | None = None,
    seed: int = 0,
) -> Buddies:
    """Algorithm 1: best buddies of one image pair, percolated from the coarsest to the finest level.

    Args:
        feats_a: five (C_l, Ha_l, Wa_l) feature maps of image A, level 1 (finest) first (None
            for levels not matched).
        feats_b: five (C_l, Hb_l, Wb_l) feature maps of image B.
        strides: five strides of levels 1..5 (input pixels per cell; None for levels not matched).
        levels: levels to match, strictly decreasing (e.g. ``[5, 4, 3, 2, 1]``).
        patch_sizes: five odd patch sides of eq. 3, levels 1..5.
        radii: five search radii, levels 1..5 (see the module docstring).
        gamma: activation threshold of eq. 8.
        power: response exponent of eq. 7 (see :mod:`.selection`).
        k_per_level: if set, keep only the k-means top-k pairs after every level.
        seed: k-means seed for ``k_per_level``.

    Returns:
        :class:`Buddies` at level ``levels[-1]``.
    """
    dev = feats_a[levels[0] - 1].device
    pos_a = pos_b = torch.zeros(0, 2, dtype=torch.long, device=dev)
    rank = torch.zeros(1, device=dev)
    counts: list[int] = []
    seconds: list[float] = []
    for i, level in enumerate(levels):
        tic = time.perf_counter()
        fa, fb = feats_a[level - 1], feats_b[level - 1]
        shape_a, shape_b = (fa.shape[1], fa.shape[2]), (fb.shape[1], fb.shape[2])
        if i == 0:
            tl_a = tl_b = torch.zeros(1, 2, dtype=torch.long, device=dev)
            size_a, size_b = shape_a, shape_b
        else:
            ratio = strides[levels[i - 1] - 1] / strides[level - 1]
            r = radii[level - 1]
            tl_a = child_regions(pos_a, ratio, r, shape_a)
            tl_b = child_regions(pos_b, ratio, r, shape_b)
            size_a = size_b = (2 * r + 1, 2 * r + 1)
        region, flat_a, flat_b = match_regions(
            fa.permute(1, 2, 0).contiguous(),
            fb.permute(1, 2, 0).contiguous(),
            tl_a,
            size_a,
            tl_b,
            size_b,
            patch_sizes[level - 1],
            transfer=i > 0,
        )
        act_a, act_b = activation_map(fa, power), activation_map(fb, power)
        strong = strong_pairs(act_a, act_b, flat_a, flat_b, gamma)
        region, flat_a, flat_b = region[strong], flat_a[strong], flat_b[strong]
        rank = rank[region] + act_a.flatten()[flat_a] + act_b.flatten()[flat_b]
        keep = one_to_one(flat_a, flat_b, rank)
        flat_a, flat_b, rank = flat_a[keep], flat_b[keep], rank[keep]
        pos_a = torch.stack([flat_a // shape_a[1], flat_a % shape_a[1]], dim=1)
        pos_b = torch.stack([flat_b // shape_b[1], flat_b % shape_b[1]], dim=1)
        if k_per_level is not None:
            top = select_top_k(pos_a.float(), pos_b.float(), rank, k_per_level, seed)
            pos_a, pos_b, rank = pos_a[top], pos_b[top], rank[top]
        counts.append(int(rank.shape[0]))
        seconds.append(time.perf_counter() - tic)
    return Buddies(pos_a, pos_b, rank, shape_a, shape_b, counts, seconds)
