"""Plots of the comparison report (:mod:`semcorr.report`): PCK-vs-alpha curves and per-category bars.

Both take plain numbers (no torch) and write a PNG atomically; NaN marks a missing value (no point,
no bar).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from semcorr.io import atomic_write  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)
    return path


def pck_curves(
    series: Mapping[str, Sequence[tuple[float, float]]], path: str | Path, title: str = "", ylabel: str = "PCK (%)"
) -> Path:
    """One line per method: PCK at each alpha.

    Args:
        series: label -> [(alpha, PCK in %)], in any order; NaN values are left out.
        path: the PNG to write.
    """
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, points in series.items():
        points = sorted((a, v) for a, v in points if v is not None and not math.isnan(v))
        if points:
            ax.plot([a for a, _ in points], [v for _, v in points], marker="o", label=label)
    ax.set_xlabel("alpha")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=10)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))


def category_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: str | Path,
    title: str = "",
    ylabel: str = "PCK (%)",
) -> Path:
    """Grouped bars: one group per category, one bar per method.

    Args:
        categories: the C group names (x axis).
        series: label -> C values (NaN: the method has no value there).
        path: the PNG to write.
    """
    n = max(len(series), 1)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(categories) * (1 + 0.3 * n) + 1.5), 4))
    for k, (label, values) in enumerate(series.items()):
        xs = [c + (k - (n - 1) / 2) * width for c in range(len(categories))]
        heights = [0.0 if v is None or math.isnan(v) else v for v in values]
        ax.bar(xs, heights, width=width, label=label)
    tilt = len(categories) > 6
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels(categories, rotation=45 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    if series:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, Path(path))
