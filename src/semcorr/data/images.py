"""Reading images from disk into float tensors, with errors that name the file and the fix.

Images come back as float32 tensors of shape (3, H, W) with values in [0, 1] (RGB order).
Grayscale, palette, RGBA and 16-bit files are converted to 8-bit RGB when ``convert=True``
(the default, with a warning naming the file), and rejected with an error that says how to
convert them when ``convert=False``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from semcorr.errors import DatasetNotFoundError, ImageError

log = logging.getLogger(__name__)

_WARNED: set[str] = set()


def _to_rgb8(img: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an (H, W, 3) uint8 RGB array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: a transparent background is not black paper.
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _fix(download: str | None) -> str:
    """How to get a good copy of a dataset's file."""
    if download:
        return f"replace it, or download the dataset again with `{download}`"
    return "replace it with a readable image"


def load_image(path: str | Path, convert: bool = True, download: str | None = None) -> torch.Tensor:
    """Load an image file as a float RGB tensor.

    Args:
        path: image file (any format PIL reads).
        convert: convert grayscale / palette / RGBA / 16-bit images to 8-bit RGB (warning once
            per file) instead of raising :class:`ImageError`.
        download: the command that downloads the image's dataset again, named in the errors
            (None: the file is the user's own).

    Returns:
        Tensor of shape (3, H, W), dtype float32, values in [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(
            f"Image file not found: {path}. Check the dataset root (dataset.root=...)"
            + (f" or download the dataset again with `{download}`." if download
               else " or download the dataset again (`python -m semcorr.data.download --list` lists them).")
        )
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "RGB":
                arr = np.asarray(img)
            elif not convert:
                raise ImageError(
                    f"Image {path} has mode {mode!r}, not 8-bit RGB. Convert it, e.g. "
                    f"`python -c \"from PIL import Image; Image.open('{path}').convert('RGB').save('{path}')\"`, "
                    "or set dataset.convert_images=true to convert on the fly."
                )
            else:
                if str(path) not in _WARNED:
                    _WARNED.add(str(path))
                    log.warning("Converting %s from mode %s to 8-bit RGB.", path, mode)
                arr = _to_rgb8(img)
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"Cannot read image {path} ({exc.__class__.__name__}: {exc}). The file is corrupt or "
            f"not an image: {_fix(download)}."
        ) from exc
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ImageError(f"Image {path} has unusable shape {arr.shape}; expected (H>=2, W>=2, 3): {_fix(download)}.")
    return torch.from_numpy(np.array(arr, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
