"""Regularized Hough matching the straightforward way (HPF sec. 3.2): the full ``Ns x Nt`` bin
matrix of the reference code. :mod:`.rhm` computes the same matches fast; the tests check the two
agree.

Match ``(i, j)`` votes ``sim[i, j]`` into the bin holding ``(W_s, H_s) - c_s(i) + c_t(j)`` (``c``
the box centres, :mod:`.hough`); the votes are smoothed and ``confidence[i, j] = sim[i, j] *
smoothed[bin(i, j)]``. Each source hyperpixel is matched to the first target of highest
confidence (the argmax).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .geometry import HyperpixelGrid
from .hough import HoughSpace, hough_space, offset_bins, smooth_votes
from .hyperimage import HyperImage
from .similarity import reference_cosine


def pair_bins(src: HyperpixelGrid, trg: HyperpixelGrid, space: HoughSpace) -> Tensor:
    """Bin of every (source, target) hyperpixel pair, the reference way.

    Args:
        src / trg: grids with ``Ns`` and ``Nt`` hyperpixels.
        space: their Hough space.

    Returns:
        (Ns, Nt) int64.
    """
    cs, ct = src.centres(), trg.centres()
    ref = torch.tensor(src.image_wh, dtype=torch.float32)
    off = (ref - cs)[:, None, :] + ct[None, :, :]
    return offset_bins(off[..., 0], off[..., 1], space)


def rhm_reference(
    sim: Tensor, src: HyperpixelGrid, trg: HyperpixelGrid, ncells: int, kernel: Tensor
) -> tuple[Tensor, Tensor]:
    """Regularized Hough matching with the full bin matrix (the reference algorithm).

    Args:
        sim: (Ns, Nt) appearance similarity ``clamp(cos, 0) ** d``.
        src / trg: grids of the hyperpixels.
        ncells: Hough space size parameter.
        kernel: smoothing filter, see :func:`gaussian_kernel`.

    Returns:
        ``(confidence, votes)``: (Ns, Nt) match confidences and the raw (unsmoothed)
        (nbins_y, nbins_x) votes.
    """
    space = hough_space(src.image_wh, trg.image_wh, ncells)
    bins = pair_bins(src, trg, space).to(sim.device)
    votes = sim.new_zeros(space.nbins).index_add_(0, bins.reshape(-1), sim.reshape(-1))
    smoothed = smooth_votes(votes.view(space.nbins_y, space.nbins_x), kernel).reshape(-1)
    return sim * smoothed[bins], votes.view(space.nbins_y, space.nbins_x)


def match_reference(
    src: HyperImage,
    trg: HyperImage,
    rhm: bool,
    exponent: float,
    ncells: int,
    kernel: Tensor,
) -> tuple[Tensor, Tensor]:
    """Hyperpixel matches by the straightforward path (full hyperfeatures and bin matrix).

    Args and returns: as :func:`match_fast`.
    """
    cos = reference_cosine(src, trg)
    if not rhm:
        score, match = cos.max(dim=1)
        return match, score
    sim = cos.clamp(min=0).pow(exponent)
    conf, _ = rhm_reference(sim, src.grid, trg.grid, ncells, kernel)
    score, match = conf.max(dim=1)
    return match, score
