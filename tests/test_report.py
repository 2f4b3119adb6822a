"""The comparison report (`python -m semcorr.report`): tables from hand-written metrics.json files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from semcorr.report import MixedProtocolError, load_runs, main_table, markdown, protocol_blocks, write_report

RUNS = {
    "willow_identity": {
        "method": "identity", "dataset": "pfwillow", "backbone": "mobilenet_v2", "n_pairs": 12,
        "pck@0.05": 10.0, "pck@0.1": 20.26, "pck@0.15": 30.0,
        "pck@0.05/car(G)": 5.0, "pck@0.1/car(G)": 15.0, "pck@0.15/car(G)": 25.0,
        "pck@0.05/duck(S)": 15.0, "pck@0.1/duck(S)": 25.5, "pck@0.15/duck(S)": 35.0,
        "time_per_pair_s": 0.0004,
    },
    "willow_nn": {
        "method": "nn", "dataset": "pfwillow", "backbone": "mobilenet_v2", "n_pairs": 12,
        "pck@0.05": 12.34, "pck@0.1": 45.678, "pck@0.15": 60.0,
        "pck@0.05/car(G)": 11.0, "pck@0.1/car(G)": 40.0, "pck@0.15/car(G)": 55.0,
        "pck@0.05/duck(S)": 13.0, "pck@0.1/duck(S)": 51.36, "pck@0.15/duck(S)": 65.0,
        "time_per_pair_s": 0.0321,
    },
    "multi/hpf-spair-0": {
        "method": "hpf", "dataset": "spair", "backbone": "resnet101", "n_pairs": 3, "pck@0.1": 50.0,
        "pck@0.1/cat": 50.0, "pck@0.1/viewpoint_variation=0": 40.0, "pck@0.1/viewpoint_variation=1": 60.0,
        "time_per_pair_s": 12.345,
    },
    "multi/hpf-spair-1": {
        "method": "hpf", "dataset": "spair", "backbone": "resnet50", "n_pairs": 3, "pck@0.1": 45.0,
        "pck@0.1/cat": 45.0, "pck@0.1/viewpoint_variation=0": 35.0, "pck@0.1/viewpoint_variation=1": 55.0,
        "time_per_pair_s": 123.4,
    },
    "tss": {
        "method": "identity", "dataset": "tss", "backbone": "mobilenet_v2", "n_pairs": 8,
        "flow_acc": 33.33, "flow_acc_pixels": 30.0, "flow_acc_pairs": 8,
        "flow_acc/FG3DCar": 40.0, "flow_acc/JODS": 20.0, "time_per_pair_s": None,
    },
    "caltech": {
        "method": "identity", "dataset": "caltech", "backbone": "mobilenet_v2", "n_pairs": 3,
        "lt_acc": 70.0, "iou": 45.56, "loc_err": 0.3, "mask_pairs": 3,
        "lt_acc/Faces": 71.0, "iou/Faces": 46.0, "loc_err/Faces": 0.31, "time_per_pair_s": 0.1,
    },
}

#: The main tables of the blocks (runs without a protocol record: one block per dataset).
MAIN = {
    "caltech": [
        "| method | read-out | backbone | pairs | LT-ACC | IoU | s/pair |", "|---|---|---|---:|---:|---:|---:|",
        "| identity | - | mobilenet_v2 | 3 | 70.0 | 45.6 | 0.100 |",
    ],
    "pfwillow": [
        "| method | read-out | backbone | pairs | PCK@0.05 | PCK@0.1 | PCK@0.15 | s/pair |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        "| identity | - | mobilenet_v2 | 12 | 10.0 | 20.3 | 30.0 | <0.001 |",
        "| nn | - | mobilenet_v2 | 12 | 12.3 | 45.7 | 60.0 | 0.032 |",
    ],
    "spair": [
        "| method | read-out | backbone | pairs | PCK@0.1 | s/pair |", "|---|---|---|---:|---:|---:|",
        "| hpf | - | resnet101 | 3 | 50.0 | 12.3 |", "| hpf | - | resnet50 | 3 | 45.0 | 123 |",
    ],
    "tss": [
        "| method | read-out | backbone | pairs | flow acc | s/pair |", "|---|---|---|---:|---:|---:|",
        "| identity | - | mobilenet_v2 | 8 | 33.3 | - |",
    ],
}


def protocol(**changes):
    """A PF-WILLOW protocol record as evaluate.py writes it, with ``changes`` (``method`` merged)."""
    record = {
        "dataset": "pfwillow", "split": "test", "pairs": "all ordered pairs of distinct images within a sub-class (folder scan)",
        "n_pairs": 12, "pairs_sha256": "ab" * 32, "subset": None, "threshold": "bbox",
        "threshold_rule": "max(w, h) of the target's box: the box spanned by the target keypoints",
        "image_size": {"max_side": 300, "size": None, "upscale": False, "aspect_changed_pairs": 0},
        "flips": "none", "subset_flags": [], "options": {}, "metrics": ["pck"], "alphas": [0.05, 0.1, 0.15],
        "correct_if": "distance <= alpha * T", "pck_averages": {}, "resolution": "resized",
        "method": {"name": "nn", "readout": "argmax", "backbone": "mobilenet_v2", "weights": "offline", "trained_on": []},
    }
    method = changes.pop("method", {})
    record.update(changes)
    record["method"] = {**record["method"], **method}
    return record


def write_runs(root, runs=RUNS):
    for name, metrics in runs.items():
        (root / name).mkdir(parents=True)
        (root / name / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return root


@pytest.fixture()
def runs(tmp_path):
    return write_runs(tmp_path / "runs")


def section(md: str, heading: str) -> list[str]:
    """The table lines under a ``### heading``."""
    lines = md.splitlines()
    start = lines.index(f"### {heading}") + 2
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def table_under(md: str, heading: str) -> list[str]:
    """The main table of the block ``## heading`` (after its protocol line)."""
    lines = md.splitlines()
    start = lines.index(f"## {heading}") + 4
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_main_table_rows(runs):
    md = markdown(protocol_blocks(load_runs([runs])))
    for dataset, table in MAIN.items():
        assert table_under(md, dataset) == table
    assert md.count("Protocol: protocol not recorded") == 4


