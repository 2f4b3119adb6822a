"""Pictures of the analogy A : A' :: B : B' for the evaluation loop's picture hook.

:func:`save_analogy` writes, for one pair, ``<folder>/<name>_analogy.png`` (A, B', A', B side by
side, top-aligned on a white canvas when the heights differ, 4 pixels apart), ``<name>_a_prime.png``
(A') and ``<name>_b.png`` (B), each atomically (:func:`semcorr.io.atomic_write`). ``name`` is the
pair id with path separators and other characters unsafe in file names replaced by ``_``.

Typical use in a hook, for pair ``i`` of a batch::

    save_analogy(folder, batch["pair_id"][i], batch["src_img"][i], batch["trg_img"][i],
                 output.extras["analogy_a_prime"][i], output.extras["analogy_b"][i])
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from semcorr.io import atomic_write

#: Pixels of white between the panels of the side-by-side picture.
GAP = 4


def _to_pil(img: torch.Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> 8-bit RGB PIL image."""
    array = (img.detach().float().clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def _save_png(path: Path, image: Image.Image) -> Path:
    """Write ``image`` as PNG atomically."""
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


def save_analogy(
    folder: str | Path,
    pair_id: str,
    a: torch.Tensor,
    b_prime: torch.Tensor,
    a_prime: torch.Tensor,
    b: torch.Tensor,
) -> list[Path]:
    """Write the analogy pictures of one pair.

    Args:
        folder: output folder (created if missing).
        pair_id: name of the pair (made safe for file names).
        a: (3, Ha, Wa) source image A in [0, 1].
        b_prime: (3, Hb, Wb) target image B'.
        a_prime: (3, Ha, Wa) A' (``extras["analogy_a_prime"][i]``).
        b: (3, Hb, Wb) B (``extras["analogy_b"][i]``).

    Returns:
        The three paths written: side by side, A', B.
    """
    folder = Path(folder)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", pair_id).strip("_") or "pair"
    panels = [_to_pil(t) for t in (a, b_prime, a_prime, b)]
    width = sum(p.width for p in panels) + GAP * (len(panels) - 1)
    canvas = Image.new("RGB", (width, max(p.height for p in panels)), (255, 255, 255))
    x = 0
    for panel in panels:
        canvas.paste(panel, (x, 0))
        x += panel.width + GAP
    return [
        _save_png(folder / f"{name}_analogy.png", canvas),
        _save_png(folder / f"{name}_a_prime.png", panels[2]),
        _save_png(folder / f"{name}_b.png", panels[3]),
    ]
