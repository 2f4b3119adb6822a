"""Pictures of predictions: keypoint matches on both images, marked against the ground truth.

The drawing behind the evaluation's pictures (written by the Lightning callback
:class:`semcorr.lit.pictures.PictureWriter`, which picks the pairs): ``<index>_<pair>.png``
(:func:`draw_pair`):

* keypoint k has the same colour and number in both images; the colours are blues, purples,
  browns, greys and yellows, never the red and green that mean wrong and correct;
* on the target, a hollow circle is the ground truth; a prediction correct at the middle alpha
  (``||pred - gt|| <= alpha T``) is a dot inside a thick green ring joined to its truth by a green
  line, a wrong one a red cross joined by a dashed red line; a legend says so, with alpha and
  alpha T in pixels; keypoints without a prediction are counted in the legend;
* the title names the alphas of the PCK it shows (``PCK@0.05/0.1/0.15: 20 / 70 / 90 %``);
* a third panel shows the source warped onto the target (a method's ``extras["warped"]``, else
  warped through its target -> source flow, ``method(..., dense="backward")``, asked for the
  pictured pairs only).

For methods with sparse matches (``extras["sparse_src"]``/``["sparse_trg"]``)
``<index>_<pair>_matches.png`` (:func:`draw_matches`: both images side by side, matches joined by
lines); the method's own files of the pair go into ``<index>_<pair>/``. :func:`picture_kind` and
:func:`picture_pair_index` read a picture's kind and pair back from its path (the W&B keys and
captions of :mod:`semcorr.lit.loggers`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from semcorr.io import atomic_write  # noqa: E402
from semcorr.viz.strip import file_stem  # noqa: E402

#: Keypoint identity colours: none of them red or green (the colours of wrong and correct).
KEYPOINT_COLOURS = (
    "tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:cyan", "gold", "navy", "black",
)
CORRECT, WRONG = "lime", "red"


def keypoint_colour(k: int) -> str:
    """The identity colour of keypoint ``k`` (cycling through :data:`KEYPOINT_COLOURS`)."""
    return KEYPOINT_COLOURS[k % len(KEYPOINT_COLOURS)]


def _show(ax: Any, img: torch.Tensor, title: str) -> None:
    ax.imshow(img.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def _number(ax: Any, k: int, x: float, y: float) -> None:
    ax.annotate(str(k), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=6, color="white",
                bbox={"boxstyle": "round,pad=0.1", "facecolor": keypoint_colour(k), "edgecolor": "none", "alpha": 0.8})


def pair_title(pair_id: str, alphas: Sequence[float], pck: Sequence[float] | None) -> str:
    """``"<pair>  PCK@0.05/0.1/0.15: 20 / 70 / 90 %"`` (the pair alone without PCK)."""
    if pck is None:
        return pair_id
    return f"{pair_id}  PCK@{'/'.join(f'{a:g}' for a in alphas)}: " + " / ".join(f"{100 * s:.0f}" for s in pck) + " %"


def draw_pair(
    src_img: torch.Tensor,
    trg_img: torch.Tensor,
    src_kps: torch.Tensor,
    pred_kps: torch.Tensor,
    trg_kps: torch.Tensor | None,
    threshold: float | None,
    warped: torch.Tensor | None = None,
    title: str = "",
    alpha: float | None = None,
) -> plt.Figure:
    """Figure of one pair (see the module docstring for the marks).

    Args:
        src_img / trg_img: (3, H, W) in [0, 1].
        src_kps / pred_kps: (N, 2) source keypoints and their predicted target positions (NaN: none).
        trg_kps: (N, 2) ground-truth target keypoints, or None (no ground truth).
        threshold: alpha * T in target pixels deciding correct / wrong, or None.
        warped: optional (3, Ht, Wt) source warped onto the target.
        title: the figure title.
        alpha: the alpha of ``threshold``, for the legend.
    """
    panels = 3 if warped is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4.6))
    judged = trg_kps is not None and threshold is not None
    missing = correct = 0
    for k in range(len(src_kps)):
        colour = keypoint_colour(k)
        sx, sy = src_kps[k].tolist()
        axes[0].scatter(sx, sy, s=40, color=colour, edgecolors="white", linewidths=0.8, zorder=3)
        _number(axes[0], k, sx, sy)
        px, py = pred_kps[k].tolist()
        has_pred = bool(torch.isfinite(pred_kps[k]).all())
        missing += not has_pred
        if trg_kps is not None:
            gx, gy = trg_kps[k].tolist()
            axes[1].scatter(gx, gy, s=70, facecolors="none", edgecolors=colour, linewidths=1.8, zorder=3)
            _number(axes[1], k, gx, gy)
        if not has_pred:
            continue
        axes[1].scatter(px, py, s=16, color=colour, zorder=4)
        if judged:
            ok = (pred_kps[k] - trg_kps[k]).norm().item() <= threshold
            correct += ok
            axes[1].plot([gx, px], [gy, py], color=CORRECT if ok else WRONG, linewidth=1.2, linestyle="-" if ok else "--", zorder=2)
            if ok:
                axes[1].scatter(px, py, s=150, facecolors="none", edgecolors=CORRECT, linewidths=2.2, zorder=5)
            else:
                axes[1].scatter(px, py, s=110, marker="x", color=WRONG, linewidths=2.4, zorder=5)
    _show(axes[0], src_img, "source (keypoints numbered)")
    if judged:
        _show(axes[1], trg_img, f"target: {correct}/{len(src_kps)} correct at alpha = {alpha:g}")
    else:
        _show(axes[1], trg_img, "target: predictions" if trg_kps is None else "target")
    if trg_kps is None:
        handles = [Line2D([], [], marker="o", linestyle="", color="gray", markersize=4, label="prediction")]
    else:
        handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="gray",
                          markersize=8, label="ground truth")]
    if judged:
        handles += [
            Line2D([], [], marker="o", linestyle="-", color=CORRECT, markerfacecolor="none", markersize=10, markeredgewidth=2,
                   label=f"correct: within alpha T = {threshold:.1f} px (alpha = {alpha:g})"),
            Line2D([], [], marker="x", linestyle="--", color=WRONG, markersize=8, markeredgewidth=2, label="wrong"),
        ]
    if missing:
        handles.append(Line2D([], [], linestyle="", label=f"{missing} keypoint{'s' if missing > 1 else ''} without prediction (wrong)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    if warped is not None:
        _show(axes[2], warped, "source warped to target")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def draw_matches(
    src_img: torch.Tensor, trg_img: torch.Tensor, src_pts: torch.Tensor, trg_pts: torch.Tensor, title: str = ""
) -> plt.Figure:
    """Figure of sparse matches: source and target side by side, match k joined in colour k.

    Args:
        src_img / trg_img: (3, H, W) in [0, 1].
        src_pts / trg_pts: (K, 2) matched points (rows with NaN are skipped).
    """
    keep = torch.isfinite(src_pts).all(1) & torch.isfinite(trg_pts).all(1)
    src_pts, trg_pts = src_pts[keep], trg_pts[keep]
    hs, ws = src_img.shape[-2:]
    ht, wt = trg_img.shape[-2:]
    canvas = torch.ones(3, max(hs, ht), ws + wt)
    canvas[:, :hs, :ws] = src_img.detach().cpu().clamp(0, 1)
    canvas[:, :ht, ws:] = trg_img.detach().cpu().clamp(0, 1)
    fig, ax = plt.subplots(figsize=(8, 4 * max(hs, ht) / (ws + wt) * 2))
    _show(ax, canvas, title or f"{len(src_pts)} matches")
    colours = plt.cm.hsv(torch.linspace(0, 1, max(len(src_pts), 1) + 1)[:-1].numpy())
    for k in range(len(src_pts)):
        (x0, y0), (x1, y1) = src_pts[k].tolist(), trg_pts[k].tolist()
        ax.plot([x0, x1 + ws], [y0, y1], color=colours[k], linewidth=1)
        ax.scatter([x0, x1 + ws], [y0, y1], s=18, color=colours[k], edgecolors="white", linewidths=0.5)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: Path) -> Path:
    """Save a figure as PNG atomically and close it."""
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100))
    plt.close(fig)
    return path


def picture_name(index: int, pair_id: str) -> str:
    """The file stem of a pair's pictures: ``<index:06d>_<pair id made file-safe>``."""
    return f"{int(index):06d}_{file_stem(pair_id)}"


_INDEXED = re.compile(r"^(\d{6})_")


def picture_pair_index(path: Path, folder: Path) -> int | None:
    """The pair index of a picture under ``folder`` (None when the name carries none)."""
    match = _INDEXED.match(path.relative_to(folder).parts[0])
    return int(match.group(1)) if match else None


def picture_kind(path: Path, folder: Path) -> str:
    """What a picture under ``folder`` shows: ``keypoints`` (``<name>.png``), ``matches``
    (``<name>_matches.png``) or, for a method's own pictures in ``<name>/``, the file's stem
    without a trailing frame number (``analogy``, ``blend``, ``frame``...)."""
    parts = path.relative_to(folder).parts
    if len(parts) == 1:
        return "matches" if path.stem.endswith("_matches") else "keypoints"
    return re.sub(r"_\d+$", "", path.stem) or "outputs"
