"""Deep PatchMatch: the bidirectional nearest-neighbour field search of eq. 2 (section 4.2) and the
NNF upsampling of section 4.4.

Hand-written because no maintained library does it: PatchMatch (Barnes et al. 2009) on
multi-channel deep features with the bidirectional patch distance of eq. 2 does not exist in
torch, kornia, scikit-image or OpenCV. Everything is vectorised over all pixels: a candidate
field (one candidate target pixel per source pixel) is evaluated for the whole map at once, and
the only Python loops are over iterations, jump sizes, the four propagation directions, the
random-search radii and (for exact patch distances) the k x k patch offsets.

Eq. 2: ``phi_{a->b}(p) = argmin_q sum_{x in N(p), y in N(q)} ||F_A(x) - F_B(y)||^2 +
||F_A'(x) - F_B'(y)||^2`` on L2-normalised features. Both terms together are the squared distance
between the channel-concatenated maps ``[F_A, F_A']`` (the "A side") and ``[F_B, F_B']`` (the "B
side"), so one patch distance between two concatenated maps implements the bidirectional energy
(:func:`side`); ``phi_{b->a}`` is the same search with the two sides swapped.

Patch distances (:class:`PatchField`) are computed from descriptor maps whose squared distance
is the patch cost: either the replicate-padded feature maps themselves, summed over the k x k
offsets (exact eq. 2), or, with ``dims``, each k x k patch projected on the first ``dims``
principal components of the pairs' patches (a conv with the PCA basis), a single D-vector per
pixel (:func:`descriptors`). The projection is a speed option (the distance of the projected
patches approximates eq. 2; the exact match of identical patches stays exact).

Search schedule (reference code facts): per iteration, jump-flood propagation with jumps
``(8, 4, 2, 1)`` from the four neighbours at each jump (candidate ``phi(p - s) + s``), then
random search around the current best in windows of radius ``r, r/2, ..., 1`` clipped to the
target, ``r`` the level's radius (the whole map at the coarsest level). A candidate replaces the
current match only when strictly better. Choices the paper leaves open: borders are handled by
replicate padding of both maps (the reference averages over the in-image part of the patches);
propagation is Gauss-Seidel over candidate fields (each evaluated field updates the NNF before
the next one is built) rather than the reference's per-thread in-place updates.

NNFs are integer tensors (H, W, 2) holding, for each source pixel (y, x), its target pixel
``(y', x')``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: Patches per side fitting the PCA basis of :func:`descriptors` (all of them on smaller maps).
PCA_SAMPLES = 1024

#: Floor on a feature vector's norm in :func:`normalise` (zero vectors stay zero).
_EPS = 1e-12


def normalise(feature: Tensor) -> Tensor:
    """L2-normalise every pixel's feature vector (``F / |F|`` of section 4.2).

    Args:
        feature: (C, H, W).

    Returns:
        (C, H, W) unit vectors; all-zero vectors stay zero.
    """
    return feature / feature.norm(dim=0, keepdim=True).clamp_min(_EPS)


def side(feature: Tensor, latent: Tensor) -> Tensor:
    """One side of eq. 2: the normalised feature map and its latent partner, concatenated.

    Args:
        feature: (C, H, W) e.g. F_A^L.
        latent: (C, H, W) e.g. F_A'^L.

    Returns:
        (2C, H, W) ``[normalise(feature), normalise(latent)]``.
    """
    return torch.cat([normalise(feature), normalise(latent)])


def _sample_patches(padded: Tensor, patch: int, count: int, generator: torch.Generator) -> Tensor:
    """k x k patches of a padded map, flattened like ``F.unfold`` / conv weights: all of them
    when the map has at most ``count`` pixels, else ``count`` drawn uniformly (with replacement).

    Args:
        padded: (C, H + k - 1, W + k - 1) replicate-padded map.
        patch: k.
        count: largest number of patches.
        generator: random source.

    Returns:
        (min(count, H * W), C * k * k) patch vectors, channel-major then row then column.
    """
    c, hp, wp = padded.shape
    h, w = hp - patch + 1, wp - patch + 1
    if h * w <= count:
        index = torch.arange(h * w, device=padded.device)
    else:
        index = torch.randint(h * w, (count,), generator=generator, device=generator.device).to(padded.device)
    offsets = torch.arange(patch, device=padded.device)
    rows = (index // w)[:, None, None] + offsets[None, :, None]  # (n, k, 1)
    cols = (index % w)[:, None, None] + offsets[None, None, :]  # (n, 1, k)
    return padded[:, rows, cols].permute(1, 0, 2, 3).reshape(index.shape[0], c * patch * patch)


def descriptors(
    side_a: Tensor, side_b: Tensor, patch: int, dims: int | None, generator: torch.Generator
) -> tuple[Tensor, Tensor, int]:
    """Descriptor maps whose squared distances are the eq. 2 patch costs.

    Args:
        side_a: (D0, Ha, Wa) one side (see :func:`side`).
        side_b: (D0, Hb, Wb) the other side.
        patch: k, the side of the square patch N(p) (odd).
        dims: ``None`` for exact distances; else the number of principal components each k x k
            patch (a D0 * k * k vector) is projected on (used only when smaller than D0 * k * k).
        generator: random source of the PCA's patch sample and randomized SVD.

    Returns:
        ``(desc_a, desc_b, summed)``: channel-last maps (Ha + s - 1, Wa + s - 1, D) and
        (Hb + s - 1, Wb + s - 1, D), and the side ``s`` of the window of descriptors summed per
        patch: ``s = k`` with D = D0 (exact: replicate-padded features) or ``s = 1`` with D =
        ``dims`` (one projected vector per patch).
    """
    pad = patch // 2
    padded_a = F.pad(side_a[None], (pad, pad, pad, pad), mode="replicate")[0]
    padded_b = F.pad(side_b[None], (pad, pad, pad, pad), mode="replicate")[0]
    length = side_a.shape[0] * patch * patch
    if dims is None or dims >= length:
        return padded_a.permute(1, 2, 0).contiguous(), padded_b.permute(1, 2, 0).contiguous(), patch
    sample = torch.cat(
        [_sample_patches(p, patch, PCA_SAMPLES, generator) for p in (padded_a, padded_b)]
    )
    rank = min(dims, sample.shape[0])
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator, device=generator.device))
    devices = [sample.device.index or 0] if sample.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        _, _, basis = torch.pca_lowrank(sample, q=rank, center=True, niter=2)  # (length, rank)
    weight = basis.T.reshape(rank, side_a.shape[0], patch, patch).contiguous()
    desc_a = F.conv2d(padded_a[None], weight)[0]
    desc_b = F.conv2d(padded_b[None], weight)[0]
    return desc_a.permute(1, 2, 0).contiguous(), desc_b.permute(1, 2, 0).contiguous(), 1


class PatchField:
    """Evaluates patch costs between a source and a target descriptor map for whole NNFs.

    ``cost(p, q) = sum_{d in window} |s(p + d) - t(q + d)|^2`` is computed as
    ``S(p) + sum_d [-2 s(p + d), 1] . [t(q + d), |t(q + d)|^2]``: the window sum ``S`` of the
    source's squared norms and, for every window offset ``d``, the source descriptors at ``p + d``
    are precomputed, and the target's squared norm rides along as one more channel, so each window
    offset of a candidate field costs one gather of target rows (from a table small enough to stay
    in cache) and one row-wise dot product. Exact: no term is dropped or rounded.

    Args:
        src: (Hs + s - 1, Ws + s - 1, D) padded source descriptors (see :func:`descriptors`).
        trg: (Ht + s - 1, Wt + s - 1, D) padded target descriptors.
        summed: s, the side of the window of descriptors summed per patch.
    """

    def __init__(self, src: Tensor, trg: Tensor, summed: int) -> None:
        self.summed = summed
        hs, ws = src.shape[0] - summed + 1, src.shape[1] - summed + 1
        self.src_size = (hs, ws)
        self.trg_size = (trg.shape[0] - summed + 1, trg.shape[1] - summed + 1)
        width = trg.shape[1]
        src_rows = torch.cat([-2.0 * src, torch.ones_like(src[..., :1])], dim=-1)
        offsets = [(dy, dx) for dy in range(summed) for dx in range(summed)]
        # per window offset d: the source descriptors at p + d of every pixel p, contiguous
        self._src_shifted = [src_rows[dy : dy + hs, dx : dx + ws].reshape(hs * ws, -1).contiguous() for dy, dx in offsets]
        self._trg_offsets = [dy * width + dx for dy, dx in offsets]
        self._trg_width = width
        self._trg_rows = torch.cat([trg, trg.pow(2).sum(-1, keepdim=True)], dim=-1).reshape(-1, trg.shape[2] + 1)
        norms = src.pow(2).sum(-1)
        if summed > 1:
            norms = F.avg_pool2d(norms[None, None], summed, stride=1)[0, 0] * (summed * summed)
        self._src_sq = norms.reshape(-1)

    def cost(self, nnf: Tensor) -> Tensor:
        """Patch cost of every source pixel at its NNF entry.

        Args:
            nnf: (Hs, Ws, 2) integer target pixels (y, x), inside the target.

        Returns:
            (Hs, Ws) float costs.
        """
        base = (nnf[..., 0] * self._trg_width + nnf[..., 1]).reshape(-1)
        total = self._src_sq.clone()
        for src, offset in zip(self._src_shifted, self._trg_offsets):
            rows = self._trg_rows.index_select(0, base + offset if offset else base)
            total += (src * rows).sum(-1)
        return total.reshape(self.src_size)


def random_nnf(src_size: tuple[int, int], trg_size: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Uniformly random NNF (the initialisation at the coarsest level, section 4.4).

    Args:
        src_size: (Hs, Ws).
        trg_size: (Ht, Wt).
        generator: random source (its device is the NNF's device).

    Returns:
        (Hs, Ws, 2) long target pixels (y, x).
    """
    ys = torch.randint(trg_size[0], src_size, generator=generator, device=generator.device)
    xs = torch.randint(trg_size[1], src_size, generator=generator, device=generator.device)
    return torch.stack([ys, xs], dim=-1)