def test_per_category_and_difficulty_tables(runs):
    md = markdown(protocol_blocks(load_runs([runs])))
    assert section(md, "pfwillow: PCK@0.1 per category") == [
        "| category | identity | nn |", "|---|---:|---:|",
        "| all | 20.3 | 45.7 |", "| car(G) | 15.0 | 40.0 |", "| duck(S) | 25.5 | 51.4 |",
    ]
    # the same method with two backbones on one dataset: the backbone goes into the column title
    assert section(md, "spair: PCK@0.1 per category") == [
        "| category | hpf (resnet101) | hpf (resnet50) |", "|---|---:|---:|", "| all | 50.0 | 45.0 |", "| cat | 50.0 | 45.0 |",
    ]
    assert section(md, "spair: PCK@0.1 per difficulty") == [
        "| difficulty | hpf (resnet101) | hpf (resnet50) |", "|---|---:|---:|", "| all | 50.0 | 45.0 |",
        "| viewpoint_variation=0 | 40.0 | 35.0 |", "| viewpoint_variation=1 | 60.0 | 55.0 |",
    ]
    assert section(md, "tss: flow acc per category") == [
        "| category | identity |", "|---|---:|", "| all | 33.3 |", "| FG3DCar | 40.0 |", "| JODS | 20.0 |",
    ]
    assert section(md, "caltech: LT-ACC per category")[2:] == ["| all | 70.0 |", "| Faces | 71.0 |"]
    assert section(md, "caltech: IoU per category")[2:] == ["| all | 45.6 |", "| Faces | 46.0 |"]
    assert "### pfwillow: PCK@0.1 per difficulty" not in md


