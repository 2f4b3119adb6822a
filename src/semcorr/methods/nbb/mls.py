"""Moving least squares (MLS) deformation (Schaefer, McPhail & Warren, SIGGRAPH 2006): affine,
similarity and rigid, plus the leave-one-out residuals that reject outlying control pairs.

Hand-written: no maintained Python library provides MLS point deformation (kornia has TPS and
homographies, scikit-image piecewise-affine and polynomial transforms). NBB densifies its sparse
pairs with MLS for keypoint transfer (paper section 4.2) and aligns images with it (section 5.1).

For a point ``v`` and control pairs ``p_i -> q_i``, with weights ``w_i = 1 / |p_i - v|^(2 alpha)``,
weighted centroids ``p*``, ``q*`` and ``p^_i = p_i - p*``, ``q^_i = q_i - q*``, each kind is the
best map of its class for the weighted pairs, applied to ``v``: ``f(v) = (v - p*) M + q*`` with

- ``affine`` (Schaefer et al., eq. 5): ``M = (sum_i w_i p^_i^T p^_i)^-1 sum_i w_i p^_i^T q^_i``
  (row vectors). Reproduces any global affine map exactly; where the pairs nearby disagree, ``M``
  may be a reflection, and the warped picture shows mirrored content there.
- ``similarity`` (eq. 6), in complex numbers ``z = x + i y``: ``M = m``,
  ``m = sum_i w_i conj(p^_i) q^_i / sum_i w_i |p^_i|^2`` (rotation and uniform scale).
- ``rigid`` (eqs. 7-8): ``M = m / |m|``, the rotation of the similarity (Schaefer et al.'s
  ``|v - p*| f_r / |f_r| + q*`` reduces to it). Its local map is never a reflection; the
  reference code warps with it.

Every kind interpolates every pair exactly, so pairs that cross each other (an outlier sent
across the image) force a fold near them whatever the kind; :mod:`.densify` removes such pairs
before the dense map is built.

Degenerate input, without a special case: the moments get a tiny Tikhonov term
``lambda = 1e-9 trace`` pulling ``M`` towards the identity, so one pair gives a pure translation
by its offset, two (or collinear) pairs fit the direction they span, and three or more pairs in
general position reproduce maps of the class to rounding error. Zero pairs give NaN. The
arithmetic runs in float64 (weights up to ``1e12^alpha`` at a control point), with the moments
taken about the query itself so that nothing large cancels near a control point.

:func:`leave_one_out` evaluates the map at every control point from all the other pairs (the
control's own weight zeroed); the distance between that prediction and the control's own image is
how much the pair disagrees with its neighbours, which :mod:`.densify` uses to reject outliers.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

#: The kinds of MLS map.
MLS_KINDS = ("affine", "similarity", "rigid")
#: Squared distance below which a query counts as sitting on a control point.
_TINY = 1e-12
#: Relative Tikhonov weight pulling M towards the identity (see the module docstring).
_RIDGE = 1e-9
#: Query x control entries per chunk (bounds float64 memory to ~100 MB).
_CHUNK_ELEMS = 1 << 21


def _check_kind(kind: str) -> None:
    if kind not in MLS_KINDS:
        raise ValueError(f"unknown MLS kind {kind!r}; valid: {', '.join(MLS_KINDS)}")


def _apply(u: Tensor, q: Tensor, w: Tensor, kind: str) -> Tensor:
    """The MLS map of a chunk of queries from their moments.

    Args:
        u: (n, K, 2) float64 ``p_i - v`` per query.
        q: (K, 2) float64 centred controls' images.
        w: (n, K) float64 weights (rows not normalised; zero entries leave a control out).
        kind: one of :data:`MLS_KINDS`.

    Returns:
        (n, 2) float64 ``f(v)`` minus the mean of the controls' images.
    """
    w = w / w.sum(dim=1, keepdim=True).clamp_min(1e-300)
    wu = w[..., None] * u
    u_bar = wu.sum(dim=1)  # p* - v
    q_star = w @ q
    if kind == "affine":
        wu_t = wu.transpose(1, 2)  # (n, 2, K)
        pp = wu_t @ u - u_bar[:, :, None] * u_bar[:, None, :]  # sum w p^T p^ (2 x 2)
        pq = wu_t @ q - u_bar[:, :, None] * q_star[:, None, :]  # sum w p^T q^
        eye = torch.eye(2, dtype=u.dtype, device=u.device)
        lam = (_RIDGE * pp.diagonal(dim1=1, dim2=2).sum(-1) + _TINY)[:, None, None] * eye
        m = torch.linalg.solve(pp + lam, pq + lam)
        return q_star - (u_bar[:, None] @ m).squeeze(1)
    # complex form: p^ = u - u_bar, q^ = q - q*, m = sum w conj(p^) q^ / sum w |p^|^2
    pc = torch.complex(u[..., 0], u[..., 1]) - torch.complex(u_bar[:, 0], u_bar[:, 1])[:, None]
    qc = torch.complex(q[:, 0], q[:, 1])[None] - torch.complex(q_star[:, 0], q_star[:, 1])[:, None]
    mu = (w * pc.abs().square()).sum(dim=1)
    lam = _RIDGE * mu + _TINY
    m = ((w * pc.conj() * qc).sum(dim=1) + lam) / (mu + lam)
    if kind == "rigid":
        m = m / m.abs().clamp_min(1e-300)
    moved = -torch.complex(u_bar[:, 0], u_bar[:, 1]) * m  # (v - p*) M
    return q_star + torch.stack([moved.real, moved.imag], dim=-1)


def mls_map(src_ctrl: Tensor, dst_ctrl: Tensor, query: Tensor, alpha: float = 1.0, kind: str = "affine") -> Tensor:
    """MLS map of ``query`` points defined by control pairs ``src_ctrl -> dst_ctrl``.

    Args:
        src_ctrl: (K, 2) control points p_i (x, y) in the domain.
        dst_ctrl: (K, 2) their images q_i.
        query: (N, 2) points v to map; NaN rows give NaN.
        alpha: weight exponent, ``w_i = |p_i - v|^(-2 alpha)`` (Schaefer et al. use 1).
        kind: ``"affine"``, ``"similarity"`` or ``"rigid"``.

    Returns:
        (N, 2) f(v) in ``query``'s dtype; every row NaN when K == 0. f(p_i) = q_i, and any global
        map of the kind's class through the controls is reproduced to rounding error.
    """
    _check_kind(kind)
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
    step = max(1, _CHUNK_ELEMS // k)
    outs = []
    for start in range(0, n, step):
        v = v_all[start : start + step]  # (n, 2)
        u = p[None] - v[:, None]  # (n, K, 2)
        w = u.square().sum(-1).clamp_min(_TINY).pow(-alpha)  # (n, K)
        outs.append(_apply(u, q, w, kind))
    out = (torch.cat(outs) + q_mean).to(out_dtype)
    return out.masked_fill(bad[:, None], math.nan)


def leave_one_out(src_ctrl: Tensor, dst_ctrl: Tensor, alpha: float = 1.0, kind: str = "affine") -> Tensor:
    """Each control point mapped by the MLS map of the other pairs.

    The queries are the control points themselves with their own weight zeroed, so no weight is
    singular (distinct controls) and every weighted moment is one product of the (K, K) weight
    matrix with per-control terms (``sum_i w_ji f_i = (W f)_j``): O(K^2) multiply-adds, no
    (K, K, 2) intermediates.

    Args:
        src_ctrl: (K, 2) distinct control points (x, y).
        dst_ctrl: (K, 2) their images.
        alpha / kind: as :func:`mls_map`.

    Returns:
        (K, 2) predictions of ``dst_ctrl`` (NaN when K < 2).
    """
    _check_kind(kind)
    k = src_ctrl.shape[0]
    out_dtype = dst_ctrl.dtype if dst_ctrl.is_floating_point() else torch.float32
    if k < 2:
        return torch.full((k, 2), math.nan, dtype=out_dtype, device=src_ctrl.device)
    origin = src_ctrl.to(torch.float64).mean(dim=0)
    p = src_ctrl.to(torch.float64) - origin  # centred: the moments below stay small
    q_mean = dst_ctrl.to(torch.float64).mean(dim=0)
    q = dst_ctrl.to(torch.float64) - q_mean
    w = torch.cdist(p, p).square().clamp_min(_TINY).pow(-alpha)
    w.fill_diagonal_(0.0)
    w = w / w.sum(dim=1, keepdim=True)
    p_star, q_star = w @ p, w @ q  # (K, 2)
    px, py, qx, qy = p[:, 0], p[:, 1], q[:, 0], q[:, 1]
    ux, uy = (p - p_star).unbind(1)  # v - p*, the query being the control itself
    if kind == "affine":
        # sum_i w p^_i^T p^_i and sum_i w p^_i^T q^_i, row vectors (2 x 2 each)
        terms = torch.stack([px * px, px * py, py * py, px * qx, px * qy, py * qx, py * qy], dim=1)
        m = w @ terms
        sxx = m[:, 0] - p_star[:, 0] ** 2
        sxy = m[:, 1] - p_star[:, 0] * p_star[:, 1]
        syy = m[:, 2] - p_star[:, 1] ** 2
        pq = torch.stack([
            m[:, 3] - p_star[:, 0] * q_star[:, 0], m[:, 4] - p_star[:, 0] * q_star[:, 1],
            m[:, 5] - p_star[:, 1] * q_star[:, 0], m[:, 6] - p_star[:, 1] * q_star[:, 1],
        ], dim=1).view(k, 2, 2)
        pp = torch.stack([sxx, sxy, sxy, syy], dim=1).view(k, 2, 2)
        lam = (_RIDGE * (sxx + syy) + _TINY)[:, None, None] * torch.eye(2, dtype=p.dtype, device=p.device)
        matrix = torch.linalg.solve(pp + lam, pq + lam)
        moved = (torch.stack([ux, uy], dim=1)[:, None] @ matrix).squeeze(1)
    else:
        # complex m = sum w conj(p^) q^ / sum w |p^|^2 with p^ = p - p*, q^ = q - q*
        terms = torch.stack([px * px + py * py, px * qx + py * qy, px * qy - py * qx], dim=1)
        m = w @ terms
        mu = m[:, 0] - p_star.square().sum(1)
        real = m[:, 1] - (p_star[:, 0] * q_star[:, 0] + p_star[:, 1] * q_star[:, 1])
        imag = m[:, 2] - (p_star[:, 0] * q_star[:, 1] - p_star[:, 1] * q_star[:, 0])
        lam = _RIDGE * mu + _TINY
        real, imag = (real + lam) / (mu + lam), imag / (mu + lam)
        if kind == "rigid":
            norm = torch.sqrt(real**2 + imag**2).clamp_min(1e-300)
            real, imag = real / norm, imag / norm
        moved = torch.stack([ux * real - uy * imag, ux * imag + uy * real], dim=1)
    return (q_star + moved + q_mean).to(out_dtype)


def mls_grid(
    src_ctrl: Tensor, dst_ctrl: Tensor, height: int, width: int, alpha: float = 1.0, step: int = 4, kind: str = "affine"
) -> Tensor:
    """Dense MLS map of every pixel of a ``height`` x ``width`` image.

    MLS is evaluated exactly on nodes every ``step`` pixels (first and last row/column included)
    and bilinearly interpolated in between (as the reference code does with a 15-pixel grid);
    a global affine map stays exact because bilinear interpolation of an affine field is exact.

    Args:
        src_ctrl: (K, 2) control points (x, y) in the domain image.
        dst_ctrl: (K, 2) their images.
        height, width: size of the domain image.
        alpha: MLS weight exponent.
        step: node spacing in pixels (1: exact at every pixel).
        kind: see :func:`mls_map`.

    Returns:
        (height, width, 2) float32: (x, y) image of pixel (x, y) = (column, row); NaN when K == 0.
    """
    ny = math.ceil((height - 1) / step) + 1
    nx = math.ceil((width - 1) / step) + 1
    ys = torch.linspace(0, height - 1, ny, device=src_ctrl.device)
    xs = torch.linspace(0, width - 1, nx, device=src_ctrl.device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    nodes = torch.stack([gx, gy], dim=-1).reshape(-1, 2)
    mapped = mls_map(src_ctrl, dst_ctrl, nodes, alpha, kind).to(torch.float32)
    field = mapped.reshape(1, ny, nx, 2).permute(0, 3, 1, 2)
    if (ny, nx) != (height, width):
        field = F.interpolate(field, size=(height, width), mode="bilinear", align_corners=True)
    return field[0].permute(1, 2, 0).contiguous()
