"""Comparison report of evaluation runs: ``python -m semcorr.report RUN_DIRS... [--out DIR]``.

Collects the ``metrics.json`` of every run directory given (searched recursively, so a multirun
folder or ``outputs/`` works) into one table of methods x datasets and writes into ``--out``:

* ``report.md``: paste-ready Markdown. A compact main table (method, backbone, dataset, pairs,
  PCK at each alpha, flow accuracy / LT-ACC / IoU where present, seconds per pair), then per
  dataset the tables per category (and per SPair-71k difficulty level, ``<field>=<level>``) of
  PCK at ``--alpha`` and of the dense metrics, one column per method;
* ``report.csv``: one row per run with every metric of its ``metrics.json`` (full precision);
* PNG plots: ``<dataset>_pck_vs_alpha.png`` (one curve per method) and
  ``<dataset>_<metric>_per_category.png`` (grouped bars).

Accuracies are in % as in ``metrics.json``. Rows are labelled by method; when a dataset has the
same method with several backbones, the backbone is added to the label, and when the same
method, backbone and dataset occur in several runs (reruns, sweeps) the run folder's name is
added (``--latest`` keeps only the newest run of each).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcorr.errors import ConfigError

#: Dense metrics reported per category, with their column titles.
DENSE_METRICS = {"flow_acc": "flow acc", "lt_acc": "LT-ACC", "iou": "IoU"}
#: Leading CSV columns after the labels (others follow sorted).
CSV_FIRST = ("flow_acc", "flow_acc_pixels", "flow_acc_pairs", "lt_acc", "iou", "loc_err", "mask_pairs", "time_per_pair_s")
MISSING = "-"


@dataclass
class Run:
    """One evaluation run: its folder and its ``metrics.json``."""

    path: Path
    metrics: dict[str, Any]
    mtime: float = 0.0
    label: str = ""          # column title in the per-category tables
    method_cell: str = ""    # the main table's method cell (backbone has its own column)

    @property
    def method(self) -> str:
        return str(self.metrics.get("method", "?"))

    @property
    def dataset(self) -> str:
        return str(self.metrics.get("dataset", "?"))

    @property
    def backbone(self) -> str:
        return str(self.metrics.get("backbone", ""))

    def value(self, key: str) -> float:
        """A metric as a float, NaN when absent or null."""
        v = self.metrics.get(key)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


# -- collecting ------------------------------------------------------------------------------
def find_metrics(paths: Sequence[str | Path]) -> list[Path]:
    """Every ``metrics.json`` under the given run directories (recursively) or given as files."""
    found: dict[Path, None] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.setdefault(path.resolve())
        elif path.is_dir():
            for p in sorted(path.rglob("metrics.json")):
                found.setdefault(p.resolve())
        else:
            raise ConfigError(f"no such run directory or file: {path}")
    if not found:
        raise ConfigError(f"no metrics.json found under {', '.join(map(str, paths))}")
    return list(found)


def load_runs(paths: Sequence[str | Path], latest: bool = False) -> list[Run]:
    """The runs under ``paths``, labelled (see the module docstring) and sorted by dataset, method,
    backbone and folder. ``latest``: keep only the newest run per (method, backbone, dataset)."""
    runs = []
    for path in find_metrics(paths):
        try:
            metrics = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"unreadable metrics file {path}: {exc}") from exc
        if not isinstance(metrics, dict) or not {"method", "dataset"} <= metrics.keys():
            print(f"skipped {path}: not the metrics.json of an evaluation run", file=sys.stderr)
            continue
        runs.append(Run(path.parent, metrics, path.stat().st_mtime))
    if not runs:
        raise ConfigError(f"no evaluation run (metrics.json with method and dataset) under {', '.join(map(str, paths))}")
    if latest:
        newest: dict[tuple[str, str, str], Run] = {}
        for run in runs:
            key = (run.method, run.backbone, run.dataset)
            if key not in newest or run.mtime > newest[key].mtime:
                newest[key] = run
        runs = list(newest.values())
    runs.sort(key=lambda r: (r.dataset, r.method, r.backbone, str(r.path)))
    label_runs(runs)
    return runs


def label_runs(runs: list[Run]) -> None:
    """Set each run's ``label`` and ``method_cell`` (unique within its dataset)."""
    for run in runs:
        same_method = [r for r in runs if r.dataset == run.dataset and r.method == run.method]
        same_all = [r for r in same_method if r.backbone == run.backbone]
        run.label = run.method_cell = run.method
        if len({r.backbone for r in same_method}) > 1:
            run.label = f"{run.method} ({run.backbone})"
        if len(same_all) > 1:
            run.label += f" [{run.path.name}]"
            run.method_cell += f" [{run.path.name}]"


