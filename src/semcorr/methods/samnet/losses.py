"""Weakly supervised losses of SAM-Net (Sec. 4.3): semantic attribute matching, content, smoothness.

* Semantic attribute matching loss (eqs. 11-13): for every source cell ``i`` and every candidate
  transformation shifted by ``d`` in the 9x9 window ``Q_i``, the patch distance
  ``D(i, d) = sum_{j in N_i} ||F^{s<-t,L}_j - F^t(j + f^L_j + d)||^2`` (3x3 ``N_i``) between the
  final attribute-transferred feature and the target feature through the final field shifted by
  ``d``; ``K_i`` = softmax of ``-D(i, .)`` at ``d = 0`` (the current transformation is the positive,
  the 80 shifted "neighbor transformation candidates" are the negatives);
  ``L_AM = mean_i max(-log K_i, tau)``.
* Content loss (eq. 2): ``mean_i ||F^{s<-t,L}_i - F^s_i||^2``.
* Smoothness: the squared finite differences of the final attribute-transferred image (the "L2
  regularization loss [21, 28] to encourage spatial smoothness in the stylized image").
* Flow supervision (synthetic pairs only): the end-point error, in feature cells, of every
  iteration's transfer of ground-truth correspondences (the synthetic pairs' exact keypoints, spread
  uniformly over the part of the target that sees the source; sparse points are as good a sample of
  the warp as a dense flow and cost no inversion of the warp). The paper trains its first step on the
  synthetic pairs of [41] "similar to [42]", whose two-step scheme starts from a network trained with
  the synthetic transformations' ground truth; the paper does not say whether its own first step reads
  that ground truth. Weight ``flow`` (1 by default); the training module passes the keypoints in
  stage 1 only, so the image pairs of stage 2 train on the weak losses alone. ``flow=0`` trains
  stage 1 weakly too.

Choices where the paper is silent: features are L2-normalised per cell before eqs. 2 and 11 (so the
softmax temperature and the loss weights do not depend on the backbone's feature scale); sums over
``i`` are means. Eq. 13 writes the negatives as ``F^{t,L}_q``, ``q`` in ``Q_i``; the text calls them
"other neighbor transformation candidates", which is how they are read here: the target around the
matched point, not the warped target around the source cell. The literal reading has a degenerate
minimum: a field that sends every cell to the same target point makes the warped map constant and
every candidate equal, a loss of ``log |Q_i|``, lower than that of most real matches between two
instances; the CPU preset fell into it in stage 2. Read around the matched point, a cell scores well
only where its match is a similarity peak of the target. Candidates outside the target map are left out
of the softmax (there is no feature there to be a negative); the network keeps every matched point on
the target map (:func:`~.affine.clamp_field`), so the positive is always a real feature. Distances
between unit features are ``2 - 2 cos``, the cosine interpolated bilinearly between target cells
(:func:`patch_distances`).
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
from semcorr.grid import pixels_to_cells

from .affine import transfer_points, window_offsets, window_positions
from .correlation import correlation_volume, sample_volume
from .network import SAMNetOutput

TRUNCATIONS = ("floor", "cap")


def patch_distances(
    attr: Tensor, trg: Tensor, field: Tensor, window_radius: int = 4, patch_radius: int = 1
) -> tuple[Tensor, Tensor]:
    """Eq. 11 patch distances of every source cell to its shifted transformation candidates.

    With unit features ``||a - b||^2 = 2 - 2 cos(a, b)``; the cosines come from one correlation
    volume sampled at the candidate points (:func:`~.correlation.sample_volume`, bilinear between
    target cells).

    Args:
        attr: (B, C, h, w) ``F^{s<-t,L}`` (normalised here).
        trg: (B, C, h', w') ``F^t`` (normalised here).
        field: (B, 6, h, w) the final field ``T^L``.
        window_radius: radius of ``Q_i`` (4: 9x9).
        patch_radius: radius of ``N_i`` (1: 3x3).

    Returns:
        ``(dist, inside)``: ``dist`` (B, K, h, w), K = (2 window_radius + 1)^2 in
        :func:`~.affine.window_offsets` order, entry k at cell i is ``D(i, offsets[k])``, the
        positive ``d = 0`` is k = K // 2; ``inside`` (B, K, h, w) bool, whether the candidate
        point ``i + f_i + d`` lies on the target map.
    """
    th, tw = trg.shape[-2:]
    offsets = window_offsets(window_radius, field.device, field.dtype)
    positions = window_positions(field, field.new_zeros(1, 2)) + offsets[None, :, None, None]
    cosine = sample_volume(correlation_volume(attr, trg), positions)  # (B, K, h, w)
    per_cell = 2.0 - 2.0 * cosine
    patch = 2 * patch_radius + 1
    dist = F.avg_pool2d(per_cell, patch, stride=1, padding=patch_radius, count_include_pad=True) * patch * patch
    x, y = positions[..., 0], positions[..., 1]
    inside = (x > -0.5) & (x < tw - 0.5) & (y > -0.5) & (y < th - 0.5)
    return dist, inside


def attribute_matching_loss(
    attr: Tensor,
    trg: Tensor,
    field: Tensor,
    tau: float = 0.1,
    truncation: str = "floor",
    window_radius: int = 4,
    patch_radius: int = 1,
) -> Tensor:
    """Eqs. 12-13: truncated cross-entropy of the current transformation among its shifted candidates
    on the target map (the positive always counts).

    Args:
        attr: (B, C, h, w) ``F^{s<-t,L}``. trg: (B, C, h', w') ``F^t``. field: (B, 6, h, w) ``T^L``.
        tau: truncation threshold.
        truncation: ``"floor"`` (``max(-log K, tau)``, the paper) or ``"cap"`` (``min``).
        window_radius / patch_radius: see :func:`patch_distances`.

    Returns:
        Scalar loss (mean over cells and batch).
    """
    if truncation not in TRUNCATIONS:
        raise ConfigError(f"model.loss.truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    dist, inside = patch_distances(attr, trg, field, window_radius, patch_radius)
    inside[:, dist.shape[1] // 2] = True
    logits = (-dist).masked_fill(~inside, float("-inf"))
    nll = -torch.log_softmax(logits, dim=1)[:, dist.shape[1] // 2]  # (B, h, w)
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


def flow_loss(fields: list[Tensor], src_kps: Tensor, trg_kps: Tensor, image_hw: tuple[int, int]) -> Tensor:
    """Mean end-point error, in feature cells, of the fields' transfer of ground-truth correspondences.

    Args:
        fields: (B, 6, h, w) fields, one per iteration (the error is averaged over them).
        src_kps / trg_kps: (B, N, 2) corresponding pixels (x, y) of the source and target, both at
            the (H, W) network input size; NaN rows (padding) are left out.
        image_hw: (H, W).

    Returns:
        Scalar; 0 when no pair has a keypoint.
    """
    grid = (fields[0].shape[-2], fields[0].shape[-1])
    src = pixels_to_cells(src_kps.to(fields[0].dtype), image_hw, grid)
    gt = pixels_to_cells(trg_kps.to(fields[0].dtype), image_hw, grid)
    valid = torch.isfinite(src).all(dim=-1) & torch.isfinite(gt).all(dim=-1)
    if not bool(valid.any()):
        return fields[0].new_zeros(())
    errors = [(transfer_points(f, src) - gt).norm(dim=-1)[valid].mean() for f in fields]
    return torch.stack(errors).mean()


class SAMNetLoss(nn.Module):
    """Weighted sum ``am L_AM + content L_C + smooth L_smooth (+ flow L_flow)`` of a forward pass.

    The first three read the final iteration; ``L_flow`` (:func:`flow_loss`, every iteration) is
    added when ground-truth keypoints are given and ``flow > 0``.

    Args:
        tau / truncation: see :func:`attribute_matching_loss`.
        am / content / smooth / flow: the weights.
        window_radius / patch_radius: radii of ``Q_i`` and ``N_i``.
    """

    def __init__(
        self,
        tau: float = 0.1,
        truncation: str = "floor",
        am: float = 1.0,
        content: float = 1.0,
        smooth: float = 1.0,
        flow: float = 1.0,
        window_radius: int = 4,
        patch_radius: int = 1,
    ) -> None:
        super().__init__()
        if truncation not in TRUNCATIONS:
            raise ConfigError(f"model.loss.truncation must be one of {TRUNCATIONS}, got {truncation!r}")
        self.tau, self.truncation = float(tau), truncation
        self.weights = {"am": float(am), "content": float(content), "smooth": float(smooth), "flow": float(flow)}
        self.window_radius, self.patch_radius = int(window_radius), int(patch_radius)

    def forward(
        self, output: SAMNetOutput, src_kps: Tensor | None = None, trg_kps: Tensor | None = None
    ) -> dict[str, Tensor]:
        """The losses.

        Args:
            output: a :class:`~.network.SAMNetOutput` of images of size (H, W).
            src_kps / trg_kps: optional (B, N, 2) ground-truth correspondences in pixels of the
                (H, W) input, NaN-padded (see :func:`flow_loss`).

        Returns:
            ``{"loss": total, "am": ..., "content": ..., "smooth": ...}`` (and ``"flow"`` when
            used), scalars.
        """
        final = output.final
        terms = {
            "am": attribute_matching_loss(
                final.attr_feature, output.trg_feature, final.field, self.tau, self.truncation, self.window_radius, self.patch_radius
            ),
            "content": content_loss(final.attr_feature, output.src_feature),
            "smooth": smoothness_loss(final.image),
        }
        if src_kps is not None and trg_kps is not None and self.weights["flow"] > 0:
            fields = [it.field for it in output.iterations]
            terms["flow"] = flow_loss(fields, src_kps, trg_kps, tuple(final.image.shape[-2:]))
        terms["loss"] = sum(self.weights[name] * value for name, value in terms.items())
        return terms
