"""Pictures of predictions: keypoint matches on both images, marked against the ground truth.

:class:`PictureWriter` is the evaluation loop's ``on_pair`` callback. For the pairs of index < ``limit``
(the same pictures whichever process evaluates a pair, and whether or not a run was resumed)
it saves ``<pair>.png``: colours are per keypoint index and shared by both images; on the target,
a circle is the ground truth and a cross the prediction, joined by a line, green when the
prediction is correct at the middle alpha and red when not; a third panel shows the source warped
onto the target (a method's ``extras["warped"]``, else warped through its target -> source
flow, ``method(..., dense="backward")``, asked for the pictured pairs only). When the method returns sparse matches
(``extras["sparse_src"]``/``["sparse_trg"]``) it also saves ``<pair>_matches.png`` (both images side
by side, matches joined by lines in matching colours), and it lets the method write its own files
of the pair (:meth:`semcorr.methods.base.Matcher.save_pair_outputs`) into ``<pair>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from semcorr.io import atomic_write  # noqa: E402
from semcorr.methods.base import Matcher, MatchOutput  # noqa: E402
from semcorr.metrics.warping import warp_by_flow  # noqa: E402


def _show(ax: Any, img: torch.Tensor, title: str) -> None:
    ax.imshow(img.detach().cpu().permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")


def draw_pair(
    src_img: torch.Tensor,
    trg_img: torch.Tensor,
    src_kps: torch.Tensor,
    pred_kps: torch.Tensor,
    trg_kps: torch.Tensor | None,
    threshold: float | None,
    warped: torch.Tensor | None = None,
    title: str = "",
) -> plt.Figure:
    """Figure of one pair.

    Args:
        src_img / trg_img: (3, H, W) in [0, 1].
        src_kps / pred_kps: (N, 2) source keypoints and their predicted target positions.
        trg_kps: (N, 2) ground-truth target keypoints, or None (no ground truth).
        threshold: alpha * T in target pixels for the correct/wrong colouring, or None.
        warped: optional (3, Ht, Wt) source warped onto the target.
    """
    panels = 3 if warped is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(4 * panels, 4))
    _show(axes[0], src_img, "source")
    _show(axes[1], trg_img, "target: o truth, x prediction" if trg_kps is not None else "target")
    colours = plt.cm.hsv(torch.linspace(0, 1, max(len(src_kps), 1) + 1)[:-1].numpy())
    for k in range(len(src_kps)):
        c = colours[k]
        axes[0].scatter(*src_kps[k].tolist(), s=40, color=c, edgecolors="white", linewidths=0.8)
        px, py = pred_kps[k].tolist()
        if trg_kps is not None:
            gx, gy = trg_kps[k].tolist()
            axes[1].scatter(gx, gy, s=40, facecolors="none", edgecolors=c, linewidths=1.5)
            if threshold is not None and px == px:
                ok = (pred_kps[k] - trg_kps[k]).norm().item() <= threshold
                axes[1].plot([gx, px], [gy, py], color="lime" if ok else "red", linewidth=1)
        if px == px:  # not NaN
            axes[1].scatter(px, py, s=40, marker="x", color=c, linewidths=1.5)
    if warped is not None:
        _show(axes[2], warped, "source warped to target")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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


class PictureWriter:
    """Evaluation callback saving ``pictures/<index>_<pair_id>.png`` for the pairs of index < ``limit``.

    Args:
        folder: where the PNG files go.
        limit: pictures for the pairs of dataset index 0 .. limit - 1.
        alphas: PCK alphas; the middle one colours correct/wrong.
        method: the evaluated method, asked to write its own files of each pictured pair.
    """

    def __init__(
        self,
        folder: str | Path,
        limit: int = 20,
        alphas: Sequence[float] = (0.05, 0.1, 0.15),
        method: Matcher | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.limit = int(limit)
        self.alpha = float(sorted(alphas)[len(alphas) // 2])
        self.method = method

    def __call__(self, batch: dict[str, Any], output: MatchOutput, pair_pck: torch.Tensor) -> None:
        for i in range(batch["src_img"].shape[0]):
            if int(batch["index"][i]) >= self.limit:
                continue
            n = int(batch["n_kps"][i])
            has_gt = n > 0 and bool(torch.isfinite(batch["pck_threshold"][i]))
            score = pair_pck[i].tolist()
            title = batch["pair_id"][i] + (f"  PCK: {' / '.join(f'{100 * s:.0f}' for s in score)}" if has_gt else "")
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
            )
            name = f"{int(batch['index'][i]):06d}_" + "".join(
                ch if ch.isalnum() or ch in "-_." else "_" for ch in batch["pair_id"][i]
            )
            save_figure(fig, self.folder / f"{name}.png")
            if "sparse_src" in output.extras and "sparse_trg" in output.extras:
                matches = draw_matches(
                    batch["src_img"][i], batch["trg_img"][i],
                    output.extras["sparse_src"][i].cpu(), output.extras["sparse_trg"][i].cpu(), batch["pair_id"][i],
                )
                save_figure(matches, self.folder / f"{name}_matches.png")
            if self.method is not None:
                self.method.save_pair_outputs(self.folder / name, batch["src_img"][i], batch["trg_img"][i], output, i)

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

    def log_to(self, logger: Any) -> None:
        """Send the pictures in :attr:`folder` to a logger that takes images (W&B); others are skipped.

        The folder, not a list kept while writing: it also holds the pictures of the other DDP
        processes and of the pairs done before a resumed run's interruption."""
        saved = sorted(self.folder.glob("*.png"))
        if saved and hasattr(logger, "log_image"):
            logger.log_image(key="pairs", images=[str(p) for p in saved])