# -- tables ----------------------------------------------------------------------------------
def alphas_of(runs: Sequence[Run]) -> list[float]:
    """The PCK alphas that the runs report (keys ``pck@A``), ascending."""
    found = {float(k[4:]) for r in runs for k in r.metrics if k.startswith("pck@") and "/" not in k}
    return sorted(found)


def alpha_key(alpha: float) -> str:
    return f"pck@{alpha:g}"


def fmt_pct(v: float) -> str:
    return MISSING if math.isnan(v) else f"{v:.1f}"


def fmt_time(v: float) -> str:
    """Seconds: 3 decimals below 10 s, 1 decimal below 100 s, whole seconds above."""
    if math.isnan(v):
        return MISSING
    if v < 0.0005:
        return "<0.001"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def fmt_count(v: float) -> str:
    return MISSING if math.isnan(v) else str(int(v))


def md_cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """A Markdown table; the first ``left`` columns are left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(md_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" if i < left else "---:" for i in range(len(header))) + "|")
    lines += ["| " + " | ".join(md_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def main_columns(runs: Sequence[Run]) -> list[tuple[str, str]]:
    """(metric key, column title) of the main table's metric columns present in any run."""
    cols = [(alpha_key(a), f"PCK@{a:g}") for a in alphas_of(runs)]
    cols += [(k, title) for k, title in DENSE_METRICS.items() if any(k in r.metrics for r in runs)]
    return cols


