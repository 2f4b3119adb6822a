"""Random geometric warps (affine composed with a thin-plate spline) with exact ground truth.

Used for synthetic pairs (SAM-Net stage 1, :mod:`semcorr.data.synthetic`) and the offline sample
dataset (:mod:`semcorr.data.sample`): a pair is an image and a warp of it, and the warp gives the
correspondences exactly.

Coordinates
-----------
* **Pixels** (x, y): x to the right, y down, pixel centres at integers; an (H, W) image covers
  [-0.5, W - 0.5] x [-0.5, H - 0.5]. The *hull* of an image is [0, W - 1] x [0, H - 1], the region
  where bilinear interpolation uses image pixels only (no padding). Points are "inside" an image
  when they lie in its hull (to ``HULL_TOL`` px).
* **Normalised** (u, v), the frame of the thin-plate spline only: ``u = (2x + 1) / W - 1``,
  ``v = (2y + 1) / H - 1`` (``grid_sample``'s ``align_corners=False`` frame): the image edges are at
  -1 and +1, the 3x3 TPS control grid sits at {-1, 0, 1}^2 (corners, edge midpoints, centre).

Source and target frames have the same size (H, W): the target is rendered at the source's size.

The warp and the direction of every map
---------------------------------------
A :class:`Warp` is defined by its **sampling map** ``M: target pixel -> source pixel``; the target
image is ``trg(p) = src(M(p))`` by bilinear interpolation, zero outside the source (kornia
``remap`` with pixel maps and ``align_corners=True``, the setting whose pixel normalisation matches
integer pixel centres exactly). ``M = A^-1 o T`` where

* ``T`` (target -> intermediate frame, normalised coordinates) is the standard thin-plate spline
  with kernels centred on the 3x3 control grid ``c_k`` that takes ``c_k`` to ``c_k + d_k``, jitter
  ``d_k ~ U(-j, j)^2`` (``T(c_k) = c_k + d_k`` exactly). Its weights come from :func:`fit_tps`
  (see there why not kornia's ``get_tps_transform``); kornia's ``warp_points_tps`` evaluates it;
* ``A`` (source -> intermediate frame, pixels) is the affine map that rotates by ``theta`` and scales
  by ``s`` about the image centre ``((W - 1) / 2, (H - 1) / 2)`` and then translates by
  ``(t_x W, t_y H)``: ``A(p) = s R(theta) (p - c) + c + t``, ``R = [[cos, -sin], [sin, cos]]`` in
  (x, y) with y down (clockwise on screen for theta > 0). It is sampled in the forward direction (an
  object of the source appears rotated by theta and scaled by s in the target) and inverted in closed
  form.

So the target is "the source, affinely warped, then TPS-warped", rendered in ONE interpolation from
the composed map (rather than ``warp_affine`` followed by ``warp_image_tps``, which would resample
twice and make the ground truth approximate).

Exactness
---------
* ``M`` is evaluated in closed form (float64), so rendering and ``M`` agree exactly (up to the
  float32 sampling coordinates of an image warp, ~2e-5 px): synthetic keypoints are drawn in the
  target frame and mapped to the source by ``M`` (:meth:`Warp.sample_keypoints`), so every
  (src, trg) keypoint pair is exact by construction.
* The forward map ``F = M^-1 = T^-1 o A`` (source pixel -> target pixel), needed for dense flows
  and for source keypoints given in advance, inverts the TPS numerically: Newton's method on the
  analytic 2x2 Jacobian of ``T`` in float64, started from the nearest point of a grid over the
  target frame (so it finds the preimage inside the frame, where ``T`` is one-to-one), with step
  halving. Every result is checked: points whose residual ``|M(F(p)) - p|`` exceeds ``tol``
  (default 1e-3 px; measured: below 1e-10 px both ways, ``M(F(p))`` and ``F(M(p))``, on 240x320
  and 427x640 frames) come back as NaN, and so do points whose target lies outside the frame.
* Sampled warps are rejected (and redrawn from the same generator) when ``det(dT)`` falls below
  ``min_jacobian`` anywhere on a grid over the target frame (no folds: ``M`` is one-to-one on the
  target, so ``F`` is well defined) or when less than ``min_overlap`` of the target samples the
  source. At the default ranges about 6% of the draws are redrawn (folds; overlap never binds).

Reproducibility: :func:`make_generator` turns ``(seed, key...)`` into a seeded ``torch.Generator``;
:func:`sample_warp` draws every parameter from it in a fixed order (even those whose range is zero),
so a warp is a pure function of ``(seed, key)``, the size and the ranges.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import torch
from kornia.geometry.transform import remap, warp_points_tps
from scipy.spatial import cKDTree

from semcorr.errors import ConfigError
from semcorr.grid import pixel_points

#: Tolerance (px) of the "inside the hull" tests, absorbing float round-off at the borders.
HULL_TOL = 1e-6

_DT = torch.float64

#: Squared residual (normalised units) at which Newton stops: ~1e-13 normalised, ~1e-11 px.
_CONVERGED = 1e-26

#: Bounds of the points per axis of the grid over the target frame that seeds the TPS inversion
#: (about one grid point every 2 pixels in between).
_INIT_GRID = (33, 129)


def make_generator(seed: int, *keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``seed`` and any keys (ints, strings).

    The seed is a hash of ``repr((seed, *keys))``, stable across processes and platforms, so
    ``make_generator(0, "img.png#1")`` always gives the same stream.
    """
    digest = hashlib.sha256(repr((int(seed), *keys)).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


@dataclass(frozen=True)
class WarpRanges:
    """Ranges of the random warp (defaults: SAM-Net stage 1, see DESIGN.md). All zero: identity.

    Attributes:
        rotation: max |theta| in radians (pi/12).
        scale: (min, max) isotropic scale s of the source in the target.
        translation: max |t_x| (fraction of W) and |t_y| (fraction of H).
        tps_jitter: max |d| of each TPS control point, per axis, in normalised units (image = 2).
        min_jacobian: reject warps whose TPS Jacobian determinant drops below this on the target frame.
        min_overlap: reject warps where less than this fraction of the target samples the source.
        max_tries: draws before giving up with a :class:`ConfigError` (ranges too large).
    """

    rotation: float = math.pi / 12
    scale: tuple[float, float] = (0.75, 1.25)
    translation: float = 0.25
    tps_jitter: float = 0.4
    min_jacobian: float = 0.05
    min_overlap: float = 0.25
    max_tries: int = 100

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.scale)
        if not (0 < lo <= hi):
            raise ConfigError(f"warp scale range must be 0 < min <= max, got {tuple(self.scale)}")
        for name in ("rotation", "translation", "tps_jitter", "min_jacobian", "min_overlap"):
            if getattr(self, name) < 0:
                raise ConfigError(f"warp {name} must be >= 0, got {getattr(self, name)}")
        if self.min_overlap > 1:
            raise ConfigError(f"warp min_overlap must be <= 1, got {self.min_overlap}")
        if self.max_tries < 1:
            raise ConfigError(f"warp max_tries must be >= 1, got {self.max_tries}")


