"""Weakly supervised losses of SAM-Net (Sec. 4.3): semantic attribute matching, content, smoothness.

* Semantic attribute matching loss (eqs. 11-13): for every source cell ``i`` the patch distance
  ``D(i, q) = sum_{j in N_i} ||F^{s<-t,L}_j - F^{t,L}_{j + (q - i)}||^2`` (3x3 ``N_i``) between the
  final attribute-transferred feature and the final warped target feature ``F^{t,L}_q =
  F^t(q + f^L_q)``, for ``q`` in the 9x9 window ``Q_i``; ``K_i`` = softmax of ``-D(i, .)`` at the
  centre ``q = i`` (the positive; the other 80 candidates are the negatives);
  ``L_AM = mean_i max(-log K_i, tau)``.
* Content loss (eq. 2): ``mean_i ||F^{s<-t,L}_i - F^s_i||^2``.
* Smoothness: the squared finite differences of the final attribute-transferred image (the "L2
  regularization loss [21, 28] to encourage spatial smoothness in the stylized image").

Choices where the paper is silent: features are L2-normalised per cell before eqs. 2 and 11 (so the
softmax temperature and the loss weights do not depend on the backbone's feature scale); sums over
``i`` are means; candidates ``q`` outside the map read a zero feature (distance 1 per cell);
``tau = 0.1``; the truncation is the paper's ``max(., tau)`` ("floor": cells already matched with
``-log K_i < tau`` stop contributing), ``truncation="cap"`` gives the robust reading
``min(., tau)`` (cells that cannot be matched, e.g. background, stop contributing); weights
``am = 1``, ``content = 1``, ``smooth = 1``; losses on the final iteration only ("after the
convergence of iterations at L-th iteration").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semcorr.errors import ConfigError

from .affine import warp_features
from .network import SAMNetOutput

TRUNCATIONS = ("floor", "cap")


def patch_distances(attr: Tensor, warped: Tensor, window_radius: int = 4, patch_radius: int = 1) -> Tensor:
    """Eq. 11 patch distances between each source cell and the candidates of its window.

    Args:
        attr: (B, C, h, w) ``F^{s<-t,L}`` (normalised here).
        warped: (B, C, h, w) ``F^{t,L}`` (normalised here).
        window_radius: radius of ``Q_i`` (4: 9x9).
        patch_radius: radius of ``N_i`` (1: 3x3).

    Returns:
        (B, K, h, w), K = (2 window_radius + 1)^2 in :func:`~.affine.window_offsets` order: entry
        k at cell i is ``D(i, i + offsets[k])``; the centre (positive) is k = K // 2.
    """
    b, c, h, w = attr.shape
    size = 2 * window_radius + 1
    a = F.normalize(attr, dim=1)
    cand = F.unfold(F.normalize(warped, dim=1), size, padding=window_radius).reshape(b, c, size * size, h, w)
    per_cell = (a[:, :, None] - cand).pow(2).sum(dim=1)  # (B, K, h, w)
    patch = 2 * patch_radius + 1
    return F.avg_pool2d(per_cell, patch, stride=1, padding=patch_radius, count_include_pad=True) * patch * patch


def attribute_matching_loss(
    attr: Tensor,
    warped: Tensor,
    tau: float = 0.1,
    truncation: str = "floor",
    window_radius: int = 4,
    patch_radius: int = 1,
) -> Tensor:
    """Eqs. 12-13: truncated cross-entropy of the centre candidate.

    Args:
        attr / warped: (B, C, h, w) ``F^{s<-t,L}`` and ``F^{t,L}``.
        tau: truncation threshold.
        truncation: ``"floor"`` (``max(-log K, tau)``, the paper) or ``"cap"`` (``min``).
        window_radius / patch_radius: see :func:`patch_distances`.

    Returns:
        Scalar loss (mean over cells and batch).
    """
    if truncation not in TRUNCATIONS:
        raise ConfigError(f"model.loss.truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    dist = patch_distances(attr, warped, window_radius, patch_radius)
    nll = -torch.log_softmax(-dist, dim=1)[:, dist.shape[1] // 2]  # (B, h, w)
    per_cell = nll.clamp(min=tau) if truncation == "floor" else nll.clamp(max=tau)
    return per_cell.mean()


def content_loss(attr: Tensor, src: Tensor) -> Tensor:
    """Eq. 2 on normalised features: mean over cells of ``||F^{s<-t}_i - F^s_i||^2``.

    Args:
        attr / src: (B, C, h, w).

    Returns:
        Scalar.
    """
    return (F.normalize(attr, dim=1) - F.normalize(src, dim=1)).pow(2).sum(dim=1).mean()


def smoothness_loss(img: Tensor) -> Tensor:
    """Mean squared horizontal + vertical finite differences of an image.

    Args:
        img: (B, 3, H, W).

    Returns:
        Scalar.
    """
    dx = img[..., :, 1:] - img[..., :, :-1]
    dy = img[..., 1:, :] - img[..., :-1, :]
    return dx.pow(2).mean() + dy.pow(2).mean()


class SAMNetLoss(nn.Module):
    """Weighted sum ``am L_AM + content L_C + smooth L_smooth`` on a forward pass's final iteration.

    Args:
        tau / truncation: see :func:`attribute_matching_loss`.
        am / content / smooth: the weights.
        window_radius / patch_radius: radii of ``Q_i`` and ``N_i``.
    """

    def __init__(
        self,
        tau: float = 0.1,
        truncation: str = "floor",
        am: float = 1.0,
        content: float = 1.0,
        smooth: float = 1.0,
        window_radius: int = 4,
        patch_radius: int = 1,
    ) -> None:
        super().__init__()
        if truncation not in TRUNCATIONS:
            raise ConfigError(f"model.loss.truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        self.tau, self.truncation = float(tau), truncation
        self.weights = {"am": float(am), "content": float(content), "smooth": float(smooth)}
        self.window_radius, self.patch_radius = int(window_radius), int(patch_radius)

    def forward(self, output: SAMNetOutput) -> dict[str, Tensor]:
        """The losses.

        Args:
            output: a :class:`~.network.SAMNetOutput`.

        Returns:
            ``{"loss": total, "am": ..., "content": ..., "smooth": ...}``, scalars.
        """
        final = output.final
        warped = warp_features(output.trg_feature, final.field)
        terms = {
            "am": attribute_matching_loss(
                final.attr_feature, warped, self.tau, self.truncation, self.window_radius, self.patch_radius
            ),
            "content": content_loss(final.attr_feature, output.src_feature),
            "smooth": smoothness_loss(final.image),
        }
        terms["loss"] = sum(self.weights[name] * value for name, value in terms.items())
        return terms
