"""``DeepImageAnalogy``: Deep Image Analogy (Liao et al., SIGGRAPH 2017) behind the
:class:`~semcorr.methods.base.Matcher` interface (``method=dia``).

The source image is A and the target image is B'. Keypoints are transferred with the forward
mapping Phi_{a->b} (each source pixel's pixel in the target): the mapping's displacement field is
sampled bilinearly at the query point (exact at integer pixels). ``dense_flow`` returns that
displacement field directly. The last pair's analogy is cached under its image ids (and shapes),
so ``forward`` then ``dense_flow`` on the same pair run the analogy once; a call on the reversed
pair (target -> source, as the mask-transfer metric asks) is answered from the same analogy with
the roles swapped (Phi_{b->a} is the mapping from B' to A). Without ids nothing is cached.

Extras of :meth:`DeepImageAnalogy.forward`:

- ``"warped"`` (B, 3, Ht, Wt): the source warped onto the target, ``A(Phi_{b->a}(q))``;
- ``"analogy_a_prime"`` (B, 3, Hs, Ws): A' (source structure, target appearance);
- ``"analogy_b"`` (B, 3, Ht, Wt): B (target structure, source appearance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError
from semcorr.methods.base import Matcher, MatchOutput

from .analogy import PRESETS, AnalogyParams, AnalogyResult, deep_image_analogy
from .pictures import save_analogy


def _flipped(result: AnalogyResult) -> AnalogyResult:
    """The analogy of the reversed pair: A and B' swap roles, and so do the mappings and images."""
    return AnalogyResult(
        nnf_ab=result.nnf_ba, nnf_ba=result.nnf_ab, a_prime=result.b, b=result.a_prime, seconds=result.seconds
    )


def _flow(nnf: Tensor) -> Tensor:
    """(H, W, 2) long NNF (y, x) -> (2, H, W) float displacement (dx, dy)."""
    h, w, _ = nnf.shape
    ys = torch.arange(h, device=nnf.device, dtype=torch.float32)[:, None]
    xs = torch.arange(w, device=nnf.device, dtype=torch.float32)[None, :]
    return torch.stack([nnf[..., 1].float() - xs, nnf[..., 0].float() - ys])