#: The identity warp's ranges.
IDENTITY = WarpRanges(rotation=0.0, scale=(1.0, 1.0), translation=0.0, tps_jitter=0.0)


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """The TPS radial kernel of kornia's ``warp_points_tps``: ``U = 0.5 r^2 log r^2`` (0 at r = 0)."""
    safe = torch.where(r2 > 0, r2, torch.ones_like(r2))
    return torch.where(r2 > 0, 0.5 * r2 * safe.log(), torch.zeros_like(r2))


def fit_tps(centres: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The standard interpolating thin-plate spline with kernels centred on ``centres``.

    Solves ``[K P; P^T 0] [w; a] = [targets; 0]`` with ``K_ij = U(|c_i - c_j|)``, ``P = [1 c]``,
    so that ``warp_points_tps(c, c, w, a) == targets``.

    kornia 0.9's ``get_tps_transform(src, dst)`` solves a different system: it centres the kernels
    on ``dst`` while interpolating at ``src`` (``K_ij = U(|src_i - dst_j|)``). That map also
    interpolates, but it is not the minimum-bending-energy spline: with the 3x3 grid jittered by
    +-0.4 it folds inside the frame in ~60% of draws (standard TPS: ~2%). Hence this 12x12 solve;
    kornia's ``warp_points_tps`` evaluates the result.

    Args:
        centres: (K, 2) control points in the domain. targets: (K, 2) their images.

    Returns:
        ``(kernel_weights (K, 2), affine_weights (3, 2))`` in kornia's layout.
    """
    k = len(centres)
    system = torch.zeros(k + 3, k + 3, dtype=centres.dtype)
    system[:k, :k] = _tps_kernel((centres[:, None] - centres[None]).square().sum(-1))
    poly = torch.cat([torch.ones(k, 1, dtype=centres.dtype), centres], dim=1)
    system[:k, k:] = poly
    system[k:, :k] = poly.T
    rhs = torch.cat([targets, torch.zeros(3, 2, dtype=targets.dtype)])
    solution = torch.linalg.solve(system, rhs)
    return solution[:k], solution[k:]


def control_grid() -> torch.Tensor:
    """The 3x3 TPS control grid {-1, 0, 1}^2 in normalised (u, v), row-major: (9, 2) float64."""
    t = torch.tensor([-1.0, 0.0, 1.0], dtype=_DT)
    v, u = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def inside(points: torch.Tensor, height: int, width: int, margin: float = 0.0) -> torch.Tensor:
    """(...,) bool: finite points (..., 2) in the hull [m, W-1-m] x [m, H-1-m] (to ``HULL_TOL``)."""
    x, y = points[..., 0], points[..., 1]
    lo = margin - HULL_TOL
    return (x >= lo) & (y >= lo) & (x <= width - 1 - lo) & (y <= height - 1 - lo)


class Warp:
    """One affine + TPS warp of an (H, W) frame; see the module docstring for the maps.

    Args:
        size: (H, W) of the source and the target.
        angle: theta in radians; scale: s; translation: (t_x, t_y) as fractions of (W, H).
        jitter: (9, 2) TPS control-point displacements (normalised units), row-major over
            :func:`control_grid` (tensor or nested list); None: no TPS.
    """

    def __init__(
        self,
        size: tuple[int, int],
        angle: float = 0.0,
        scale: float = 1.0,
        translation: tuple[float, float] = (0.0, 0.0),
        jitter: torch.Tensor | list | None = None,
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        h, w = self.size
        self.angle, self.scale = float(angle), float(scale)
        self.translation = (float(translation[0]), float(translation[1]))
        # Affine A (source px -> intermediate px) and its closed-form inverse, 3x3 float64.
        c, s = math.cos(self.angle), math.sin(self.angle)
        lin = self.scale * torch.tensor([[c, -s], [s, c]], dtype=_DT)
        centre = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=_DT)
        shift = centre + torch.tensor([self.translation[0] * w, self.translation[1] * h], dtype=_DT)
        self.affine = torch.eye(3, dtype=_DT)
        self.affine[:2, :2] = lin
        self.affine[:2, 2] = shift - lin @ centre
        lin_inv = torch.tensor([[c, s], [-s, c]], dtype=_DT) / self.scale
        self.affine_inv = torch.eye(3, dtype=_DT)
        self.affine_inv[:2, :2] = lin_inv
        self.affine_inv[:2, 2] = -(lin_inv @ self.affine[:2, 2])
        # TPS T (target -> intermediate, normalised): T(ctrl) = ctrl + jitter.
        self.ctrl = control_grid()
        self.jitter = (
            torch.zeros(9, 2, dtype=_DT) if jitter is None else torch.as_tensor(jitter).detach().to(_DT).reshape(9, 2).clone()
        )
        self.ctrl_dst = self.ctrl + self.jitter
        kernel, affine = fit_tps(self.ctrl, self.ctrl_dst)
        self.tps_kernel_weights, self.tps_affine_weights = kernel[None], affine[None]  # (1, 9, 2), (1, 3, 2)
        self._norm_scale = torch.tensor([2.0 / w, 2.0 / h], dtype=_DT)
        self._inverse_init: tuple[torch.Tensor, cKDTree, float] | None = None

    # -- small pieces --------------------------------------------------------------------
    @property
    def is_identity(self) -> bool:
        """True when every parameter is the identity's."""
        return self.angle == 0 and self.scale == 1 and self.translation == (0.0, 0.0) and not self.jitter.any()

    def to_normalised(self, points: torch.Tensor) -> torch.Tensor:
        """Pixels (..., 2) -> normalised (..., 2): ``u = (2x + 1) / W - 1``."""
        return (points + 0.5) * self._norm_scale - 1.0

    def to_pixels(self, points: torch.Tensor) -> torch.Tensor:
        """Normalised (..., 2) -> pixels (..., 2): ``x = ((u + 1) W - 1) / 2``."""
        return (points + 1.0) / self._norm_scale - 0.5

    @staticmethod
    def _apply(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Apply a 3x3 affine matrix to (N, 2) points."""
        return points @ matrix[:2, :2].T + matrix[:2, 2]

    def tps(self, points: torch.Tensor) -> torch.Tensor:
        """T on normalised points: (N, 2) float64 -> (N, 2) float64 (kornia ``warp_points_tps``)."""
        return warp_points_tps(points[None], self.ctrl[None], self.tps_kernel_weights, self.tps_affine_weights)[0]

    def tps_with_jacobian(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """T and dT/du at normalised points (N, 2) float64, sharing the kernel terms.

        ``T(u) = a_0 + [a_x a_y] u + sum_k w_k U(|u - c_k|)`` with kornia's kernel
        ``U = r^2 log r = 0.5 r^2 log r^2``, so ``grad U = (u - c_k)(log r^2 + 1)`` (0 at r = 0).
        The value equals :meth:`tps` (kornia) to round-off; this fused form serves the Newton solve.

        Returns:
            ``(value (N, 2), jacobian (N, 2, 2))`` with ``jacobian[n, i, j] = d T_i / d u_j``.
        """
        weights, affine = self.tps_kernel_weights[0], self.tps_affine_weights[0]
        dx = points[:, 0:1] - self.ctrl[:, 0]  # (N, K)
        dy = points[:, 1:2] - self.ctrl[:, 1]
        r2 = dx * dx + dy * dy
        log = r2.clamp_min(1e-300).log()  # r2 = 0: U = 0.5 * 0 * log = 0 still
        value = (0.5 * r2 * log) @ weights + points @ affine[1:] + affine[0]
        slope = torch.where(r2 > 0, log + 1.0, torch.zeros_like(r2))
        jacobian = torch.stack([(slope * dx) @ weights, (slope * dy) @ weights], dim=-1) + affine[1:].T
        return value, jacobian

    def tps_jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """dT/du at normalised points (N, 2): (N, 2, 2), ``J[n, i, j] = d T_i / d u_j``."""
        return self.tps_with_jacobian(points)[1]

    # -- the maps --------------------------------------------------------------------------
    def trg_to_src(self, points: torch.Tensor) -> torch.Tensor:
        """The sampling map M: target pixels (N, 2) -> source pixels (N, 2) (closed form).

        Computed in float64 and returned in the input's floating dtype.
        """
        dtype = points.dtype if points.is_floating_point() else torch.float32
        p = points.reshape(-1, 2).to(_DT)
        mid = self.to_pixels(self.tps(self.to_normalised(p)))
        return self._apply(self.affine_inv, mid).to(dtype).reshape(points.shape)

    def _nearest_init(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First guess of T^-1(q) inside the target frame: the point of a grid over [-1, 1]^2
        (33 to 129 points per axis, ~2 px apart) whose image under T is nearest to q (scipy KD-tree).

        Returns:
            ``(guess (N, 2), far (N,) bool)``: ``far`` marks points that cannot have a preimage in
            the frame: any u in the frame is within half a cell diagonal ``h`` of a grid point g, so
            ``|T(u) - T(g)| <= max|dT| h``; points farther than twice that from every T(g) are far.
        """
        if self._inverse_init is None:
            n = min(max(max(self.size) // 2, _INIT_GRID[0]), _INIT_GRID[1])
            t = torch.linspace(-1.0, 1.0, n, dtype=_DT)
            gv, gu = torch.meshgrid(t, t, indexing="ij")
            grid = torch.stack([gu.reshape(-1), gv.reshape(-1)], dim=-1)
            image, jac = self.tps_with_jacobian(grid)
            half_diagonal = math.sqrt(2.0) / (n - 1)
            reach = 2.0 * float(torch.linalg.matrix_norm(jac, ord=2).max()) * half_diagonal
            self._inverse_init = (grid, cKDTree(image.numpy()), reach)
        grid, tree, reach = self._inverse_init
        query = torch.nan_to_num(q, nan=0.0, posinf=1e6, neginf=-1e6).numpy()
        dist, idx = tree.query(query)
        return grid[torch.from_numpy(idx)], torch.from_numpy(dist > reach)

    def invert_tps(self, q: torch.Tensor, iterations: int = 50) -> torch.Tensor:
        """T^-1 on normalised points (N, 2) float64 (no convergence check; see :meth:`src_to_trg`).

        Damped Newton from :meth:`_nearest_init`, so that it converges to the preimage inside the
        target frame (T is one-to-one there, but its extrapolation outside may fold back). Points
        are iterated until converged or stuck, each step capped at 0.5 normalised units and halved
        while it does not reduce the residual. Points too far from the image of the frame to have a
        preimage in it come back as NaN without iterating.
        """
        u, far = self._nearest_init(q)
        u[far] = math.nan
        value, jac = self.tps_with_jacobian(u)
        res = value - q
        err = res.square().sum(-1)
        active = torch.nonzero(err > _CONVERGED, as_tuple=False).squeeze(1)  # NaN compares False
        for _ in range(iterations):
            if active.numel() == 0:
                break
            ua, ra, ea, qa, ja = u[active], res[active], err[active], q[active], jac[active]
            a, b, c, d = ja[:, 0, 0], ja[:, 0, 1], ja[:, 1, 0], ja[:, 1, 1]
            det = a * d - b * c
            ok = det.abs() > 1e-12
            det = torch.where(ok, det, torch.ones_like(det))
            step = torch.stack([(d * ra[:, 0] - b * ra[:, 1]) / det, (a * ra[:, 1] - c * ra[:, 0]) / det], -1)
            step = torch.where(ok[:, None], step, ra)
            norm = step.norm(dim=-1, keepdim=True)
            step = step * torch.clamp(0.5 / norm.clamp_min(1e-300), max=1.0)
            cand = ua - step
            cand_value, cand_jac = self.tps_with_jacobian(cand)
            cand_res = cand_value - qa
            cand_err = cand_res.square().sum(-1)
            worse = ~(cand_err < ea)  # NaN counts as worse
            if bool(worse.any()):  # step halving, on the points whose full step failed
                t = torch.ones_like(ea)
                for _ in range(8):
                    t = torch.where(worse, t * 0.5, t)
                    half = ua[worse] - t[worse, None] * step[worse]
                    half_value, half_jac = self.tps_with_jacobian(half)
                    half_res = half_value - qa[worse]
                    half_err = half_res.square().sum(-1)
                    cand[worse], cand_jac[worse], cand_res[worse], cand_err[worse] = half, half_jac, half_res, half_err
                    worse = ~(cand_err < ea)
                    if not bool(worse.any()):
                        break
            better = cand_err < ea
            u[active] = torch.where(better[:, None], cand, ua)
            res[active] = torch.where(better[:, None], cand_res, ra)
            err[active] = torch.where(better, cand_err, ea)
            jac[active] = torch.where(better[:, None, None], cand_jac, ja)
            # Keep iterating the points that improved and are not converged; drop stuck ones.
            active = active[better & (cand_err > _CONVERGED)]
        return u

    def src_to_trg(self, points: torch.Tensor, tol: float = 1e-3, return_residual: bool = False):
        """The forward map F = M^-1: source pixels (N, 2) -> target pixels (N, 2).

        Numerical (see the module docstring); NaN where ``|M(F(p)) - p| > tol`` px, and for points
        whose target lies outside the target frame (beyond a margin of about a pixel): the
        inversion only looks for preimages in the frame, where ``T`` is one-to-one.
        Returned in the input's floating dtype; with ``return_residual`` also the (N,) float64
        residuals in px (NaN where not finite).
        """
        dtype = points.dtype if points.is_floating_point() else torch.float32
        p = points.reshape(-1, 2).to(_DT)
        if len(p) == 0:
            out = p.to(dtype).reshape(points.shape)
            return (out, p.new_zeros(0)) if return_residual else out
        q = self.to_normalised(self._apply(self.affine, p))
        trg = self.to_pixels(self.invert_tps(q))
        residual = (self.trg_to_src(trg) - p).norm(dim=-1)
        residual = torch.where(torch.isfinite(residual), residual, torch.full_like(residual, math.nan))
        good = residual <= tol
        trg = torch.where(good[:, None], trg, torch.full_like(trg, math.nan))
        out = trg.to(dtype).reshape(points.shape)
        return (out, residual) if return_residual else out

    # -- dense products ------------------------------------------------------------------
    def sampling_grid(self) -> torch.Tensor:
        """M on every target pixel: (H, W, 2) float64 source pixel coordinates (x, y)."""
        h, w = self.size
        return self.trg_to_src(pixel_points(h, w, dtype=_DT)).reshape(h, w, 2)

    def render(self, image: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
        """The target image: ``trg(p) = src(M(p))``, bilinear, ``padding_mode`` outside the source.

        Args:
            image: (C, H, W) or (B, C, H, W) source, floating point, of this warp's size.

        Returns:
            Same shape and dtype.
        """
        if tuple(image.shape[-2:]) != self.size:
            raise ValueError(f"image size {tuple(image.shape[-2:])} differs from the warp's {self.size}")
        batched = image.ndim == 4
        img = image if batched else image[None]
        grid = self.sampling_grid().to(device=img.device, dtype=img.dtype)[None].expand(img.shape[0], -1, -1, -1)
        out = remap(img, grid[..., 0], grid[..., 1], mode="bilinear", padding_mode=padding_mode, align_corners=True)
        return out if batched else out[0]

    def trg_valid_mask(self) -> torch.Tensor:
        """(H, W) bool: target pixels whose source position M(p) lies inside the source hull."""
        h, w = self.size
        return inside(self.sampling_grid(), h, w)

    def flow(self, tol: float = 1e-3) -> torch.Tensor:
        """Source -> target flow in the convention of ``MatchOutput.flow``: (2, H, W) float32.

        Source pixel (x, y) maps to target (x + flow[0, y, x], y + flow[1, y, x]); NaN where the
        target position leaves the target hull (or the inversion misses ``tol``).
        """
        h, w = self.size
        src = pixel_points(h, w, dtype=_DT)
        trg = self.src_to_trg(src, tol=tol)
        trg = torch.where(inside(trg, h, w)[:, None], trg, torch.full_like(trg, math.nan))
        return (trg - src).reshape(h, w, 2).permute(2, 0, 1).to(torch.float32).contiguous()

    def sample_keypoints(
        self, n: int, generator: torch.Generator, margin: float = 0.0, max_rounds: int = 50
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random exact correspondences: target points uniform over the target region that samples
        the source (both points at least ``margin`` px inside their hulls), sources = M(targets).

        Returns:
            ``(src_kps, trg_kps)``, each (n', 2) float64 with n' = n unless the region is too small
            to find n points in ``max_rounds`` batches of candidates (then fewer).
        """
        h, w = self.size
        found: list[torch.Tensor] = []
        count = 0
        batch = max(4 * n, 64)
        lo = torch.tensor([margin, margin], dtype=_DT)
        span = torch.tensor([w - 1 - 2 * margin, h - 1 - 2 * margin], dtype=_DT).clamp_min(0)
        for _ in range(max_rounds):
            if count >= n:
                break
            cand = lo + span * torch.rand(batch, 2, generator=generator, dtype=_DT)
            keep = cand[inside(self.trg_to_src(cand), h, w, margin)]
            found.append(keep)
            count += len(keep)
        trg = torch.cat(found)[:n] if found else torch.zeros(0, 2, dtype=_DT)
        return self.trg_to_src(trg), trg


def _uniform(generator: torch.Generator, lo: float, hi: float, shape: tuple[int, ...] = ()) -> torch.Tensor:
    """U(lo, hi) of the given shape, float64, always drawing from ``generator``."""
    return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=_DT)


def warp_is_acceptable(warp: Warp, ranges: WarpRanges, samples: int = 33) -> bool:
    """No TPS fold (det dT >= ``min_jacobian``) and enough overlap, on a grid over the target frame."""
    h, w = warp.size
    t = torch.linspace(-1.0, 1.0, samples, dtype=_DT)
    gv, gu = torch.meshgrid(t, t, indexing="ij")
    grid = torch.stack([gu.reshape(-1), gv.reshape(-1)], dim=-1)
    if ranges.tps_jitter > 0 and bool((torch.linalg.det(warp.tps_jacobian(grid)) < ranges.min_jacobian).any()):
        return False
    if ranges.min_overlap > 0:
        ys = torch.linspace(0, h - 1, samples, dtype=_DT)
        xs = torch.linspace(0, w - 1, samples, dtype=_DT)
        py, px = torch.meshgrid(ys, xs, indexing="ij")
        pts = torch.stack([px.reshape(-1), py.reshape(-1)], dim=-1)
        if float(inside(warp.trg_to_src(pts), h, w).double().mean()) < ranges.min_overlap:
            return False
    return True


def sample_warp(size: tuple[int, int], ranges: WarpRanges, generator: torch.Generator) -> Warp:
    """Draw a random :class:`Warp` of an (H, W) frame, redrawing rejected ones (see the module doc).

    Every draw takes, in order: theta, s, t_x, t_y, the (9, 2) jitter, from ``generator``.
    """
    lo, hi = (float(v) for v in ranges.scale)
    for _ in range(ranges.max_tries):
        angle = _uniform(generator, -ranges.rotation, ranges.rotation)
        scale = _uniform(generator, lo, hi)
        tx = _uniform(generator, -ranges.translation, ranges.translation)
        ty = _uniform(generator, -ranges.translation, ranges.translation)
        jitter = _uniform(generator, -ranges.tps_jitter, ranges.tps_jitter, (9, 2))
        warp = Warp(size, float(angle), float(scale), (float(tx), float(ty)), jitter)
        if warp_is_acceptable(warp, ranges):
            return warp
    raise ConfigError(
        f"No acceptable warp in {ranges.max_tries} draws for ranges {ranges}: every draw folded "
        "(TPS Jacobian below min_jacobian) or left too little overlap. Reduce tps_jitter, "
        "translation or the scale range, or lower min_jacobian / min_overlap."
    )
