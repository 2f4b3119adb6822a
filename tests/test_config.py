"""Typed config schemas: a wrong value is one line naming the key, the value and the valid range,
before any work; every config of conf/ has a schema, and every schema lists exactly the arguments
of the constructor it describes."""

from __future__ import annotations

import dataclasses
import inspect
import os
import subprocess
import sys

import pytest
from hydra.utils import get_object
from omegaconf import OmegaConf

from conftest import CONF, ROOT, compose_config
from semcorr.config import EVALUATE, TRAIN, registered, schema_for, validate_config
from semcorr.config.methods import PYTHON_ONLY, SETTINGS_OF
from semcorr.config.run import RUNTIME_ARGUMENTS
from semcorr.config.schema import describe
from semcorr.data.base import PairDataset
from semcorr.errors import ConfigError

METHODS = sorted(p.stem for p in (CONF / "method").glob("*.yaml"))
DATASETS = sorted(p.stem for p in (CONF / "dataset").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("hpf_*.yaml"))  # presets of evaluate.py


def problems(overrides: list[str], tmp_path, name: str = "evaluate") -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(compose_config(name, overrides, tmp_path), EVALUATE if name == "evaluate" else TRAIN)
    return str(info.value)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (["method.exponent=-1"], "method.exponent=-1: must be greater than 0 (valid: a number > 0)"),
        (["method.exponent=abc"], "method.exponent=abc: must be a number (valid: a number > 0)"),
        (["alphas=[-0.1]"], "alphas[0]=-0.1: must be greater than 0 (valid: a list of at least 1 value, all different, "
                            "each a number in (0, 1])"),
        (["alphas=[0.1,0.1]"], "alphas=[0.1, 0.1]: must not repeat a value"),
        (["datamodule.batch_size=0"], "datamodule.batch_size=0: must be greater than or equal to 1 (valid: an integer >= 1)"),
        (["method.gaussian_size=4"], "method.gaussian_size=4: must be odd (valid: an odd integer >= 1)"),
        (["method.rhm=no"], "method.rhm=no: must be true or false (valid: true or false)"),
        (["method=nbb", "method.levels=[4,5]"], "method.levels=[4, 5]: levels must go from coarse to fine"),
        (["method=dia", "method.deconv_init=content"], "method.deconv_init=content: must be 'random' or 'warp' "
                                                        "(valid: one of random, warp)"),
        (["method=dia", "method.blend_weights=[0.8,0.7]"], "method.blend_weights=[0.8, 0.7]: must have at least 4 "
                                                            "items, not 2 (valid: a list of 4 values, each a number in [0, 1])"),
        (["method=dia", "method.pyramid=[null,null,null,null,13]"], "method.pyramid=[null, null, null, null, 13]: "
                                                                     "at least 2 levels must have a layer"),
        (["method=nbb", "method.transfer_mls=thin_plate"], "method.transfer_mls=thin_plate: must be 'affine', "
                                                            "'similarity' or 'rigid'"),
        (["method=samnet", "method.size=[8,300]"], "method.size[0]=8: must be greater than or equal to 16"),
        (["dataset=pfwillow", "dataset.source=web"], "dataset.source=web: must be 'auto', 'folder' or 'csv'"),
        (["dataset.max_side=4"], "dataset.max_side=4: must be greater than or equal to 8 (valid: an integer >= 8 or null)"),
        (["dataset.scale=[1.2,0.8]"], "dataset.scale=[1.2, 0.8]: the low end must not exceed the high end"),
        (["backbone.net.name=resnet18"], "backbone.net.name=resnet18: must be 'resnet50', "),
        (["backbone.pyramid=[6,13]"], "backbone.pyramid=[6, 13]: must have at least 5 items, not 2"),
        (["backbone.hpf_layers=[4,4]"], "backbone.hpf_layers=[4, 4]: must not repeat a value"),
        (["trainer.devices=0"], "trainer.devices=0: must be greater than or equal to 1"),
        (["trainer.precision=8"], "trainer.precision=8: must be "),
        (["logger.quiet=maybe"], "logger.quiet=maybe: must be true or false"),
        (["resume_every=-5"], "resume_every=-5: must be greater than or equal to 0"),
        (["pictures=best"], "pictures=best: must be 'first' or 'worst'"),
        (["+method.colour=red"], "method.colour is not a key of method; valid keys: name, backbone, layers, rhm,"),
        (["method=nn", "method.readout=median"], "method.readout=median: must be 'argmax', 'soft_argmax', "),
        (["dataset=pfwillow", "dataset.threshold=kps"], "dataset.threshold=kps: must be 'img', 'bbox' or 'none'"),
        (["method.layers=${backbone.nope}"], "method.layers cannot be resolved: Interpolation key 'backbone.nope' not found"),
    ],
)
def test_a_wrong_value_is_one_line_naming_key_value_and_range(tmp_path, overrides, line):
    message = problems(overrides, tmp_path)
    assert len(message.splitlines()) == 1 and message.startswith(line), message


def test_every_wrong_value_gets_its_line(tmp_path):
    message = problems(["method.exponent=-1", "alphas=[-0.1]", "datamodule.batch_size=0", "method.ncells=2.5"], tmp_path)
    lines = message.splitlines()
    assert len(lines) == 4
    assert {line.split("=")[0] for line in lines} == {"method.exponent", "alphas[0]", "datamodule.batch_size", "method.ncells"}