def main_table(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the main table (one row per run)."""
    cols = main_columns(runs)
    header = ["method", "backbone", "dataset", "pairs", *(title for _, title in cols), "s/pair"]
    rows = [
        [run.method_cell, run.backbone, run.dataset, fmt_count(run.value("n_pairs")),
         *(fmt_pct(run.value(k)) for k, _ in cols), fmt_time(run.value("time_per_pair_s"))]
        for run in runs
    ]
    return header, rows


def subsets_of(runs: Sequence[Run], metric: str) -> tuple[list[str], list[str]]:
    """(categories, difficulty levels ``field=level``) reported for ``metric`` by any run."""
    names = sorted({k.split("/", 1)[1] for r in runs for k in r.metrics if k.startswith(metric + "/")})
    return [n for n in names if "=" not in n], [n for n in names if "=" in n]


def subset_metrics(runs: Sequence[Run], alpha: float) -> list[tuple[str, str]]:
    """(metric key, title) of the per-subset tables of one dataset's runs: PCK at ``alpha`` (or, if
    no run has it, the middle alpha they have) and the dense metrics."""
    out = []
    alphas = alphas_of(runs)
    if alphas:
        a = alpha if alpha in alphas else alphas[len(alphas) // 2]
        out.append((alpha_key(a), f"PCK@{a:g}"))
    out += [(k, t) for k, t in DENSE_METRICS.items() if any(k in r.metrics for r in runs)]
    return out


def subset_table(runs: Sequence[Run], metric: str, subsets: Sequence[str], first: str) -> tuple[list[str], list[list[str]]]:
    """Rows: ``all`` then each subset; columns: the runs (labels)."""
    header = [first, *(r.label for r in runs)]
    rows = [["all", *(fmt_pct(r.value(metric)) for r in runs)]]
    rows += [[s, *(fmt_pct(r.value(f"{metric}/{s}")) for r in runs)] for s in subsets]
    return header, rows


def datasets_of(runs: Sequence[Run]) -> list[str]:
    return sorted({r.dataset for r in runs})


def markdown(runs: Sequence[Run], alpha: float = 0.1, plots: Sequence[Path] = ()) -> str:
    """The report as Markdown (see the module docstring)."""
    parts = ["<!-- generated by `python -m semcorr.report` -->", md_table(*main_table(runs), left=3)]
    parts.append(
        "PCK in % (a keypoint is correct within alpha x T of its truth; T per dataset), flow accuracy, "
        "LT-ACC and IoU in %; s/pair: method time per pair (data loading excluded)."
    )
    for dataset in datasets_of(runs):
        mine = [r for r in runs if r.dataset == dataset]
        for metric, title in subset_metrics(mine, alpha):
            categories, levels = subsets_of(mine, metric)
            if categories:
                parts.append(f"### {dataset}: {title} per category")
                parts.append(md_table(*subset_table(mine, metric, categories, "category")))
            if levels:
                parts.append(f"### {dataset}: {title} per difficulty")
                parts.append(md_table(*subset_table(mine, metric, levels, "difficulty")))
    if plots:
        parts.append("### Plots")
        parts.append("\n".join(f"![{p.stem}]({p.name})" for p in plots))
    return "\n\n".join(parts) + "\n"


def csv_columns(runs: Sequence[Run]) -> list[str]:
    """Metric columns of the CSV: n_pairs, PCK per alpha, the dense and timing keys, then every
    per-subset key (sorted)."""
    keys = {k for r in runs for k, v in r.metrics.items() if k not in ("method", "dataset", "backbone")}
    first = ["n_pairs", *(alpha_key(a) for a in alphas_of(runs)), *CSV_FIRST]
    cols = [k for k in first if k in keys]
    return cols + sorted(keys - set(cols))


def csv_value(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def csv_text(runs: Sequence[Run]) -> str:
    """The CSV: run, method, backbone, dataset, then :func:`csv_columns`."""
    cols = csv_columns(runs)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "method", "backbone", "dataset", *cols])
    for r in runs:
        writer.writerow([str(r.path), r.method, r.backbone, r.dataset, *(csv_value(r.metrics.get(k)) for k in cols)])
    return buf.getvalue()


# -- plots -----------------------------------------------------------------------------------
def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def write_plots(runs: Sequence[Run], out: Path, alpha: float = 0.1) -> list[Path]:
    """PCK-vs-alpha curves and per-category bars of every dataset; returns the PNG paths."""
    from semcorr.viz.plots import category_bars, pck_curves  # matplotlib only when plotting

    written = []
    for dataset in datasets_of(runs):
        mine = [r for r in runs if r.dataset == dataset]
        alphas = alphas_of(mine)
        if alphas:
            series = {r.label: [(a, r.value(alpha_key(a))) for a in alphas] for r in mine}
            written.append(pck_curves(series, out / f"{safe_name(dataset)}_pck_vs_alpha.png", f"{dataset}: PCK vs alpha"))
        for metric, title in subset_metrics(mine, alpha):
            categories, _ = subsets_of(mine, metric)
            if categories:
                series = {r.label: [r.value(f"{metric}/{c}") for c in categories] for r in mine}
                path = out / f"{safe_name(dataset)}_{safe_name(metric)}_per_category.png"
                written.append(category_bars(categories, series, path, f"{dataset}: {title} per category", f"{title} (%)"))
    return written


# -- entry point -----------------------------------------------------------------------------
def write_report(paths: Sequence[str | Path], out: str | Path, alpha: float = 0.1, latest: bool = False,
                 plots: bool = True) -> dict[str, Any]:
    """Collect the runs under ``paths`` and write ``report.md``, ``report.csv`` and the plots into
    ``out``. Returns ``{"runs", "markdown", "csv", "plots"}``."""
    from semcorr.io import write_text

    runs = load_runs(paths, latest=latest)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(runs, out, alpha) if plots else []
    md_path = write_text(out / "report.md", markdown(runs, alpha, pngs))
    csv_path = write_text(out / "report.csv", csv_text(runs))
    return {"runs": runs, "markdown": md_path, "csv": csv_path, "plots": pngs}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m semcorr.report",
        description="Compare evaluation runs: collects metrics.json files (searched recursively) into "
        "report.md (Markdown tables), report.csv and PNG plots.",
    )
    parser.add_argument("runs", nargs="+", help="run directories, folders of runs (e.g. a multirun folder) or metrics.json files")
    parser.add_argument("--out", default="report", help="output folder (default: report/)")
    parser.add_argument("--alpha", type=float, default=0.1, help="PCK alpha of the per-category tables and bars (default 0.1)")
    parser.add_argument("--latest", action="store_true", help="keep only the newest run of each method/backbone/dataset")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from semcorr.cli import exit_on_user_error

    args = parse_args(argv)

    @exit_on_user_error
    def run() -> dict[str, Any]:
        return write_report(args.runs, args.out, args.alpha, args.latest, not args.no_plots)

    result = run()
    print(md_table(*main_table(result["runs"]), left=3))
    print(f"\n{len(result['runs'])} runs -> {result['markdown']}, {result['csv']}"
          + (f", {len(result['plots'])} plots in {Path(args.out)}" if result["plots"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
