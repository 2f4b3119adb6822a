"""Neural Best Buddies (Aberman et al., SIGGRAPH 2018) as a :class:`~semcorr.methods.base.Matcher`.

Pipeline per image pair: features of the pyramid levels (cached per image) -> best buddies
percolated coarse to fine (:mod:`.pyramid`, Algorithm 1) -> pairs in image pixels, minus those
within ``border`` pixels of an image edge (reference code, 7 px) -> top-k by k-means
(:mod:`.selection`) for the sparse output -> the buddies the dense map interpolates
(:mod:`.densify`) -> moving least squares (:mod:`.mls`) through them for keypoint transfer, the
dense flow and the warped source. Everything a batch needs comes from one matching per pair.

Levels: level L (1 = finest .. 5 = coarsest) is VGG-19's reluL_1, of stride 2^(L-1) (the paper's
hierarchy: relu5_1 = stride 16). Other backbones stand in by stride: ``pyramid`` gives, for L =
1..5, the backbone layer of that stride, None where it has none (the table of each
``conf/backbone/*.yaml``, documented in the README). ``levels`` picks the levels matched (default:
every level of the pyramid), coarse to fine; the coarsest is matched over the whole maps.

Choices where the paper is silent (the paper stops at sparse pairs):

- Densification (``densify``, ``outlier_cells``): the dense map interpolates either every final
  buddy (``"all"``, as the reference code feeds its list to MLS) or only the buddies consistent
  with their neighbours (``"local"``, :mod:`.densify`): a buddy whose partner is more than
  ``outlier_cells`` cells of the coarsest level matched away from the MLS prediction of the other
  buddies is left out. A cell of the coarsest level is the resolution at which the pairs were
  decided; every finer pair descends from one of them.
- MLS kind: ``transfer_mls`` for keypoints and the dense flow, ``warp_mls`` for the warped
  source, the alignment, morphs and hybrids (``rigid`` by default there, as the reference code:
  it never reflects, so the pictures do not fold; see :mod:`.mls`). MLS weights
  ``|p - v|^(-2 alpha)`` with ``mls_alpha`` (Schaefer et al.'s 1; the reference code uses 2).
- A pair's pixel position is the centre of its finest-level cell (``(x + 0.5) W / w - 0.5``).
- The response of eq. 7 is ``||F(p)||`` as printed (``response_power=1``). The reference code
  thresholds the normalised squared norm (``response_power=2``, a stricter filter at the same
  gamma) but ranks pairs (eq. 11) by the unsquared one; here the same response serves the
  threshold and the rank.

Extras of :meth:`NeuralBestBuddies.forward` (NaN-padded along the pair axis):
``"sparse_src"`` / ``"sparse_trg"`` (B, k, 2) the top-k pairs (x, y), ``"sparse_score"`` (B, k)
their rank V (eq. 11); ``"buddies_src"`` / ``"buddies_trg"`` (B, M, 2), ``"buddies_score"`` (B, M)
every final pair and ``"buddies_kept"`` (B, M) 1.0 where the dense map interpolates it, 0.0 where
densification left it out; ``"warped"`` (B, 3, Ht, Wt) the source warped onto the target (zeros
where the map leaves the source).

With ``save_pictures=true`` each pictured pair also gets, in ``<pair>/``, the pictures of
:meth:`NeuralBestBuddies.pair_pictures` (``buddies.json``, the alignment, morphs and hybrid).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from kornia.geometry.transform import remap
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError
from semcorr.grid import cells_to_pixels, pixel_grid
from semcorr.methods.base import Matcher, MatchOutput, PairFile
from semcorr.methods.cache import LRUCache

from .alignment import align_pair, alignment_pictures, correspondence_record
from .densify import DENSIFY_RULES, consistent_buddies
from .hybrid import hybrid_pictures, hybridize
from .mls import MLS_KINDS, mls_grid, mls_map
from .pyramid import Buddies, coarse_to_fine
from .selection import select_top_k


@dataclass
class Correspondences:
    """The final best buddies of one image pair, in image pixels.

    Attributes:
        src: (M, 2) float (x, y) in the source image.
        trg: (M, 2) float (x, y) in the target image.
        rank: (M,) rank V of eq. 11, decreasing.
        kept: (M,) bool, the buddies the dense map interpolates (:mod:`.densify`).
        buddies: the level-by-level result (cells, counts and seconds per level).
    """

    src: Tensor
    trg: Tensor
    rank: Tensor
    kept: Tensor
    buddies: Buddies


class NeuralBestBuddies(Matcher):
    """Sparse cross-domain correspondence by neural best buddies, densified by MLS.

    There are no defaults in code: ``conf/method/nbb.yaml`` holds them (and says which are the
    paper's and the reference code's).

    Args:
        backbone: feature extractor.
        pyramid: the backbone layer standing for each level L = 1..5 (None: the backbone has no
            layer of that stride).
        levels: levels to match, strictly decreasing, each in the pyramid; None: all of them.
        k: number of spatially scattered top pairs returned as ``sparse_*`` (section 3.5).
        gamma: activation threshold of eq. 8.
        patch_sizes: odd patch sides of eq. 3 for levels 1..5 (reference code: 5, 5, 3, 3, 3).
        radii: search-region half-sizes for levels 1..5 (reference code: 3, 3, 2, 2, 2).
        response_power: exponent p of the response ``||F||^p`` of eq. 7 (module docstring).
        border: drop final pairs closer than this many pixels to an image edge (reference code: 7).
        k_per_level: optional k-means top-k after every level (reference code's ``k_per_level``).
        densify: ``"all"`` or ``"local"`` (module docstring).
        outlier_cells: the ``"local"`` rule's threshold in cells of the coarsest level matched.
        transfer_mls: MLS kind of keypoint transfer and the dense flow.
        warp_mls: MLS kind of the warped source, alignment, morphs and hybrids.
        mls_alpha: MLS weight exponent, ``w = d^(-2 alpha)``.
        warp_step: node spacing (pixels) of the MLS grid behind ``warped`` and the dense flow.
        kmeans_n_init: k-means restarts.
        seed: k-means random state.
        morph_steps: morph frames pictured per pictured pair by :meth:`pair_pictures` (0: none).
        hybrid_iters: L-BFGS iterations of each feature inversion of the semantic hybrid pictured
            per pictured pair (section 5.2); 0: no hybrid.
        cache_size: images whose pyramid features are cached (pairs sharing an image).
    """

    def __init__(
        self,
        backbone: Backbone,
        pyramid: Sequence[int | None],
        levels: Sequence[int] | None,
        k: int,
        gamma: float,
        patch_sizes: Sequence[int],
        radii: Sequence[int],
        response_power: float,
        border: float,
        k_per_level: int | None,
        densify: str,
        outlier_cells: float,
        transfer_mls: str,
        warp_mls: str,
        mls_alpha: float,
        warp_step: int,
        kmeans_n_init: int,
        seed: int,
        morph_steps: int,
        hybrid_iters: int,
        cache_size: int,
    ) -> None:
        super().__init__()
        pyramid = list(pyramid)
        present = [level for level in range(5, 0, -1) if len(pyramid) == 5 and pyramid[level - 1] is not None]
        levels = present if levels is None else list(levels)
        patch_sizes, radii = list(patch_sizes), list(radii)
        problems = []
        if len(pyramid) != 5 or not present:
            problems.append(f"pyramid must name 5 layers (levels 1..5, null where the backbone has none), got {pyramid}")
        elif not levels or any(lv not in present for lv in levels) or any(a <= b for a, b in zip(levels, levels[1:])):
            problems.append(f"levels must be strictly decreasing and in the pyramid's levels {present}; got {levels}")
        if len(patch_sizes) != 5 or any(p < 1 or p % 2 == 0 for p in patch_sizes):
            problems.append(f"patch_sizes must be 5 odd sizes (levels 1..5), e.g. [5, 5, 3, 3, 3]; got {patch_sizes}")
        if len(radii) != 5 or any(r < 0 for r in radii):
            problems.append(f"radii must be 5 ints >= 0 (levels 1..5), e.g. [3, 3, 2, 2, 2]; got {radii}")
        if k < 1 or (k_per_level is not None and k_per_level < 1) or warp_step < 1:
            problems.append(f"k, k_per_level and warp_step must be >= 1; got {k}, {k_per_level}, {warp_step}")
        if densify not in DENSIFY_RULES:
            problems.append(f"densify must be one of {', '.join(DENSIFY_RULES)}; got {densify!r}")
        if not outlier_cells > 0:
            problems.append(f"outlier_cells must be > 0; got {outlier_cells}")
        for name, kind in (("transfer_mls", transfer_mls), ("warp_mls", warp_mls)):
            if kind not in MLS_KINDS:
                problems.append(f"{name} must be one of {', '.join(MLS_KINDS)}; got {kind!r}")
        if morph_steps < 0 or hybrid_iters < 0 or cache_size < 0:
            problems.append(f"morph_steps, hybrid_iters and cache_size must be >= 0; got {morph_steps}, {hybrid_iters}, {cache_size}")
        if problems:
            raise ConfigError("nbb (method.*): " + "; ".join(problems))
        self.backbone = backbone
        self.pyramid = pyramid
        self.levels = levels
        # stride() checks the ids (a ConfigError listing the valid ones)
        self.strides = [float(backbone.stride(layer)) if layer is not None else None for layer in pyramid]
        self.layers = {level: int(pyramid[level - 1]) for level in levels}
        self.k = int(k)
        self.gamma = float(gamma)
        self.patch_sizes = patch_sizes
        self.radii = radii
        self.response_power = float(response_power)
        self.border = float(border)
        self.k_per_level = k_per_level
        self.densify = densify
        self.outlier_px = float(outlier_cells) * self.strides[levels[0] - 1]
        self.transfer_mls = transfer_mls
        self.warp_mls = warp_mls
        self.mls_alpha = float(mls_alpha)
        self.warp_step = int(warp_step)
        self.kmeans_n_init = int(kmeans_n_init)
        self.seed = int(seed)
        self.morph_steps = int(morph_steps)
        self.hybrid_iters = int(hybrid_iters)
        self.cache: LRUCache[list[Tensor | None]] = LRUCache(cache_size)

    @torch.no_grad()
    def features(self, img: Tensor, ids: Sequence[str] | None = None) -> list[list[Tensor | None]]:
        """Pyramid features of each image (cached by image id and size).

        Args:
            img: (B, 3, H, W) RGB in [0, 1].
            ids: image names of length B (cache keys), or None (no caching).

        Returns:
            Per image, five entries for levels 1..5: (C_L, H_L, W_L) features of the levels
            matched, None elsewhere.
        """
        layers = [self.layers[level] for level in self.levels]
        keys = [None] * img.shape[0] if ids is None else [(name, tuple(img.shape[-2:]), tuple(layers), str(img.device)) for name in ids]
        def compute(missing: list[int]) -> list[list[Tensor | None]]:
            feats = self.backbone(img[missing], layers)
            rows = []
            for n in range(len(missing)):
                per_level: list[Tensor | None] = [None] * 5
                for level, feat in zip(self.levels, feats):
                    per_level[level - 1] = feat[n].clone()  # not a view that keeps the batch alive
                rows.append(per_level)
            return rows

        return self.cache.get_many(keys, compute)

    @torch.no_grad()
    def match(
        self, feats_src: Sequence[Tensor | None], feats_trg: Sequence[Tensor | None], src_hw: tuple[int, int], trg_hw: tuple[int, int]
    ) -> Correspondences:
        """Final best buddies of one pair, in pixels, without the border band.

        Args:
            feats_src: five source maps (C_L, H_L, W_L) for levels 1..5 (None where unused), as
                :meth:`features` returns them for one image.
            feats_trg: five target maps.
            src_hw: (Hs, Ws) source image size.
            trg_hw: (Ht, Wt) target image size.

        Returns:
            :class:`Correspondences` (M pairs, by decreasing rank).
        """
        buddies = coarse_to_fine(
            feats_src, feats_trg, self.strides, self.levels, self.patch_sizes, self.radii,
            self.gamma, self.response_power, self.k_per_level, self.seed,
        )
        src = cells_to_pixels(buddies.pos_a.flip(1).float(), buddies.shape_a, src_hw)  # (y, x) cells -> (x, y)
        trg = cells_to_pixels(buddies.pos_b.flip(1).float(), buddies.shape_b, trg_hw)
        inside = self._away_from_border(src, src_hw) & self._away_from_border(trg, trg_hw)
        src, trg, rank = src[inside], trg[inside], buddies.rank[inside]
        kept = consistent_buddies(src, trg, self.densify, self.outlier_px, self.mls_alpha, self.transfer_mls)
        return Correspondences(src, trg, rank, kept, buddies)

    def _away_from_border(self, pts: Tensor, hw: tuple[int, int]) -> Tensor:
        """(M,) bool: (M, 2) (x, y) points at least ``border`` pixels inside an (H, W) image."""
        limit = torch.tensor([hw[1] - 1, hw[0] - 1], device=pts.device) - self.border
        return ((pts >= self.border) & (pts <= limit)).all(dim=1)

    def select(self, corr: Correspondences) -> Tensor:
        """Indices of the top-k spatially scattered pairs (section 3.5).

        Args:
            corr: the pairs of one image pair.

        Returns:
            (min(k, M),) long indices into ``corr``, by decreasing rank.
        """
        return select_top_k(corr.src, corr.trg, corr.rank, self.k, self.seed, self.kmeans_n_init)

    def transfer(self, corr: Correspondences, points: Tensor) -> Tensor:
        """Map source points to the target through MLS on the kept buddies.

        Args:
            corr: the pairs of one image pair.
            points: (N, 2) source points (x, y), NaN-padded.

        Returns:
            (N, 2) target points; NaN for NaN queries or when there is no pair.
        """
        return mls_map(corr.src[corr.kept], corr.trg[corr.kept], points, self.mls_alpha, self.transfer_mls)

    def flow(self, corr: Correspondences, src_hw: tuple[int, int], trg_hw: tuple[int, int], direction: str) -> Tensor:
        """Dense flow of the MLS map through the kept buddies (``transfer_mls``).

        Args:
            corr: the pairs of one image pair.
            src_hw / trg_hw: image sizes.
            direction: ``"forward"`` (source -> target, on the source grid) or ``"backward"``
                (target -> source, on the target grid: MLS with the roles of the pairs swapped).

        Returns:
            (2, H, W) displacement of every pixel of the grid; NaN when there is no pair.
        """
        src, trg = corr.src[corr.kept], corr.trg[corr.kept]
        if direction == "backward":
            src, trg, src_hw = trg, src, trg_hw
        field = mls_grid(src, trg, src_hw[0], src_hw[1], self.mls_alpha, self.warp_step, self.transfer_mls)
        return field.permute(2, 0, 1) - pixel_grid(*src_hw, field.device)

    def warp(self, src_img: Tensor, corr: Correspondences, trg_hw: tuple[int, int]) -> Tensor:
        """The source image warped onto the target's frame (backward MLS map target -> source,
        ``warp_mls``, through the kept buddies).

        Args:
            src_img: (3, Hs, Ws) source image.
            corr: the pairs of the image pair.
            trg_hw: (Ht, Wt) target size.

        Returns:
            (3, Ht, Wt) warped source; zeros where the map leaves the source or there is no pair.
        """
        back = mls_grid(corr.trg[corr.kept], corr.src[corr.kept], trg_hw[0], trg_hw[1], self.mls_alpha, self.warp_step, self.warp_mls)
        back = torch.nan_to_num(back, nan=-1e4)
        return remap(src_img[None], back[None, ..., 0], back[None, ..., 1], align_corners=True)[0]

    @torch.no_grad()
    def forward(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_points: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
        dense: str | None = None,
    ) -> MatchOutput:
        """Transfer source points to the target, and the dense flow when asked (see
        :meth:`Matcher.forward`); one matching per pair serves both.

        Args:
            src_img: (B, 3, Hs, Ws) source images in [0, 1].
            trg_img: (B, 3, Ht, Wt) target images in [0, 1].
            src_points: (B, N, 2) query points (x, y), NaN-padded.
            src_ids / trg_ids: image names (feature cache keys), or None.
            dense: None, ``"forward"`` or ``"backward"``.

        Returns:
            :class:`MatchOutput`: ``points`` (B, N, 2), ``flow`` when asked, and the extras of the
            module docstring.
        """
        src_hw, trg_hw = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        feats_src, feats_trg = self.features(src_img, src_ids), self.features(trg_img, trg_ids)
        points, warped, sparse, everything, flows = [], [], [], [], []
        for i in range(src_img.shape[0]):
            corr = self.match(feats_src[i], feats_trg[i], src_hw, trg_hw)
            top = self.select(corr)
            points.append(self.transfer(corr, src_points[i]).to(src_points.dtype))
            warped.append(self.warp(src_img[i], corr, trg_hw))
            sparse.append((corr.src[top], corr.trg[top], corr.rank[top]))
            everything.append((corr.src, corr.trg, corr.rank, corr.kept.float()))
            if dense is not None:
                flows.append(self.flow(corr, src_hw, trg_hw, dense))
        extras = {"warped": torch.stack(warped)}
        for name, parts in (("sparse", sparse), ("buddies", everything)):
            extras[f"{name}_src"] = _pad([p[0] for p in parts])
            extras[f"{name}_trg"] = _pad([p[1] for p in parts])
            extras[f"{name}_score"] = _pad([p[2] for p in parts])
        extras["buddies_kept"] = _pad([p[3] for p in everything])
        return MatchOutput(points=torch.stack(points), extras=extras, flow=torch.stack(flows) if flows else None)

    def pair_pictures(self, src_img: Tensor, trg_img: Tensor, output: MatchOutput, index: int) -> dict[str, PairFile]:
        """The applications of a pictured pair: the best buddies, the alignment (section 5.1),
        morphs and the semantic hybrid (section 5.2).

        Returns, by file stem: ``buddies`` (JSON: every final pair, image pixels, with its rank and
        whether the dense map kept it); with at least one kept buddy ``a_mid`` / ``b_mid`` (both
        images warped to the midpoint geometry by MLS through the kept buddies), ``blend`` (their
        50% blend), ``frame_001``... morph frames when ``morph_steps > 0``, and ``hybrid`` /
        ``hybrid_strip`` when ``hybrid_iters > 0``.
        """
        src = output.extras["buddies_src"][index].cpu()
        trg = output.extras["buddies_trg"][index].cpu()
        kept = output.extras["buddies_kept"][index].cpu() == 1.0
        score = output.extras["buddies_score"][index].cpu()
        pictures: dict[str, PairFile] = {"buddies": correspondence_record(src, trg, score, kept)}
        if int(kept.sum()) == 0:
            return pictures
        aligned = align_pair(
            src_img.cpu(), trg_img.cpu(), src[kept], trg[kept], steps=self.morph_steps, alpha=self.mls_alpha, kind=self.warp_mls
        )
        pictures.update(alignment_pictures(aligned))
        if self.hybrid_iters > 0:
            hybrid = hybridize(self.backbone, self.pyramid, self.levels, aligned["a_mid"], aligned["b_mid"], self.hybrid_iters)
            pictures.update(hybrid_pictures(hybrid))
        return pictures


def _pad(rows: list[Tensor]) -> Tensor:
    """Stack (M_i, ...) tensors into (B, max M_i, ...) padded with NaN (at least one column)."""
    width = max(1, max(r.shape[0] for r in rows))
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), math.nan, dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out