def test_train_configs_are_checked_too(tmp_path):
    assert problems(["model=hpf_search", "model.beam_size=0"], tmp_path, "train").startswith("model.beam_size=0: must be")
    # the matcher of the layer search is an HPF method config, checked at its own path
    assert problems(["model=hpf_search", "model.matcher.exponent=-2"], tmp_path, "train").startswith(
        "model.matcher.exponent=-2: must be greater than 0")
    assert problems(["model=samnet", "dataset.max_pairs=0"], tmp_path, "train").startswith("dataset.max_pairs=0")


@pytest.mark.parametrize(
    "choice", [f"method={m}" for m in METHODS] + [f"dataset={d}" for d in DATASETS] + [f"experiment={e}" for e in EXPERIMENTS]
)
def test_every_shipped_config_is_valid_and_has_schemas(tmp_path, choice):
    cfg = compose_config("evaluate", [choice], tmp_path)
    validate_config(cfg, EVALUATE)
    for node in (cfg.method, cfg.dataset, cfg.backbone.net, cfg.trainer, cfg.logger):
        assert schema_for(node) is not None, node._target_


@pytest.mark.parametrize("overrides", [["model=hpf_search"], ["model=samnet"], ["model=samnet", "experiment=samnet_cpu"]])
def test_train_configs_are_valid(tmp_path, overrides):
    validate_config(compose_config("train", overrides, tmp_path), TRAIN)


def test_every_logger_trainer_and_backbone_config_has_a_schema(tmp_path):
    for group in ("logger", "trainer", "backbone"):
        for path in (CONF / group).glob("*.yaml"):
            cfg = compose_config("evaluate", [f"{group}={path.stem}"], tmp_path)
            node = cfg.backbone.net if group == "backbone" else cfg[group]
            assert node is None or schema_for(node) is not None, path  # logger=none is null


@pytest.mark.parametrize("name", ["evaluate", "train"])
def test_every_callback_config_has_a_schema(tmp_path, name):
    cfg = compose_config(name, [], tmp_path)
    assert set(cfg.callbacks) >= {"progress", "interrupt"}
    for entry, node in cfg.callbacks.items():
        assert schema_for(node) is not None, entry


def _parameters(target: str) -> set[str]:
    """Keyword arguments of a target; for a class forwarding **kwargs, those of its bases too, or
    the fields of the dataclass they fill (SETTINGS_OF)."""
    if target in SETTINGS_OF:
        return {"backbone"} | {f.name for f in dataclasses.fields(get_object(SETTINGS_OF[target]))}
    obj = get_object(target)
    function = obj.__init__ if inspect.isclass(obj) else obj
    params = inspect.signature(function).parameters
    names = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n != "self"}
    if inspect.isclass(obj) and any(p.kind == p.VAR_KEYWORD for p in params.values()) and issubclass(obj, PairDataset):
        names |= _parameters(f"{PairDataset.__module__}.{PairDataset.__qualname__}")
    return names


@pytest.mark.parametrize("target", sorted(t for t in registered() if t.startswith("semcorr.") and "run_search" not in t))
def test_each_schema_lists_its_constructors_arguments(target):
    """A knob added to a method or dataset without its schema (or removed from it) fails here."""
    keys = set(registered()[target].__annotations__)  # a TypedDict's keys, its bases' included
    expected = _parameters(target) - set(PYTHON_ONLY.get(target, ())) - set(RUNTIME_ARGUMENTS.get(target, ()))
    if target.startswith("semcorr.methods."):
        expected |= {"name"}  # the method's label, removed before instantiation
    if target == "semcorr.lit.loggers.WandbLogger":  # quiet + Lightning's WandbLogger and wandb.init arguments
        assert "quiet" in keys and keys - {"quiet"} <= _parameters("pytorch_lightning.loggers.WandbLogger") | _parameters("wandb.init")
        return
    assert keys == expected


@pytest.mark.parametrize("target", sorted(t for t in registered() if not t.startswith("semcorr.")))
def test_third_party_schemas_name_real_arguments(target):
    schema = registered()[target]
    assert set(schema.__annotations__) <= _parameters(target)


def test_layer_search_schema_lists_the_model_config_keys(tmp_path):
    cfg = compose_config("train", ["model=hpf_search"], tmp_path)
    assert set(registered()["semcorr.lit.hpf_search.run_search"].__annotations__) == set(cfg.model.keys())


def test_describe_words():
    from semcorr.config import methods

    hints = methods.DeepImageAnalogyKnobs.__annotations__
    assert describe(hints["pm_iters"]) == "an integer >= 0 or a list of 5 values, each an integer >= 0"
    assert describe(hints["radii"]) == "a list of 5 values, each an integer >= 1 or null"
    assert describe(hints["blend_weights"]) == "a list of 4 values, each a number in [0, 1]"


def test_the_cli_prints_one_line_per_wrong_value_before_any_work(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", "SEMCORR_OUTPUTS": str(tmp_path / "out")}
    proc = subprocess.run(
        [sys.executable, "evaluate.py", "method.exponent=abc", "alphas=[-0.1]", "datamodule.batch_size=0",
         "logger=none", f"hydra.run.dir={run_dir}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("error: ConfigError: ") and len(lines) == 3, proc.stderr
    assert {"method.exponent=abc", "alphas[0]=-0.1", "datamodule.batch_size=0"} == {
        line.removeprefix("error: ConfigError: ").split(":")[0] for line in lines}
    assert not (run_dir / "config.yaml").exists()  # nothing was done


def test_resolved_node_values_are_not_mutated(tmp_path):
    cfg = compose_config("evaluate", ["method=nn"], tmp_path)
    before = OmegaConf.to_yaml(cfg)
    validate_config(cfg, EVALUATE)
    assert OmegaConf.to_yaml(cfg) == before
