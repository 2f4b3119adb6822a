"""Cross-domain image alignment and morphing from sparse pairs (NBB paper, section 5.1).

Given pairs ``alpha_i`` (image A) <-> ``beta_i`` (image B), both images are warped with moving
least squares (:mod:`.mls`) so that their points land on the midpoints
``eta_i = (alpha_i + beta_i) / 2``, and the two warped images are blended 50/50. Morph frames
generalise this to ``eta_i(t) = (1 - t) alpha_i + t beta_i`` with the cross-dissolve
``(1 - t) A_t + t B_t`` (a plain MLS morph; the paper's morphs use Liao et al. 2014, which is not
reproduced here). Warps are backward maps (output pixel -> input pixel, MLS with the roles of
the point sets swapped) sampled bilinearly by kornia's ``remap``; pixels mapped outside the
input are black.

Canvas: images of different sizes are aligned on a canvas whose size is interpolated the same way
(``(1 - t) size_A + t size_B``, rounded); for t = 1/2 that is the mean size.

:func:`align_pair` aligns (and morphs); :func:`alignment_pictures` names its images by file stem
and :func:`correspondence_record` makes the pairs JSON-ready, for the pictures of a pair
(:meth:`~.matcher.NeuralBestBuddies.pair_pictures`; the evaluation's picture writer writes them).

The MLS kind of the warps is ``kind`` (:mod:`.mls`; rigid by default, as the reference code: it
never reflects, so a crossing outlier does not fold the picture).
"""

from __future__ import annotations

import math

import torch
from kornia.geometry.transform import remap
from torch import Tensor

from .mls import mls_grid


def warp_to_points(
    img: Tensor, pts: Tensor, dst_pts: Tensor, out_hw: tuple[int, int], alpha: float = 1.0, grid_step: int = 4,
    kind: str = "rigid",
) -> Tensor:
    """Warp an image so that its points ``pts`` move to ``dst_pts`` (MLS, backward sampling).

    Args:
        img: (C, H, W) image.
        pts: (K, 2) (x, y) points in ``img``.
        dst_pts: (K, 2) where they must land, in the output frame.
        out_hw: (Ho, Wo) output size.
        alpha: MLS weight exponent.
        grid_step: MLS node spacing in pixels.
        kind: MLS kind (:data:`~.mls.MLS_KINDS`).

    Returns:
        (C, Ho, Wo) warped image (zeros outside ``img``; all zeros when K == 0).
    """
    back = mls_grid(dst_pts, pts, out_hw[0], out_hw[1], alpha, grid_step, kind)
    back = torch.nan_to_num(back, nan=-1e4)
    return remap(img[None].float(), back[None, ..., 0], back[None, ..., 1], align_corners=True)[0]


def morph_frame(
    img_a: Tensor, img_b: Tensor, pts_a: Tensor, pts_b: Tensor, t: float, alpha: float = 1.0, grid_step: int = 4,
    kind: str = "rigid",
) -> tuple[Tensor, Tensor, Tensor]:
    """One in-between frame at time ``t`` (0: geometry and colours of A, 1: of B).

    Args:
        img_a: (C, Ha, Wa) image A.
        img_b: (C, Hb, Wb) image B.
        pts_a: (K, 2) (x, y) points in A, finite.
        pts_b: (K, 2) matching points in B, finite.
        t: time in [0, 1].
        alpha: MLS weight exponent.
        grid_step: MLS node spacing in pixels.
        kind: MLS kind.

    Returns:
        ``(a_t, b_t, frame)``, each (C, H_t, W_t): A and B warped to the geometry
        ``(1 - t) pts_a + t pts_b`` and their cross-dissolve ``(1 - t) a_t + t b_t``.
    """
    hw = (
        round((1 - t) * img_a.shape[-2] + t * img_b.shape[-2]),
        round((1 - t) * img_a.shape[-1] + t * img_b.shape[-1]),
    )
    mid = (1 - t) * pts_a + t * pts_b
    a_t = warp_to_points(img_a, pts_a, mid, hw, alpha, grid_step, kind)
    b_t = warp_to_points(img_b, pts_b, mid, hw, alpha, grid_step, kind)
    return a_t, b_t, (1 - t) * a_t + t * b_t


