"""The coarse-to-fine Deep Image Analogy driver (Algorithm 1 of Liao et al., SIGGRAPH 2017).

Levels are numbered as in the paper, L = 5 (coarsest) .. 1 (finest); level L is the backbone's
``pyramid[L - 1]`` (VGG-19: reluL_1). Per-level settings are listed coarse to fine, as the paper
lists them: ``patch_sizes`` and ``radii`` for L = 5..1, ``alphas`` for L = 4..1.

1. Preprocessing (4.1): features of A and B' at the five levels; F_A'^5 = F_A^5, F_B^5 = F_B'^5;
   random NNFs at level 5.
2. For L = 5..1: bidirectional deep PatchMatch (4.2, eq. 2) refines phi_{a->b}^L and
   phi_{b->a}^L; for L > 1 the NNFs are upsampled to L-1 (4.4) and the latent features
   F_A'^{L-1}, F_B^{L-1} are reconstructed (4.3, eqs. 4-6).
3. Output (4.5): the level-1 NNFs upsampled to image resolution (identity for VGG-19, whose
   relu1_1 has stride 1; x2 for MobileNetV2, whose finest pyramid level has stride 2) are the
   pixel mappings Phi_{a->b}, Phi_{b->a}; A' and B are aggregated from B' and A with 5 x 5 patches.

Choices the paper leaves open or that differ from it, all configurable: the deconvolution starts
from ``deconv_init`` = ``"content"`` (the reference code starts from the source's own features,
F_A^{L-1} for R_B'^{L-1}; the paper says "randomized") or ``"warp"`` (the finer features F_B'^{L-1}
warped pixel by pixel through the upsampled NNF: close to the solution, so few L-BFGS iterations
suffice); ``max_side`` caps the working resolution (the reference code's ``ratio``): the images
are downscaled (bilinear, antialiased) for the analogy, and the final NNFs are upsampled to the
input resolution, where A' and B are aggregated. One seeded generator drives the random NNFs, the
random search and the PCA samples, so a pair's result does not depend on the pairs before it.

Presets (:data:`PRESETS`): ``"paper"`` = the paper's settings (exact eq. 2, 100 L-BFGS iterations
with a strong-Wolfe line search, content start, float32); ``"fast"`` = the CPU preset of
``conf/method/dia.yaml`` (plain L-BFGS from the warp start, 10 iterations for levels 4-2 and 5 for
level 1, the costliest; bfloat16 autocast in the network; PatchMatch on 32 principal components of
the patches); see ``benchmarks/bench_dia.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError

from .aggregate import vote
from .deconv import subnetwork
from .patchmatch import PatchField, descriptors, patchmatch, random_nnf, side, upsample_nnf
from .reconstruct import reconstruct_latents

DECONV_INITS = ("content", "warp")


@dataclass(frozen=True)
class AnalogyParams:
    """Every knob of Deep Image Analogy (defaults: the paper's settings).

    Attributes:
        pm_iters: PatchMatch iterations (propagation + random search): one number for every
            level, or one per level for L = 5..1.
        jumps: propagation jump sizes tried in every iteration.
        patch_sizes: PatchMatch patch side for L = 5..1.
        radii: random-search radius (feature cells) for L = 5..1; None = the whole map.
        alphas: blend weights alpha^L for L = 4..1 (eq. 6).
        kappa: slope of the response sigmoid.
        tau: threshold of the response sigmoid.
        lbfgs_iters: L-BFGS iterations of the deconvolutions (eq. 5): one number for every level,
            or one per reconstructed level for L = 4..1 (0: no deconvolution, the start point is
            kept).
        deconv_init: ``"content"`` or ``"warp"`` (module docstring).
        lbfgs_line_search: strong-Wolfe line search in L-BFGS (False: plain steps).
        bf16: run the network (features and deconvolutions) under bfloat16 autocast.
        pca_dims: None for exact patch distances; else patches are projected on this many
            principal components (:func:`~.patchmatch.descriptors`).
        output_patch: patch side of the output aggregation (4.5).
        max_side: cap on the longer image side during the analogy; None for none.
        seed: seed of the random NNF initialisation, random search and PCA sampling.
    """

    pm_iters: int | tuple[int, ...] = 10
    jumps: tuple[int, ...] = (8, 4, 2, 1)
    patch_sizes: tuple[int, ...] = (3, 3, 3, 5, 5)
    radii: tuple[int | None, ...] = (None, 6, 6, 4, 4)
    alphas: tuple[float, ...] = (0.8, 0.7, 0.6, 0.1)
    kappa: float = 300.0
    tau: float = 0.05
    lbfgs_iters: int | tuple[int, ...] = 100
    lbfgs_line_search: bool = True
    deconv_init: str = "content"
    bf16: bool = False
    pca_dims: int | None = None
    output_patch: int = 5
    max_side: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and check the values (:class:`ConfigError`)."""
        for name in ("jumps", "patch_sizes", "radii", "alphas"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("pm_iters", "lbfgs_iters"):
            value = getattr(self, name)
            object.__setattr__(self, name, value if isinstance(value, int) else tuple(value))
        problems = []
        if len(self.patch_sizes) != 5 or any(p < 1 or p % 2 == 0 for p in self.patch_sizes):
            problems.append(f"patch_sizes must be 5 odd sizes (L = 5..1), got {self.patch_sizes}")
        if len(self.radii) != 5 or any(r is not None and r < 1 for r in self.radii):
            problems.append(f"radii must be 5 radii >= 1 or null (L = 5..1), got {self.radii}")
        if len(self.alphas) != 4 or any(not 0.0 <= a <= 1.0 for a in self.alphas):
            problems.append(f"alphas must be 4 weights in [0, 1] (L = 4..1), got {self.alphas}")
        for name, levels in (("pm_iters", 5), ("lbfgs_iters", 4)):
            value = getattr(self, name)
            counts = (value,) if isinstance(value, int) else value
            if (not isinstance(value, int) and len(value) != levels) or any(c < 0 for c in counts):
                problems.append(f"{name} must be one count >= 0 or {levels} of them, got {value}")
        if any(j < 1 for j in self.jumps):
            problems.append(f"jumps must be >= 1, got {self.jumps}")
        if self.deconv_init not in DECONV_INITS:
            problems.append(f"deconv_init must be one of {DECONV_INITS}, got {self.deconv_init!r}")
        if self.pca_dims is not None and self.pca_dims < 1:
            problems.append(f"pca_dims must be >= 1 or null, got {self.pca_dims}")
        if self.output_patch < 1 or self.output_patch % 2 == 0:
            problems.append(f"output_patch must be odd, got {self.output_patch}")
        if self.max_side is not None and self.max_side < 16:
            problems.append(f"max_side must be >= 16 or null, got {self.max_side}")
        if problems:
            raise ConfigError("Deep Image Analogy: " + "; ".join(problems))

    def level_pm_iters(self, step: int) -> int:
        """PatchMatch iterations at the ``step``-th level from the top (0 = L5)."""
        return self.pm_iters if isinstance(self.pm_iters, int) else self.pm_iters[step]

    def level_lbfgs_iters(self, step: int) -> int:
        """L-BFGS iterations reconstructing the ``step``-th level below the top (0 = L4)."""
        return self.lbfgs_iters if isinstance(self.lbfgs_iters, int) else self.lbfgs_iters[step]


#: Named settings: the paper's, and the fast CPU preset of ``benchmarks/bench_dia.py``.
PRESETS: dict[str, AnalogyParams] = {
    "paper": AnalogyParams(),
    "fast": AnalogyParams(
        lbfgs_iters=(10, 10, 10, 5), lbfgs_line_search=False, deconv_init="warp", bf16=True, pca_dims=32
    ),
}


@dataclass
class AnalogyResult:
    """Output of :func:`deep_image_analogy` (Algorithm 1) for one pair A, B'.

    Attributes:
        nnf_ab: (Ha, Wa, 2) long Phi_{a->b}: for every pixel (y, x) of A its pixel (y', x') in B'.
        nnf_ba: (Hb, Wb, 2) long Phi_{b->a}: for every pixel of B' its pixel in A.
        a_prime: (3, Ha, Wa) A' in [0, 1] (A's structure, B''s appearance).
        b: (3, Hb, Wb) B in [0, 1] (B''s structure, A's appearance).
        seconds: wall time per stage: ``features``, ``patchmatch L5`` .. ``patchmatch L1``,
            ``deconv L4`` .. ``deconv L1`` (warp + deconvolution + blend producing level L),
            ``aggregate`` and ``total``.
    """

    nnf_ab: Tensor
    nnf_ba: Tensor
    a_prime: Tensor
    b: Tensor
    seconds: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Stage timer (synchronises CUDA so that GPU time lands in the right stage)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds: dict[str, float] = {}
        self._last = self._now()

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self, name: str) -> None:
        """Charge the time since the previous lap to stage ``name``."""
        now = self._now()
        self.seconds[name] = now - self._last
        self._last = now


def _working(img: Tensor, max_side: int | None) -> Tensor:
    """(3, H, W) image downscaled so that its longer side is at most ``max_side``."""
    h, w = img.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return img
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def _size(feature: Tensor) -> tuple[int, int]:
    """(H, W) of a (C, H, W) map."""
    return int(feature.shape[-2]), int(feature.shape[-1])


def deep_image_analogy(backbone: Backbone, a: Tensor, b_prime: Tensor, params: AnalogyParams) -> AnalogyResult:
    """Run Algorithm 1 on one pair.

    Args:
        backbone: feature extractor with a 5-level :attr:`~Backbone.pyramid` whose sub-networks
            :func:`~.deconv.subnetwork` can cut (VGG-19, MobileNetV2, ResNets).
        a: (3, Ha, Wa) image A in [0, 1].
        b_prime: (3, Hb, Wb) image B' in [0, 1], on the same device.
        params: the settings.

    Returns:
        :class:`AnalogyResult` at the input resolution.

    Raises:
        ConfigError: the backbone's pyramid does not have 5 levels.
    """
    pyramid = list(backbone.pyramid)
    if len(pyramid) != 5:
        raise ConfigError(f"Deep Image Analogy needs a 5-level pyramid; {backbone.name} has {pyramid}")
    clock = _Clock(a.device)
    generator = torch.Generator(device=a.device).manual_seed(params.seed)
    with torch.no_grad(), torch.autocast(a.device.type, dtype=torch.bfloat16, enabled=params.bf16):
        fa = [f[0].float() for f in backbone(_working(a, params.max_side)[None], pyramid)]
        fb = [f[0].float() for f in backbone(_working(b_prime, params.max_side)[None], pyramid)]
    clock.lap("features")

    top = len(pyramid) - 1
    latent_a, latent_b = fa[top], fb[top]  # F_A'^5 = F_A^5, F_B^5 = F_B'^5
    nnf_ab = random_nnf(_size(fa[top]), _size(fb[top]), generator)
    nnf_ba = random_nnf(_size(fb[top]), _size(fa[top]), generator)
    for k in range(top, -1, -1):  # pyramid index k is paper level L = k + 1
        step = top - k
        patch = params.patch_sizes[step]
        with torch.no_grad():
            desc_a, desc_b, summed = descriptors(
                side(fa[k], latent_a), side(fb[k], latent_b), patch, params.pca_dims, generator
            )
            search = (params.level_pm_iters(step), params.jumps, params.radii[step], generator)
            nnf_ab, _ = patchmatch(PatchField(desc_a, desc_b, summed), nnf_ab, *search)
            nnf_ba, _ = patchmatch(PatchField(desc_b, desc_a, summed), nnf_ba, *search)
        clock.lap(f"patchmatch L{k + 1}")
        if k == 0:
            break
        up_ab = upsample_nnf(nnf_ab, _size(fa[k - 1]), _size(fb[k - 1]))
        up_ba = upsample_nnf(nnf_ba, _size(fb[k - 1]), _size(fa[k - 1]))
        if params.deconv_init == "warp":
            inits = [vote(fb[k - 1], up_ab, 1), vote(fa[k - 1], up_ba, 1)]
        else:
            inits = [fa[k - 1], fb[k - 1]]
        latent_a, latent_b = reconstruct_latents(
            subnetwork(backbone, pyramid[k - 1], pyramid[k]),
            uppers=(fb[k], fa[k]),
            nnfs=(nnf_ab, nnf_ba),
            patch=patch,
            contents=(fa[k - 1], fb[k - 1]),
            inits=inits,
            alpha=params.alphas[step],
            iterations=params.level_lbfgs_iters(step),
            bf16=params.bf16,
            line_search=params.lbfgs_line_search,
            kappa=params.kappa,
            tau=params.tau,
        )
        nnf_ab, nnf_ba = up_ab, up_ba
        clock.lap(f"deconv L{k}")

    size_a, size_b = _size(a), _size(b_prime)
    if tuple(nnf_ab.shape[:2]) != size_a or tuple(nnf_ba.shape[:2]) != size_b:
        nnf_ab = upsample_nnf(nnf_ab, size_a, size_b)
        nnf_ba = upsample_nnf(nnf_ba, size_b, size_a)
    a_prime = vote(b_prime, nnf_ab, params.output_patch)
    b = vote(a, nnf_ba, params.output_patch)
    clock.lap("aggregate")
    seconds = dict(clock.seconds)
    seconds["total"] = sum(clock.seconds.values())
    return AnalogyResult(nnf_ab=nnf_ab, nnf_ba=nnf_ba, a_prime=a_prime, b=b, seconds=seconds)

