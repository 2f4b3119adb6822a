"""Moving least squares (MLS) deformation (Schaefer, McPhail & Warren, SIGGRAPH 2006), affine form.

Hand-written: no maintained Python library provides MLS point deformation (kornia has TPS and
homographies, scikit-image piecewise-affine and polynomial transforms). NBB densifies its sparse
pairs with MLS for keypoint transfer (paper section 4.2) and aligns images with it (section 5.1).

For a point ``v`` and control pairs ``p_i -> q_i`` (row vectors), with weights
``w_i = 1 / |p_i - v|^(2 alpha)``, weighted centroids ``p*``, ``q*`` and ``p^_i = p_i - p*``,
``q^_i = q_i - q*``, the affine MLS deformation (Schaefer et al., eqs. 1-5) is::

    f(v) = (v - p*) M + q*,    M = (sum_i w_i p^_i^T p^_i)^-1 sum_i w_i p^_i^T q^_i

Why affine rather than similarity or rigid (the reference code uses rigid): affine MLS is the only
one of the three that reproduces any global affine map exactly, so when two images are related by
scaling plus translation (or any affine map) the dense field densified from exact pairs is exact;
it is linear in ``q`` and has a closed form without the square roots of the rigid solution. Its
drawback, possible shear far from the controls, matters little for keypoint transfer, where the
queries lie on the object among the pairs.

Degenerate input, without a special case: ``M`` is solved from ``P + lambda I`` and
``Q + lambda I`` with a tiny ``lambda = 1e-9 trace(P)`` (Tikhonov pull of ``M`` towards the
identity), so one pair gives a pure translation by its offset, two pairs (or collinear pairs) fit
the direction they span and keep the perpendicular direction unscaled, and three or more pairs in
general position reproduce affine maps to rounding error. Zero pairs give NaN. The arithmetic runs
in float64 (weights up to ``1e12^alpha`` at a control point).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: Squared distance below which a query counts as sitting on a control point.
_TINY = 1e-12
#: Relative Tikhonov weight pulling M towards the identity (see the module docstring).
_RIDGE = 1e-9
#: Query x control entries per chunk (bounds float64 memory to ~100 MB).
_CHUNK_ELEMS = 1 << 21


def mls_affine(src_ctrl: Tensor, dst_ctrl: Tensor, query: Tensor, alpha: float = 1.0) -> Tensor:
    """Affine MLS map of ``query`` points defined by control pairs ``src_ctrl -> dst_ctrl``.

    Args:
        src_ctrl: (K, 2) control points p_i (x, y) in the domain.
        dst_ctrl: (K, 2) their images q_i.
        query: (N, 2) points v to map; NaN rows give NaN.
        alpha: weight exponent, ``w_i = |p_i - v|^(-2 alpha)`` (Schaefer et al. use 1).

    Returns:
        (N, 2) f(v) in ``query``'s dtype; every row NaN when K == 0. f(p_i) = q_i and any global
        affine map through the controls is reproduced to rounding error.
    """
    out_dtype = query.dtype if query.is_floating_point() else torch.float32
    n, k = query.shape[0], src_ctrl.shape[0]
    if k == 0 or n == 0:
        return torch.full((n, 2), math.nan, dtype=out_dtype, device=query.device)
    p = src_ctrl.to(torch.float64)
    q_mean = dst_ctrl.to(torch.float64).mean(dim=0)
    q = dst_ctrl.to(torch.float64) - q_mean  # centred: the moments below stay small
    v_all = query.to(torch.float64)
    bad = ~torch.isfinite(v_all).all(dim=1)
    v_all = torch.where(bad[:, None], torch.zeros_like(v_all), v_all)
    eye = torch.eye(2, dtype=torch.float64, device=query.device)
    step = max(1, _CHUNK_ELEMS // k)
    outs = []
    for start in range(0, n, step):
        v = v_all[start : start + step]  # (n, 2)
        # Moments about the query itself (u = p - v), so that near a control point every term
        # shrinks with the distance and nothing large cancels.
        u = p[None] - v[:, None]  # (n, K, 2)
        w = u.square().sum(-1).clamp_min(_TINY).pow(-alpha)  # (n, K)
        w = w / w.sum(dim=1, keepdim=True)
        wu = w[..., None] * u
        u_bar = wu.sum(dim=1)  # p* - v
        q_star = w @ q
        wu_t = wu.transpose(1, 2)  # (n, 2, K)
        pp = wu_t @ u - u_bar[:, :, None] * u_bar[:, None, :]  # sum w p^T p^ (2 x 2)
        pq = wu_t @ q - u_bar[:, :, None] * q_star[:, None, :]  # sum w p^T q^
        lam = (_RIDGE * pp.diagonal(dim1=1, dim2=2).sum(-1) + _TINY)[:, None, None] * eye
        m = torch.linalg.solve(pp + lam, pq + lam)
        outs.append(q_star - (u_bar[:, None] @ m).squeeze(1))
    out = (torch.cat(outs) + q_mean).to(out_dtype)
    return out.masked_fill(bad[:, None], math.nan)


def mls_grid(src_ctrl: Tensor, dst_ctrl: Tensor, height: int, width: int, alpha: float = 1.0, step: int = 4) -> Tensor:
    """Dense affine MLS map of every pixel of a ``height`` x ``width`` image.

    MLS is evaluated exactly on nodes every ``step`` pixels (first and last row/column included)
    and bilinearly interpolated in between (as the reference code does with a 15-pixel grid);
    a global affine map stays exact because bilinear interpolation of an affine field is exact.

    Args:
        src_ctrl: (K, 2) control points (x, y) in the domain image.
        dst_ctrl: (K, 2) their images.
        height, width: size of the domain image.
        alpha: MLS weight exponent.
        step: node spacing in pixels (1: exact at every pixel).

    Returns:
        (height, width, 2) float32: (x, y) image of pixel (x, y) = (column, row); NaN when K == 0.
    """
    ny = math.ceil((height - 1) / step) + 1
    nx = math.ceil((width - 1) / step) + 1
    ys = torch.linspace(0, height - 1, ny, device=src_ctrl.device)
    xs = torch.linspace(0, width - 1, nx, device=src_ctrl.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    nodes = torch.stack([gx, gy], dim=-1).reshape(-1, 2)
    mapped = mls_affine(src_ctrl, dst_ctrl, nodes, alpha).to(torch.float32)
    field = mapped.reshape(1, ny, nx, 2).permute(0, 3, 1, 2)
    if (ny, nx) != (height, width):
        field = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=True)
    return field[0].permute(1, 2, 0).contiguous()