def _improve(field: PatchField, nnf: Tensor, cost: Tensor, candidate: Tensor) -> tuple[Tensor, Tensor]:
    """Keep ``candidate`` (Hs, Ws, 2) where its cost is strictly lower; returns (nnf, cost)."""
    new_cost = field.cost(candidate)
    better = new_cost < cost
    return torch.where(better[..., None], candidate, nnf), torch.where(better, new_cost, cost)


def _propagated(nnf: Tensor, dy: int, dx: int, trg_size: tuple[int, int]) -> Tensor | None:
    """Candidate field from the neighbour at ``p - (dy, dx)``: ``phi(p - s) + s``.

    Pixels whose neighbour is outside the source, or whose candidate falls outside the target,
    keep their current match. Returns None when no pixel has a neighbour at that shift.
    """
    h, w, _ = nnf.shape
    if abs(dy) >= h or abs(dx) >= w:
        return None
    candidate = nnf.clone()
    dst = (slice(max(dy, 0), h + min(dy, 0)), slice(max(dx, 0), w + min(dx, 0)))
    src = (slice(max(-dy, 0), h + min(-dy, 0)), slice(max(-dx, 0), w + min(-dx, 0)))
    candidate[dst] = nnf[src] + torch.tensor([dy, dx], device=nnf.device)
    inside = (
        (candidate[..., 0] >= 0)
        & (candidate[..., 0] < trg_size[0])
        & (candidate[..., 1] >= 0)
        & (candidate[..., 1] < trg_size[1])
    )
    return torch.where(inside[..., None], candidate, nnf)


