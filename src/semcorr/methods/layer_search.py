"""Beam search over layer sets (HPF, Algorithm 1), resumable from a JSON state file.

Plain Python: the scorer is any callable mapping a list of layer sets to their scores (HPF uses the
mean PCK on a validation split; scoring all candidates of a depth in one call lets it pass over
the validation pairs once per depth). Depth 1 scores the single base candidates; each further depth extends every
set of the beam by one layer larger than that set's base (its smallest id) and keeps the
``beam_size`` best distinct sets. The best set over all depths wins.

The state (every scored set, the beam of each finished depth) is written atomically after each
scoring call, so a killed search resumes at the depth where it stopped and scores nothing twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from semcorr.io import write_json

LayerSet = tuple[int, ...]


def key_of(layers: Iterable[int]) -> str:
    """Canonical string key of a layer set (sorted, comma-separated)."""
    return ",".join(str(i) for i in sorted(layers))


@dataclass
class SearchState:
    """Everything needed to resume: scores of all evaluated sets and the beam per depth."""

    scores: dict[str, float] = field(default_factory=dict)
    beams: list[list[str]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> SearchState:
        if path is None or not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        return cls(scores={k: float(v) for k, v in data["scores"].items()}, beams=[list(b) for b in data["beams"]])

    def save(self, path: Path | None) -> None:
        if path is not None:
            write_json(path, {"scores": self.scores, "beams": self.beams})


@dataclass
class SearchResult:
    """The winning set, its score, and the beam of each depth with scores."""

    best: LayerSet
    best_score: float
    beams: list[list[tuple[LayerSet, float]]]
    scores: dict[str, float]


def parse_key(key: str) -> LayerSet:
    """Inverse of :func:`key_of`."""
    return tuple(int(v) for v in key.split(","))


def beam_search(
    score: Callable[[list[LayerSet]], Sequence[float]],
    layers: Sequence[int],
    base_candidates: Sequence[int] = (0, 1, 2, 3),
    beam_size: int = 4,
    max_layers: int = 8,
    state_path: str | Path | None = None,
    on_score: Callable[[LayerSet, float], None] | None = None,
    write_state: bool = True,
) -> SearchResult:
    """Run the beam search.

    Args:
        score: list of layer sets (sorted tuples) -> their scores (same order), higher is better.
        layers: all layer ids that may be added.
        base_candidates: ids tried as the base (smallest id) of a set.
        beam_size: sets kept per depth.
        max_layers: largest set size.
        state_path: JSON file to resume from and checkpoint to (None: no checkpointing).
        on_score: called with (set, score) for each newly scored set (logging).
        write_state: write ``state_path`` (False: only read it, e.g. on all but one process).

    Returns:
        :class:`SearchResult`. Ties rank the smaller set first (then the smaller ids).
    """
    path = Path(state_path) if state_path is not None else None
    state = SearchState.load(path)
    if not write_state:
        path = None

    def top(candidates: Iterable[LayerSet]) -> list[str]:
        unique = sorted({key_of(c) for c in candidates}, key=lambda k: (len(k.split(",")), parse_key(k)))
        new = [parse_key(k) for k in unique if k not in state.scores]
        if new:
            values = [float(v) for v in score(new)]
            if len(values) != len(new):
                raise ValueError(f"scorer returned {len(values)} scores for {len(new)} layer sets")
            for candidate, value in zip(new, values):
                state.scores[key_of(candidate)] = value
                if on_score is not None:
                    on_score(candidate, value)
            state.save(path)
        return sorted(unique, key=lambda k: -state.scores[k])[:beam_size]  # stable: ties keep order

    for depth in range(1, max_layers + 1):
        if depth <= len(state.beams):
            continue  # finished before an interruption
        if depth == 1:
            beam = top((b,) for b in base_candidates)
        else:
            previous = [parse_key(k) for k in state.beams[-1]]
            beam = top(s + (l,) for s in previous for l in layers if l > min(s) and l not in s)
        if not beam:
            break
        state.beams.append(beam)
        state.save(path)

    all_best = [k for b in state.beams for k in b]
    best = max(all_best, key=lambda k: (state.scores[k], -len(k.split(","))))
    return SearchResult(
        best=parse_key(best),
        best_score=state.scores[best],
        beams=[[(parse_key(k), state.scores[k]) for k in b] for b in state.beams],
        scores=dict(state.scores),
    )
