"""An interrupted evaluation resumes: only the pairs left are evaluated, and the results equal those
of an uninterrupted run. (Single process: under DDP every process journals its own shard the same
way, keyed by its rank and the process count, but an interrupted DDP run is not simulated here.)"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.data.datamodule import ShardSampler
from semcorr.errors import ConfigError
from semcorr.lit.evaluate import run_evaluation
from semcorr.lit.journal import fingerprint
from semcorr.methods.identity import IdentityMatcher


class Interrupted(RuntimeError):
    """Stands for a killed job."""


class CountingIdentity(IdentityMatcher):
    """The identity map, counting the pairs it matches (not the backward passes of the pictures)
    and failing on pair ``fail_at`` (1-based), if given."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.calls, self.fail_at = 0, fail_at

    def forward(self, src_img, trg_img, src_points, src_ids=None, trg_ids=None, dense=None):
        if dense != "backward":
            self.calls += 1
            if self.calls == self.fail_at:
                raise Interrupted("killed")
        return super().forward(src_img, trg_img, src_points, src_ids, trg_ids, dense)


@pytest.fixture()
def willow(tmp_path):
    root = tmp_path / "willow"
    build_pfwillow(root, subclasses={"car(G)": 3, "duck(S)": 3})  # 12 pairs
    return root


def config(tmp_path, willow, out, *extra):
    return compose_config(
        "evaluate",
        ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none", "resume_every=2",
         "save_pictures=true", "max_pictures=6", *extra],
        tmp_path / out,
    )


def test_shard_sampler_leaves_out_excluded_pairs():
    assert list(ShardSampler(10, 1, 3, exclude={4, 5})) == [1, 7]
    assert len(ShardSampler(10, 0, 1, exclude=range(0, 10, 2))) == 5


def test_interrupted_evaluation_resumes_with_the_same_results(tmp_path, willow):
    reference = run_evaluation(config(tmp_path, willow, "whole"), method=CountingIdentity())
    cfg = config(tmp_path, willow, "resumed")
    with pytest.raises(Interrupted):
        run_evaluation(cfg, method=CountingIdentity(fail_at=6))  # dies on the 6th pair
    partial = tmp_path / "resumed" / "partial" / "rank0.pt"
    journal = torch.load(partial, weights_only=False)
    assert journal["done"] == [0, 1, 2, 3]  # written every 2 pairs: pair 4 is redone
    assert not (tmp_path / "resumed" / "metrics.json").exists()

    method = CountingIdentity()
    resumed = run_evaluation(cfg, method=method)
    assert method.calls == 8  # the 12 pairs less the 4 journalled
    assert resumed.keys() == reference.keys() and resumed["n_pairs"] == 12
    for key, value in reference.items():
        if key != "time_per_pair_s":  # everything but the clock is the same
            assert resumed[key] == (pytest.approx(value, abs=1e-9) if isinstance(value, float) else value), key
    assert (tmp_path / "resumed" / "predictions.csv").read_text() == (tmp_path / "whole" / "predictions.csv").read_text()
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["n_pairs"] == 12
    assert not (tmp_path / "resumed" / "partial").exists()  # removed once the results are written
    pictures = sorted(p.name for p in (tmp_path / "resumed" / "pictures").glob("*.png"))
    assert pictures == sorted(p.name for p in (tmp_path / "whole" / "pictures").glob("*.png")) and len(pictures) == 6


def test_fingerprint_resolves_interpolations_into_the_rest_of_the_config(tmp_path):
    # dataset.root is ${paths.data_dir}/PF-WILLOW and method.backbone ${backbone.net}: outside the entries hashed
    cfg = compose_config("evaluate", ["method=nbb", "dataset=pfwillow"], tmp_path)
    other = compose_config("evaluate", ["method=nbb", "dataset=pfwillow", "paths.data_dir=/elsewhere"], tmp_path)
    assert fingerprint(cfg, 1) != fingerprint(other, 1) != fingerprint(other, 2)
    assert fingerprint(cfg, 1) == fingerprint(compose_config("evaluate", ["method=nbb", "dataset=pfwillow"], tmp_path), 1)


def test_a_journal_of_another_configuration_is_an_error(tmp_path, willow):
    with pytest.raises(Interrupted):
        run_evaluation(config(tmp_path, willow, "run"), method=CountingIdentity(fail_at=4))
    with pytest.raises(ConfigError, match="another configuration.*delete"):
        run_evaluation(config(tmp_path, willow, "run", "alphas=[0.1]"), method=CountingIdentity())