def _random_candidate(nnf: Tensor, radius: int, trg_size: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Uniform sample in the window of ``radius`` around each current match, clipped to the target."""
    low = (nnf - radius).clamp_min(0)
    high = torch.minimum(nnf + radius + 1, torch.tensor(trg_size, device=nnf.device))
    u = torch.rand(nnf.shape, generator=generator, device=generator.device).to(nnf.device)
    return (low + (u * (high - low)).long()).minimum(high - 1)


def patchmatch(
    field: PatchField,
    nnf: Tensor,
    iterations: int,
    jumps: Sequence[int],
    radius: int | None,
    generator: torch.Generator,
) -> tuple[Tensor, Tensor]:
    """Refine an NNF by PatchMatch propagation and random search (section 4.2).

    Args:
        field: the source/target patch costs.
        nnf: (Hs, Ws, 2) long initial target pixels (y, x).
        iterations: number of propagation + random-search rounds.
        jumps: propagation jump sizes, tried in order in every iteration (reference: 8, 4, 2, 1).
        radius: largest random-search radius in target pixels; None for the whole target map.
        generator: random source.

    Returns:
        ``(nnf, cost)``: (Hs, Ws, 2) refined NNF and its (Hs, Ws) patch costs.
    """
    trg_size = field.trg_size
    start = max(trg_size) if radius is None else min(radius, max(trg_size))
    cost = field.cost(nnf)
    for _ in range(iterations):
        for jump in jumps:
            for dy, dx in ((0, jump), (0, -jump), (jump, 0), (-jump, 0)):
                candidate = _propagated(nnf, dy, dx, trg_size)
                if candidate is not None:
                    nnf, cost = _improve(field, nnf, cost, candidate)
        mag = start
        while mag >= 1:
            nnf, cost = _improve(field, nnf, cost, _random_candidate(nnf, mag, trg_size, generator))
            mag //= 2
    return nnf, cost


def upsample_nnf(nnf: Tensor, size: tuple[int, int], trg_size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour NNF upsampling to a finer level (section 4.4), keeping each offset.

    Reference-code rule: fine pixel ``a`` reads coarse pixel ``c = floor((a + 0.5) / r)`` (clamped)
    and maps to ``round(a + (phi(c) - c) * r)`` clamped to the fine target, with ``r`` the ratio
    of the two map sizes (2 for VGG-19, 1 between ResNet ids of equal stride).

    Args:
        nnf: (Hc, Wc, 2) long coarse NNF into a coarse target map.
        size: (Hf, Wf) the fine source map.
        trg_size: (Htf, Wtf) the fine target map.

    Returns:
        (Hf, Wf, 2) long fine NNF.
    """
    hc, wc, _ = nnf.shape
    ay, cy, ry = _fine_axis(size[0], hc, nnf.device)
    ax, cx, rx = _fine_axis(size[1], wc, nnf.device)
    picked = nnf[cy[:, None], cx[None, :]]  # (Hf, Wf, 2)
    by = (ay[:, None] + (picked[..., 0] - cy[:, None]) * ry + 0.5).floor().long().clamp(0, trg_size[0] - 1)
    bx = (ax[None, :] + (picked[..., 1] - cx[None, :]) * rx + 0.5).floor().long().clamp(0, trg_size[1] - 1)
    return torch.stack([by, bx], dim=-1)


def _fine_axis(fine: int, coarse: int, device: torch.device) -> tuple[Tensor, Tensor, float]:
    """Fine coordinates (float64), the coarse cell each reads, and the size ratio along one axis."""
    ratio = fine / coarse
    a = torch.arange(fine, device=device, dtype=torch.float64)
    return a, ((a + 0.5) / ratio).floor().long().clamp(0, coarse - 1), ratio
