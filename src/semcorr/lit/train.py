"""The one train entry behind ``python train.py model=<name>``, and what its runners share.

:func:`train` calls the model's runner, ``model.runner`` (a function taking the composed config):
:func:`semcorr.lit.samnet.run_stages` for ``model=samnet`` (two Lightning fits),
:func:`semcorr.lit.hpf_search.run_search` for ``model=hpf_search`` (a beam search of test passes).
Each runner starts with :func:`start_run` (seed, CPU threads, the run directory and its
``config.yaml``), so it can also be called directly (tests, notebooks).

:func:`dataset_split` builds a dataset config at a split with errors that name the knob to change,
so that a run stops before its first step when any of its data is missing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import get_class, get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from semcorr.cli import find_user_error
from semcorr.data.base import PairDataset
from semcorr.errors import ConfigError
from semcorr.io import write_text

log = logging.getLogger(__name__)


def start_run(cfg: DictConfig) -> Path:
    """Seed everything from ``cfg.seed``, set ``model.num_threads`` (if any), create the run directory
    and write the composed config into it.

    Returns:
        The run directory (``paths.output_dir``).
    """
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    threads = cfg.model.get("num_threads")
    if threads:
        torch.set_num_threads(int(threads))
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    return run_dir


def train(cfg: DictConfig) -> Any:
    """Hand the composed config to ``model.runner``; returns its result."""
    return get_method(str(cfg.model.runner))(cfg)


def dataset_split(data: DictConfig, split: str, knob: str, role: str, **overrides: Any) -> PairDataset:
    """Instantiate a dataset config at ``split``, checking the split first.

    Args:
        data: a dataset config (``_target_`` a :class:`~semcorr.data.base.PairDataset`).
        split: the split asked for.
        knob: the config key that chose ``split`` (named in the error).
        role: what the pairs are for, e.g. ``"SAM-Net stage 2 training"`` (starts the error).
        **overrides: further constructor arguments.

    Raises:
        ConfigError: the dataset has no such split: the message lists the splits it has and names
            ``knob``.
        SemcorrError: the dataset's own errors (a missing folder names its download command and
            ``dataset.root``), prefixed with ``role``.
    """
    valid = getattr(get_class(str(data._target_)), "splits", None)
    name = data.get("name") or str(data._target_).rsplit(".", 1)[-1]
    if valid is not None and split not in valid:
        raise ConfigError(
            f"{role} asks for split {split!r} of dataset {name!r}, which has the splits {', '.join(valid)}: "
            f"set {knob}=<one of them>, or choose another dataset"
        )
    try:
        return instantiate(data, split=split, **overrides)
    except Exception as exc:  # noqa: BLE001 - user errors get the role prefix, others propagate
        user = find_user_error(exc)
        if user is None:
            raise
        raise type(user)(f"{role}: {user}") from exc
