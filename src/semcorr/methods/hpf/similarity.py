"""Cosine similarity of two hyperimages: the straightforward product and a fast exact one.

Straightforward (the reference): upsample every layer to the base size, concatenate, take all
dot products of the ``Ns x C`` and ``Nt x C`` hyperfeature matrices and divide by the norms.

Fast (hand-written; no library computes similarities of interpolated maps this way): bilinear
upsampling is linear, ``F_up = F U^T`` with ``U = U_y (x) U_x`` the separable interpolation
matrix, so a coarse layer group contributes ``U_s (F_s^T F_t) U_t^T`` to the dot products. That
Gram matrix is formed at the coarse resolution (``n_s x n_t`` dot products of ``C_l`` channels
instead of ``Ns x Nt``) and interpolated one axis at a time by matrix products with the 1-D
interpolation matrices of ``F.interpolate(..., align_corners=True)``: target columns, target rows
(target norms folded in), source columns, and last the source rows of all groups at once, added
onto the base term (layers of the base's jump concatenated with it, a plain product with the
norm-scaled target features). Equal to the straightforward cosine up to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .hyperimage import NORM_EPS, HyperImage


class Workspace:
    """Grow-only scratch buffers reused across pairs.

    Fresh multi-megabyte allocations cost page faults on every pair; the fast path takes its
    large temporaries from here instead.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(
        self, name: str, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """A contiguous tensor of ``shape`` backed by the buffer ``name`` (contents undefined).

        Args:
            name: buffer name; two tensors in use at the same time need different names.
            shape: wanted shape.
            device / dtype: of the buffer.

        Returns:
            A view of the buffer with ``shape``.
        """
        numel = 1
        for s in shape:
            numel *= int(s)
        buf = self._buffers.get(name)
        if buf is None or buf.numel() < numel or buf.device != device or buf.dtype != dtype:
            buf = torch.empty(max(numel, 1), device=device, dtype=dtype)
            self._buffers[name] = buf
        return buf[:numel].view(shape)

    def clear(self) -> None:
        """Release every buffer."""
        self._buffers.clear()


def reference_cosine(src: HyperImage, trg: HyperImage) -> Tensor:
    """Cosine similarity of the concatenated hyperfeatures, computed the straightforward way.

    Args:
        src / trg: hyperimages with ``Ns`` and ``Nt`` kept hyperpixels.

    Returns:
        (Ns, Nt) float32.
    """
    fs, ft = src.hyperfeatures(), trg.hyperfeatures()
    ns = fs.norm(dim=1).clamp_min(NORM_EPS)
    nt = ft.norm(dim=1).clamp_min(NORM_EPS)
    return (fs @ ft.t()) / (ns[:, None] * nt[None, :])


class SourceScaledCosine:
    """Exact ``||f_i|| cos(f_i, f_j)`` for all pairs, source hyperpixels in reverse order.

    Row ``Ns - 1 - i`` of the result belongs to source hyperpixel ``i``: reversing the source order
    lets the Hough voting of :mod:`.rhm` address whole blocks with positive strides. The source
    norm is left in (``cos = result * inv_norm``) because a positive per-row factor changes no
    argmax; callers fold it in where it matters.

    Rows are produced in blocks of kept source rows by :meth:`fill`: the base term
    ``F0_s^T (F0_t / ||f_t||)`` is one matrix product; each coarse group adds
    ``M_rows @ table`` where ``table[k]`` (Ws x Nt) is coarse source row ``k`` interpolated to every
    kept source column and target hyperpixel (target norms folded in), prepared once per pair, and
    ``M_rows`` the source-row interpolation weights (two non-zeros per row).

    Args:
        src / trg: hyperimages with ``Ns = Hs * Ws`` and ``Nt`` kept hyperpixels, same layers.
        workspace: scratch buffers (names starting with ``"cos"``).
    """

    def __init__(self, src: HyperImage, trg: HyperImage, workspace: Workspace) -> None:
        if len(src.groups) != len(trg.groups):
            raise ValueError("source and target hyperimages were built from different layer sets")
        hs, ws = src.grid.shape
        ht, wt = trg.grid.shape
        nt = ht * wt
        device = src.base.device
        self.shape = (hs, ws, nt)
        self.src_base = src.base.flip(0)
        self.trg_base_t = (trg.base * trg.inv_norm[:, None]).t().contiguous()
        b = trg.inv_norm.view(ht, wt)
        # per group: table (hcs, Ws * Nt), reversed source-row weights (Hs, hcs) and, for each
        # kept source row, the first and last table row it reads
        self.groups: list[tuple[Tensor, Tensor, list[int], list[int]]] = []
        for k, (gs, gt) in enumerate(zip(src.groups, trg.groups)):
            cs, hcs, wcs = gs.features.shape
            _, hct, wct = gt.features.shape
            ncs = hcs * wcs
            gram = workspace.get("cos_gram", (ncs, hct * wct), device)
            torch.mm(gs.features.reshape(cs, ncs).t(), gt.features.reshape(cs, hct * wct), out=gram)
            # target columns, then target rows (target norms folded in), then source columns
            by_cols = workspace.get("cos_cols", (ncs * hct, wt), device)
            torch.mm(gram.view(ncs * hct, wct), gt.cols.matrix().t(), out=by_cols)
            by_rows = workspace.get("cos_rows", (ncs, ht, wt), device)
            torch.matmul(gt.rows.matrix(), by_cols.view(ncs, hct, wt), out=by_rows)
            by_rows.mul_(b)
            table = workspace.get(f"cos_table{k}", (hcs, ws, nt), device)
            torch.matmul(gs.cols.matrix().flip(0), by_rows.view(hcs, wcs, nt), out=table)
            first = gs.rows.index0.flip(0).tolist()
            last = gs.rows.index1.flip(0).tolist()
            self.groups.append((table.view(hcs, ws * nt), gs.rows.matrix().flip(0), first, last))

    def fill(self, start: int, stop: int, out: Tensor) -> Tensor:
        """Rows ``start .. stop - 1`` (reverse order) of the ``(Hs, Ws, Nt)`` result.

        Args:
            start / stop: block of rows, ``0 <= start < stop <= Hs``.
            out: (stop - start, Ws, Nt) contiguous float32 destination.

        Returns:
            ``out``, filled.
        """
        _, ws, nt = self.shape
        torch.mm(self.src_base[start * ws : stop * ws], self.trg_base_t, out=out.view(-1, nt))
        flat = out.view(stop - start, ws * nt)
        for table, weights, first, last in self.groups:
            lo, hi = min(first[start:stop]), max(last[start:stop]) + 1
            flat.addmm_(weights[start:stop, lo:hi], table[lo:hi])
        return out


