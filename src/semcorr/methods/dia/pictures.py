"""Pictures of the analogy A : A' :: B : B' for the evaluation loop's picture hook.

:func:`save_analogy` writes, for one pair, ``<folder>/<name>_analogy.png`` (A, B', A', B side by
side, each panel labelled, see :func:`semcorr.viz.strip.save_strip`), ``<name>_a_prime.png`` (A') and ``<name>_b.png``
(B), each atomically. ``name`` is :func:`~semcorr.viz.strip.file_stem` of the pair id.

Typical use in a hook, for pair ``i`` of a batch::

    save_analogy(folder, batch["pair_id"][i], batch["src_img"][i], batch["trg_img"][i],
                 output.extras["analogy_a_prime"][i], output.extras["analogy_b"][i])
"""

from __future__ import annotations

from pathlib import Path

import torch

from semcorr.viz.strip import file_stem, save_image, save_strip

#: Labels of the panels of ``<name>_analogy.png``.
PANELS = ("A (source)", "B' (target)", "A': A's content, B's look", "B: B''s content, A's look")


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
    folder, name = Path(folder), file_stem(pair_id)
    return [
        save_strip(folder / f"{name}_analogy.png", [a, b_prime, a_prime, b], labels=PANELS),
        save_image(folder / f"{name}_a_prime.png", a_prime),
        save_image(folder / f"{name}_b.png", b),
    ]
