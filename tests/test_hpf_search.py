"""HPF layer search as a training job: scores equal the evaluation loop's, outputs, resume."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.lit.hpf_search import run_search

COMMON = ["backbone=mobilenet_v2", "backbone.net.weights=none", "logger=none", "model.split=test"]


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "willow"
    build_pfwillow(root, subclasses={"car(G)": 3}, size=(160, 120))
    return root


def search_config(tmp_path, willow, run_dir, *extra):
    return compose_config(
        "train",
        ["model=hpf_search", "dataset=pfwillow", f"dataset.root={willow}", *COMMON,
         "model.base_candidates=[2,3]", "model.candidate_layers=[2,3,4,5,6]", "model.beam_size=2", *extra],
        run_dir,
    )


def test_scores_equal_the_evaluation_loop_and_outputs_are_written(tmp_path, willow, capsys):
    torch.manual_seed(0)
    run_dir = tmp_path / "search"
    summary = run_search(search_config(tmp_path, willow, run_dir, "model.max_layers=2"))
    # overall progress: depth 1 scores the 2 bases (at most 2 + 2 x 4 sets in all); depth 2 the 7 sets
    # extending (2,) by 3..6 and (3,) by 4..6
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Layer search: ")]
    assert lines[0] == "Layer search: depth 1/2, scoring 2 sets on 6 pairs; 0 of at most 10 sets scored so far"
    assert lines[1].startswith("Layer search: depth 2/2, scoring 7 sets on 6 pairs; 2 of at most 9 sets scored so far (")
    state = json.loads((run_dir / "beam_state.json").read_text())
    assert len(state["beams"]) == 2 and set(state["scores"]) >= {"2", "3", "2,4", "3,6"}
    assert summary["layers"] == [int(v) for v in max(state["scores"], key=lambda k: (state["scores"][k], -len(k))).split(",")]
    assert (run_dir / "search_scores.csv").read_text().startswith("layers,n_layers,pck@0.1")
    assert "layers: " + str(summary["layers"]) in (run_dir / "method" / "hpf_searched.yaml").read_text()
    # the score of a set is the PCK@0.1 the evaluation loop reports for HPF with those layers
    for key in ("3", "2,5"):
        layers = "[" + key + "]"
        cfg = compose_config("evaluate", ["method=hpf", f"method.layers={layers}", "dataset=pfwillow",
                                          f"dataset.root={willow}", "backbone.net.weights=none", "logger=none"], tmp_path / key.replace(",", "_"))
        torch.manual_seed(0)
        assert run_evaluation(cfg)["pck@0.1"] == pytest.approx(state["scores"][key], abs=1e-4)


def test_search_resumes_from_the_run_directory(tmp_path, willow, monkeypatch):
    run_dir = tmp_path / "search"
    run_search(search_config(tmp_path, willow, run_dir, "model.max_layers=1"))
    first = json.loads((run_dir / "beam_state.json").read_text())
    scored = []
    from semcorr.lit import hpf_search

    original = hpf_search.LayerSetScorer.set_candidates
    monkeypatch.setattr(hpf_search.LayerSetScorer, "set_candidates", lambda self, sets: (scored.extend(sets), original(self, sets))[1])
    run_search(search_config(tmp_path, willow, run_dir, "model.max_layers=2"))
    resumed = json.loads((run_dir / "beam_state.json").read_text())
    assert resumed["beams"][0] == first["beams"][0]
    assert all(len(s) == 2 for s in scored)  # depth 1 was not scored again
    assert len(resumed["beams"]) == 2


def test_search_scores_a_stratified_subset_with_the_chosen_threshold(tmp_path, willow):
    subset = ["dataset.pairs_per_category=2", "dataset.subset_seed=1"]
    run_dir = tmp_path / "search"
    torch.manual_seed(0)
    summary = run_search(search_config(tmp_path, willow, run_dir, "model.max_layers=1", "model.threshold=img", *subset))
    protocol = summary["protocol"]
    assert protocol["n_pairs"] == 2 and protocol["threshold"] == "img" and protocol["alphas"] == [0.1]
    assert protocol["subset"] == {"of": 6, "categories": None, "pairs_per_category": 2, "max_pairs": None, "seed": 1}
    assert json.loads((run_dir / "search_result.json").read_text())["protocol"] == protocol
    scores = json.loads((run_dir / "beam_state.json").read_text())["scores"]
    cfg = compose_config("evaluate", ["method=hpf", "method.layers=[3]", "dataset=pfwillow", f"dataset.root={willow}",
                                      "dataset.threshold=img", *subset, "backbone.net.weights=none", "logger=none"], tmp_path / "e")
    torch.manual_seed(0)
    evaluated = run_evaluation(cfg)
    assert evaluated["protocol"]["pairs_sha256"] == protocol["pairs_sha256"]
    assert evaluated["pck@0.1"] == pytest.approx(scores["3"], abs=1e-4)


def test_search_threshold_defaults_to_bbox_and_must_be_offered(tmp_path, willow):
    assert search_config(tmp_path, willow, tmp_path / "a").model.threshold == "bbox"
    from semcorr.errors import ConfigError

    cfg = compose_config("train", ["model=hpf_search", "dataset=sample", *COMMON], tmp_path / "b")
    with pytest.raises(ConfigError, match="model.threshold='bbox' is not offered by sample"):
        run_search(cfg)
