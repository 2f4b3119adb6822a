"""Neural Best Buddies (Aberman et al., SIGGRAPH 2018) as a :class:`~semcorr.methods.base.Matcher`.

Pipeline per image pair: features of the 5 pyramid levels -> best buddies percolated coarse to
fine (:mod:`.pyramid`, Algorithm 1) -> pairs in image pixels, minus those within ``border``
pixels of an image edge (reference code, 7 px) -> top-k by k-means (:mod:`.selection`) for the
sparse output -> moving least squares (:mod:`.mls`) through *all* final pairs for keypoint
transfer, the dense flow and the warped source.

Levels: level l (1 = finest .. 5 = coarsest) is ``backbone.pyramid[l - 1]``. VGG-19 (the paper's):
relu1_1 .. relu5_1 (strides 1..16). MobileNetV2: ``features`` ids 1, 3, 6, 13, 17 (the last block
at strides 2, 4, 8, 16, 32), so its finest pairs are localised to 2 pixels. ResNets: their
pyramid, where equal strides give a refinement ratio of 1 (regions stay centred on the parent).

Choices where the paper is silent:
- Keypoint transfer densifies all final best buddies, not only the top k: the top k (5 in the
  paper's figures) are too few to describe a non-rigid deformation, while the full set (hundreds)
  covers the object; the reference code also feeds its full list to MLS. Affine MLS (see
  :mod:`.mls`) degrades gracefully: one pair gives a translation by its offset, two pairs a fit
  along their direction; zero pairs give NaN predictions (counted as wrong).
- MLS weights ``|p - v|^(-2 alpha)`` with alpha = 1 (Schaefer et al.'s choice; the reference
  code uses 2, which scored 1 point lower in PCK@0.1 on 45 PF-WILLOW pairs).
- A pair's pixel position is the centre of its finest-level cell (``(x + 0.5) W / w - 0.5``).
- ``k`` defaults to 5, as in the paper's figures and user study (the reference code's default
  ``k_final`` is 10).
- The response of eq. 7 is ``||F(p)||`` as printed (``response_power=1``); the reference code
  thresholds the squared norm (``response_power=2``), a stricter filter at the same gamma. On
  the 450 PF-WILLOW pairs of ``../shared/data`` (MobileNetV2, 224 x 224) the paper's form gave
  PCK@0.05/0.1/0.15 of 17.4/37.7/53.9 against 17.1/36.8/52.0.

Extras of :meth:`NeuralBestBuddies.forward` (NaN-padded along the pair axis):
``"sparse_src"`` / ``"sparse_trg"`` (B, k, 2) the top-k pairs (x, y), ``"sparse_score"`` (B, k)
their rank V (eq. 11); ``"buddies_src"`` / ``"buddies_trg"`` (B, M, 2) and ``"buddies_score"``
(B, M) every final pair; ``"warped"`` (B, 3, Ht, Wt) the source warped onto the target through
the MLS map target -> source (control roles swapped), zeros where it maps outside the source.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from kornia.geometry.transform import remap
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError
from semcorr.methods.base import Matcher, MatchOutput

from .alignment import align_pair, save_alignment, write_correspondences
from .mls import mls_affine, mls_grid
from .pyramid import Buddies, cells_to_pixels, coarse_to_fine
from .selection import select_top_k


@dataclass
class Correspondences:
    """The final best buddies of one image pair, in image pixels.

    Attributes:
        src: (M, 2) float (x, y) in the source image.
        trg: (M, 2) float (x, y) in the target image.
        rank: (M,) rank V of eq. 11, decreasing.
        buddies: the level-by-level result (cells, counts and seconds per level).
    """

    src: Tensor
    trg: Tensor
    rank: Tensor
    buddies: Buddies


class NeuralBestBuddies(Matcher):
    """Sparse cross-domain correspondence by neural best buddies, densified by affine MLS.

    Args:
        backbone: feature extractor; its :attr:`~semcorr.backbones.Backbone.pyramid` gives levels 1..5.
        k: number of spatially scattered top pairs returned as ``sparse_*`` (section 3.5).
        gamma: activation threshold of eq. 8.
        levels: levels to match, strictly decreasing within 1..5 (``[5, 4, 3, 2]`` is the reference
            code's ``--fast``).
        patch_sizes: odd patch sides of eq. 3 for levels 1..5 (reference code: 5, 5, 3, 3, 3).
        radii: search-region half-sizes for levels 1..5 (reference code: 3, 3, 2, 2, 2).
        response_power: exponent p of the response ``||F||^p`` normalised in eq. 7 (1: the paper's
            formula, the default; 2: the reference code's squared norm).
        border: drop final pairs closer than this many pixels to an image edge (reference code: 7).
        k_per_level: optional k-means top-k after every level (reference code's ``k_per_level``).
        mls_alpha: MLS weight exponent, ``w = d^(-2 alpha)``.
        warp_step: node spacing (pixels) of the MLS grid behind ``warped`` and :meth:`dense_flow`.
        kmeans_n_init: k-means restarts.
        seed: k-means random state.
        morph_steps: morph frames written per pictured pair by :meth:`save_pair_outputs` (0: none).
    """

    def __init__(
        self,
        backbone: Backbone,
        k: int = 5,
        gamma: float = 0.05,
        levels: Sequence[int] = (5, 4, 3, 2, 1),
        patch_sizes: Sequence[int] = (5, 5, 3, 3, 3),
        radii: Sequence[int] = (3, 3, 2, 2, 2),
        response_power: float = 1.0,
        border: float = 7.0,
        k_per_level: int | None = None,
        mls_alpha: float = 1.0,
        warp_step: int = 16,
        kmeans_n_init: int = 10,
        seed: int = 0,
        morph_steps: int = 0,
    ) -> None:
        super().__init__()
        levels, patch_sizes, radii = list(levels), list(patch_sizes), list(radii)
        if not levels or any(not 1 <= lv <= 5 for lv in levels) or any(a <= b for a, b in zip(levels, levels[1:])):
            raise ConfigError(f"nbb: levels must be strictly decreasing in 1..5, e.g. [5, 4, 3, 2, 1]; got {levels}")
        if len(patch_sizes) != 5 or any(p < 1 or p % 2 == 0 for p in patch_sizes):
            raise ConfigError(f"nbb: patch_sizes must be 5 odd sizes (levels 1..5), e.g. [5, 5, 3, 3, 3]; got {patch_sizes}")
        if len(radii) != 5 or any(r < 0 for r in radii):
            raise ConfigError(f"nbb: radii must be 5 ints >= 0 (levels 1..5), e.g. [3, 3, 2, 2, 2]; got {radii}")
        if k < 1 or (k_per_level is not None and k_per_level < 1) or warp_step < 1:
            raise ConfigError(f"nbb: k, k_per_level and warp_step must be >= 1; got {k}, {k_per_level}, {warp_step}")
        if len(backbone.pyramid) != 5:
            raise ConfigError(f"nbb: backbone {backbone.name!r} must expose 5 pyramid layers, has {backbone.pyramid}")
        self.backbone = backbone
        self.k = int(k)
        self.gamma = float(gamma)
        self.levels = levels
        self.patch_sizes = patch_sizes
        self.radii = radii
        self.response_power = float(response_power)
        self.border = float(border)
        self.k_per_level = k_per_level
        self.mls_alpha = float(mls_alpha)
        self.warp_step = int(warp_step)
        self.kmeans_n_init = int(kmeans_n_init)
        self.seed = int(seed)
        self.morph_steps = int(morph_steps)
        self.strides = [float(backbone.stride(layer)) for layer in backbone.pyramid]

    @torch.no_grad()
    def features(self, img: Tensor) -> list[Tensor]:
        """Pyramid features, level 1 (finest) first.

        Args:
            img: (B, 3, H, W) RGB in [0, 1].

        Returns:
            Five (B, C_l, H_l, W_l) tensors for levels 1..5.
        """
        return self.backbone(img, list(self.backbone.pyramid))

    @torch.no_grad()
    def match(
        self, feats_src: Sequence[Tensor], feats_trg: Sequence[Tensor], src_hw: tuple[int, int], trg_hw: tuple[int, int]
    ) -> Correspondences:
        """Final best buddies of one pair, in pixels, without the border band.

        Args:
            feats_src: five (C_l, H_l, W_l) source maps, level 1 first (one batch element of
                :meth:`features`).
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
        src = cells_to_pixels(buddies.pos_a, buddies.shape_a, src_hw)
        trg = cells_to_pixels(buddies.pos_b, buddies.shape_b, trg_hw)
        keep = self._away_from_border(src, src_hw) & self._away_from_border(trg, trg_hw)
        return Correspondences(src[keep], trg[keep], buddies.rank[keep], buddies)

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
        """Map source points to the target through affine MLS on every final pair.

        Args:
            corr: the pairs of one image pair.
            points: (N, 2) source points (x, y), NaN-padded.

        Returns:
            (N, 2) target points; NaN for NaN queries or when there is no pair.
        """
        return mls_affine(corr.src, corr.trg, points, self.mls_alpha)

    def warp(self, src_img: Tensor, corr: Correspondences, trg_hw: tuple[int, int]) -> Tensor:
        """The source image warped onto the target's frame (backward MLS map target -> source).

        Args:
            src_img: (3, Hs, Ws) source image.
            corr: the pairs of the image pair.
            trg_hw: (Ht, Wt) target size.

        Returns:
            (3, Ht, Wt) warped source; zeros where the map leaves the source or there is no pair.
        """
        back = mls_grid(corr.trg, corr.src, trg_hw[0], trg_hw[1], self.mls_alpha, self.warp_step)
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
    ) -> MatchOutput:
        """Transfer source points to the target (see :meth:`Matcher.forward`).

        Args:
            src_img: (B, 3, Hs, Ws) source images in [0, 1].
            trg_img: (B, 3, Ht, Wt) target images in [0, 1].
            src_points: (B, N, 2) query points (x, y), NaN-padded.
            src_ids / trg_ids: unused.

        Returns:
            :class:`MatchOutput`: ``points`` (B, N, 2) and the extras of the module docstring.
        """
        src_hw, trg_hw = tuple(src_img.shape[-2:]), tuple(trg_img.shape[-2:])
        feats_src, feats_trg = self.features(src_img), self.features(trg_img)
        points, warped, sparse, everything = [], [], [], []
        for i in range(src_img.shape[0]):
            corr = self.match([f[i] for f in feats_src], [f[i] for f in feats_trg], src_hw, trg_hw)
            top = self.select(corr)
            points.append(self.transfer(corr, src_points[i]).to(src_points.dtype))
            warped.append(self.warp(src_img[i], corr, trg_hw))
            sparse.append((corr.src[top], corr.trg[top], corr.rank[top]))
            everything.append((corr.src, corr.trg, corr.rank))
        extras = {"warped": torch.stack(warped)}
        for name, parts in (("sparse", sparse), ("buddies", everything)):
            extras[f"{name}_src"] = _pad([p[0] for p in parts])
            extras[f"{name}_trg"] = _pad([p[1] for p in parts])
            extras[f"{name}_score"] = _pad([p[2] for p in parts])
        return MatchOutput(points=torch.stack(points), extras=extras)

    def save_pair_outputs(
        self, folder: Path, src_img: Tensor, trg_img: Tensor, output: MatchOutput, index: int
    ) -> list[Path]:
        """Cross-domain alignment of a pictured pair (section 5.1) and its best buddies.

        Writes into ``folder``: ``buddies.json`` (every final pair, image pixels, with its rank),
        ``a_mid.png`` / ``b_mid.png`` (both images warped to the midpoint geometry by MLS),
        ``blend.png`` (their 50% blend) and ``frame_XXX.png`` morph frames when ``morph_steps > 0``.
        """
        src = output.extras["buddies_src"][index].cpu()
        trg = output.extras["buddies_trg"][index].cpu()
        files = [write_correspondences(folder / "buddies.json", folder.name, src, trg, output.extras["buddies_score"][index].cpu())]
        if int((torch.isfinite(src).all(1) & torch.isfinite(trg).all(1)).sum()) > 0:
            files += save_alignment(folder, align_pair(src_img.cpu(), trg_img.cpu(), src, trg, steps=self.morph_steps, alpha=self.mls_alpha))
        return files

    @torch.no_grad()
    def dense_flow(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
    ) -> Tensor:
        """Dense source -> target flow of the MLS map (one matching per pair, see :meth:`Matcher.dense_flow`).

        Returns:
            (B, 2, Hs, Ws) flow; NaN when a pair has no best buddies.
        """
        hs, ws = src_img.shape[-2:]
        trg_hw = tuple(trg_img.shape[-2:])
        feats_src, feats_trg = self.features(src_img), self.features(trg_img)
        ys, xs = torch.meshgrid(
            torch.arange(hs, dtype=torch.float32, device=src_img.device),
            torch.arange(ws, dtype=torch.float32, device=src_img.device),
            indexing="ij",
        )
        grid = torch.stack([xs, ys], dim=-1)
        flows = []
        for i in range(src_img.shape[0]):
            corr = self.match([f[i] for f in feats_src], [f[i] for f in feats_trg], (hs, ws), trg_hw)
            field = mls_grid(corr.src, corr.trg, hs, ws, self.mls_alpha, self.warp_step)
            flows.append((field - grid).permute(2, 0, 1))
        return torch.stack(flows)


def _pad(rows: list[Tensor]) -> Tensor:
    """Stack (M_i, ...) tensors into (B, max M_i, ...) padded with NaN (at least one column)."""
    width = max(1, max(r.shape[0] for r in rows))
    out = rows[0].new_full((len(rows), width, *rows[0].shape[1:]), math.nan, dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, : r.shape[0]] = r
    return out
