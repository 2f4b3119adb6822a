"""The pictures of an analogy A : A' :: B : B', for the evaluation's picture writer.

:func:`analogy_pictures` gives, for one pair, the files of :meth:`DeepImageAnalogy.pair_pictures
<semcorr.methods.dia.matcher.DeepImageAnalogy.pair_pictures>` by stem: ``analogy`` (A, B', A', B
side by side, each panel labelled), ``a_prime`` (A') and ``b`` (B). Nothing is written here:
:class:`semcorr.lit.pictures.PictureWriter` writes them as ``<pair>/<stem>.png``.
"""

from __future__ import annotations

import torch

from semcorr.methods.base import PairFile, Strip

#: Labels of the panels of the ``analogy`` strip.
PANELS = ["A (source)", "B' (target)", "A': A's content, B's look", "B: B''s content, A's look"]


def analogy_pictures(a: torch.Tensor, b_prime: torch.Tensor, a_prime: torch.Tensor, b: torch.Tensor) -> dict[str, PairFile]:
    """The analogy pictures of one pair.

    Args:
        a: (3, Ha, Wa) source image A in [0, 1].
        b_prime: (3, Hb, Wb) target image B'.
        a_prime: (3, Ha, Wa) A' (``extras["analogy_a_prime"][i]``).
        b: (3, Hb, Wb) B (``extras["analogy_b"][i]``).

    Returns:
        ``{"analogy": Strip(A, B', A', B), "a_prime": A', "b": B}``.
    """
    return {"analogy": Strip([a, b_prime, a_prime, b], labels=list(PANELS)), "a_prime": a_prime, "b": b}
