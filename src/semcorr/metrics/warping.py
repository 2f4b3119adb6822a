"""Sampling through flow fields: backward warping of images and masks, flow resizing.

Coordinate convention (the whole module): a pixel's centre has integer coordinates, pixel (x, y)
covers [x - 0.5, x + 0.5] x [y - 0.5, y + 0.5], so an image of width W spans centres 0 .. W-1.
This is ``torch.nn.functional.grid_sample(..., align_corners=True)`` after the normalisation
``x_n = 2 x / (W - 1) - 1`` (x_n = -1 is the centre of column 0, +1 the centre of column W-1).

Flows follow :class:`semcorr.methods.base.MatchOutput` (``flow``): a flow (B, 2, H, W) defined on the
grid of image A maps pixel (x, y) of A to ``(x + flow[0, y, x], y + flow[1, y, x])`` in image B;
NaN marks pixels without an answer.

* Backward warping (:func:`warp_by_flow`): to bring a SOURCE image or mask onto the TARGET grid
  one needs the target -> source flow (defined on the target grid); every target pixel samples the
  source at the position its flow points to. Mask transfer (Caltech-101, CUB) therefore calls
  ``method(src_img, trg_img, ..., dense="backward").flow`` and then ``warp_mask(src_mask, flow)``.
* Resizing (:func:`resize_flow`): a flow is resampled on a new grid AND its vectors re-expressed
  in the new units of both images, with the dataset convention that resizing by factors (sx, sy)
  maps a point (x, y) to (x sx, y sy) (see :mod:`semcorr.data.transforms`). A constant
  translation u becomes exactly u * sx when both images are scaled by sx.

Outside the image, ``padding_mode="zeros"`` interpolates against zero-valued pixels (as
``grid_sample`` does), so masks read background there; a NaN flow vector yields ``fill``. Unknown
(NaN) values of a sampled field only reach the outputs whose interpolation gives them a non-zero
weight.

Everything here is plain torch (``grid_sample`` through :func:`semcorr.grid.sample_at`, the
project's one sampler of a field at points); nothing is hand-written beyond the coordinate
bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from semcorr.grid import pixel_grid, sample_at


def flow_to_points(flow: torch.Tensor) -> torch.Tensor:
    """Absolute positions a flow points to.

    Args:
        flow: (B, 2, H, W) displacements (NaN: no answer).

    Returns:
        (B, 2, H, W) positions ``(x + u, y + v)`` in the other image (NaN where the flow is NaN).
    """
    _, _, h, w = flow.shape
    return flow + pixel_grid(h, w, flow.device, flow.dtype)[None]


def points_to_flow(points: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`flow_to_points`: (B, 2, H, W) absolute positions -> displacements."""
    _, _, h, w = points.shape
    return points - pixel_grid(h, w, points.device, points.dtype)[None]


def flow_valid(flow: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) flow -> (B, H, W) bool, True where both components are finite."""
    return torch.isfinite(flow).all(dim=1)


def warp_by_flow(
    src: torch.Tensor,
    flow_trg_to_src: torch.Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    fill: float = 0.0,
) -> torch.Tensor:
    """Backward-warp source images onto the target grid.

    Target pixel (x, y) takes the source value at ``(x + u, y + v)`` with ``(u, v)`` the
    target -> source flow at (x, y) (``grid_sample``, align_corners=True, pixel centres at integer
    coordinates; positions outside the source get 0 with ``padding_mode="zeros"``).

    Args:
        src: (B, C, Hs, Ws) source images (any float dtype; bool/int are converted to float).
        flow_trg_to_src: (B, 2, Ht, Wt) flow on the TARGET grid pointing into the source.
        mode: ``"bilinear"`` for images, ``"nearest"`` for label maps.
        padding_mode: ``"zeros"`` or ``"border"``.
        fill: value of target pixels whose flow is NaN.

    Returns:
        (B, C, Ht, Wt) float tensor.
    """
    if src.shape[0] != flow_trg_to_src.shape[0] or flow_trg_to_src.shape[1] != 2:
        raise ValueError(f"warp_by_flow: src {tuple(src.shape)} and flow {tuple(flow_trg_to_src.shape)} do not fit")
    return sample_at(src.float(), flow_to_points(flow_trg_to_src.float()), mode, padding_mode, fill)


def warp_mask(src_mask: torch.Tensor, flow_trg_to_src: torch.Tensor) -> torch.Tensor:
    """Transfer a source mask to the target grid (nearest sampling, outside = background).

    Args:
        src_mask: (B, Hs, Ws) bool or {0, 1} mask of the source.
        flow_trg_to_src: (B, 2, Ht, Wt) target -> source flow.

    Returns:
        (B, Ht, Wt) bool predicted target mask (NaN flow -> background).
    """
    warped = warp_by_flow(src_mask[:, None].float(), flow_trg_to_src, mode="nearest", padding_mode="zeros", fill=0.0)
    return warped[:, 0] > 0.5


def _factors(value, batch: int, device, dtype) -> torch.Tensor:
    """Scalar, (2,) or (B, 2) factors -> (B, 2) tensor."""
    t = torch.as_tensor(value, dtype=dtype, device=device)
    if t.ndim == 0:
        t = t.repeat(2)
    if t.ndim == 1:
        t = t[None].expand(batch, 2)
    if t.shape != (batch, 2):
        raise ValueError(f"scale factors must be a scalar, (2,) or (B, 2) = ({batch}, 2); got {tuple(t.shape)}")
    return t


def resize_flow(
    flow: torch.Tensor,
    size: Sequence[int],
    src_factors,
    trg_factors,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Resample a flow on a new source grid and express it in new target units.

    The flow maps source pixel x1 (old source frame) to target point t1 (old target frame). The new
    frames relate to the old ones by ``x2 = x1 * src_factors`` and ``t2 = t1 * trg_factors``
    (per axis, the dataset's resizing convention). For every pixel x2 of the new (H', W') grid the
    old flow is sampled at ``x1 = x2 / src_factors`` (``mode`` interpolation, border clamping) and
    the result is ``(x1 + flow(x1)) * trg_factors - x2``. This is what the TSS evaluation kit does to
    bring a flow computed on resized images back to the original resolution.

    Args:
        flow: (B, 2, H, W) flow, NaN where unknown.
        size: (H', W') of the new source grid.
        src_factors: new / old source coordinates: scalar, (sx, sy) or (B, 2).
        trg_factors: new / old target coordinates: scalar, (sx, sy) or (B, 2).
        mode: ``"bilinear"`` (predictions) or ``"nearest"`` (ground truth with unknown pixels).

    Returns:
        (B, 2, H', W') flow in the new units; NaN where the sampled flow is unknown.

    Example:
        Back to the original resolution of a pair sample: ``resize_flow(pred, (H0, W0),
        1 / sample["src_scale"], 1 / sample["trg_scale"])``.
    """
    b = flow.shape[0]
    height, width = int(size[0]), int(size[1])
    dtype = flow.dtype if flow.is_floating_point() else torch.float32
    a_src = _factors(src_factors, b, flow.device, dtype)
    a_trg = _factors(trg_factors, b, flow.device, dtype)
    x2 = pixel_grid(height, width, flow.device, dtype)[None].expand(b, -1, -1, -1)
    x1 = x2 / a_src[:, :, None, None]
    sampled = sample_at(flow.to(dtype), x1, mode=mode, padding_mode="border", fill=float("nan"))
    return (x1 + sampled) * a_trg[:, :, None, None] - x2
