"""Comparison report of evaluation runs: ``python -m semcorr.report RUN_DIRS... [--out DIR] [--allow-mixed]``.

Collects the ``metrics.json`` of every run directory given (searched recursively, so a multirun
folder or ``outputs/`` works) and groups the runs into BLOCKS: one per dataset and evaluation
protocol (:mod:`semcorr.protocol`; the record every ``metrics.json`` carries). Runs of one dataset
under different protocols (another threshold, pair list, subset, alphas, resolution...) are never
put in one table: the report stops with an error naming the differing fields (exit status 1),
unless ``--allow-mixed`` is given, which makes one block per protocol. Writes into ``--out``:

* ``report.md``: paste-ready Markdown. Per block: its protocol in one line, a main table (method,
  read-out, backbone, pairs, PCK at each alpha as the per-pair mean, the per-keypoint and
  per-category averages, PF-PASCAL's clean-pair PCK, flow accuracy / LT-ACC / IoU where present,
  seconds per pair), then the tables per category (and per SPair-71k difficulty level,
  ``<field>=<level>``) of PCK at ``--alpha`` and of the dense metrics, one column per run;
* ``report.csv``: one row per run with every metric of its ``metrics.json`` (full precision);
* PNG plots per block: ``<dataset>_pck_vs_alpha.png`` (one curve per run) and
  ``<dataset>_<metric>_per_category.png`` (grouped bars).

Accuracies are in % as in ``metrics.json``. Rows are labelled by method; when a block has the
same method with several read-outs or backbones, those are added to the label, and when runs are
otherwise alike (reruns, sweeps) the run folder's name is added (``--latest`` keeps only the
newest run of each method / read-out / backbone / dataset).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcorr.errors import ConfigError
from semcorr.protocol import METHOD_KEY, describe, differing_fields, protocol_key
from semcorr.results import column_title

#: Dense metrics reported per category, with their column titles.
DENSE_METRICS = {"flow_acc": "flow acc", "lt_acc": "LT-ACC", "iou": "IoU"}
#: Key prefixes of the three PCK averages (:mod:`semcorr.metrics.pck`).
PCK_PREFIXES = ("pck", "pck_kp", "pck_cat")
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
        """The method's backbone: the protocol record's (``-`` for a method without one, e.g.
        identity), else the run's ``backbone`` entry."""
        method = (self.protocol or {}).get(METHOD_KEY)
        if method is not None:
            return str(method.get("backbone") or MISSING)
        return str(self.metrics.get("backbone", ""))

    @property
    def protocol(self) -> dict[str, Any] | None:
        """The run's protocol record (None for runs written before protocols were recorded)."""
        record = self.metrics.get("protocol")
        return record if isinstance(record, dict) else None

    @property
    def readout(self) -> str:
        """The method's read-out from the protocol record (``"-"`` when not recorded)."""
        return str(((self.protocol or {}).get(METHOD_KEY) or {}).get("readout", MISSING))

    @property
    def subset_flags(self) -> list[str]:
        """The dataset's subset flags (``pck@A/<flag>`` keys that are no categories)."""
        return list((self.protocol or {}).get("subset_flags", ()))

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
        newest: dict[tuple[str, ...], Run] = {}
        for run in runs:
            key = (run.method, run.readout, run.backbone, run.dataset, protocol_key(run.protocol))
            if key not in newest or run.mtime > newest[key].mtime:
                newest[key] = run
        runs = list(newest.values())
    runs.sort(key=lambda r: (r.dataset, r.method, r.readout, r.backbone, str(r.path)))
    return runs


@dataclass
class Block:
    """Runs of one dataset under one evaluation protocol: what may share a table."""

    dataset: str
    protocol: dict[str, Any] | None
    runs: list[Run]


class MixedProtocolError(ConfigError):
    """Runs of one dataset measured under different protocols were asked into one table."""


def protocol_blocks(runs: Sequence[Run], allow_mixed: bool = False) -> list[Block]:
    """The runs grouped by dataset and protocol (datasets sorted; blocks of a dataset in order of
    their first run), each block's runs labelled (:func:`label_runs`).

    Raises:
        MixedProtocolError: a dataset has runs of different protocols and not ``allow_mixed``;
            the message names the differing fields and the runs on each side.
    """
    blocks: list[Block] = []
    for dataset in datasets_of(runs):
        groups: dict[str, list[Run]] = {}
        for run in (r for r in runs if r.dataset == dataset):
            groups.setdefault(protocol_key(run.protocol), []).append(run)
        if len(groups) > 1 and not allow_mixed:
            fields = differing_fields([g[0].protocol for g in groups.values()])
            sides = "; ".join(", ".join(r.path.name for r in g) for g in groups.values())
            raise MixedProtocolError(
                f"{dataset}: the runs were measured under {len(groups)} different protocols, differing in "
                f"{', '.join(fields)} (runs: {sides}); their numbers are not comparable in one table. Rerun them "
                "under one protocol, or pass --allow-mixed for one table per protocol."
            )
        for group in groups.values():
            label_runs(group)
            blocks.append(Block(dataset, group[0].protocol, group))
    return blocks


