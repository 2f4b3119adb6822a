"""Schemas of the dataset configs (``conf/dataset/*.yaml``): one TypedDict per dataset class.

:class:`PairDatasetKnobs` holds the arguments of :class:`semcorr.data.base.PairDataset` that every
dataset takes (:class:`BenchmarkKnobs` adds the threshold kind of the annotated benchmarks); each
dataset adds its own (``tests/test_config.py`` checks the names against the
constructors). ``split`` is checked by the dataset itself against its own splits, with the valid
ones in the message.
"""

from typing import Annotated, Literal

import annotated_types as at
from typing_extensions import TypedDict

from .schema import (
    Described,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    PositiveRange,
    UnitInterval,
    list_of,
    register,
    strict,
)

#: Image side the resize accepts (semcorr.data.transforms.Resize).
Side = Annotated[int, at.Ge(8)]
ImageSize = Annotated[list_of(Side, length=2), Described("[H, W], two integers >= 8")]


@strict
class PairDatasetKnobs(TypedDict, total=False):
    """:class:`semcorr.data.base.PairDataset` arguments."""

    root: str
    split: str
    name: str | None
    max_side: Side | None
    size: ImageSize | None
    upscale: bool
    convert_images: bool
    categories: list_of(str, min_length=1) | None
    pairs_per_category: PositiveInt | None
    max_pairs: PositiveInt | None
    subset_seed: int


#: PCK threshold kinds (semcorr.data.thresholds.KINDS); which of them a dataset offers, it checks itself.
ThresholdKind = Literal["img", "bbox", "none"]


@strict
class BenchmarkKnobs(PairDatasetKnobs, total=False):
    """The annotated benchmarks' arguments: those of every dataset and the PCK threshold kind (the
    generated datasets, sample and synthetic, have one threshold only)."""

    threshold: ThresholdKind | None


@register("semcorr.data.pfpascal.PFPascalDataset")
@strict
class PFPascalKnobs(BenchmarkKnobs, total=False):
    pairs_csv: str | None
    keypoints: Literal["auto", "csv", "mat"]


@register("semcorr.data.pfwillow.PFWillowDataset")
@strict
class PFWillowKnobs(BenchmarkKnobs, total=False):
    pairs_csv: str | None
    source: Literal["auto", "folder", "csv"]


@register("semcorr.data.spair.SPairDataset")
@strict
class SPairKnobs(BenchmarkKnobs, total=False):
    layout: Literal["large", "small"]


@register("semcorr.data.tss.TSSDataset")
@strict
class TSSKnobs(BenchmarkKnobs, total=False):
    alpha: PositiveFloat
    flip_target: bool


@register("semcorr.data.caltech.CaltechDataset")
@strict
class CaltechKnobs(BenchmarkKnobs, total=False):
    pairs_file: str
    polygons: Literal["auto", "csv", "mat"]
    mask_transfer: Literal["polygon", "flow"]
    margin_pruning: bool


@register("semcorr.data.cub.CUBDataset")
@strict
class CUBKnobs(BenchmarkKnobs, total=False):
    pairs_per_class: PositiveInt
    seed: int
    masks: bool | Literal["auto"]
    mask_threshold: Annotated[float, at.Interval(ge=0, lt=1)]


@register("semcorr.data.pairs.ImagePairsDataset")
@strict
class ImagePairsKnobs(BenchmarkKnobs, total=False):
    pairs_csv: str | None


@strict
class WarpKnobs(TypedDict, total=False):
    """The random affine + TPS warps of the sample and synthetic datasets."""

    seed: int
    n_kps: NonNegativeInt
    kp_margin: NonNegativeFloat
    rotation: NonNegativeFloat
    scale: PositiveRange
    translation: NonNegativeFloat
    tps_jitter: NonNegativeFloat


@register("semcorr.data.sample.SampleDataset")
@strict
class SampleKnobs(PairDatasetKnobs, WarpKnobs, total=False):
    photos: list_of(str, min_length=1) | None
    photo_side: Annotated[int, at.Ge(16)] | None
    pairs_per_photo: PositiveInt
    n_kps: PositiveInt


@register("semcorr.data.synthetic.SyntheticPairsDataset")
@strict
class SyntheticKnobs(PairDatasetKnobs, WarpKnobs, total=False):
    pairs_per_image: PositiveInt
    min_jacobian: NonNegativeFloat
    min_overlap: UnitInterval
    val_fraction: UnitInterval
    test_fraction: UnitInterval
    with_flow: bool
    flow_alpha: PositiveFloat
