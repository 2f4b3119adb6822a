"""The expected numbers (benchmarks/expected.yaml): the file parses, the README's results table is
generated from it, and `check` reruns an entry and says what moved (values, protocol, method)."""

from __future__ import annotations

import io
import json

import pytest
import yaml

from conftest import ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.errors import ConfigError
from semcorr.expected import BEGIN, END, check, compare, load, measured_block, table_markdown, write_readme_table
from semcorr.lit.evaluation_runner import run_evaluation


def test_the_repository_file_parses_and_the_readme_table_is_generated_from_it():
    expected = load(ROOT / "benchmarks" / "expected.yaml")
    assert len({e.name for e in expected.entries}) == len(expected.entries) > 10
    for entry in expected.entries:
        assert "{run}" in entry.commands[-1] and entry.values, entry.name
        assert entry.rerun is False or expected.blocks[entry.block]["protocol"], entry.name
    readme = (ROOT / "README.md").read_text()
    generated = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert generated == "\n" + table_markdown(expected), "README results table out of date: run `python -m semcorr.expected table --readme README.md`"


@pytest.fixture(autouse=True)
def willow(tmp_path):
    build_pfwillow(tmp_path / "willow", {"car(G)": 2, "duck(S)": 2}, size=(120, 100))


def fixture_file(tmp_path, values, protocol=None, method=None):
    """An expected-numbers file with one identity entry on the PF-WILLOW fixture."""
    data = {
        "defaults": {"tolerance": 0.01},
        "blocks": {"w": {"title": "fixture", "protocol": protocol or {}}},
        "results": [{
            "name": "identity-w", "block": "w", "values": values, "method": method or {"readout": "identity"},
            "command": f"python evaluate.py method=identity dataset=pfwillow dataset.root={tmp_path / 'willow'} logger=none "
                       "hydra.run.dir={run}",
        }],
    }
    path = tmp_path / "expected.yaml"
    path.write_text(yaml.safe_dump(data))
    return load(path)


def test_check_reruns_and_reports_what_moved(tmp_path, monkeypatch):
    """One rerun through `check` (a subprocess, as users run it) that matches; what counts as moved is
    checked on its metrics.json through the same comparison."""
    monkeypatch.chdir(ROOT)
    reference = run_evaluation(compose_config("evaluate", ["method=identity", "dataset=pfwillow",
                                                           f"dataset.root={tmp_path / 'willow'}", "logger=none"], tmp_path / "ref"))
    record = {k: v for k, v in json.loads(json.dumps(reference["protocol"])).items() if k != "method"}
    value = reference["pck@0.1"]
    same = fixture_file(tmp_path, {"pck@0.1": value, "pck_kp@0.1": reference["pck_kp@0.1"]}, record)
    out = io.StringIO()
    assert check(same, same.select(), tmp_path / "runs", tmp_path, out=out) == 0
    assert "ok (pck@0.1" in out.getvalue() and "1 of 1 entries as expected" in out.getvalue()
    metrics = json.loads((tmp_path / "runs" / "identity-w" / "metrics.json").read_text())

    (entry,) = fixture_file(tmp_path, {"pck@0.1": value + 1.0}, record).entries
    assert compare(entry, {"protocol": record}, metrics) == [f"pck@0.1: expected {value + 1.0:g} +- 0.01, got {value:.4g}"]
    assert "values: {pck@0.1: " in measured_block(entry, metrics)
    (entry,) = fixture_file(tmp_path, {"pck@0.1": value}, record, {"readout": "argmax"}).entries
    assert compare(entry, {"protocol": record}, metrics) == ["method differs in readout: readout='identity'"]
    assert compare(entry, {"protocol": {**record, "threshold": "img"}}, metrics)[0] == "protocol differs from block 'w' in threshold"
    assert compare(entry, {"protocol": {}}, {})[0] == f"pck@0.1: expected {value:g}, got nothing"


def test_readme_table_is_written_between_the_markers(tmp_path):
    expected = fixture_file(tmp_path, {"pck@0.1": 12.5, "pck@0.05": 1.0},
                            {"dataset": "pfwillow", "split": "test", "n_pairs": 4, "metrics": ["pck"], "alphas": [0.05, 0.1]})
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    write_readme_table(expected, readme)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# x\n\nbefore\n") and text.endswith(f"{END}\nafter\n")
    assert "| identity | identity | - | 4 | 1.0 | 12.5 |" in text and "**fixture.** Protocol: **pfwillow** `test`, 4 pairs" in text
    readme.write_text("no markers")
    with pytest.raises(ConfigError, match="no results-table markers"):
        write_readme_table(expected, readme)


def test_bad_files_are_named(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump({"blocks": {}, "results": [{"name": "a", "block": "b", "command": "x", "values": {}}]}))
    with pytest.raises(ConfigError, match=r"results\[0\] \(a\): unknown block 'b'"):
        load(path)
    path.write_text("results: 3")
    with pytest.raises(ConfigError, match="expected the keys `blocks`"):
        load(path)
    expected = fixture_file(tmp_path, {"pck@0.1": 1.0})
    with pytest.raises(ConfigError, match="no entry or block nope"):
        expected.select(["nope"])
