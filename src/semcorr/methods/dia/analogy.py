"""The coarse-to-fine Deep Image Analogy driver (Algorithm 1 of Liao et al., SIGGRAPH 2017).

Levels are numbered as in the paper, L = 5 (coarsest) .. 1 (finest); level L is VGG-19's
reluL_1, of stride 2^(L-1). ``pyramid`` names, for L = 1..5, the backbone layer standing for that
level (None where the backbone has none, or where a level is left out), from the backbone config's
table (``conf/backbone/*.yaml``, key ``dia_pyramid``): the layer of that stride for VGG-19 and the
ResNets; for MobileNetV2 the ends of its two stride-16 stages (``features[10]``, ``[13]``), since its
stride-8 layer (32 channels) lost accuracy (README, Backbones). Two levels may share a stride: the
NNF is then carried to the next level at the same resolution. Per-level
settings are listed coarse to fine, as the paper lists them: ``pm_iters``, ``patch_sizes`` and
``radii`` for L = 5..1, ``blend_weights`` and ``lbfgs_iters`` for the reconstructed levels L = 4..1;
a level's settings apply to the layer standing for it.

1. Preprocessing (4.1): features of A and B' at the levels used; at the top level T,
   F_A'^T = F_A^T, F_B^T = F_B'^T; random NNFs at level T.
2. For every level L from T down: bidirectional deep PatchMatch (4.2, eq. 2:
   ``||F_A - F_B||^2 + ||F_A' - F_B'||^2``) refines phi_{a->b}^L and phi_{b->a}^L; above the
   finest level the NNFs are upsampled to the next level used, L' (4.4), and the latent features
   F_A'^{L'}, F_B^{L'} are reconstructed (4.3, eqs. 4-6).
3. Output (4.5): the finest NNFs upsampled to image resolution (the identity for VGG-19, whose
   relu1_1 has stride 1; x stride otherwise) are the pixel mappings Phi_{a->b}, Phi_{b->a}; A' and
   B are aggregated from B' and A with ``output_patch`` patches.

Choices the paper leaves open or that differ from it, all configurable:

- ``deconv_init``: the deconvolution's start point. ``"random"`` (the paper: "R_B'^{L-1}, which
  is randomized initially": Gaussian noise with the per-channel mean and standard deviation of the
  features being inverted) or ``"warp"`` (the reference code: the finer features of the other
  image carried through the upsampled NNF by patch voting, e.g. F_B'^{L-1}(phi_{a->b}^{L-1}) for
  A'; close to the solution, so few L-BFGS iterations suffice).
- ``deconv_form``: ``"direct"`` (the paper's eq. 5: the variable is R^{L-1} itself) or
  ``"reference"`` (the reference code: the variable is the feature map one level further down,
  X^{L-2}, optimised through the two sub-networks to reproduce the level-L target, and
  R^{L-1} = CNN_{L-2}^{L-1}(X); R is then always a map the network can produce, e.g. a valid
  post-ReLU map for VGG-19). Below the finest level used the variable is the normalised image.
- ``max_side`` caps the working resolution (the reference code's ``ratio``): the images are
  downscaled (bilinear, antialiased) for the analogy and the final NNFs are upsampled to the input
  resolution, where A' and B are aggregated.
- One seeded generator drives the random NNFs, the random search, the random deconvolution start
  and the PCA samples, so a pair's result does not depend on the pairs before it.

The presets (the paper's settings, and the fast default) are config files: ``conf/method/dia.yaml``
(the default) and ``conf/method/dia_paper.yaml``; the YAML is the only place defaults live.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.backbones.inversion import IMAGE_INPUT, subnetwork
from semcorr.errors import ConfigError
from semcorr.timing import StageClock

from .aggregate import vote
from .patchmatch import PatchField, descriptors, patchmatch, random_nnf, side, upsample_nnf
from .reconstruct import Deconvolution, reconstruct_latents

DECONV_INITS = ("random", "warp")
DECONV_FORMS = ("direct", "reference")
LEVELS = (1, 2, 3, 4, 5)


@dataclass(frozen=True)
class AnalogyParams:
    """Every knob of Deep Image Analogy. No defaults here: they live in ``conf/method/dia*.yaml``.

    Attributes:
        pyramid: the backbone layer standing for each level L = 1..5 (None: level not used); at
            least two levels.
        pm_iters: PatchMatch iterations (propagation + random search): one number for every
            level, or one per level for L = 5..1.
        jumps: propagation jump sizes tried in every iteration.
        patch_sizes: PatchMatch patch side for L = 5..1.
        radii: random-search radius (feature cells) for L = 5..1; None = the whole map.
        blend_weights: the blend weights alpha^L of eq. 6 for L = 4..1 (named so as not to be
            confused with the PCK alphas of the evaluation).
        kappa: slope of the response sigmoid.
        tau: threshold of the response sigmoid.
        lbfgs_iters: L-BFGS iterations of the deconvolution (eq. 5) reconstructing level L: one
            number for every level, or one per level for L = 4..1 (0: the start point is kept).
        lbfgs_line_search: strong-Wolfe line search in L-BFGS (False: plain steps).
        deconv_init: ``"random"`` or ``"warp"`` (module docstring).
        deconv_form: ``"direct"`` or ``"reference"`` (module docstring).
        bf16: run the network (features and deconvolutions) under bfloat16 autocast.
        pca_dims: None for exact eq. 2 patch distances; else patches are projected on this many
            principal components (:func:`~.patchmatch.descriptors`), an approximation.
        output_patch: patch side of the output aggregation (4.5).
        max_side: cap on the longer image side during the analogy; None for none.
        seed: seed of the random NNF initialisation, random search, random starts and PCA sampling.
    """

    pyramid: tuple[int | None, ...]
    pm_iters: int | tuple[int, ...]
    jumps: tuple[int, ...]
    patch_sizes: tuple[int, ...]
    radii: tuple[int | None, ...]
    blend_weights: tuple[float, ...]
    kappa: float
    tau: float
    lbfgs_iters: int | tuple[int, ...]
    lbfgs_line_search: bool
    deconv_init: str
    deconv_form: str
    bf16: bool
    pca_dims: int | None
    output_patch: int
    max_side: int | None
    seed: int

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and check the values (:class:`ConfigError`)."""
        for name in ("pyramid", "jumps", "patch_sizes", "radii", "blend_weights"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        for name in ("pm_iters", "lbfgs_iters"):
            value = getattr(self, name)
            object.__setattr__(self, name, value if isinstance(value, int) else tuple(value))
        problems = []
        if len(self.pyramid) != 5 or sum(layer is not None for layer in self.pyramid) < 2:
            problems.append(f"pyramid must name 5 layers (L = 1..5, null where unused), at least 2 of them, got {self.pyramid}")
        named = [layer for layer in self.pyramid if layer is not None]
        if any(lower >= upper for lower, upper in zip(named, named[1:])):
            problems.append(f"pyramid layers must deepen from L = 1 to 5 (each coarser level a later layer), got {self.pyramid}")
        if len(self.patch_sizes) != 5 or any(p < 1 or p % 2 == 0 for p in self.patch_sizes):
            problems.append(f"patch_sizes must be 5 odd sizes (L = 5..1), got {self.patch_sizes}")
        if len(self.radii) != 5 or any(r is not None and r < 1 for r in self.radii):
            problems.append(f"radii must be 5 radii >= 1 or null (L = 5..1), got {self.radii}")
        if len(self.blend_weights) != 4 or any(not 0.0 <= a <= 1.0 for a in self.blend_weights):
            problems.append(f"blend_weights must be 4 weights in [0, 1] (L = 4..1), got {self.blend_weights}")
        for name, levels in (("pm_iters", 5), ("lbfgs_iters", 4)):
            value = getattr(self, name)
            counts = (value,) if isinstance(value, int) else value
            if (not isinstance(value, int) and len(value) != levels) or any(c < 0 for c in counts):
                problems.append(f"{name} must be one count >= 0 or {levels} of them, got {value}")
        if not self.jumps or any(j < 1 for j in self.jumps):
            problems.append(f"jumps must be >= 1, got {self.jumps}")
        if self.deconv_init not in DECONV_INITS:
            problems.append(f"deconv_init must be one of {DECONV_INITS}, got {self.deconv_init!r}")
        if self.deconv_form not in DECONV_FORMS:
            problems.append(f"deconv_form must be one of {DECONV_FORMS}, got {self.deconv_form!r}")
        if self.pca_dims is not None and self.pca_dims < 1:
            problems.append(f"pca_dims must be >= 1 or null, got {self.pca_dims}")
        if self.output_patch < 1 or self.output_patch % 2 == 0:
            problems.append(f"output_patch must be odd, got {self.output_patch}")
        if self.max_side is not None and self.max_side < 16:
            problems.append(f"max_side must be >= 16 or null, got {self.max_side}")
        if problems:
            raise ConfigError("Deep Image Analogy (method.*): " + "; ".join(problems))

    @property
    def levels(self) -> list[int]:
        """The levels used, coarse to fine (e.g. [5, 4, 3, 2] for MobileNetV2)."""
        return [level for level in reversed(LEVELS) if self.pyramid[level - 1] is not None]

    def layer(self, level: int) -> int:
        """The backbone layer standing for ``level``."""
        return int(self.pyramid[level - 1])

    def patch(self, level: int) -> int:
        """PatchMatch patch side at ``level``."""
        return self.patch_sizes[5 - level]

    def radius(self, level: int) -> int | None:
        """Random-search radius at ``level`` (None: the whole map)."""
        return self.radii[5 - level]

    def level_pm_iters(self, level: int) -> int:
        """PatchMatch iterations at ``level``."""
        return self.pm_iters if isinstance(self.pm_iters, int) else self.pm_iters[5 - level]

    def alpha(self, level: int) -> float:
        """Blend weight alpha^L of the reconstructed ``level`` (1..4)."""
        return self.blend_weights[4 - level]

    def level_lbfgs_iters(self, level: int) -> int:
        """L-BFGS iterations reconstructing ``level`` (1..4)."""
        return self.lbfgs_iters if isinstance(self.lbfgs_iters, int) else self.lbfgs_iters[4 - level]


@dataclass
class AnalogyResult:
    """Output of :func:`deep_image_analogy` (Algorithm 1) for one pair A, B'.

    Attributes:
        nnf_ab: (Ha, Wa, 2) long Phi_{a->b}: for every pixel (y, x) of A its pixel (y', x') in B'.
        nnf_ba: (Hb, Wb, 2) long Phi_{b->a}: for every pixel of B' its pixel in A.
        a_prime: (3, Ha, Wa) A' in [0, 1] (A's structure, B''s appearance).
        b: (3, Hb, Wb) B in [0, 1] (B''s structure, A's appearance).
        level_nnfs: level L -> (h_L, w_L, 2) long phi_{a->b}^L after that level's PatchMatch, on
            the working-resolution feature grid (the per-level diagnostic).
        seconds: wall time per stage: ``features``, ``patchmatch L<L>`` and ``deconv L<L>`` (warp +
            deconvolution + blend producing level L) per level used, ``aggregate`` and ``total``.
    """

    nnf_ab: Tensor
    nnf_ba: Tensor
    a_prime: Tensor
    b: Tensor
    level_nnfs: dict[int, Tensor] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)


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


