"""Hyperpixel Flow (HPF): hyperpixels, regularized Hough matching, box-based keypoint transfer.

Modules: :mod:`.geometry` (base-layer boxes, margin pruning), :mod:`.hyperimage` (multi-layer
features on the base grid), :mod:`.similarity` (exact fast cosine via coarse-resolution Gram
matrices), :mod:`.hough` (the Hough space of offsets and its smoothing), :mod:`.rhm_reference`
(RHM the straightforward way, the reference), :mod:`.rhm` (RHM, the fast path), :mod:`.transfer`
(keypoint and dense transfer), :mod:`.matcher` (the :class:`HyperpixelFlow` method).
"""

from .geometry import HyperpixelGrid, hyperpixel_grid
from .hyperimage import HyperImage, build_hyperimage
from .hough import gaussian_kernel, hough_space
from .matcher import HyperpixelFlow
from .rhm import match_fast
from .rhm_reference import match_reference, rhm_reference
from .transfer import box_transfer, box_transfer_reference, dense_box_transfer

__all__ = [
    "HyperImage",
    "HyperpixelFlow",
    "HyperpixelGrid",
    "box_transfer",
    "box_transfer_reference",
    "build_hyperimage",
    "dense_box_transfer",
    "gaussian_kernel",
    "hough_space",
    "hyperpixel_grid",
    "match_fast",
    "match_reference",
    "rhm_reference",
]
