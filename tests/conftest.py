"""Shared test helpers: composing the Hydra configs of conf/ and the path of ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED_DATA = ROOT / ".." / "shared" / "data"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with overrides, the run directory set to ``output_dir``."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=[*overrides, f"paths.output_dir={output_dir}"])


def build_method(method: str, overrides: list[str] = (), backbone: str = "mobilenet_v2", weights: str = "none"):
    """Instantiate ``conf/method/<method>.yaml`` (the only place method defaults live) with a
    backbone and overrides, e.g. ``build_method("dia", ["method.pm_iters=2"])``. A user error
    (:class:`SemcorrError`) raised inside is re-raised as itself, as the CLI reports it."""
    from semcorr.cli import find_user_error
    from semcorr.lit.evaluation_runner import build_method as instantiate_method

    cfg = compose_config(
        "evaluate",
        [f"method={method}", f"backbone={backbone}", f"backbone.net.weights={weights}", "logger=none", *overrides],
        Path("/tmp/semcorr-tests-unused"),
    )
    try:
        return instantiate_method(cfg.method)
    except Exception as exc:
        error = find_user_error(exc)
        if error is None:
            raise
        raise error from exc


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test saying it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found: {path.resolve()} (../shared/data is absent on this machine)")
    return path


@pytest.fixture()
def hydra_run():
    """Compose a config as the command line does, Hydra's runtime included (as
    lightning-hydra-template's conftest: ``compose(..., return_hydra_config=True)`` and
    ``HydraConfig().set_config``), so that ``hydra.runtime.choices``, the task overrides and
    ``${hydra:runtime.output_dir}`` are those of ``python <name>.py <overrides>
    hydra.run.dir=<run_dir>``. Returns ``compose_run(name, overrides, run_dir)``; the runtime is
    cleared after the test."""

    def compose_run(name: str, overrides: list[str], run_dir: Path) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose(name, overrides=overrides, return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.run.dir = str(run_dir)
            cfg.hydra.runtime.output_dir = str(run_dir)
            cfg.hydra.job.name = name
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield compose_run
    HydraConfig.instance().cfg = None