def test_alpha_choice_falls_back_to_the_alphas_a_dataset_has(runs):
    md = markdown(protocol_blocks(load_runs([runs])), alpha=0.05)
    assert section(md, "pfwillow: PCK@0.05 per category")[2:] == [
        "| all | 10.0 | 12.3 |", "| car(G) | 5.0 | 11.0 |", "| duck(S) | 15.0 | 13.0 |",
    ]
    assert "### spair: PCK@0.1 per category" in md  # SPair runs have only alpha 0.1


def test_csv_has_every_metric_at_full_precision(runs, tmp_path):
    out = write_report([runs], tmp_path / "out", plots=False)
    rows = {r["run"].rsplit(os.sep, 1)[-1]: r for r in csv.DictReader(out["csv"].open())}
    assert set(rows) == {"willow_identity", "willow_nn", "hpf-spair-0", "hpf-spair-1", "tss", "caltech"}
    header = out["csv"].read_text().splitlines()[0].split(",")
    assert header[:9] == ["run", "method", "readout", "backbone", "dataset", "n_pairs", "pck@0.05", "pck@0.1", "pck@0.15"]
    nn = rows["willow_nn"]
    assert (nn["method"], nn["backbone"], nn["dataset"], nn["n_pairs"]) == ("nn", "mobilenet_v2", "pfwillow", "12")
    assert nn["pck@0.1"] == "45.678" and nn["pck@0.1/duck(S)"] == "51.36" and nn["time_per_pair_s"] == "0.0321"
    assert nn["flow_acc"] == "" and nn["lt_acc"] == ""
    assert rows["tss"]["time_per_pair_s"] == "" and rows["tss"]["flow_acc/JODS"] == "20.0"
    assert rows["caltech"]["loc_err/Faces"] == "0.31" and rows["caltech"]["mask_pairs"] == "3"
    assert rows["hpf-spair-0"]["pck@0.1/viewpoint_variation=1"] == "60.0"
    assert not out["plots"]


def test_reruns_are_told_apart_or_reduced_to_the_latest(tmp_path):
    root = write_runs(tmp_path / "runs", {
        "a/old": {**RUNS["willow_nn"], "pck@0.1": 40.0},
        "a/new": {**RUNS["willow_nn"], "pck@0.1": 41.0},
    })
    os.utime(root / "a/old/metrics.json", (1_000_000, 1_000_000))
    (block,) = protocol_blocks(load_runs([root]))
    header, rows = main_table(block.runs)
    assert [(r[0], r[5]) for r in rows] == [("nn [new]", "41.0"), ("nn [old]", "40.0")]
    (block,) = protocol_blocks(load_runs([root / "a" / "new", root / "a"], latest=True))  # overlapping paths: once
    header, rows = main_table(block.runs)
    assert [(r[0], r[5]) for r in rows] == [("nn", "41.0")]
    (root / "other").mkdir()
    (root / "other" / "metrics.json").write_text('{"loss": 1.0}')  # not an evaluation run: skipped
    assert len(load_runs([root])) == 2


def test_plots_are_written(runs, tmp_path):
    out = write_report([runs], tmp_path / "out")
    names = sorted(p.name for p in out["plots"])
    assert names == [
        "caltech_iou_per_category.png", "caltech_lt_acc_per_category.png",
        "pfwillow_pck_0.1_per_category.png", "pfwillow_pck_vs_alpha.png",
        "spair_pck_0.1_per_category.png", "spair_pck_vs_alpha.png", "tss_flow_acc_per_category.png",
    ]
    for p in out["plots"]:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    md = out["markdown"].read_text()
    assert "![pfwillow_pck_vs_alpha](pfwillow_pck_vs_alpha.png)" in md


