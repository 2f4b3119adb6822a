"""Progress that shows in a terminal and in a log file.

:class:`ProgressBar` is Lightning's Rich progress bar when the output is a terminal. When it is not
(``nohup``, SLURM logs, a pipe), Rich shows nothing until the end, so the bar prints a line instead
every ``every_n`` batches (evaluation) or optimiser steps (training), or every ``every_s``
seconds, whichever comes first, and at the end of each pass::

    Testing: 150/450 (33%) | 0:01:05 elapsed | ETA 0:02:10 | 2.31 it/s
    Training: step 300/600 (50%) | 0:04:02 elapsed | ETA 0:04:02 | 1.24 it/s | loss=0.412

The ETA is the time left at the rate measured since the pass started (a resumed run: since it
resumed). :class:`SearchProgress` gives the HPF layer search's overall progress across its
depths, one line per depth.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar
from rich.console import Console


def clock(seconds: float) -> str:
    """``H:MM:SS`` of a duration in seconds."""
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


def progress_line(label: str, done: int, total: int | None, elapsed: float, done_here: int, unit: str = "") -> str:
    """One progress line: done/total, elapsed time, ETA and rate.

    Args:
        label: what runs (``"Testing"``).
        done / total: units done and expected (total None or <= 0: unknown, no ETA).
        elapsed: seconds since the pass started.
        done_here: units done since the pass started (the rate's numerator; less than ``done``
            for a resumed pass).
        unit: prefix of the count, e.g. ``"step "``.
    """
    rate = done_here / elapsed if elapsed > 0 else 0.0
    parts = [f"{label}: {unit}{done}" + (f"/{total} ({100.0 * done / total:.0f}%)" if total and total > 0 else "")]
    parts.append(f"{clock(elapsed)} elapsed")
    if total and total > 0 and rate > 0:
        parts.append(f"ETA {clock((total - done) / rate)}")
    parts.append(f"{rate:.2f} it/s")
    return " | ".join(parts)


class _Pass:
    """Timing of one pass (test, validation, training) for the progress lines."""

    def __init__(self, start_count: int) -> None:
        self.start = self.last = time.monotonic()
        self.start_count = start_count


class ProgressBar(RichProgressBar):
    """Rich's bar in a terminal, progress lines elsewhere (see the module docstring).

    Args:
        every_n: print a line every this many batches (evaluation) or steps (training).
        every_s: ... or when this many seconds passed since the last line (None: count only).
        lines: force lines (True) or the Rich bar (False); None: lines when stdout is not a terminal.
    """

    def __init__(self, every_n: int = 50, every_s: float | None = 60.0, lines: bool | None = None) -> None:
        super().__init__()
        self.lines = (not Console().is_terminal) if lines is None else bool(lines)
        self.every_n = int(every_n)
        self.every_s = None if every_s is None else float(every_s)
        self._printing = True
        self._passes: dict[str, _Pass] = {}
        if self.lines:
            super().disable()  # Rich stays off; its hooks then do nothing

    def disable(self) -> None:
        if self.lines:
            self._printing = False
        else:
            super().disable()

    def enable(self) -> None:
        if self.lines:
            self._printing = True
        else:
            super().enable()

    # -- lines -------------------------------------------------------------------------------
    def _begin(self, key: str, start_count: int = 0) -> None:
        if self.lines:
            self._passes[key] = _Pass(start_count)

    def _tick(self, key: str, label: str, done: int, total: int | float | None, unit: str = "", extra: str = "") -> None:
        run = self._passes.get(key)
        if not self.lines or not self._printing or run is None:
            return
        now = time.monotonic()
        total_n = int(total) if total is not None and total != float("inf") else None
        due = done % self.every_n == 0 or (total_n is not None and done >= total_n)
        if self.every_s is not None and now - run.last >= self.every_s:
            due = True
        if due:
            run.last = now
            line = progress_line(label, done, total_n, now - run.start, done - run.start_count, unit)
            print(line + (f" | {extra}" if extra else ""), flush=True)

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_test_start(trainer, pl_module)
        self._begin("test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        self._tick("test", self.test_description, batch_idx + 1, _batches(trainer.num_test_batches, dataloader_idx))

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_start(trainer, pl_module)
        if not trainer.sanity_checking:
            self._begin("val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001
        super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
        if not trainer.sanity_checking:
            self._tick("val", self.validation_description, batch_idx + 1, _batches(trainer.num_val_batches, dataloader_idx))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._begin("train", trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if trainer.max_steps and trainer.max_steps > 0:
            done, total, unit = trainer.global_step, trainer.max_steps, "step "
        else:
            done, total, unit = batch_idx + 1, self.total_train_batches, f"epoch {trainer.current_epoch} batch "
        metrics = self.get_metrics(trainer, pl_module)
        shown = " ".join(f"{k}={_fmt(v)}" for k, v in metrics.items() if k != "v_num")
        self._tick("train", self.train_description, done, total, unit, shown)


def _batches(counts: list[int | float] | int | float, dataloader_idx: int) -> int | float:
    """The batch count of one dataloader (Lightning keeps one per dataloader)."""
    return counts[dataloader_idx] if isinstance(counts, list) else counts


def _fmt(value: Any) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value)


class SearchProgress:
    """Overall progress of the HPF layer search: layer sets scored / expected, one line per depth.

    The sets of later depths are not known in advance (they extend the best sets so far); the
    expected total is an upper bound from the current beam: at depth d each of the ``beam_size``
    sets of d - 1 layers grows by each candidate layer above its base that it does not hold.

    Args:
        candidates: every layer id a set may contain.
        beam_size / max_layers: the search's settings.
        n_pairs: pairs each set is scored on.
        already: sets scored before (a resumed search).
    """

    def __init__(self, candidates: list[int], beam_size: int, max_layers: int, n_pairs: int, already: int = 0) -> None:
        self.candidates = sorted(set(int(c) for c in candidates))
        self.beam_size, self.max_layers, self.n_pairs = int(beam_size), int(max_layers), int(n_pairs)
        self.scored = int(already)
        self.start = time.monotonic()
        self._timed = 0

    def bound(self, depth: int, new_sets: int, lowest_base: int) -> int:
        """Upper bound on the sets scored by the end of the search once ``new_sets`` of ``depth`` are scored."""
        above = sum(1 for c in self.candidates if c > lowest_base)
        later = sum(self.beam_size * max(0, above - (d - 2)) for d in range(depth + 1, self.max_layers + 1))
        return self.scored + new_sets + later

    def line(self, depth: int, new_sets: int, lowest_base: int) -> str:
        """The line printed before scoring ``new_sets`` sets of ``depth`` layers."""
        elapsed = time.monotonic() - self.start
        head = (f"Layer search: depth {depth}/{self.max_layers}, scoring {new_sets} sets on {self.n_pairs} pairs; "
                f"{self.scored} of at most {self.bound(depth, new_sets, lowest_base)} sets scored so far")
        if self._timed > 0:
            per_set = elapsed / self._timed
            head += f" ({clock(elapsed)} elapsed, this depth about {clock(per_set * new_sets)})"
        return head

    def done(self, new_sets: int) -> None:
        """Count ``new_sets`` scored sets."""
        self.scored += new_sets
        self._timed += new_sets