def transfer_points(points: Tensor, flow: Tensor) -> Tensor:
    """Move points by a displacement field sampled bilinearly at them.

    Args:
        points: (N, 2) pixel coordinates (x, y) in the source; NaN rows are padding.
        flow: (2, Hs, Ws) displacement (dx, dy) of every source pixel.

    Returns:
        (N, 2) target coordinates; NaN where the query is NaN. Queries outside the image read
        the nearest border displacement.
    """
    _, h, w = flow.shape
    valid = torch.isfinite(points).all(-1)
    safe = torch.where(valid[:, None], points, torch.zeros_like(points))
    scale = safe.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (safe * scale - 1.0).view(1, 1, -1, 2)
    sampled = F.grid_sample(flow[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    moved = safe + sampled[0, :, 0].T
    return torch.where(valid[:, None], moved, torch.full_like(moved, float("nan")))


class DeepImageAnalogy(Matcher):
    """Deep Image Analogy as a matcher. Defaults are the paper's settings (``PRESETS["paper"]``).

    Args:
        backbone: feature extractor (VGG-19 in the paper; MobileNetV2 and ResNets work).
        pm_iters: PatchMatch iterations, for every level or per level 5..1.
        jumps: propagation jump sizes per iteration.
        patch_sizes: patch sides for levels 5..1.
        radii: random-search radii (cells) for levels 5..1; None = whole map.
        alphas: blend weights for levels 4..1.
        kappa / tau: response sigmoid slope and threshold.
        lbfgs_iters: L-BFGS iterations, for every deconvolution or per level 4..1.
        lbfgs_line_search: strong-Wolfe line search in L-BFGS (False: plain steps).
        deconv_init: ``"content"`` (reference code) or ``"warp"`` (fast).
        bf16: bfloat16 autocast in the network (features and deconvolutions).
        pca_dims: None for exact eq. 2 patch distances, else PCA dimensions of the patches.
        output_patch: patch side of the A'/B aggregation.
        max_side: cap on the longer image side during the analogy (None: none).
        seed: random seed (same for every pair).

    See :class:`~.analogy.AnalogyParams` for the details of each knob.
    """

    def __init__(
        self,
        backbone: Backbone,
        pm_iters: int | Sequence[int] = 10,
        jumps: Sequence[int] = (8, 4, 2, 1),
        patch_sizes: Sequence[int] = (3, 3, 3, 5, 5),
        radii: Sequence[int | None] = (None, 6, 6, 4, 4),
        alphas: Sequence[float] = (0.8, 0.7, 0.6, 0.1),
        kappa: float = 300.0,
        tau: float = 0.05,
        lbfgs_iters: int | Sequence[int] = 100,
        lbfgs_line_search: bool = True,
        deconv_init: str = "content",
        bf16: bool = False,
        pca_dims: int | None = None,
        output_patch: int = 5,
        max_side: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.params = AnalogyParams(
            pm_iters=pm_iters if isinstance(pm_iters, int) else tuple(pm_iters),
            jumps=tuple(jumps),
            patch_sizes=tuple(patch_sizes),
            radii=tuple(radii),
            alphas=tuple(alphas),
            kappa=kappa,
            tau=tau,
            lbfgs_iters=lbfgs_iters if isinstance(lbfgs_iters, int) else tuple(lbfgs_iters),
            lbfgs_line_search=lbfgs_line_search,
            deconv_init=deconv_init,
            bf16=bf16,
            pca_dims=pca_dims,
            output_patch=output_patch,
            max_side=max_side,
            seed=seed,
        )
        self._cache: tuple[tuple, list[AnalogyResult]] | None = None

    @classmethod
    def from_preset(cls, backbone: Backbone, preset: str = "fast", **overrides: object) -> DeepImageAnalogy:
        """A matcher with the settings of ``PRESETS[preset]``, some of them overridden.

        Args:
            backbone: feature extractor.
            preset: ``"paper"`` or ``"fast"``.
            overrides: constructor arguments replacing the preset's values.

        Returns:
            The matcher.

        Raises:
            ConfigError: unknown preset.
        """
        if preset not in PRESETS:
            raise ConfigError(f"unknown Deep Image Analogy preset {preset!r}; valid: {', '.join(PRESETS)}")
        settings = {**asdict(PRESETS[preset]), **overrides}
        return cls(backbone, **settings)

    def analyse(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
    ) -> list[AnalogyResult]:
        """Deep Image Analogy of every pair (A = source, B' = target), cached for the last pair.

        Runs outside inference mode (the deconvolutions need autograd), whatever the caller's mode.

        Args:
            src_img: (B, 3, Hs, Ws) in [0, 1].
            trg_img: (B, 3, Ht, Wt) in [0, 1].
            src_ids / trg_ids: image names of length B (cache key), or None (no caching).

        Returns:
            One :class:`~.analogy.AnalogyResult` per pair.
        """
        key = None
        if src_ids is not None and trg_ids is not None:
            key = (tuple(src_ids), tuple(trg_ids), tuple(src_img.shape), tuple(trg_img.shape))
        if key is not None and self._cache is not None:
            cached_key, cached = self._cache
            if cached_key == key:
                return cached
            if cached_key == (key[1], key[0], key[3], key[2]):
                return [_flipped(result) for result in cached]
        with torch.inference_mode(False):
            results = [
                deep_image_analogy(self.backbone, src.clone(), trg.clone(), self.params)
                for src, trg in zip(src_img, trg_img)
            ]
        if key is not None:
            self._cache = (key, results)
        return results

    def forward(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_points: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
    ) -> MatchOutput:
        """Transfer points with Phi_{a->b}; extras ``warped``, ``analogy_a_prime``, ``analogy_b``.

        Args:
            src_img: (B, 3, Hs, Ws) in [0, 1].
            trg_img: (B, 3, Ht, Wt) in [0, 1].
            src_points: (B, N, 2) source points (x, y), NaN-padded.
            src_ids / trg_ids: image names (cache key).

        Returns:
            :class:`MatchOutput`: ``points`` (B, N, 2) in target pixels (NaN for NaN queries) and
            the extras of the module docstring.
        """
        results = self.analyse(src_img, trg_img, src_ids, trg_ids)
        points = torch.stack(
            [transfer_points(p, _flow(r.nnf_ab).to(p.dtype)) for p, r in zip(src_points, results)]
        )
        warped = torch.stack([src[:, r.nnf_ba[..., 0], r.nnf_ba[..., 1]] for src, r in zip(src_img, results)])
        extras = {
            "warped": warped,
            "analogy_a_prime": torch.stack([r.a_prime for r in results]),
            "analogy_b": torch.stack([r.b for r in results]),
        }
        return MatchOutput(points=points, extras=extras)

    @torch.no_grad()
    def save_pair_outputs(
        self, folder: Path, src_img: Tensor, trg_img: Tensor, output: MatchOutput, index: int
    ) -> list[Path]:
        """The analogy of a pictured pair: A, B', A', B side by side and A', B as PNG files."""
        return save_analogy(
            folder, folder.name, src_img, trg_img,
            output.extras["analogy_a_prime"][index], output.extras["analogy_b"][index],
        )

    def dense_flow(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
    ) -> Tensor:
        """Phi_{a->b} as a displacement field (the convention of :meth:`Matcher.dense_flow`).

        Returns:
            (B, 2, Hs, Ws) flow: source pixel (x, y) maps to target pixel (x + flow[0], y + flow[1]).
        """
        return torch.stack([_flow(r.nnf_ab) for r in self.analyse(src_img, trg_img, src_ids, trg_ids)])