def test_cli(runs, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "semcorr.report", str(runs / "multi"), str(runs / "willow_nn"),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| method | read-out | backbone | pairs | PCK@0.05 | PCK@0.1 | PCK@0.15 | s/pair |" in proc.stdout
    assert "3 runs" in proc.stdout
    md = (out / "report.md").read_text()
    assert "| nn | - | mobilenet_v2 | 12 | 12.3 | 45.7 | 60.0 | 0.032 |" in md
    assert len((out / "report.csv").read_text().splitlines()) == 1 + 3
    assert (out / "spair_pck_vs_alpha.png").stat().st_size > 5000

    proc = subprocess.run([sys.executable, "-m", "semcorr.report", str(tmp_path / "nowhere")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no such run directory" in proc.stderr and "Traceback" not in proc.stderr


def recorded_run(name, pck, **changes):
    return {"method": "nn", "dataset": "pfwillow", "backbone": "mobilenet_v2", "n_pairs": 12, "pck@0.1": pck,
            "pck_kp@0.1": pck - 1, "pck_cat@0.1": pck + 1, "time_per_pair_s": 0.01, "protocol": protocol(**changes)}


def test_runs_of_different_protocols_are_refused_unless_allowed(tmp_path):
    root = write_runs(tmp_path / "runs", {
        "bbox": recorded_run("bbox", 40.0),
        "img": recorded_run("img", 55.0, threshold="img", threshold_rule="max(H, W) of the target image"),
        "img_again": recorded_run("img", 56.0, threshold="img", threshold_rule="max(H, W) of the target image",
                                  method={"readout": "soft_argmax"}),
    })
    with pytest.raises(MixedProtocolError, match=r"pfwillow: .* 2 different protocols, differing in threshold, threshold_rule"):
        write_report([root], tmp_path / "out", plots=False)
    proc = subprocess.run([sys.executable, "-m", "semcorr.report", str(root), "--out", str(tmp_path / "out"), "--no-plots"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "differing in threshold" in proc.stderr and "--allow-mixed" in proc.stderr
    assert "Traceback" not in proc.stderr

    out = write_report([root], tmp_path / "out", plots=False, allow_mixed=True)
    blocks = out["blocks"]
    assert [len(b.runs) for b in blocks] == [1, 2] and blocks[0].protocol["threshold"] == "bbox"
    md = out["markdown"].read_text()
    assert "## pfwillow (protocol 1)" in md and "## pfwillow (protocol 2)" in md
    assert "PCK threshold `img` (T = max(H, W) of the target image)" in md
    # read-outs differ within a protocol: one table, told apart by the read-out column
    assert table_under(md, "pfwillow (protocol 2)")[2:] == [
        "| nn | argmax | mobilenet_v2 | 12 | 55.0 | 54.0 | 56.0 | 0.010 |",
        "| nn | soft_argmax | mobilenet_v2 | 12 | 56.0 | 55.0 | 57.0 | 0.010 |",
    ]
    assert table_under(md, "pfwillow (protocol 2)")[0] == "| method | read-out | backbone | pairs | PCK@0.1 | PCK/kp@0.1 | PCK/cat@0.1 | s/pair |"


def test_method_fields_share_a_table_and_runs_without_a_record_do_not(tmp_path):
    root = write_runs(tmp_path / "runs", {
        "argmax": recorded_run("a", 40.0),
        "box": recorded_run("b", 30.0, method={"readout": "box", "margin_pruning": True}),
        "hpf": {**recorded_run("c", 60.0, method={"name": "hpf", "readout": "box", "backbone": "resnet101"}), "method": "hpf",
                "backbone": "resnet101"},
    })
    (block,) = protocol_blocks(load_runs([root]))
    assert [r.label for r in block.runs] == ["hpf", "nn [argmax]", "nn [box]"]
    write_runs(root, {"old": RUNS["willow_nn"]})
    with pytest.raises(MixedProtocolError, match="differing in alphas, correct_if"):
        protocol_blocks(load_runs([root]))


def test_subset_runs_are_marked(tmp_path):
    subset = {"of": 450, "categories": None, "pairs_per_category": 2, "max_pairs": None, "seed": 0}
    root = write_runs(tmp_path / "runs", {"s": recorded_run("s", 40.0, subset=subset, n_pairs=10)})
    md = markdown(protocol_blocks(load_runs([root])))
    assert "**subset** of 450 (pairs_per_category=2, seed=0)" in md
    assert "| nn | argmax | mobilenet_v2 | 12 (subset of 450) |" in md
