"""Progress where no terminal is (lines with an ETA), the layer search's overall progress, and
Ctrl-C during training (the last checkpoint and the resume command)."""

from __future__ import annotations

import signal

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from conftest import compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.lit.evaluation_runner import run_evaluation
from semcorr.lit.interrupt import ResumeOnInterrupt, checkpoint_note, resume_command
from semcorr.lit.progress import ProgressBar, SearchProgress, progress_line


def test_progress_line_by_hand():
    # 150 of 450 in 65 s: 2.31/s, 300 left -> 130 s
    assert progress_line("Testing", 150, 450, 65.0, 150) == "Testing: 150/450 (33%) | 0:01:05 elapsed | ETA 0:02:10 | 2.31 it/s"
    # resumed at 100: the rate counts the 50 done since, 300 left at 0.5/s -> 600 s
    assert progress_line("Training", 150, 450, 100.0, 50, "step ") == (
        "Training: step 150/450 (33%) | 0:01:40 elapsed | ETA 0:10:00 | 0.50 it/s")
    assert progress_line("Testing", 3, None, 2.0, 3) == "Testing: 3 | 0:00:02 elapsed | 1.50 it/s"


def test_an_evaluation_without_a_terminal_prints_progress_lines(tmp_path, capsys):
    willow = tmp_path / "willow"
    build_pfwillow(willow, subclasses={"car(G)": 3, "duck(S)": 3})  # 12 pairs
    cfg = compose_config("evaluate", ["method=identity", "dataset=pfwillow", f"dataset.root={willow}", "logger=none",
                                      "callbacks.progress.every_n=5", "callbacks.progress.every_s=null"], tmp_path / "run")
    run_evaluation(cfg)  # pytest's stdout is not a terminal: the bar is in line mode
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Testing: ")]
    assert [line.split(" | ")[0] for line in lines] == ["Testing: 5/12 (42%)", "Testing: 10/12 (83%)", "Testing: 12/12 (100%)"]
    assert all(" elapsed | ETA " in line and line.endswith(" it/s") for line in lines)


class Steps(pl.LightningModule):
    """A linear model that Ctrl-Cs itself at training step ``stop``."""

    def __init__(self, stop: int) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.stop = stop

    def training_step(self, batch, batch_idx):
        if self.global_step == self.stop:
            raise KeyboardInterrupt
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_ctrl_c_in_training_names_the_last_checkpoint_and_the_resume_command(tmp_path, capsys):
    handler = signal.getsignal(signal.SIGINT)
    last = tmp_path / "checkpoints" / "last.ckpt"
    command = resume_command(tmp_path, "train.py")
    trainer = pl.Trainer(
        max_steps=6, logger=False, enable_checkpointing=False, enable_model_summary=False,
        callbacks=[ProgressBar(every_n=2, every_s=None, lines=True),
                   ResumeOnInterrupt(lambda t, m: checkpoint_note(last), command)],
    )
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=1)
    try:
        with pytest.raises(SystemExit):
            trainer.fit(Steps(stop=5), loader)
    finally:
        signal.signal(signal.SIGINT, handler)
    out = capsys.readouterr()
    steps = [line.split(" | ")[0] for line in out.out.splitlines() if line.startswith("Training: ")]
    assert steps == ["Training: step 2/6 (33%)", "Training: step 4/6 (67%)"]
    assert f"Interrupted: no checkpoint was written yet ({last} does not exist): the run starts over." in out.err
    assert f"Resume with:\n  python train.py <the same overrides> hydra.run.dir={tmp_path}" in out.err
    last.parent.mkdir()
    torch.save({}, last)
    assert checkpoint_note(last).startswith(f"the last checkpoint is {last} (written 0 min ago)")


def test_layer_search_bound_by_hand():
    # candidates 2..6, beam 2, up to 3 layers; depth 1 scores the 2 bases, the lowest base is 2:
    # depth 2: 2 sets x 4 layers above 2; depth 3: 2 sets x (4 - 1) -> at most 2 + 8 + 6 = 16
    progress = SearchProgress([2, 3, 4, 5, 6], beam_size=2, max_layers=3, n_pairs=10)
    assert progress.bound(1, 2, lowest_base=2) == 16
    assert progress.line(1, 2, 2) == ("Layer search: depth 1/3, scoring 2 sets on 10 pairs; "
                                      "0 of at most 16 sets scored so far")
    progress.done(2)
    assert progress.bound(2, 7, lowest_base=2) == 2 + 7 + 6
    assert progress.line(2, 7, 2).startswith("Layer search: depth 2/3, scoring 7 sets on 10 pairs; 2 of at most 15")
    assert " elapsed, this depth about " in progress.line(2, 7, 2)
