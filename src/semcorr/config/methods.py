"""Schemas of the method configs (``conf/method/*.yaml``): one TypedDict per method class.

Each lists the constructor's keyword arguments (``tests/test_config.py`` checks the names against
the signature, so a knob added to a method without its schema fails the tests) with the valid
range, plus ``name``, the method's name in run names and results, which
:func:`semcorr.lit.evaluation_runner.build_method` removes before instantiating. ``backbone`` is the
``${backbone.net}`` node, checked by the backbone schema where it is defined. Defaults stay in the
YAML files and the constructors; the schemas only say what is valid.
"""

from typing import Annotated, Any, Literal

import annotated_types as at
from pydantic import AfterValidator
from typing_extensions import TypedDict

from .schema import (
    Described,
    NonNegativeFloat,
    NonNegativeInt,
    OddInt,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    list_of,
    register,
    strict,
)


def _two_levels(pyramid: list[int | None]) -> list[int | None]:
    if sum(layer is not None for layer in pyramid) < 2:
        raise ValueError("at least 2 levels must have a layer")
    return pyramid


def _decreasing(levels: list[int]) -> list[int]:
    if any(a <= b for a, b in zip(levels, levels[1:])):
        raise ValueError("levels must go from coarse to fine (strictly decreasing)")
    return levels


#: The SAM-Net input size [H, W].
NetworkSize = Annotated[list_of(Annotated[int, at.Ge(16)], length=2), Described("[H, W], two integers >= 16")]
#: The backbone layer standing for each level L = 1..5 (null: none of that level's stride).
Pyramid = list_of(NonNegativeInt | None, length=5)
MLSKind = Literal["affine", "similarity", "rigid"]
#: NBB levels, coarse to fine.
LevelIds = Annotated[
    list_of(Literal[1, 2, 3, 4, 5], min_length=1), AfterValidator(_decreasing),
    Described("levels from 5 down to 1, strictly decreasing, e.g. [5, 4, 3, 2, 1]"),
]


@strict
class MethodKnobs(TypedDict, total=False):
    """What every method config has."""

    name: str


@register("semcorr.methods.identity.IdentityMatcher")
@strict
class IdentityKnobs(MethodKnobs, total=False):
    """``method=identity``: no knobs."""


@register("semcorr.methods.hpf.matcher.HyperpixelFlow")
@strict
class HyperpixelFlowKnobs(MethodKnobs, total=False):
    """``method=hpf`` (:class:`semcorr.methods.hpf.HyperpixelFlow`)."""

    backbone: Any
    layers: list_of(NonNegativeInt, min_length=1)
    rhm: bool
    exponent: PositiveFloat
    ncells: PositiveInt
    gaussian_size: OddInt
    margin_pruning: bool
    cache_size: NonNegativeInt
    fast: bool
    sparse_k: NonNegativeInt
    fold_channels: NonNegativeInt


@register("semcorr.methods.nn.NearestNeighbour")
@strict
class NearestNeighbourKnobs(MethodKnobs, total=False):
    """``method=nn`` (:class:`semcorr.methods.nn.NearestNeighbour`)."""

    backbone: Any
    layer: NonNegativeInt
    readout: Literal["argmax", "soft_argmax", "kernel_soft_argmax", "box"]
    temperature: PositiveFloat
    sigma: PositiveFloat
    margin_pruning: bool
    cache_size: NonNegativeInt


@register("semcorr.methods.nbb.matcher.NeuralBestBuddies")
@strict
class NeuralBestBuddiesKnobs(MethodKnobs, total=False):
    """``method=nbb`` (:class:`semcorr.methods.nbb.NeuralBestBuddies`); per-level lists are
    ordered levels 1..5. That ``levels`` are levels of the ``pyramid`` is checked by the method."""

    backbone: Any
    pyramid: Pyramid
    levels: LevelIds | None
    k: PositiveInt
    gamma: UnitInterval
    patch_sizes: list_of(OddInt, length=5)
    radii: list_of(NonNegativeInt, length=5)
    response_power: PositiveFloat
    border: NonNegativeFloat
    k_per_level: PositiveInt | None
    densify: Literal["all", "local"]
    outlier_cells: PositiveFloat
    transfer_mls: MLSKind
    warp_mls: MLSKind
    mls_alpha: NonNegativeFloat
    warp_step: PositiveInt
    kmeans_n_init: PositiveInt
    seed: int
    morph_steps: NonNegativeInt
    hybrid_iters: NonNegativeInt
    cache_size: NonNegativeInt


@register("semcorr.methods.dia.matcher.DeepImageAnalogy")
@strict
class DeepImageAnalogyKnobs(MethodKnobs, total=False):
    """``method=dia`` / ``dia_paper`` (:class:`semcorr.methods.dia.DeepImageAnalogy`, whose
    settings are the fields of :class:`~semcorr.methods.dia.analogy.AnalogyParams`); per-level
    lists are ordered as the paper lists them (levels 5..1, blend weights and L-BFGS 4..1), the
    pyramid levels 1..5."""

    backbone: Any
    pyramid: Annotated[Pyramid, AfterValidator(_two_levels), Described(
        "a list of 5 values (levels 1..5), each a layer id >= 0 or null, at least 2 of them layers")]
    pm_iters: NonNegativeInt | list_of(NonNegativeInt, length=5)
    jumps: list_of(PositiveInt, min_length=1)
    patch_sizes: list_of(OddInt, length=5)
    radii: list_of(PositiveInt | None, length=5)
    blend_weights: list_of(UnitInterval, length=4)
    kappa: PositiveFloat
    tau: UnitInterval
    lbfgs_iters: NonNegativeInt | list_of(NonNegativeInt, length=4)
    lbfgs_line_search: bool
    deconv_init: Literal["random", "warp"]
    deconv_form: Literal["direct", "reference"]
    bf16: bool
    pca_dims: PositiveInt | None
    output_patch: OddInt
    max_side: Annotated[int, at.Ge(16)] | None
    seed: int


@register("semcorr.methods.samnet.matcher.SAMNetMatcher")
@strict
class SAMNetKnobs(MethodKnobs, total=False):
    """``method=samnet`` (:class:`semcorr.methods.samnet.SAMNetMatcher`)."""

    backbone: Any
    checkpoint: str | None
    iterations: PositiveInt | None
    size: NetworkSize | None
    attribute_weight: Literal["paper", "zero"] | None


#: For the check of the schemas against the constructors (tests/test_config.py): the arguments that
#: only Python callers pass, and the dataclass whose fields a constructor's ``**settings`` are.
PYTHON_ONLY = {"semcorr.methods.samnet.matcher.SAMNetMatcher": ("network",)}
SETTINGS_OF = {"semcorr.methods.dia.matcher.DeepImageAnalogy": "semcorr.methods.dia.analogy.AnalogyParams"}
