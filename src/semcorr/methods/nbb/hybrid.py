"""Semantic hybrids (NBB paper, section 5.2): the most strongly activated parts of two aligned
images combined into one image, coarse to fine.

Given the two images aligned at the midpoint geometry of their best buddies (section 5.1,
:func:`~.alignment.align_pair`):

1. at the coarsest level T, the hybrid features take, at every cell, the feature of the image
   whose neuron is relatively more active (eq. 12): ``F_H^T(p) = F_A^T(p)`` when
   ``|F_A^T(p)| / sum_i |F_A^T(i)| >= |F_B^T(p)| / sum_i |F_B^T(i)|``, else ``F_B^T(p)``;
2. going down, ``F_H^{l+1}`` is inverted to the level below without regularisation (feature
   inversion: L-BFGS on the input of the sub-network between the two levels,
   :func:`~semcorr.backbones.inversion.deconvolve`), giving ``F~_H^l``, which is projected onto the
   hybrids of ``F_A^l`` and ``F_B^l`` (eq. 13): each cell takes the feature of the image closer to
   ``F~_H^l``;
3. at the pixel level the finest hybrid features are inverted to an image, used as it is (no
   projection: "slightly softer transitions").

Where the paper is silent: each inversion starts from the hybrid of the two images' own features
under the mask of the level above (upsampled), close to the answer; at the pixel level from the
hybrid of the two images under the finest mask. The picture of the mask (which image each part
comes from) is the finest level's, upsampled to the image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.backbones.inversion import IMAGE_INPUT, deconvolve, subnetwork
from semcorr.methods.base import PairFile, Strip


@dataclass
class Hybrid:
    """A semantic hybrid of two aligned images.

    Attributes:
        image: (3, H, W) the hybrid in [0, 1].
        mask: (H, W) float, 1 where the finest level took image A, 0 where it took image B.
        a / b: (3, H, W) the two aligned inputs (for the picture).
    """

    image: Tensor
    mask: Tensor
    a: Tensor
    b: Tensor


def _upsample_mask(mask: Tensor, size: tuple[int, int]) -> Tensor:
    """(h, w) bool mask -> (H, W) bool, nearest neighbour."""
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5


def _choose(mask: Tensor, fa: Tensor, fb: Tensor) -> Tensor:
    """(C, h, w) features of A where ``mask`` (h, w) is True, of B elsewhere."""
    return torch.where(mask[None], fa, fb)


def more_active(fa: Tensor, fb: Tensor) -> Tensor:
    """Eq. 12: where A's neuron is relatively more active than B's.

    Args:
        fa / fb: (C, h, w) features of the two aligned images at the coarsest level.

    Returns:
        (h, w) bool, True where ``|F_A(p)| / sum_i |F_A(i)| >= |F_B(p)| / sum_i |F_B(i)|``.
    """
    norm_a, norm_b = fa.norm(dim=0), fb.norm(dim=0)
    return norm_a / norm_a.sum().clamp_min(1e-12) >= norm_b / norm_b.sum().clamp_min(1e-12)


def closer_to(fa: Tensor, fb: Tensor, inverted: Tensor) -> Tensor:
    """Eq. 13: where A's feature is at least as close to the inverted hybrid as B's.

    Args:
        fa / fb: (C, h, w) features of the two aligned images at one level.
        inverted: (C, h, w) the hybrid of the level above, inverted to this level.

    Returns:
        (h, w) bool.
    """
    return (fa - inverted).norm(dim=0) <= (fb - inverted).norm(dim=0)


def hybridize(
    backbone: Backbone, pyramid: Sequence[int | None], levels: Sequence[int], a: Tensor, b: Tensor, iterations: int
) -> Hybrid:
    """The semantic hybrid of two aligned images (module docstring).

    Args:
        backbone: the feature extractor.
        pyramid: the backbone layer of each level 1..5 (None where unused).
        levels: the levels to combine, coarse to fine (strictly decreasing).
        a / b: (3, H, W) the two images in [0, 1], aligned, same size.
        iterations: L-BFGS iterations of each inversion.

    Returns:
        :class:`Hybrid`.
    """
    layers = [int(pyramid[level - 1]) for level in levels]
    with torch.no_grad():
        fa = [f[0] for f in backbone(a[None], layers)]
        fb = [f[0] for f in backbone(b[None], layers)]
    mask = more_active(fa[0], fb[0])
    hybrid = _choose(mask, fa[0], fb[0])
    for i in range(1, len(layers)):
        start = _choose(_upsample_mask(mask, tuple(fa[i].shape[-2:])), fa[i], fb[i])
        inverted = deconvolve(subnetwork(backbone, layers[i], layers[i - 1]), hybrid[None], start[None], iterations)[0]
        mask = closer_to(fa[i], fb[i], inverted)
        hybrid = _choose(mask, fa[i], fb[i])
    size = tuple(a.shape[-2:])
    pixel_mask = _upsample_mask(mask, size)
    normalise = lambda img: (img - backbone.mean[0]) / backbone.std[0]  # noqa: E731
    start = _choose(pixel_mask, normalise(a), normalise(b))
    image = deconvolve(subnetwork(backbone, IMAGE_INPUT, layers[-1]), hybrid[None], start[None], iterations)[0]
    image = (image * backbone.std[0] + backbone.mean[0]).clamp(0, 1)
    return Hybrid(image=image, mask=pixel_mask.float(), a=a, b=b)


#: Labels of the panels of the ``hybrid_strip`` picture.
STRIP_LABELS = ["A aligned", "B aligned", "mask (white: from A)", "hybrid"]


def hybrid_pictures(hybrid: Hybrid) -> dict[str, PairFile]:
    """The pictures of a hybrid by file stem: ``hybrid`` (the hybrid) and ``hybrid_strip``
    (aligned A, aligned B, the mask in white where A was taken, the hybrid)."""
    mask = hybrid.mask[None].expand(3, -1, -1)
    return {"hybrid": hybrid.image, "hybrid_strip": Strip([hybrid.a, hybrid.b, mask, hybrid.image], labels=list(STRIP_LABELS))}
