"""The data of SAM-Net's training stages, built and checked before the first step.

Roles (``conf/model/samnet.yaml``):

* stage 1 training: synthetic pairs, ``model.stage1.data`` (a
  :class:`~semcorr.data.synthetic.SyntheticPairsDataset` config over an image folder; the paper's
  images are PASCAL VOC, ``python -m semcorr.data.download voc``) with ``model.stage1.kps`` exact
  keypoints per pair for the flow supervision;
* stage 2 training: image pairs of the ``dataset`` group, with the overrides ``model.stage2.data``
  (paper: PF-PASCAL ``split: train``; any other constructor argument, e.g. ``categories``, to keep
  the evaluation images out of training);
* validation, in both stages: the stage-1 data with the overrides ``model.val.synthetic`` and the
  ``dataset`` group with the overrides ``model.val.dataset`` (either null: not used).

:func:`build_stage_data` builds every role of the stages a run will train before any of them starts,
so a missing folder or split stops the run at once, with an error that names the download command
and the config key. :class:`EpochSampler` draws the training pairs; :class:`MemoryCache` keeps
decoded pairs in memory (``model.cache_pairs``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset, Sampler

from semcorr.data.collate import collate_pairs
from semcorr.data.warps import make_generator
from semcorr.errors import ConfigError, DatasetNotFoundError
from semcorr.lit.train import dataset_split

#: Name of the synthetic validation set in the metrics (``val/synthetic/...``).
SYNTHETIC = "synthetic"


@dataclass
class StageData:
    """The pairs of one stage.

    Attributes:
        train: the training pairs.
        val: validation sets by name (``"synthetic"`` and / or the dataset's name), in the order of
            the validation loaders.
        trained_on: what the weights have been fit on once this stage is done (its training pairs
            and the earlier stages'), as ``<dataset>/<split>`` with `` (categories)`` when restricted:
            the matcher's ``trained_on`` (protocol record).
    """

    train: Dataset
    val: dict[str, Dataset]
    trained_on: list[str]


def synthetic_root_check(cfg: DictConfig, data: DictConfig) -> None:
    """Stage 1's image folder must exist; the error names the download and the knob."""
    root = Path(str(data.root)).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"SAM-Net stage 1 trains on synthetic warps of the images under model.stage1.data.root, {root}, "
            "which does not exist. The paper's images are PASCAL VOC: `python -m semcorr.data.download voc` "
            f"fills {Path(str(cfg.paths.data_dir)) / 'VOC2012'} (the default root is its JPEGImages folder); "
            "or point model.stage1.data.root=PATH at any folder of images (the CPU preset uses the "
            "PF-WILLOW images: experiment=samnet_cpu dataset.root=PATH)."
        )


def merged(base: DictConfig, overrides: Mapping[str, Any] | None) -> DictConfig:
    """``base`` with ``overrides`` applied (a fresh config; the composed one is left as it is)."""
    out = OmegaConf.create(OmegaConf.to_container(base, resolve=True))
    return OmegaConf.merge(out, OmegaConf.create(dict(overrides or {})))


def build_validation(cfg: DictConfig) -> dict[str, Dataset]:
    """The validation sets of ``model.val`` (used by both stages), by name."""
    m = cfg.model
    sets: dict[str, Dataset] = {}
    if m.val.get("synthetic") is not None:
        data = merged(m.stage1.data, m.val.synthetic)
        synthetic_root_check(cfg, data)
        sets[SYNTHETIC] = dataset_split(
            data, str(data.split), "model.val.synthetic.split", "SAM-Net synthetic validation", with_flow=False
        )
    if m.val.get("dataset") is not None:
        data = merged(cfg.dataset, m.val.dataset)
        data.size = list(m.image_size)
        sets[str(cfg.dataset.name)] = dataset_split(
            data, str(data.split), "model.val.dataset.split", f"SAM-Net validation on the {cfg.dataset.name} pairs"
        )
    if not sets:
        raise ConfigError("SAM-Net needs a validation set: set model.val.synthetic or model.val.dataset")
    return sets


def describe(data: DictConfig) -> str:
    """``<name>/<split>``, with `` (categories)`` when the config keeps only some."""
    categories = data.get("categories")
    return f"{data.name}/{data.split}" + (f" ({', '.join(categories)})" if categories else "")


def train_config(cfg: DictConfig, stage: int) -> DictConfig:
    """The dataset config of the training pairs of ``stage``."""
    if stage == 1:
        return cfg.model.stage1.data
    data = merged(cfg.dataset, cfg.model.stage2.data)
    data.size = list(cfg.model.image_size)
    return data


def build_train(cfg: DictConfig, stage: int) -> Dataset:
    """The training pairs of ``stage`` (see the module docstring)."""
    m = cfg.model
    data = train_config(cfg, stage)
    if stage == 1:
        synthetic_root_check(cfg, data)
        kps = int(m.stage1.kps)
        if float(m.loss.flow) > 0 and kps < 1:
            raise ConfigError("model.loss.flow > 0 supervises stage 1 with keypoints: set model.stage1.kps >= 1")
        return dataset_split(
            data, str(data.split), "model.stage1.data.split", "SAM-Net stage 1 training", n_kps=kps, with_flow=False
        )
    return dataset_split(
        data, str(data.split), "model.stage2.data.split", f"SAM-Net stage 2 training on the {cfg.dataset.name} pairs"
    )


def build_stage_data(cfg: DictConfig, stages: list[int], earlier: list[str] = ()) -> dict[int, StageData]:
    """Every stage's pairs, built now (all errors before the first training step).

    Args:
        stages: the stages to train, in order.
        earlier: what the starting weights were fit on (``model.init_from``'s ``trained_on``, or
            stage 1's when a run starts at stage 2).
    """
    val = build_validation(cfg)
    cache = bool(cfg.model.get("cache_pairs", False))
    out: dict[int, StageData] = {}
    fitted = list(earlier)
    for stage in stages:
        train = build_train(cfg, stage)
        fitted = [*fitted, describe(train_config(cfg, stage))]
        out[stage] = StageData(MemoryCache(train) if cache else train, val, fitted)
    return out


class MemoryCache(Dataset):
    """A dataset whose samples are kept in memory after their first load (images as 8 bits).

    Decoding an image and rendering a synthetic warp cost more than a CPU training step's share;
    an epoch that returns to a pair reads it from here. Float images in [0, 1] are stored rounded to
    1/255 (``uint8``) and returned as float32; other values as they are.

    Args:
        dataset: the dataset to cache (deterministic: a pair is the same at every load).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self.items: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index not in self.items:
            sample = self.dataset[index]
            self.items[index] = {
                k: (v.mul(255).round().to(torch.uint8) if k.endswith("_img") else v) for k, v in sample.items()
            }
        stored = self.items[index]
        return {k: (v.float().div(255) if k.endswith("_img") else v) for k, v in stored.items()}


class EpochSampler(Sampler[int]):
    """``num_samples`` indices per epoch, shuffled by a generator seeded with (seed, training progress).

    Each epoch walks fresh permutations of the dataset (concatenated as needed), so short and long
    datasets give epochs of the same number of steps. The order is drawn when the epoch's first
    index is requested, from ``progress()`` at that moment (the optimiser steps taken so far): an
    uninterrupted run and a run resumed from a checkpoint at an epoch end see the same orders,
    whatever epoch counter the loop keeps.

    Args:
        size: dataset length. num_samples: indices per epoch. seed: base seed.
        progress: callable returning the current optimiser step (e.g. ``module.global_step``).
    """

    def __init__(self, size: int, num_samples: int, seed: int = 0, progress: Callable[[], int] = lambda: 0) -> None:
        if size < 1:
            raise ConfigError("SAM-Net training needs at least one training pair")
        self.size, self.num_samples, self.seed, self.progress = int(size), int(num_samples), int(seed), progress

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        generator = make_generator(self.seed, "samnet-epoch", int(self.progress()))
        reps = math.ceil(self.num_samples / self.size)
        order = torch.cat([torch.randperm(self.size, generator=generator) for _ in range(reps)])
        yield from order[: self.num_samples].tolist()


def build_loaders(
    cfg: DictConfig, progress: Callable[[], int], data: StageData
) -> tuple[DataLoader, list[DataLoader]]:
    """Training loader (an :class:`EpochSampler` epoch = ``val_every_n_steps`` steps) and one
    validation loader per set, in the order of ``data.val``."""
    m = cfg.model
    batch, workers = int(m.batch_size), int(cfg.datamodule.num_workers)
    sampler = EpochSampler(len(data.train), int(m.val_every_n_steps) * batch, int(cfg.seed), progress)  # type: ignore[arg-type]
    common = {
        "batch_size": batch, "num_workers": workers, "collate_fn": collate_pairs, "persistent_workers": workers > 0
    }
    # Own generators: creating a loader iterator draws a seed, which must not move the global RNG
    # (it drives the droplink draws and is restored from checkpoints).
    seeded = lambda: torch.Generator().manual_seed(int(cfg.seed))  # noqa: E731
    train = DataLoader(data.train, sampler=sampler, drop_last=True, generator=seeded(), **common)
    val = [DataLoader(d, shuffle=False, generator=seeded(), **common) for d in data.val.values()]
    return train, val
