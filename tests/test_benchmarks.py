"""What the benchmarks share (benchmarks/pairs.py): their config composition and their PCK."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import ROOT
from fixtures_keypoints import build_pfwillow

sys.path.insert(0, str(ROOT / "benchmarks"))
from pairs import Scores, config, one_pair  # noqa: E402

from semcorr.data.pfwillow import PFWillowDataset  # noqa: E402


def test_a_benchmark_default_key_survives_another_group_choice():
    cfg = config(["method=hpf", "backbone.net.weights=none"], ["backbone=resnet101"])
    assert cfg.backbone.net.name == "resnet101" and cfg.backbone.net.weights == "none"  # random weights offline
    assert cfg.dataset.name == "pfwillow" and cfg.logger is None


def test_the_users_group_choices_replace_the_benchmarks():
    cfg = config(["method=dia"], ["method=dia_paper", "dataset=tss"])
    assert cfg.method.name == "dia_paper"
    assert cfg.dataset.name == "tss" and "PF-dataset-WILLOW" not in str(cfg.dataset.root)  # PF-WILLOW's root dropped
    assert config(["method=dia"], ["method.lbfgs_iters=[1,1,1,1]"]).method.lbfgs_iters == [1, 1, 1, 1]


def test_scores_are_the_pck_family_per_variant_and_category(tmp_path):
    root = tmp_path / "willow"
    build_pfwillow(root, subclasses={"car(G)": 3, "duck(S)": 3})
    dataset = PFWillowDataset(root=str(root))
    scores = Scores(dataset, [0.1])
    by_category = {}
    for i in range(len(dataset)):
        sample = dataset[i]
        batch = one_pair(sample)
        exact = sample["trg_kps"].clone()
        wrong = exact + 1e4  # every keypoint far off
        half = torch.where(torch.arange(len(exact))[:, None] % 2 == 0, exact, wrong)
        assert scores.add("exact", batch, exact).tolist() == [1.0]
        assert scores.add("wrong", batch, wrong).tolist() == [0.0]
        pair = float(scores.add("half", batch, half)[0])
        by_category.setdefault(sample["category"], []).append(pair)
    assert scores.summary("exact") == "100.0" and scores.summary("wrong") == "0.0"
    for category, values in by_category.items():  # the mean over the category's pairs of each pair's share
        assert scores.summary("half", category) == f"{100 * sum(values) / len(values):.1f}"
    with pytest.raises(KeyError):
        scores.summary("never added")
