"""The evaluation's pictures, written by a Lightning callback (:class:`PictureWriter`).

For the pairs it is given (``pictures=first``: index < ``max_pictures``, the same pictures whichever
process evaluates a pair and whether or not a run was resumed; ``pictures=worst``: the pairs of
lowest PCK, chosen after the run, in a second test pass over those pairs only) it reads what
:meth:`~semcorr.lit.evaluation_module.EvaluationModule.test_step` returns (``{"output":
MatchOutput, "pair_pck": (B, A)}``) and saves, drawn by :mod:`semcorr.viz.pictures`:

* ``<index>_<pair>.png`` (:func:`~semcorr.viz.pictures.draw_pair`), whose third panel is the source
  warped onto the target: a method's ``extras["warped"]``, else warped through its target -> source
  flow (``method(..., dense="backward")``, asked for the pictured pairs only);
* ``<index>_<pair>_matches.png`` when the method returns sparse matches
  (``extras["sparse_src"]``/``["sparse_trg"]``);
* the method's own pictures of the pair (:meth:`semcorr.methods.base.Matcher.pair_pictures`,
  computed by the method, written here) in ``<index>_<pair>/``: ``<stem>.png`` for an image or a
  :class:`~semcorr.methods.base.Strip`, ``<stem>.json`` for a dict (with the pair's ``pair_id``).

Every file is written atomically.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from semcorr.io import safe_stem, write_json
from semcorr.methods.base import Matcher, MatchOutput, PairFile, Strip
from semcorr.metrics.warping import warp_by_flow
from semcorr.viz.pictures import draw_matches, draw_pair, pair_title, picture_name, save_figure
from semcorr.viz.strip import save_image, save_strip


def write_pair_file(folder: Path, stem: str, content: PairFile, pair_id: str) -> Path:
    """Write one of a method's pictures of a pair into ``folder`` (created), atomically.

    Args:
        folder: the pair's folder.
        stem: the file stem (letters, digits, ``.``, ``_``, ``-``).
        content: a (3, H, W) image in [0, 1] or a :class:`Strip` (-> ``<stem>.png``), or a
            JSON-ready dict (-> ``<stem>.json``, with ``pair_id`` added first).
        pair_id: the pair's id (``batch["pair_id"][i]``).

    Returns:
        The path written.

    Raises:
        ValueError: a stem that is not file-safe, or content of another type (a method's bug,
            named by its stem).
    """
    if safe_stem(stem, fallback="") != stem:
        raise ValueError(f"a method's picture stem {stem!r} is not a safe file name: use letters, digits, '.', '_' and '-'")
    if isinstance(content, Strip):
        return save_strip(folder / f"{stem}.png", content.panels, content.labels)
    if isinstance(content, torch.Tensor) and content.dim() == 3 and content.shape[0] == 3:
        return save_image(folder / f"{stem}.png", content)
    if isinstance(content, dict):
        return write_json(folder / f"{stem}.json", {"pair_id": pair_id, **content})
    shape = tuple(content.shape) if isinstance(content, torch.Tensor) else type(content).__name__
    raise ValueError(f"a method's picture {stem!r} is {shape}: expected a (3, H, W) image, a Strip or a dict")


class PictureWriter(Callback):
    """Saves the pictures of the pairs whose dataset index is in ``indices``, after each test batch.

    Args:
        folder: where the PNG files go.
        indices: the pair indices to picture (e.g. ``range(20)``).
        alphas: PCK alphas; the middle one decides correct / wrong.
        method: the evaluated method, asked for its own pictures of each pictured pair.
    """

    def __init__(
        self,
        folder: str | Path,
        indices: Collection[int],
        alphas: Sequence[float] = (0.05, 0.1, 0.15),
        method: Matcher | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.indices = indices
        self.alphas = [float(a) for a in alphas]
        self.alpha = float(sorted(self.alphas)[len(self.alphas) // 2])
        self.method = method

    def on_test_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        self.write(batch, outputs["output"], outputs["pair_pck"])

    def write(self, batch: dict[str, Any], output: MatchOutput, pair_pck: torch.Tensor) -> None:
        """Save the pictures of the batch's pairs among :attr:`indices` (``pair_pck``: (B, A), NaN without PCK)."""
        for i in range(batch["src_img"].shape[0]):
            if int(batch["index"][i]) not in self.indices:
                continue
            n = int(batch["n_kps"][i])
            has_gt = n > 0 and bool(torch.isfinite(batch["pck_threshold"][i]))
            title = pair_title(batch["pair_id"][i], self.alphas, pair_pck[i].tolist() if has_gt else None)
            warped = output.extras.get("warped")
            warped = warped[i] if warped is not None else self.warp(batch, i)
            fig = draw_pair(
                batch["src_img"][i],
                batch["trg_img"][i],
                batch["src_kps"][i, :n].cpu(),
                output.points[i, :n].detach().cpu(),
                batch["trg_kps"][i, :n].cpu() if has_gt else None,
                self.alpha * float(batch["pck_threshold"][i]) if has_gt else None,
                warped,
                title,
                alpha=self.alpha,
            )
            name = picture_name(batch["index"][i], batch["pair_id"][i])
            save_figure(fig, self.folder / f"{name}.png")
            if "sparse_src" in output.extras and "sparse_trg" in output.extras:
                matches = draw_matches(
                    batch["src_img"][i], batch["trg_img"][i],
                    output.extras["sparse_src"][i].cpu(), output.extras["sparse_trg"][i].cpu(), batch["pair_id"][i],
                )
                save_figure(matches, self.folder / f"{name}_matches.png")
            if self.method is not None:
                own = self.method.pair_pictures(batch["src_img"][i], batch["trg_img"][i], output, i)
                for stem, content in own.items():
                    write_pair_file(self.folder / name, stem, content, batch["pair_id"][i])

    @torch.no_grad()
    def warp(self, batch: dict[str, Any], i: int) -> torch.Tensor | None:
        """Source ``i`` warped onto its target through the method's target -> source dense flow
        (for methods whose ``extras`` hold no ``"warped"``); None without a method."""
        if self.method is None:
            return None
        src, trg = batch["src_img"][i : i + 1], batch["trg_img"][i : i + 1]
        no_points = src.new_zeros(1, 0, 2)
        back = self.method(src, trg, no_points, batch["src_path"][i : i + 1], batch["trg_path"][i : i + 1], dense="backward").flow
        return warp_by_flow(src, back)[0]
