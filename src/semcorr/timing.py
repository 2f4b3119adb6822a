"""Stage timing of the algorithms (HPF's matching, Deep Image Analogy's levels).

:class:`StageClock` adds the time since its previous lap to a named stage; laps of the same name
accumulate. On a CUDA device it synchronises before reading the clock, so that GPU work lands in
the stage that launched it. Benchmarks pass ``time.process_time`` to count CPU time instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


class StageClock:
    """Seconds per named stage.

    Args:
        seconds: the dict the stages are added to (a new one by default); None: laps do nothing.
        clock: the timer (wall time by default).
        device: synchronise this device before each reading when it is a CUDA device.
    """

    def __init__(
        self,
        seconds: dict[str, float] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        device: torch.device | None = None,
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.cuda = device is not None and torch.device(device).type == "cuda"
        self.device = device
        self._last = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return self.clock()

    def lap(self, stage: str) -> None:
        """Add the time since the previous lap (or the start) to ``stage``."""
        if self.seconds is None:
            return
        now = self._now()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now
