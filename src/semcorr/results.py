"""Writing and showing evaluation results: metrics.json, predictions.pt/.csv, a rich table."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from semcorr.io import torch_save, write_json, write_text


def write_predictions(run_dir: Path, records: list[dict[str, Any]]) -> None:
    """Write per-pair predictions (original image pixels) as ``predictions.pt`` and ``.csv``.

    The CSV has one row per keypoint: pair_id, category, kp, src_x, src_y, pred_x, pred_y,
    gt_x, gt_y (pred NaN: no prediction).
    """
    records = sorted(records, key=lambda r: r["index"])
    torch_save(run_dir / "predictions.pt", records)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["pair_id", "category", "kp", "src_x", "src_y", "pred_x", "pred_y", "gt_x", "gt_y"])
    for r in records:
        for k in range(len(r["src_kps"])):
            writer.writerow(
                [r["pair_id"], r["category"], k]
                + [f"{v:.3f}" for v in (*r["src_kps"][k].tolist(), *r["pred_kps"][k].tolist(), *r["trg_kps"][k].tolist())]
            )
    write_text(run_dir / "predictions.csv", buf.getvalue())
    if any("sparse_src" in r for r in records):
        write_correspondences(run_dir / "correspondences.csv", records)


def unanswered_keypoints(records: list[dict[str, Any]]) -> tuple[int, int]:
    """(keypoints without a prediction (NaN), keypoints) over per-pair records."""
    missing = sum(int((~torch.isfinite(r["pred_kps"]).all(dim=-1)).sum()) for r in records)
    return missing, sum(len(r["pred_kps"]) for r in records)


def write_correspondences(path: Path, records: list[dict[str, Any]]) -> None:
    """Write the methods' sparse matches, one row per match (original pixels):
    pair_id, category, rank, src_x, src_y, trg_x, trg_y, score."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["pair_id", "category", "rank", "src_x", "src_y", "trg_x", "trg_y", "score"])
    for r in records:
        scores = r.get("sparse_score")
        for k in range(len(r.get("sparse_src", ()))):
            score = f"{float(scores[k]):.6g}" if scores is not None else ""
            writer.writerow(
                [r["pair_id"], r["category"], k]
                + [f"{v:.3f}" for v in (*r["sparse_src"][k].tolist(), *r["sparse_trg"][k].tolist())]
                + [score]
            )
    write_text(path, buf.getvalue())


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> Path:
    """Write the flat metrics dict as ``metrics.json`` (NaN written as null)."""
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    return write_json(run_dir / "metrics.json", clean)


#: Keys that are counts or timings, shown in the caption rather than as table columns.
CAPTION_KEYS = ("n_pairs", "time_per_pair_s", "flow_acc_pairs", "mask_pairs")


def column_title(metric: str) -> str:
    """``pck@0.1`` -> ``PCK@0.1``, ``pck_kp@0.1`` -> ``PCK/kp@0.1``, ``pck_cat@0.1`` -> ``PCK/cat@0.1``."""
    return metric.replace("pck_kp@", "PCK/kp@").replace("pck_cat@", "PCK/cat@").replace("pck@", "PCK@")


def results_table(metrics: dict[str, Any], title: str) -> Table:
    """A rich table: one column per metric (``pck@A``, ``pck_kp@A``, ``pck_cat@A``, ``flow_acc``,
    ``lt_acc``...), one row for the whole dataset (``all``) and one per subset (``<metric>/<subset>``
    keys: categories, difficulty levels, subset flags such as ``clean``); counts and timing go into
    the caption. Non-numeric entries (names, the protocol record) are left out."""
    columns: list[str] = []
    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if key in CAPTION_KEYS or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric, _, subset = key.partition("/")
        if metric not in columns:
            columns.append(metric)
        rows.setdefault(subset or "all", {})[metric] = value
    table = Table(title=title)
    table.add_column("subset")
    for metric in columns:
        table.add_column(column_title(metric), justify="right")
    for subset in sorted(rows, key=lambda s: (s != "all", s)):
        table.add_row(subset, *(f"{rows[subset][m]:.1f}" if m in rows[subset] else "" for m in columns))
    caption = [f"pairs: {metrics.get('n_pairs', 0)}"] + ([] if columns else ["no ground truth: predictions only"])
    if metrics.get("time_per_pair_s") is not None:
        caption.append(f"time/pair: {metrics['time_per_pair_s']:.3f} s")
    table.caption = " | ".join(caption)
    return table


def print_results(metrics: dict[str, Any], title: str, console: Console | None = None) -> None:
    """Print :func:`results_table` to the console."""
    (console or Console()).print(results_table(metrics, title))