def label_runs(runs: list[Run]) -> None:
    """Set each run's ``label`` and ``method_cell`` (unique within its block): the method, plus
    the read-out and the backbone where they tell runs of the method apart, plus the run folder's
    name where nothing else does."""
    for run in runs:
        same_method = [r for r in runs if r.method == run.method]
        same_all = [r for r in same_method if (r.readout, r.backbone) == (run.readout, run.backbone)]
        run.label = run.method_cell = run.method
        if len({r.readout for r in same_method}) > 1:
            run.label += f" [{run.readout}]"
        if len({r.backbone for r in same_method}) > 1:
            run.label += f" ({run.backbone})"
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
    """(metric key, column title) of the main table's metric columns present in any run: the
    three PCK averages at each alpha, the PCK of each subset flag (``clean``), the dense metrics."""
    alphas = alphas_of(runs)
    cols = [(f"{prefix}@{a:g}", column_title(f"{prefix}@{a:g}")) for prefix in PCK_PREFIXES for a in alphas]
    cols += [(f"{alpha_key(a)}/{flag}", f"{flag}@{a:g}") for flag in sorted({f for r in runs for f in r.subset_flags})
             for a in alphas]
    cols += [(k, title) for k, title in DENSE_METRICS.items()]
    return [(k, t) for k, t in cols if any(k in r.metrics for r in runs)]


def pairs_cell(run: Run) -> str:
    """The number of pairs, marked when the run is a subset of its split."""
    n = fmt_count(run.value("n_pairs"))
    subset = (run.protocol or {}).get("subset")
    return f"{n} (subset of {subset['of']})" if subset else n


def main_table(runs: Sequence[Run]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a block's main table (one row per run)."""
    cols = main_columns(runs)
    header = ["method", "read-out", "backbone", "pairs", *(title for _, title in cols), "s/pair"]
    rows = [
        [run.method_cell, run.readout, run.backbone, pairs_cell(run),
         *(fmt_pct(run.value(k)) for k, _ in cols), fmt_time(run.value("time_per_pair_s"))]
        for run in runs
    ]
    return header, rows


def subsets_of(runs: Sequence[Run], metric: str) -> tuple[list[str], list[str]]:
    """(categories, difficulty levels ``field=level``) reported for ``metric`` by any run (subset
    flags such as ``clean`` are no categories: the main table has them)."""
    flags = {f for r in runs for f in r.subset_flags}
    names = sorted({k.split("/", 1)[1] for r in runs for k in r.metrics if k.startswith(metric + "/")} - flags)
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


def block_title(block: Block, blocks: Sequence[Block]) -> str:
    """The dataset's name, numbered when the dataset has several blocks (``--allow-mixed``)."""
    same = [b for b in blocks if b.dataset == block.dataset]
    return block.dataset if len(same) == 1 else f"{block.dataset} (protocol {same.index(block) + 1})"


def markdown(blocks: Sequence[Block], alpha: float = 0.1, plots: Sequence[Path] = ()) -> str:
    """The report as Markdown (see the module docstring)."""
    parts = ["<!-- generated by `python -m semcorr.report` -->"]
    for block in blocks:
        title = block_title(block, blocks)
        parts += [f"## {title}", f"Protocol: {describe(block.protocol)}", md_table(*main_table(block.runs), left=3)]
        for metric, metric_title in subset_metrics(block.runs, alpha):
            categories, levels = subsets_of(block.runs, metric)
            if categories:
                parts.append(f"### {title}: {metric_title} per category")
                parts.append(md_table(*subset_table(block.runs, metric, categories, "category")))
            if levels:
                parts.append(f"### {title}: {metric_title} per difficulty")
                parts.append(md_table(*subset_table(block.runs, metric, levels, "difficulty")))
    parts.append(
        "PCK in % (a keypoint is correct within alpha x T of its truth; T per dataset, see each protocol): PCK@A the "
        "mean over pairs, PCK/kp@A over all keypoints, PCK/cat@A the mean of the per-category means; flow accuracy, "
        "LT-ACC and IoU in %; s/pair: method time per pair (data loading excluded)."
    )
    if plots:
        parts.append("### Plots")
        parts.append("\n".join(f"![{p.stem}]({p.name})" for p in plots))
    return "\n\n".join(parts) + "\n"


def csv_columns(runs: Sequence[Run]) -> list[str]:
    """Metric columns of the CSV: n_pairs, PCK per alpha, the dense and timing keys, then every
    per-subset key (sorted)."""
    keys = {k for r in runs for k, v in r.metrics.items() if k not in ("method", "dataset", "backbone", "protocol")}
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
    """The CSV: run, method, read-out, backbone, dataset, then :func:`csv_columns`."""
    cols = csv_columns(runs)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "method", "readout", "backbone", "dataset", *cols])
    for r in runs:
        writer.writerow([str(r.path), r.method, r.readout, r.backbone, r.dataset, *(csv_value(r.metrics.get(k)) for k in cols)])
    return buf.getvalue()


