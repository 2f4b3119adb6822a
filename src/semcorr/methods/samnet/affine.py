"""Dense affine transformation fields ``T_i = [A_i, f_i]`` on the source feature grid (SAM-Net).

Layout. A field is a (B, 6, h, w) tensor defined on the SOURCE feature grid, channels
``(a11, a12, a21, a22, fx, fy)``: source cell ``i`` maps to target cell ``i + f_i`` and a source
point ``i + d`` near ``i`` to ``i + f_i + A_i d`` (the local affine model of the paper, Sec. 3).
The identity field is ``A = I, f = 0`` (the paper's ``T^0 = [I_2x2, 0_2x1]``). Eq. 7 updates a
field additively (``T^l = T^{l-1} + residual``), so no composition of affine maps is needed.

Coordinates. Cell units, cell centres at integer coordinates (x in 0..w-1, y in 0..h-1); sampling
a feature map at a cell position is ``grid_sample(align_corners=True)`` with
``x_n = 2 x / (w - 1) - 1``, zero padding outside. An (H, W) image and its (h, w) feature grid are
related by ``u = (x + 0.5) w / W - 0.5`` (cell ``u`` is the centre of the block of pixels it
summarises; pixel centres at integer coordinates as everywhere in semcorr).

Everything is vectorised over cells and points (``grid_sample``, ``gather``); plain torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from semcorr.grid import cells_to_pixels, pixels_to_cells
from semcorr.metrics.warping import warp_by_flow

#: Channels of a field: (a11, a12, a21, a22, fx, fy).
FIELD_CHANNELS = 6


def identity_field(batch: int, height: int, width: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """The identity field ``[I, 0]``.

    Returns:
        (B, 6, h, w) with ``a11 = a22 = 1`` and every other channel 0.
    """
    field = torch.zeros(batch, FIELD_CHANNELS, height, width, device=device, dtype=dtype)
    field[:, 0] = 1.0
    field[:, 3] = 1.0
    return field


def translation_field(shift: Tensor, height: int, width: int) -> Tensor:
    """A field of pure translation (``A = I``, ``f`` the same everywhere).

    Args:
        shift: (B, 2) displacement (x, y) in cells.

    Returns:
        (B, 6, h, w).
    """
    field = identity_field(shift.shape[0], height, width, shift.device, shift.dtype)
    field[:, 4:] = shift[:, :, None, None]
    return field


def split_field(field: Tensor) -> tuple[Tensor, Tensor]:
    """``(A, f)`` of a field.

    Args:
        field: (B, 6, h, w).

    Returns:
        ``A`` (B, 2, 2, h, w) (``A[:, r, c]`` row r, column c) and ``f`` (B, 2, h, w).
    """
    b, _, h, w = field.shape
    return field[:, :4].reshape(b, 2, 2, h, w), field[:, 4:]


def cell_grid(height: int, width: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Cell-centre coordinates of an (h, w) grid.

    Returns:
        (2, h, w): channel 0 is x (column), channel 1 is y (row).
    """
    ys, xs = torch.meshgrid(
        torch.arange(height, device=device, dtype=dtype),
        torch.arange(width, device=device, dtype=dtype),
        indexing="ij",
    )
    return torch.stack([xs, ys])