def align_pair(
    img_a: Tensor, img_b: Tensor, pts_a: Tensor, pts_b: Tensor, steps: int = 0, alpha: float = 1.0, grid_step: int = 4,
    kind: str = "rigid",
) -> dict[str, Tensor]:
    """Align two images at the midpoint geometry of their pairs (section 5.1), optionally morph.

    Args:
        img_a: (3, Ha, Wa) image A in [0, 1].
        img_b: (3, Hb, Wb) image B in [0, 1].
        pts_a: (K, 2) (x, y) points in A (rows with NaN in either set are ignored).
        pts_b: (K, 2) matching points in B.
        steps: number of in-between morph frames (t = i / (steps + 1), i = 1..steps); 0: none.
        alpha: MLS weight exponent.
        grid_step: MLS node spacing in pixels.
        kind: MLS kind.

    Returns:
        Dict with ``"a_mid"``, ``"b_mid"`` (3, H, W) the two images warped to the midpoints
        (H, W: mean size), ``"blend"`` (3, H, W) their 50% blend, ``"midpoints"`` (K', 2) and,
        when ``steps > 0``, ``"frames"``: a list of ``steps`` (3, H_t, W_t) morph frames (sizes
        vary with t when the images differ in size).
    """
    ok = torch.isfinite(pts_a).all(dim=1) & torch.isfinite(pts_b).all(dim=1)
    pts_a, pts_b = pts_a[ok].float(), pts_b[ok].float()
    a_mid, b_mid, blend = morph_frame(img_a, img_b, pts_a, pts_b, 0.5, alpha, grid_step, kind)
    result: dict = {"a_mid": a_mid, "b_mid": b_mid, "blend": blend, "midpoints": 0.5 * (pts_a + pts_b)}
    if steps > 0:
        times = [i / (steps + 1) for i in range(1, steps + 1)]
        result["frames"] = [morph_frame(img_a, img_b, pts_a, pts_b, t, alpha, grid_step, kind)[2] for t in times]
    return result


def alignment_pictures(result: dict) -> dict[str, Tensor]:
    """The images of :func:`align_pair` by file stem, for :meth:`~.matcher.NeuralBestBuddies.pair_pictures`.

    Args:
        result: the dict returned by :func:`align_pair`.

    Returns:
        ``{"a_mid", "b_mid", "blend"}`` (3, H, W) images and ``"frame_001"``, ``"frame_002"``...
        for the morph frames.
    """
    pictures = {name: result[name] for name in ("a_mid", "b_mid", "blend")}
    for i, frame in enumerate(result.get("frames", []), start=1):
        pictures[f"frame_{i:03d}"] = frame
    return pictures


def correspondence_record(
    src_pts: Tensor, trg_pts: Tensor, scores: Tensor | None = None, kept: Tensor | None = None
) -> dict[str, list]:
    """The sparse pairs of one image pair as a JSON-ready dict.

    Format: ``{"pairs": [{"src": [x, y], "trg": [x, y], "score": float|null, "kept": bool|null},
    ...]}`` in image pixels (``kept``: whether the dense map interpolates the pair); rows with NaN
    (padding) are skipped.

    Args:
        src_pts: (K, 2) (x, y) source points, NaN-padded.
        trg_pts: (K, 2) target points.
        scores: optional (K,) scores (e.g. rank V of eq. 11).
        kept: optional (K,) bool, the pairs the dense map interpolates.
    """
    src = src_pts.detach().double().cpu()
    trg = trg_pts.detach().double().cpu()
    ok = torch.isfinite(src).all(dim=1) & torch.isfinite(trg).all(dim=1)
    pairs = []
    for i in torch.nonzero(ok).flatten().tolist():
        score = None if scores is None or not math.isfinite(float(scores[i])) else float(scores[i])
        pairs.append({
            "src": src[i].tolist(), "trg": trg[i].tolist(), "score": score,
            "kept": None if kept is None else bool(kept[i]),
        })
    return {"pairs": pairs}
