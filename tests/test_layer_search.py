"""Beam search on a fake scorer: finds the known optimum, obeys the base rule, resumes exactly."""

import pytest

from semcorr.methods.layer_search import beam_search

GOOD = {1: 1.0, 5: 0.6, 7: 0.5, 9: 0.4}


def fake_score(layers):
    """Additive gains for GOOD layers, a penalty per other layer: optimum (1, 5, 7, 9)."""
    return sum(GOOD.get(l, -0.3) for l in layers) - (0.5 if 0 in layers else 0.0)


def batch(fn):
    """A list scorer from a per-set scorer."""
    return lambda sets: [fn(s) for s in sets]


def test_finds_known_optimum_and_obeys_base_rule():
    seen = []
    result = beam_search(batch(fake_score), layers=range(12), beam_size=3, max_layers=6, on_score=lambda s, v: seen.append(s))
    assert result.best == (1, 5, 7, 9)
    assert result.best_score == pytest.approx(2.5)
    assert len(result.beams) == 6
    assert [s for s, _ in result.beams[0]][:1] == [(1,)]
    # every scored set of size > 1 has its base among the candidates and only larger ids added
    for s in seen:
        assert min(s) in (0, 1, 2, 3)
    assert len(seen) == len(set(seen))  # nothing scored twice


def test_resume_after_interruption_gives_same_result(tmp_path):
    state = tmp_path / "beam.json"
    reference = beam_search(batch(fake_score), layers=range(12), beam_size=2, max_layers=5)
    calls = []

    def flaky(sets):
        calls.append(sets)
        if len(calls) == 3:  # killed while scoring depth 3
            raise KeyboardInterrupt
        return [fake_score(s) for s in sets]

    with pytest.raises(KeyboardInterrupt):
        beam_search(flaky, layers=range(12), beam_size=2, max_layers=5, state_path=state)
    assert state.is_file()
    resumed_calls = []

    def counting(sets):
        resumed_calls.append(sets)
        return [fake_score(s) for s in sets]

    resumed = beam_search(counting, layers=range(12), beam_size=2, max_layers=5, state_path=state)
    assert resumed.best == reference.best and resumed.beams == reference.beams
    # depths 1-2 are not scored again; the search restarts at depth 3
    done = {s for sets in calls[:2] for s in sets}
    assert not done & {s for sets in resumed_calls for s in sets}
    assert resumed_calls[0] == calls[2]
    assert sum(map(len, calls[:2])) + sum(map(len, resumed_calls)) == len(reference.scores)


def test_scorer_must_return_one_score_per_set():
    with pytest.raises(ValueError, match="scores for"):
        beam_search(lambda sets: [0.0], layers=range(4), base_candidates=(0, 1))
