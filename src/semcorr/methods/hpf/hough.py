"""The Hough space of offsets that regularized Hough matching votes in (HPF sec. 3.2), with the
reference code's constants: the space and its bins, and the smoothing of the votes.

``hs_w = W_s + W_t`` by ``hs_h = H_s + H_t`` pixels cut into square cells of side
``sqrt(hs_w hs_h / ncells)``, with ``int(hs / cell) + 1`` bins per axis; bin index = truncation of
offset / cell. The votes are smoothed by a normalised 7x7 Gaussian (sigma = 7 / 2 / 2.354, zero
padding). Shared by the straightforward path (:mod:`.rhm_reference`) and the fast one (:mod:`.rhm`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel2d
from torch import Tensor


def gaussian_kernel(size: int = 7) -> Tensor:
    """Normalised 2-D Gaussian of the reference code, sigma = size / 2 / 2.354 (kornia's).

    Args:
        size: side (odd).

    Returns:
        (size, size) float32 summing to 1.
    """
    sigma = size / 2 / 2.354
    return get_gaussian_kernel2d((size, size), (sigma, sigma))[0]


@dataclass(frozen=True)
class HoughSpace:
    """Quantised 2-D offset space of one image pair.

    Attributes:
        nbins_x / nbins_y: bins per axis.
        cell: side of a bin in pixels.
    """

    nbins_x: int
    nbins_y: int
    cell: float

    @property
    def nbins(self) -> int:
        """Total number of bins."""
        return self.nbins_x * self.nbins_y


def hough_space(src_wh: tuple[int, int], trg_wh: tuple[int, int], ncells: int) -> HoughSpace:
    """The Hough space for a source and a target image.

    Args:
        src_wh / trg_wh: ``(W, H)`` image sizes.
        ncells: target number of bins (8192 in the reference).

    Returns:
        :class:`HoughSpace`.
    """
    hs_w = src_wh[0] + trg_wh[0]
    hs_h = src_wh[1] + trg_wh[1]
    cell = math.sqrt(hs_w * hs_h / ncells)
    return HoughSpace(int(hs_w / cell) + 1, int(hs_h / cell) + 1, cell)


def offset_bins(offset_x: Tensor, offset_y: Tensor, space: HoughSpace) -> Tensor:
    """Flat bin index of offsets (float32 truncation as the reference; clamped into the space).

    Args:
        offset_x / offset_y: broadcastable float32 offsets in pixels.
        space: the Hough space.

    Returns:
        int64 ``bin_x + bin_y * nbins_x`` of the broadcast shape.
    """
    bx = (offset_x / space.cell).long().clamp(0, space.nbins_x - 1)
    by = (offset_y / space.cell).long().clamp(0, space.nbins_y - 1)
    return bx + by * space.nbins_x


def smooth_votes(votes: Tensor, kernel: Tensor) -> Tensor:
    """Gaussian smoothing of the Hough votes with zero padding.

    Args:
        votes: (nbins_y, nbins_x).
        kernel: (k, k) odd-sized filter.

    Returns:
        (nbins_y, nbins_x).
    """
    k = kernel.to(votes)
    return F.conv2d(votes[None, None], k[None, None], padding=k.shape[-1] // 2)[0, 0]
