"""The train entry (lit/train.py): dispatch to the model's runner, the run's start, dataset checks."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.errors import ConfigError, DatasetNotFoundError
from semcorr.lit.train import dataset_split, start_run, train


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "willow"
    build_pfwillow(root, subclasses={"car(G)": 2}, size=(96, 64))
    return root


def test_layer_search_on_a_dataset_without_its_split_names_model_split(tmp_path, willow):
    cfg = compose_config("train", ["model=hpf_search", "dataset=pfwillow", f"dataset.root={willow}",
                                   "backbone.net.weights=none", "logger=none"], tmp_path / "run")
    assert cfg.model.split == "val"
    with pytest.raises(ConfigError) as err:
        train(cfg)  # dispatched to semcorr.lit.hpf_search.run_search
    message = str(err.value)
    assert "the HPF layer search" in message and "'val'" in message and "splits test" in message and "model.split" in message
    assert not (tmp_path / "run" / "beam_state.json").exists()


def test_dataset_split_builds_and_prefixes_the_datasets_own_errors(tmp_path, willow):
    cfg = compose_config("train", ["dataset=pfwillow", f"dataset.root={willow}"], tmp_path)
    pairs = dataset_split(cfg.dataset, "test", "model.split", "a test", max_pairs=3)
    assert len(pairs) == 2 and pairs.split == "test"  # 2 images: 2 ordered pairs
    cfg.dataset.root = str(tmp_path / "nowhere")
    with pytest.raises(DatasetNotFoundError) as err:
        dataset_split(cfg.dataset, "test", "model.split", "a test")
    assert str(err.value).startswith("a test: ") and "python -m semcorr.data.download pfwillow" in str(err.value)


def test_start_run_seeds_sets_threads_and_writes_the_config(tmp_path):
    cfg = compose_config("train", ["model=samnet", "seed=7", "model.num_threads=1"], tmp_path / "run")
    threads = torch.get_num_threads()
    try:
        run_dir = start_run(cfg)
        first = torch.rand(3)
        start_run(cfg)
        assert torch.equal(torch.rand(3), first) and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert run_dir == tmp_path / "run"
    written = OmegaConf.load(run_dir / "config.yaml")
    assert written.seed == 7 and written.model.runner == "semcorr.lit.samnet.run_stages"
