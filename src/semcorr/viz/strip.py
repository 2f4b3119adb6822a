"""Images side by side, written as PNG files (the methods' own pictures of a pair, written by the
evaluation's picture writer, :mod:`semcorr.lit.pictures`).

:func:`save_strip` puts (3, H, W) images in [0, 1] next to each other, top-aligned on a white canvas
when the heights differ, :data:`GAP` pixels apart, optionally each under a label (the panel's
name: ``A (source)``, ``B' (target)``...); :func:`save_image` writes one image. Both write
atomically (:func:`semcorr.io.atomic_write`). :func:`file_stem` turns a pair id into a safe file
name (path separators and other unsafe characters become ``_``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from semcorr.io import atomic_write, safe_stem

#: Pixels of white between the images of a strip.
GAP = 4
#: Height in pixels of the label row above the panels of a labelled strip.
LABEL_HEIGHT = 14


def file_stem(pair_id: str) -> str:
    """A file-name-safe stem for a pair id (:func:`semcorr.io.safe_stem`; ``"pair"`` when empty)."""
    return safe_stem(pair_id, fallback="pair")


def to_pil(img: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> 8-bit RGB PIL image."""
    array = (img.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def save_image(path: Path, img: torch.Tensor) -> Path:
    """Write a (3, H, W) image in [0, 1] as PNG atomically; returns ``path``."""
    picture = to_pil(img)
    return atomic_write(Path(path), lambda tmp: picture.save(tmp, format="PNG"))


def save_strip(path: Path, images: Sequence[torch.Tensor], labels: Sequence[str] | None = None) -> Path:
    """Write (3, H_k, W_k) images in [0, 1] side by side as one PNG; returns ``path``.

    Args:
        path: the PNG file.
        images: the panels, left to right.
        labels: optional name of each panel, written above it.
    """
    panels = [to_pil(t) for t in images]
    if labels is not None and len(labels) != len(panels):
        raise ValueError(f"{len(labels)} labels for {len(panels)} panels")
    top = LABEL_HEIGHT if labels else 0
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    canvas = Image.new("RGB", (width, top + max(p.height for p in panels)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    x = 0
    for k, panel in enumerate(panels):
        canvas.paste(panel, (x, top))
        if labels:
            draw.text((x + 2, 1), labels[k], fill=(0, 0, 0))
        x += panel.width + GAP
    return atomic_write(Path(path), lambda tmp: canvas.save(tmp, format="PNG"))