def _random_start(grid: Tensor, statistics: Tensor, generator: torch.Generator) -> Tensor:
    """Gaussian noise on the grid of ``grid`` (C, H, W) with the per-channel mean and standard
    deviation of ``statistics`` (C, H', W'): the random start of a latent map, which lives on its own
    image's grid (A' on A's) and stands for the other image's features (B' warped)."""
    noise = torch.randn(grid.shape, generator=generator, device=generator.device).to(grid)
    mean = statistics.mean(dim=(1, 2), keepdim=True)
    std = statistics.std(dim=(1, 2), keepdim=True)
    return mean + std * noise


def deep_image_analogy(backbone: Backbone, a: Tensor, b_prime: Tensor, params: AnalogyParams) -> AnalogyResult:
    """Run Algorithm 1 on one pair.

    Args:
        backbone: feature extractor whose sub-networks :func:`~.deconv.subnetwork` can cut
            (VGG-19, MobileNetV2, ResNets), with the layers of ``params.pyramid``.
        a: (3, Ha, Wa) image A in [0, 1].
        b_prime: (3, Hb, Wb) image B' in [0, 1], on the same device.
        params: the settings.

    Returns:
        :class:`AnalogyResult` at the input resolution.
    """
    levels = params.levels
    layers = [params.layer(level) for level in levels]  # coarse to fine
    seconds: dict[str, float] = {}
    clock = StageClock(seconds, device=a.device)
    generator = torch.Generator(device=a.device).manual_seed(params.seed)
    images = (_working(a, params.max_side), _working(b_prime, params.max_side))
    reference = params.deconv_form == "reference"
    with torch.no_grad(), torch.autocast(a.device.type, dtype=torch.bfloat16, enabled=params.bf16):
        fa, fb = ({} for _ in range(2))
        for feats, img in ((fa, images[0]), (fb, images[1])):
            outs = backbone(img[None], layers)
            feats.update({level: f[0].float() for level, f in zip(levels, outs)})
            if reference:  # optimised one level further down: the image below the finest level
                feats[0] = ((img[None] - backbone.mean) / backbone.std)[0].float()
    clock.lap("features")

    top = levels[0]
    latent_a, latent_b = fa[top], fb[top]  # F_A'^T = F_A^T, F_B^T = F_B'^T
    nnf_ab = random_nnf(_size(fa[top]), _size(fb[top]), generator)
    nnf_ba = random_nnf(_size(fb[top]), _size(fa[top]), generator)
    level_nnfs: dict[int, Tensor] = {}
    below = {upper: lower for upper, lower in zip(levels, levels[1:] + ([0] if reference else []))}
    layer_of = {level: params.layer(level) for level in levels} | {0: IMAGE_INPUT}
    for i, level in enumerate(levels):
        with torch.no_grad():
            # eq. 2: the A side is [F_A, F_A'], the B side [F_B, F_B'] (F_B the latent of B')
            desc_a, desc_b, summed = descriptors(
                side(fa[level], latent_a), side(latent_b, fb[level]), params.patch(level), params.pca_dims, generator
            )
            search = (params.level_pm_iters(level), params.jumps, params.radius(level), generator)
            nnf_ab, _ = patchmatch(PatchField(desc_a, desc_b, summed), nnf_ab, *search)
            nnf_ba, _ = patchmatch(PatchField(desc_b, desc_a, summed), nnf_ba, *search)
        level_nnfs[level] = nnf_ab
        clock.lap(f"patchmatch L{level}")
        if i == len(levels) - 1:
            break
        finer = levels[i + 1]
        up_ab = upsample_nnf(nnf_ab, _size(fa[finer]), _size(fb[finer]))
        up_ba = upsample_nnf(nnf_ba, _size(fb[finer]), _size(fa[finer]))
        variable = below[finer] if reference else finer  # the level whose map L-BFGS optimises
        var_ab = up_ab if variable == finer else upsample_nnf(nnf_ab, _size(fa[variable]), _size(fb[variable]))
        var_ba = up_ba if variable == finer else upsample_nnf(nnf_ba, _size(fb[variable]), _size(fa[variable]))
        if params.deconv_init == "warp":
            patch = params.patch(finer) if variable == finer else 1
            inits = [vote(fb[variable], var_ab, patch), vote(fa[variable], var_ba, patch)]
        else:
            inits = [_random_start(fa[variable], fb[variable], generator), _random_start(fb[variable], fa[variable], generator)]
        deconv = Deconvolution(
            to_target=subnetwork(backbone, layer_of[variable], layer_of[level]),
            to_output=None if variable == finer else subnetwork(backbone, layer_of[variable], layer_of[finer]),
            iterations=params.level_lbfgs_iters(finer),
            bf16=params.bf16,
            line_search=params.lbfgs_line_search,
        )
        latent_a, latent_b = reconstruct_latents(
            deconv,
            uppers=(fb[level], fa[level]),
            nnfs=(nnf_ab, nnf_ba),
            patch=params.patch(level),
            contents=(fa[finer], fb[finer]),
            inits=inits,
            alpha=params.alpha(finer),
            kappa=params.kappa,
            tau=params.tau,
        )
        nnf_ab, nnf_ba = up_ab, up_ba
        clock.lap(f"deconv L{finer}")

    size_a, size_b = _size(a), _size(b_prime)
    if tuple(nnf_ab.shape[:2]) != size_a or tuple(nnf_ba.shape[:2]) != size_b:
        nnf_ab = upsample_nnf(nnf_ab, size_a, size_b)
        nnf_ba = upsample_nnf(nnf_ba, size_b, size_a)
    a_prime = vote(b_prime, nnf_ab, params.output_patch)
    b = vote(a, nnf_ba, params.output_patch)
    clock.lap("aggregate")
    seconds["total"] = sum(seconds.values())
    return AnalogyResult(nnf_ab=nnf_ab, nnf_ba=nnf_ba, a_prime=a_prime, b=b, level_nnfs=level_nnfs, seconds=seconds)
