"""Reading and writing Middlebury ``.flo`` optical-flow files (the format of the TSS ground truth).

Layout of a ``.flo`` file (little-endian, Middlebury flow-code convention):

======== ========= ==============================================================
bytes    type      content
======== ========= ==============================================================
0-3      float32   tag 202021.25 (the ASCII bytes ``PIEH``), a sanity check
4-7      int32     width W
8-11     int32     height H
12-...   float32   H * W * 2 values, row-major, interleaved (u, v) per pixel
======== ========= ==============================================================

``u`` is the horizontal and ``v`` the vertical displacement in pixels: pixel (x, y) of the first
image corresponds to (x + u, y + v) in the second. Middlebury marks unknown flow with values whose
magnitude exceeds 1e9 (``UNKNOWN_FLOW_THRESH``; the files write 1e10). :func:`read_flo` turns those
into NaN by default and :func:`write_flo` writes NaN back as 1e10, so NaN is the only "unknown"
marker inside semcorr.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semcorr.errors import AnnotationError, DatasetNotFoundError

#: The float32 tag at the start of every .flo file (bytes "PIEH").
FLO_TAG = 202021.25
#: Components with a larger magnitude mark unknown flow (Middlebury convention).
UNKNOWN_FLOW_THRESH = 1e9
#: Value written for unknown flow.
UNKNOWN_FLOW = 1e10


def read_flo(path: str | Path, unknown_to_nan: bool = True) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Args:
        path: the file.
        unknown_to_nan: replace both components of pixels with ``|u| > 1e9`` or ``|v| > 1e9``
            by NaN (otherwise the raw values, typically 1e10, are kept).

    Returns:
        (H, W, 2) float32 array of (u, v) displacements in pixels.

    Raises:
        DatasetNotFoundError: the file does not exist.
        AnnotationError: the tag, size or length is wrong (truncated or not a .flo file).
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"Flow file not found: {path}. Check the dataset root (dataset.root=...).")
    raw = path.read_bytes()
    if len(raw) < 12:
        raise AnnotationError(f"{path} is too short ({len(raw)} bytes) to be a .flo file; re-download the dataset.")
    tag = float(np.frombuffer(raw, dtype="<f4", count=1, offset=0)[0])
    if tag != FLO_TAG:
        raise AnnotationError(
            f"{path} is not a Middlebury .flo file (tag {tag!r}, expected {FLO_TAG}); re-download the dataset."
        )
    width, height = (int(v) for v in np.frombuffer(raw, dtype="<i4", count=2, offset=4))
    if width <= 0 or height <= 0 or width > 100_000 or height > 100_000:
        raise AnnotationError(f"{path} has an invalid size {width}x{height}; the file is corrupt.")
    expected = 12 + 4 * 2 * width * height
    if len(raw) != expected:
        raise AnnotationError(
            f"{path} has {len(raw)} bytes, expected {expected} for a {width}x{height} flow; the file is "
            "truncated or corrupt: re-download the dataset."
        )
    flow = np.frombuffer(raw, dtype="<f4", offset=12).reshape(height, width, 2).astype(np.float32)
    if unknown_to_nan:
        unknown = (np.abs(flow) > UNKNOWN_FLOW_THRESH).any(axis=-1) | ~np.isfinite(flow).all(axis=-1)
        flow[unknown] = np.nan
    return flow


def write_flo(path: str | Path, flow: np.ndarray) -> None:
    """Write a flow field as a Middlebury ``.flo`` file.

    Args:
        path: output file (parent folders are created).
        flow: (H, W, 2) array of (u, v); NaN or infinite components are written as 1e10 (unknown).
            A (2, H, W) torch-style array is accepted too (transposed first).
    """
    flow = np.asarray(flow, dtype=np.float32)
    if flow.ndim == 3 and flow.shape[0] == 2 and flow.shape[-1] != 2:
        flow = flow.transpose(1, 2, 0)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"write_flo expects an (H, W, 2) flow, got shape {flow.shape}")
    flow = flow.copy()
    unknown = ~np.isfinite(flow).all(axis=-1)
    flow[unknown] = UNKNOWN_FLOW
    height, width = flow.shape[:2]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(np.array([FLO_TAG], dtype="<f4").tobytes())
        fh.write(np.array([width, height], dtype="<i4").tobytes())
        fh.write(np.ascontiguousarray(flow, dtype="<f4").tobytes())