# -- plots -----------------------------------------------------------------------------------
def write_plots(blocks: Sequence[Block], out: Path, alpha: float = 0.1) -> list[Path]:
    """PCK-vs-alpha curves and per-category bars of every block; returns the PNG paths."""
    from semcorr.io import safe_stem
    from semcorr.viz.plots import category_bars, pck_curves  # matplotlib only when plotting

    written = []
    for block in blocks:
        mine, title = block.runs, block_title(block, blocks)
        stem = safe_stem(title)
        alphas = alphas_of(mine)
        if alphas:
            series = {r.label: [(a, r.value(alpha_key(a))) for a in alphas] for r in mine}
            written.append(pck_curves(series, out / f"{stem}_pck_vs_alpha.png", f"{title}: PCK vs alpha"))
        for metric, metric_title in subset_metrics(mine, alpha):
            categories, _ = subsets_of(mine, metric)
            if categories:
                series = {r.label: [r.value(f"{metric}/{c}") for c in categories] for r in mine}
                path = out / f"{stem}_{safe_stem(metric)}_per_category.png"
                written.append(category_bars(categories, series, path, f"{title}: {metric_title} per category", f"{metric_title} (%)"))
    return written


# -- entry point -----------------------------------------------------------------------------
def write_report(paths: Sequence[str | Path], out: str | Path, alpha: float = 0.1, latest: bool = False,
                 plots: bool = True, allow_mixed: bool = False) -> dict[str, Any]:
    """Collect the runs under ``paths`` and write ``report.md``, ``report.csv`` and the plots into
    ``out``. Returns ``{"runs", "blocks", "markdown", "csv", "plots"}``.

    Raises:
        MixedProtocolError: runs of one dataset under different protocols, without ``allow_mixed``.
    """
    from semcorr.io import write_text

    runs = load_runs(paths, latest=latest)
    blocks = protocol_blocks(runs, allow_mixed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = write_plots(blocks, out, alpha) if plots else []
    md_path = write_text(out / "report.md", markdown(blocks, alpha, pngs))
    csv_path = write_text(out / "report.csv", csv_text(runs))
    return {"runs": runs, "blocks": blocks, "markdown": md_path, "csv": csv_path, "plots": pngs}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m semcorr.report",
        description="Compare evaluation runs: collects metrics.json files (searched recursively) into "
        "report.md (Markdown tables, one block per dataset and protocol), report.csv and PNG plots.",
    )
    parser.add_argument("runs", nargs="+", help="run directories, folders of runs (e.g. a multirun folder) or metrics.json files")
    parser.add_argument("--out", default="report", help="output folder (default: report/)")
    parser.add_argument("--alpha", type=float, default=0.1, help="PCK alpha of the per-category tables and bars (default 0.1)")
    parser.add_argument("--latest", action="store_true", help="keep only the newest run of each method/read-out/backbone/dataset")
    parser.add_argument("--allow-mixed", action="store_true",
                        help="runs of one dataset under different protocols: one table per protocol instead of an error")
    parser.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from semcorr.cli import exit_on_user_error

    args = parse_args(argv)

    @exit_on_user_error
    def run() -> dict[str, Any]:
        return write_report(args.runs, args.out, args.alpha, args.latest, not args.no_plots, args.allow_mixed)

    result = run()
    for block in result["blocks"]:
        print(f"{block_title(block, result['blocks'])}: {describe(block.protocol)}")
        print(md_table(*main_table(block.runs), left=3) + "\n")
    print(f"{len(result['runs'])} runs -> {result['markdown']}, {result['csv']}"
          + (f", {len(result['plots'])} plots in {Path(args.out)}" if result["plots"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
