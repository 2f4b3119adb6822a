"""Unreadable torch files (random bytes, text, empty, pickled objects) as SAM-Net checkpoints,
backbone weights and evaluation journals: one line naming the file and the fix, never torch's
advice to load with ``weights_only=False`` (which runs any code the file holds)."""

from __future__ import annotations

import os

import pytest
import torch

from conftest import compose_config
from semcorr.backbones import load_backbone
from semcorr.cli import exit_on_user_error
from semcorr.errors import ConfigError, WeightsError
from semcorr.io import read_torch, safe_stem
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.lit.journal import EvaluationJournal
from semcorr.methods.samnet.matcher import read_checkpoint


class Pickled(torch.nn.Module):
    """A whole module, pickled by torch.save (not a state_dict)."""


@pytest.fixture()
def bad_files(tmp_path):
    files = {
        "random": tmp_path / "random.ckpt",
        "text": tmp_path / "notes.ckpt",
        "empty": tmp_path / "empty.ckpt",
        "truncated": tmp_path / "truncated.ckpt",
        "object": tmp_path / "object.ckpt",
    }
    files["random"].write_bytes(os.urandom(4096))
    files["text"].write_text("epoch 3: loss 0.41\n" * 20)  # torch.load: IndexError (other texts: KeyError(101)...)
    files["empty"].write_bytes(b"")
    torch.save({"state_dict": {"w": torch.ones(50, 50)}}, files["truncated"])
    files["truncated"].write_bytes(files["truncated"].read_bytes()[:3000])
    torch.save(Pickled(), files["object"])
    return files


@pytest.mark.parametrize("kind", ["random", "text", "empty", "truncated", "object"])
def test_read_torch_names_the_file_and_the_fix_only(bad_files, kind):
    with pytest.raises(WeightsError) as err:
        read_torch(bad_files[kind], WeightsError, "Do X.")
    message = str(err.value)
    assert message.startswith(f"'{bad_files[kind]}' ") and message.endswith("Do X.")
    assert "weights_only" not in message and "\n" not in message
    if kind == "object":
        assert "holds Python objects" in message and "arbitrary code" in message
    else:
        assert "is not a readable torch file" in message


@pytest.mark.parametrize("kind", ["random", "text", "object"])
def test_samnet_checkpoint_and_backbone_weights(bad_files, kind):
    with pytest.raises(WeightsError, match="python train.py model=samnet") as err:
        read_checkpoint(bad_files[kind])
    assert "weights_only" not in str(err.value)
    with pytest.raises(WeightsError, match=r"torch.save\(model.state_dict\(\), PATH\)") as err:
        load_backbone("mobilenet_v2", weights=str(bad_files[kind]))
    assert str(bad_files[kind]) in str(err.value) and "weights_only" not in str(err.value)


def test_unreadable_journal_says_to_delete_it(tmp_path, bad_files):
    cfg = compose_config("evaluate", ["method=identity"], tmp_path)
    journal = EvaluationJournal(tmp_path / "partial", cfg)
    journal.path(0).parent.mkdir()
    journal.path(0).write_bytes(bad_files["text"].read_bytes())
    with pytest.raises(ConfigError, match=r"rank0\.pt' is not a readable torch file .* Delete .*partial' to start over"):
        journal.load(0, 1)


def test_the_entry_point_reports_a_text_checkpoint_in_one_line(tmp_path, bad_files, capsys):
    """What evaluate.py prints: the error wrapped by Hydra's instantiation, unwrapped to one line."""
    cfg = compose_config("evaluate", ["method=samnet", f"method.checkpoint={bad_files['text']}", "logger=none"], tmp_path)
    main = exit_on_user_error(run_evaluation)
    with pytest.raises(SystemExit) as exit_:
        main(cfg)
    assert exit_.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: WeightsError: '{bad_files['text']}' is not a readable torch file")
    assert "weights_only" not in lines[0]


def test_safe_stem_replaces_unsafe_runs():
    assert safe_stem("car(G)/a-b") == "car_G_a-b"
    assert safe_stem("PF-WILLOW pck@0.1") == "PF-WILLOW_pck_0.1"
    assert safe_stem("//", fallback="pair") == "pair"
    assert safe_stem("") == ""
