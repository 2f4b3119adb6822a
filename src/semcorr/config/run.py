"""Schemas of the run: the root keys of ``evaluate.yaml`` / ``train.yaml`` (the PCK alphas, pictures,
journal), ``datamodule``, the backbone, the trainer, the callbacks, the loggers, and the HPF layer
search of ``train.py model=hpf_search``.

Third-party targets (Lightning's Trainer and loggers) get ``open_`` schemas: the keys listed here
are checked, any other argument is passed on to the library, which checks it itself.
"""

from typing import Annotated, Any, Literal

import annotated_types as at
from typing_extensions import TypedDict

from semcorr.backbones.factory import BACKBONE_NAMES

from .datasets import ThresholdKind
from .schema import (
    Fraction,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    UnitInterval,
    list_of,
    open_,
    register,
    strict,
)


@open_
class RunKnobs(TypedDict, total=False):
    """Root keys of both scripts (the config groups are checked by their own schemas)."""

    seed: int


@open_
class EvaluateKnobs(RunKnobs, total=False):
    """Root keys of ``evaluate.yaml``."""

    alphas: list_of(Fraction, min_length=1, distinct=True)
    save_pictures: bool
    pictures: Literal["first", "worst"]
    max_pictures: NonNegativeInt
    resume_every: NonNegativeInt
    log_every_n_pairs: NonNegativeInt


@strict
class DataModuleKnobs(TypedDict, total=False):
    """``datamodule`` (:class:`semcorr.data.datamodule.PairDataModule`)."""

    batch_size: PositiveInt
    num_workers: NonNegativeInt


@strict
class BackboneGroupKnobs(TypedDict, total=False):
    """A ``conf/backbone/*.yaml`` node: the network (``net``, checked by :class:`BackboneKnobs`) and
    the layer choices the methods read from it. Which layer ids exist is checked by the backbone."""

    net: Any
    hpf_layers: list_of(NonNegativeInt, min_length=1, distinct=True)
    nn_layer: NonNegativeInt
    search_bases: list_of(NonNegativeInt, min_length=1, distinct=True)
    pyramid: list_of(NonNegativeInt | None, length=5)
    dia_pyramid: list_of(NonNegativeInt | None, length=5)


#: Root schemas of ``evaluate.py`` and ``train.py`` by path (:func:`~.schema.validate_config`).
EVALUATE = {"": EvaluateKnobs, "datamodule": DataModuleKnobs, "backbone": BackboneGroupKnobs}
TRAIN = {"": RunKnobs, "datamodule": DataModuleKnobs, "backbone": BackboneGroupKnobs}


@register("semcorr.backbones.factory.load_backbone")
@strict
class BackboneKnobs(TypedDict, total=False):
    """``backbone.net`` (:func:`semcorr.backbones.load_backbone`)."""

    name: Literal[BACKBONE_NAMES]
    weights: str | None
    device: str
    trainable: bool


@register("pytorch_lightning.trainer.trainer.Trainer")
@open_
class TrainerKnobs(TypedDict, total=False):
    """``trainer`` (Lightning's Trainer; the arguments not listed are checked by Lightning)."""

    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"]
    devices: PositiveInt | Literal["auto"] | list_of(NonNegativeInt, min_length=1) | str
    num_nodes: PositiveInt
    strategy: str
    precision: Literal[
        "transformer-engine", "transformer-engine-float16", "16-true", "16-mixed", "bf16-true",
        "bf16-mixed", "32-true", "64-true", "64", "32", "16", "bf16", 64, 32, 16,
    ]
    enable_model_summary: bool
    enable_checkpointing: bool
    enable_progress_bar: bool
    inference_mode: bool
    deterministic: bool | Literal["warn"] | None
    max_steps: Annotated[int, at.Ge(-1)]
    limit_test_batches: UnitInterval | NonNegativeInt | None
    limit_val_batches: UnitInterval | NonNegativeInt | None
    log_every_n_steps: PositiveInt
    gradient_clip_val: PositiveFloat | None


@register("semcorr.lit.progress.ProgressBar")
@strict
class ProgressBarKnobs(TypedDict, total=False):
    """``callbacks.progress`` (``conf/callbacks/default.yaml``)."""

    every_n: PositiveInt
    every_s: PositiveFloat | None
    lines: bool | None


#: The callbacks' constructor arguments that the runners give (``_partial_`` entries of
#: ``conf/callbacks/``, :func:`semcorr.lit.callbacks.instantiate_callbacks`), not the config.
RUNTIME_ARGUMENTS = {
    "semcorr.lit.interrupt.ResumeOnInterrupt": ("save", "command"),
    "semcorr.lit.loggers.RunningMetrics": ("module", "every_n_pairs"),
    "semcorr.lit.journal.JournalCallback": ("module", "journal"),
    "semcorr.lit.pictures.PictureWriter": ("folder", "indices", "alphas", "method"),
}


@strict
class RunnerFedCallbackKnobs(TypedDict, total=False):
    """A ``callbacks.*`` entry without knobs: every argument comes from the runner
    (:data:`RUNTIME_ARGUMENTS`; the top-level ``log_every_n_pairs``, ``resume_every``,
    ``save_pictures``, ``pictures`` and ``max_pictures`` set what they do), so any key set in its
    config is an error."""


for _target in ("semcorr.lit.interrupt.ResumeOnInterrupt", "semcorr.lit.loggers.RunningMetrics",
                "semcorr.lit.journal.JournalCallback", "semcorr.lit.pictures.PictureWriter"):
    register(_target)(RunnerFedCallbackKnobs)


@register("semcorr.lit.loggers.WandbLogger")
@open_
class WandbLoggerKnobs(TypedDict, total=False):
    """``logger=wandb`` (the arguments not listed go to ``wandb.init``)."""

    project: str
    offline: bool
    log_model: bool | Literal["all"]
    group: str | None
    name: str | None
    tags: list[str] | None
    job_type: str | None
    id: str | None
    quiet: bool


@register("pytorch_lightning.loggers.csv_logs.CSVLogger")
@open_
class CSVLoggerKnobs(TypedDict, total=False):
    """``logger=csv``."""

    name: str | None
    version: int | str | None
    prefix: str
    flush_logs_every_n_steps: PositiveInt


@register("semcorr.lit.hpf_search.run_search")
@strict
class LayerSearchKnobs(TypedDict, total=False):
    """``model=hpf_search`` (the beam search of :mod:`semcorr.lit.hpf_search`); its ``matcher`` is
    an HPF method config, checked by the method schema."""

    runner: str
    matcher: Any
    split: str
    alpha: Fraction
    base_candidates: list_of(NonNegativeInt, min_length=1, distinct=True)
    beam_size: PositiveInt
    max_layers: PositiveInt
    candidate_layers: list_of(NonNegativeInt, min_length=1, distinct=True) | None
    threshold: ThresholdKind | None
    feature_cache_images: NonNegativeInt
