"""Regularized Hough matching (RHM, HPF sec. 3.2), the fast path.

Hand-written: no library implements RHM. Constants follow the reference code. Appearance
similarity ``sim = clamp(cos, 0) ** d``. The Hough space of offsets has ``hs_w = W_s + W_t`` by
``hs_h = H_s + H_t`` pixels cut into square cells of side ``sqrt(hs_w hs_h / ncells)``, with
``int(hs / cell) + 1`` bins per axis. Match ``(i, j)`` votes ``sim[i, j]`` into the bin holding
``(W_s, H_s) - c_s(i) + c_t(j)`` (``c`` the box centres; bin index = truncation of
offset / cell). The votes are smoothed by a normalised 7x7 Gaussian (sigma = 7 / 2 / 2.354,
zero padding) and ``confidence[i, j] = sim[i, j] * smoothed[bin(i, j)]``. Each source hyperpixel
is matched to the first target of highest confidence (the argmax).

:func:`~.rhm_reference.rhm_reference` does this with the full ``Ns x Nt`` bin matrix
(:func:`~.rhm_reference.match_reference` is that straightforward pipeline; :mod:`.hough` holds
the space both share). :class:`HoughVoter` uses the regular grids instead: the bin of
a pair depends only on its grid offset ``(yt - ys, xt - xs)``. With the source hyperpixels in
reverse order (as :class:`.similarity.SourceScaledCosine` produces them) the offset is a sum of
indices, so the votes of a block of source rows are anti-diagonal sums of the similarity, one
strided reduction over a copy with zero gaps between target rows (no bin index per pair, no
scatter), and the smoothed votes at the bins of all pairs are one strided view of a small
``(dy, dx)`` table. :func:`match_fast` streams blocks of a few source rows through similarity,
voting and then confidence and argmax, so the per-block work stays in cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from semcorr.timing import StageClock

from .geometry import HyperpixelGrid
from .hough import hough_space, offset_bins, smooth_votes
from .hyperimage import HyperImage
from .similarity import SourceScaledCosine, Workspace


#: Elements of similarity processed per block in the fast path (a few source rows at a time).
BLOCK_ELEMENTS = 1 << 19


class HoughVoter:
    """RHM on two regular hyperpixel grids, fed blocks of source rows in reverse source order.

    Works on similarities laid out as by :class:`.similarity.SourceScaledCosine`: row ``r`` of the
    ``(Hs, Ws, Ht, Wt)`` view is kept source row ``Hs - 1 - r``, column ``c`` is ``Ws - 1 - c``.
    In that order the pair of source ``(r, c)`` and target ``(yt, xt)`` has grid offset
    ``dy + Hs - 1 = yt + r`` and ``dx + Ws - 1 = xt + c``, so votes are sums along anti-diagonals and
    the smoothed votes of all pairs are one strided view of a small table.

    Call :meth:`add_rows` for every block of rows (any order), then :meth:`finish`; :meth:`weights`
    then gives the smoothed votes at the bins of a block's pairs.

    Args:
        src / trg: the kept grids, ``(Hs, Ws)`` and ``(Ht, Wt)`` hyperpixels.
        ncells: Hough space size parameter.
        kernel: smoothing filter.
        workspace: scratch buffers (names starting with ``"hough"``).
        device: where the similarities live.
        max_rows: most source rows per :meth:`add_rows` call.
    """

    def __init__(
        self,
        src: HyperpixelGrid,
        trg: HyperpixelGrid,
        ncells: int,
        kernel: Tensor,
        workspace: Workspace,
        device: torch.device,
        max_rows: int,
    ) -> None:
        self.src, self.trg = src, trg
        self.ncells, self.kernel = ncells, kernel
        hs, ws = src.shape
        ht, wt = trg.shape
        self.wp = wt + ws - 1  # column offsets dx + Ws - 1 in 0..Wt+Ws-2
        self.row_votes = workspace.get("hough_rows", (hs, ht, self.wp), device)
        # weighted copy of a block with Ws-1 zeros after every target row
        self._pad = workspace.get("hough_pad", (max_rows, ws, ht, self.wp), device).zero_()
        self.votes: Tensor | None = None
        self._table: Tensor | None = None

    def add_rows(self, start: int, sim: Tensor, weight: Tensor) -> None:
        """Accumulate the votes of rows ``start .. start + r - 1``.

        Args:
            start: first row of the block (reverse order, see the class docstring).
            sim: (r, Ws, Ht, Wt) unweighted similarities of the block.
            weight: (r, Ws, 1, 1) factor of each source hyperpixel's votes.
        """
        r, ws, ht, wt = sim.shape
        pad = self._pad[:r]
        torch.mul(sim, weight, out=pad[..., :wt])
        # diag[q, yt, k, c] = pad[q, c, yt, k - c] (zero where k - c is outside 0..Wt-1)
        diag = pad.as_strided((r, ht, self.wp, ws), (ws * ht * self.wp, self.wp, 1, ht * self.wp - 1))
        torch.sum(diag, dim=-1, out=self.row_votes[start : start + r])

    def finish(self) -> None:
        """Bin, smooth and tabulate the votes; sets :attr:`votes` (nbins_y, nbins_x)."""
        hs, ws = self.src.shape
        ht, _ = self.trg.shape
        device = self.row_votes.device
        # by_offset[dy + Hs-1, dx + Ws-1]: row r holds source row Hs-1-r, so dy + Hs-1 = yt + r
        dy_index = (torch.arange(hs, device=device)[:, None] + torch.arange(ht, device=device)[None, :]).reshape(-1)
        by_offset = self.row_votes.new_zeros(hs + ht - 1, self.wp)
        by_offset.index_add_(0, dy_index, self.row_votes.view(hs * ht, self.wp))
        # Hough bin of each grid offset: (W_s, H_s) - c_s + c_t in full-grid coordinates
        space = hough_space(self.src.image_wh, self.trg.image_wh, self.ncells)
        j = self.src.jump
        dx = torch.arange(self.wp, device=device) - (ws - 1) + self.trg.cols.start - self.src.cols.start
        dy = torch.arange(hs + ht - 1, device=device) - (hs - 1) + self.trg.rows.start - self.src.rows.start
        off_x = (self.src.image_wh[0] + j * dx).float()
        off_y = (self.src.image_wh[1] + j * dy).float()
        bins = offset_bins(off_x[None, :], off_y[:, None], space)  # (Hs+Ht-1, Wp)
        votes = by_offset.new_zeros(space.nbins).index_add_(0, bins.reshape(-1), by_offset.reshape(-1))
        self.votes = votes.view(space.nbins_y, space.nbins_x)
        self._table = smooth_votes(self.votes, self.kernel).reshape(-1)[bins].contiguous()

    def weights(self, start: int, stop: int) -> Tensor:
        """Smoothed votes at the bins of the pairs of rows ``start .. stop - 1`` (after :meth:`finish`).

        Returns:
            (stop - start, Ws, Ht, Wt) strided view.
        """
        ws = self.src.shape[1]
        ht, wt = self.trg.shape
        return self._table.as_strided((stop - start, ws, ht, wt), (self.wp, 1, self.wp, 1), start * self.wp)


def block_argmax(block: Tensor) -> tuple[Tensor, Tensor]:
    """Maximum over each slice's last two dims and the first flat index holding it.

    Same result as ``block.flatten(1).max(1)`` but reduces mostly with the fast ``amax``.

    Args:
        block: (n, Ht, Wt).

    Returns:
        ``(values, index)``: (n,) maxima and (n,) int64 indices into ``Ht * Wt``.
    """
    n, _, wt = block.shape
    best, row = block.amax(dim=-1).max(dim=-1)
    col = block[torch.arange(n, device=block.device), row].argmax(dim=-1)
    return best, row * wt + col


def match_fast(
    src: HyperImage,
    trg: HyperImage,
    rhm: bool,
    exponent: float,
    ncells: int,
    kernel: Tensor,
    workspace: Workspace,
    timings: dict[str, float] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Tensor, Tensor]:
    """Hyperpixel matches by the fast path (exact fast similarity, diagonal voting).

    Args:
        src / trg: hyperimages with ``Ns`` and ``Nt`` >= 1 hyperpixels.
        rhm: ``True``: RHM confidences; ``False``: plain cosine (nearest neighbour).
        exponent: ``d`` of ``clamp(cos, 0) ** d``.
        ncells / kernel: Hough space parameter and smoothing filter.
        workspace: scratch buffers.
        timings: if given, seconds are added to its ``"similarity"`` and ``"voting"`` keys
            (voting includes confidence and argmax; no device synchronisation).
        clock: the timer for ``timings`` (wall time by default).

    Returns:
        ``(match, score)``: (Ns,) int64 index of the matched target hyperpixel and (Ns,) its
        confidence (cosine when ``rhm`` is False).
    """
    stages = StageClock(timings, clock)
    hs, ws = src.grid.shape
    ht, wt = trg.grid.shape
    # sim[r, c] is source (Hs-1-r, Ws-1-c); cos = sim * a with a the reversed inverse source norms
    cosine = SourceScaledCosine(src, trg, workspace)
    sim = workspace.get("rhm_sim", (hs, ws, ht, wt), src.base.device)
    a = src.inv_norm.flip(0)
    rows = max(1, BLOCK_ELEMENTS // (ws * ht * wt))
    if not rhm:
        for start in range(0, hs, rows):
            cosine.fill(start, min(start + rows, hs), sim[start : start + rows].view(-1, ws, ht * wt))
        stages.lap("similarity")
        best, index = block_argmax(sim.view(hs * ws, ht, wt))
        stages.lap("voting")
        return index.flip(0), (best * a).flip(0)
    a_d = a.pow(exponent)  # clamp(cos, 0)^d = a^d clamp(sim, 0)^d: a^d weights the votes only
    voter = HoughVoter(src.grid, trg.grid, ncells, kernel, workspace, sim.device, rows)
    stages.lap("similarity")
    for start in range(0, hs, rows):
        block = sim[start : start + rows]
        cosine.fill(start, min(start + rows, hs), block.view(-1, ws, ht * wt))
        stages.lap("similarity")
        block.clamp_(min=0).pow_(exponent)
        voter.add_rows(start, block, a_d.view(hs, ws, 1, 1)[start : start + rows])
        stages.lap("voting")
    voter.finish()
    row_max = workspace.get("rhm_rowmax", (hs, ws, ht), sim.device)
    for start in range(0, hs, rows):
        block = sim[start : start + rows]
        block.mul_(voter.weights(start, min(start + rows, hs)))
        torch.amax(block, dim=-1, out=row_max[start : start + rows])
    best, row = row_max.view(hs * ws, ht).max(dim=-1)
    col = sim.view(hs * ws, ht, wt)[torch.arange(hs * ws, device=sim.device), row].argmax(dim=-1)
    stages.lap("voting")
    return (row * wt + col).flip(0), (best * a_d).flip(0)