def window_offsets(radius: int, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Offsets of a (2r+1) x (2r+1) window, row-major (y outer, x inner): ``F.unfold``'s order.

    Returns:
        (K, 2) offsets (dx, dy), K = (2r+1)^2; the centre (0, 0) is at index K // 2.
    """
    steps = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def sample_cells(feature: Tensor, positions: Tensor) -> Tensor:
    """Bilinearly sample a feature map at cell positions (zeros outside the map).

    Args:
        feature: (B, C, h, w).
        positions: (B, *S, 2) cell coordinates (x, y).

    Returns:
        (B, C, *S).
    """
    b, c, h, w = feature.shape
    spatial = positions.shape[1:-1]
    scale = positions.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (positions.reshape(b, -1, 1, 2) * scale - 1.0).to(feature.dtype)
    out = F.grid_sample(feature, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.reshape(b, c, *spatial)


def window_positions(field: Tensor, offsets: Tensor) -> Tensor:
    """Target positions ``i + f_i + A_i d`` of a window of offsets ``d`` around every source cell.

    Args:
        field: (B, 6, h, w).
        offsets: (K, 2) offsets d (dx, dy) in source cells.

    Returns:
        (B, K, h, w, 2) target cell coordinates (x, y).
    """
    b, _, h, w = field.shape
    a, f = split_field(field)
    grid = cell_grid(h, w, field.device, field.dtype)
    ad = torch.einsum("brchw,kc->bkrhw", a, offsets.to(field.dtype))  # (B, K, 2, h, w)
    pos = grid[None, None] + f[:, None] + ad
    return pos.permute(0, 1, 3, 4, 2)


def sample_window(feature: Tensor, field: Tensor, offsets: Tensor) -> Tensor:
    """Target features on the affine-transformed window of every source cell.

    Args:
        feature: (B, C, h', w') target features (any grid size; positions are in its cells).
        field: (B, 6, h, w) source -> target field.
        offsets: (K, 2) window offsets (see :func:`window_offsets`).

    Returns:
        (B, C, K, h, w): entry k at cell i is the target feature at ``i + f_i + A_i offsets[k]``.
        Memory: B * C * K * h * w values.
    """
    return sample_cells(feature, window_positions(field, offsets))


def clamp_field(field: Tensor, height: int, width: int) -> Tensor:
    """Keep every matched point ``i + f_i`` on an (h', w') target map (``A`` is left as it is).

    Args:
        field: (B, 6, h, w).
        height / width: h', w' of the target map.

    Returns:
        (B, 6, h, w) with ``f_i`` replaced by ``clamp(i + f_i) - i`` (no gradient where clamped).
    """
    grid = cell_grid(field.shape[-2], field.shape[-1], field.device, field.dtype)
    target = grid[None] + field[:, 4:]
    x = target[:, 0].clamp(0.0, float(width - 1))
    y = target[:, 1].clamp(0.0, float(height - 1))
    return torch.cat([field[:, :4], torch.stack([x, y], dim=1) - grid[None]], dim=1)


def transfer_points(field: Tensor, points: Tensor) -> Tensor:
    """Map source points through the field, with sub-cell accuracy from the affine part.

    Each of the four cells ``c`` around a point ``p`` predicts ``c + f_c + A_c (p - c)``; the
    prediction is their bilinear blend. Points outside the grid use the nearest cells' affine
    models (extrapolation).

    Args:
        field: (B, 6, h, w).
        points: (B, N, 2) source cell coordinates (x, y); NaN rows are passed through as NaN.

    Returns:
        (B, N, 2) target cell coordinates.
    """
    b, _, h, w = field.shape
    finite = torch.isfinite(points).all(dim=-1, keepdim=True)
    p = torch.where(finite, points, torch.zeros_like(points)).to(field.dtype)
    size = p.new_tensor([w, h])
    base = torch.floor(p).clamp(min=torch.zeros_like(size), max=(size - 2).clamp(min=0))
    frac = (p - base).clamp(0.0, 1.0)  # bilinear weights, clamped: extrapolation beyond the grid
    flat = field.reshape(b, FIELD_CHANNELS, h * w)
    out = torch.zeros_like(p)
    for dx in (0, 1):
        for dy in (0, 1):
            corner = torch.minimum(base + p.new_tensor([dx, dy]), size - 1)  # (B, N, 2)
            index = (corner[..., 1] * w + corner[..., 0]).long()  # (B, N)
            params = flat.gather(2, index[:, None].expand(-1, FIELD_CHANNELS, -1))  # (B, 6, N)
            a = params[:, :4].permute(0, 2, 1).reshape(b, -1, 2, 2)
            f = params[:, 4:].permute(0, 2, 1)
            pred = corner + f + torch.einsum("bnrc,bnc->bnr", a, p - corner)
            wx = frac[..., 0] if dx else 1.0 - frac[..., 0]
            wy = frac[..., 1] if dy else 1.0 - frac[..., 1]
            out = out + (wx * wy)[..., None] * pred
    return torch.where(finite, out, torch.full_like(out, float("nan")))


def transfer_image_points(
    field: Tensor,
    points: Tensor,
    src_hw: tuple[int, int],
    trg_hw: tuple[int, int],
    net_hw: tuple[int, int],
) -> Tensor:
    """Map source image points to the target image through a field computed at the network size.

    Args:
        field: (B, 6, h, w) final field on the source feature grid.
        points: (B, N, 2) source pixels (x, y) of the (Hs, Ws) source image, NaN-padded.
        src_hw / trg_hw: (H, W) of the source / target images the points live in.
        net_hw: (Hn, Wn), the size both images were resized to for the network.

    Returns:
        (B, N, 2) target pixels (NaN where the query was NaN).
    """
    grid_hw = (field.shape[-2], field.shape[-1])
    to_net = points.new_tensor([net_hw[1] / src_hw[1], net_hw[0] / src_hw[0]])
    from_net = points.new_tensor([trg_hw[1] / net_hw[1], trg_hw[0] / net_hw[0]])
    cells = pixels_to_cells(points * to_net, net_hw, grid_hw)
    return cells_to_pixels(transfer_points(field, cells), grid_hw, net_hw) * from_net


def dense_image_flow(
    field: Tensor, src_hw: tuple[int, int], trg_hw: tuple[int, int], net_hw: tuple[int, int]
) -> Tensor:
    """Dense source -> target flow in image pixels (the convention of ``MatchOutput.flow``).

    Args:
        field: (B, 6, h, w). src_hw / trg_hw / net_hw: see :func:`transfer_image_points`.

    Returns:
        (B, 2, Hs, Ws).
    """
    b = field.shape[0]
    grid = cell_grid(src_hw[0], src_hw[1], field.device, field.dtype).reshape(2, -1).T.expand(b, -1, -1)
    target = transfer_image_points(field, grid, src_hw, trg_hw, net_hw)
    return (target - grid).permute(0, 2, 1).reshape(b, 2, src_hw[0], src_hw[1])


def warp_image(img: Tensor, flow: Tensor) -> Tensor:
    """Bring an image onto the grid a flow is defined on (backward warping, zeros outside).

    Args:
        img: (B, C, H', W') the image the flow points into (e.g. the target).
        flow: (B, 2, H, W) flow on the other image's grid (e.g. source -> target).

    Returns:
        (B, C, H, W): ``img`` sampled at ``(x, y) + flow``, e.g. the target aligned to the source.
    """
    return warp_by_flow(img, flow)
