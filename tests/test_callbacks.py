"""The ``callbacks`` config group: instantiation with runtime values, and its call sites."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import Callback

from conftest import compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.config import EVALUATE, validate_config
from semcorr.errors import ConfigError
from semcorr.lit.callbacks import instantiate_callbacks
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.lit.interrupt import ResumeOnInterrupt
from semcorr.lit.journal import JournalCallback
from semcorr.lit.loggers import RunningMetrics
from semcorr.lit.pictures import PictureWriter
from semcorr.lit.progress import ProgressBar


class Needs(Callback):
    """A callback with a config knob and two run-time arguments."""

    seen: list[dict] = []

    def __init__(self, module, label: str, folder=None) -> None:
        self.module, self.label, self.folder = module, label, folder
        Needs.seen.append({"module": module, "label": label, "folder": folder})


def test_partial_entries_get_the_runtime_values_their_constructor_names():
    node = OmegaConf.create({
        "progress": {"_target_": "semcorr.lit.progress.ProgressBar", "every_n": 7},
        "off": None,
        "needs": {"_target_": "test_callbacks.Needs", "_partial_": True, "label": "from-config"},
    })
    made = instantiate_callbacks(node, module="M", label="from-run", other="ignored")
    assert [type(c) for c in made] == [ProgressBar, Needs]
    assert made[0].every_n == 7
    # the config's value wins over the run's; an argument the run does not give keeps its default
    assert (made[1].module, made[1].label, made[1].folder) == ("M", "from-config", None)


def test_a_missing_runtime_value_names_the_entry_and_what_the_run_gives():
    node = {"needs": OmegaConf.create({"_target_": "test_callbacks.Needs", "_partial_": True})}
    with pytest.raises(ConfigError) as info:
        instantiate_callbacks(node, module="M", command="c")
    message = str(info.value)
    assert message.startswith("callbacks.needs (test_callbacks.Needs) needs label, which this run does not give")
    assert "(it gives command, module)" in message and "~callbacks.needs" in message


def test_entries_that_are_not_callbacks_or_have_no_target_are_named():
    with pytest.raises(ConfigError, match=r"callbacks\.x \(collections.OrderedDict\) is a OrderedDict, not a Lightning Callback"):
        instantiate_callbacks({"x": OmegaConf.create({"_target_": "collections.OrderedDict"})})
    with pytest.raises(ConfigError, match=r"callbacks\.y has no _target_"):
        instantiate_callbacks({"y": OmegaConf.create({"every_n": 3})})
    with pytest.raises(ConfigError, match=r"callbacks\.z \(no.such.Thing\) could not be built"):
        instantiate_callbacks({"z": OmegaConf.create({"_target_": "no.such.Thing"})})


def test_the_shipped_groups_build_with_what_their_runners_give(tmp_path):
    evaluate = compose_config("evaluate", [], tmp_path)
    runtime = dict(module=None, journal=None, method=None, folder=tmp_path, indices=range(2), alphas=[0.1],
                   every_n_pairs=5, save=lambda t, m: "", command="python evaluate.py")
    kinds = [type(c) for c in instantiate_callbacks(evaluate.callbacks, **runtime)]
    assert kinds == [ProgressBar, ResumeOnInterrupt, RunningMetrics, JournalCallback, PictureWriter]
    train = compose_config("train", ["model=samnet"], tmp_path)
    kinds = [type(c) for c in instantiate_callbacks(train.callbacks, save=lambda t, m: "", command="python train.py")]
    assert kinds == [ProgressBar, ResumeOnInterrupt]


def test_a_key_on_a_callback_without_knobs_is_one_line(tmp_path):
    cfg = compose_config("evaluate", ["+callbacks.journal.every=3"], tmp_path)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, EVALUATE)
    assert str(info.value) == (
        "callbacks.journal.every is not a key of callbacks.journal; it takes no keys (its values come from the run)")


def test_the_evaluation_runs_the_configured_callbacks(tmp_path):
    """An added entry gets the evaluation module; a dropped picture writer writes no pictures."""
    willow = tmp_path / "willow"
    build_pfwillow(willow, subclasses={"car(G)": 3})
    Needs.seen.clear()
    overrides = ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none", "save_pictures=true",
                 "~callbacks.pictures", "+callbacks.needs={_target_:test_callbacks.Needs,_partial_:true,label:x}"]
    run_evaluation(compose_config("evaluate", overrides, tmp_path / "run"))
    assert len(Needs.seen) == 1 and type(Needs.seen[0]["module"]).__name__ == "EvaluationModule"
    assert Needs.seen[0]["folder"] == tmp_path / "run" / "pictures"
    assert not (tmp_path / "run" / "pictures").exists()
