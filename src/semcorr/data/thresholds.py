"""The PCK threshold T of the keypoint benchmarks, in one place.

A keypoint is correct when ``||pred - gt|| <= alpha * T`` (``<=``, as every reference code:
``torch.le``). The kinds are named after the HPF reference code's ``--thres img|bbox``:

* ``img``: ``max(H, W)`` of the target image (the PF-PASCAL protocol of CNNGeometric / WeakAlign /
  HPF, ``--thres img``);
* ``bbox``: ``max(w, h)`` of the target's box, ``w = x2 - x1``, ``h = y2 - y1``: the annotated
  object box where the dataset has one (PF-PASCAL ``bbox`` of the ``.mat`` files, SPair-71k
  ``trg_bndbox``, CUB ``bounding_boxes.txt``) and, for PF-WILLOW, which has none, the box spanned by
  the target's keypoints (what HPF's PF-WILLOW loader computes for ``--thres bbox``);
* ``none``: datasets without keypoints (T = NaN).

T is given in the frame the keypoints are compared in: the resized target (the default, HPF's
protocol) or the original one (``metrics.resolution=original``, DIFT's); a dataset computes both
with :func:`pck_threshold` (``pck_threshold`` / ``pck_threshold_original`` sample keys).

Pitfall this module exists for: the keypoint box of a PF-WILLOW pair is computed from that pair's
keypoints only, before batching, so the padding of a batch (NaN, or the -1 / 0 that other code
pads with) can never enter it. DHPF's and CHM's code computed it over padded keypoint tensors,
which inflated their published PF-WILLOW numbers by about 10 points (dhpf issue #3, CATs issue #6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Threshold kinds and what T is, for the protocol record and the README.
KINDS = {
    "img": "max(H, W) of the target image",
    "bbox": "max(w, h) of the target's box",
    "none": "no keypoints",
}


def keypoint_box(kps: np.ndarray) -> np.ndarray:
    """(N, 2) keypoints (x, y) -> (4,) box ``(x1, y1, x2, y2)`` they span; NaN rows are ignored.

    Raises:
        ValueError: no finite keypoint.
    """
    kps = np.asarray(kps, dtype=np.float64).reshape(-1, 2)
    kps = kps[np.isfinite(kps).all(axis=1)]
    if len(kps) == 0:
        raise ValueError("keypoint_box: no finite keypoint")
    return np.concatenate([kps.min(axis=0), kps.max(axis=0)])


def scale_box(box: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """(4,) box ``(x1, y1, x2, y2)`` in original pixels -> the same box after resizing by (sx, sy)."""
    return np.asarray(box, dtype=np.float64).reshape(4) * np.array([sx, sy, sx, sy])


def pck_threshold(kind: str, image_hw: Sequence[int], box: np.ndarray | None) -> float:
    """T of a pair in one frame (resized or original).

    Args:
        kind: ``"img"``, ``"bbox"`` or ``"none"`` (see the module docstring).
        image_hw: (H, W) of the target image in that frame.
        box: (4,) target box ``(x1, y1, x2, y2)`` in that frame (needed for ``"bbox"``).

    Returns:
        T in pixels of that frame; NaN for ``"none"``.
    """
    if kind == "img":
        return float(max(int(image_hw[0]), int(image_hw[1])))
    if kind == "bbox":
        if box is None:
            raise ValueError("pck_threshold: the bbox threshold needs the target box")
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
        return max(x2 - x1, y2 - y1)
    if kind == "none":
        return math.nan
    raise ValueError(f"unknown PCK threshold kind {kind!r}; valid: {', '.join(KINDS)}")
