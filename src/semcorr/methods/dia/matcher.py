"""``DeepImageAnalogy``: Deep Image Analogy (Liao et al., SIGGRAPH 2017) behind the
:class:`~semcorr.methods.base.Matcher` interface (``method=dia``).

The source image is A and the target image is B'. One analogy per pair gives everything:
keypoints move with the forward mapping Phi_{a->b} (each source pixel's pixel in the target; its
displacement field is sampled bilinearly at the query point, exact at integer pixels); the dense
flow is that displacement field (``dense="forward"``) or the reverse mapping Phi_{b->a} on the
target grid (``dense="backward"``).

Extras of :meth:`DeepImageAnalogy.forward`:

- ``"warped"`` (B, 3, Ht, Wt): the source warped onto the target, ``A(Phi_{b->a}(q))``;
- ``"analogy_a_prime"`` (B, 3, Hs, Ws): A' (source structure, target appearance);
- ``"analogy_b"`` (B, 3, Ht, Wt): B (target structure, source appearance).

With ``save_pictures=true`` each pictured pair also gets ``<pair>/analogy.png`` (A, B', A', B
side by side), ``a_prime.png`` and ``b.png`` (:meth:`DeepImageAnalogy.pair_pictures`).
"""

from __future__ import annotations

from typing import Any
from dataclasses import fields

import torch
from torch import Tensor

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError
from semcorr.grid import move_points, pixel_grid
from semcorr.methods.base import Matcher, MatchOutput, PairFile

from .analogy import AnalogyParams, AnalogyResult, deep_image_analogy
from .pictures import analogy_pictures


def nnf_to_flow(nnf: Tensor) -> Tensor:
    """(H, W, 2) long NNF (y, x) -> (2, H, W) float displacement (dx, dy)."""
    h, w, _ = nnf.shape
    grid = pixel_grid(h, w, nnf.device)
    return torch.stack([nnf[..., 1], nnf[..., 0]]).float() - grid


class DeepImageAnalogy(Matcher):
    """Deep Image Analogy as a matcher.

    Args:
        backbone: feature extractor (VGG-19 in the paper; MobileNetV2 and ResNets work).
        **settings: every field of :class:`~.analogy.AnalogyParams` (``pyramid``, ``pm_iters``,
            ``patch_sizes``, ...). There are no defaults in code: ``conf/method/dia.yaml`` (the
            fast default) and ``conf/method/dia_paper.yaml`` (the paper's settings) hold them.

    Raises:
        ConfigError: a setting is missing, unknown or out of range.
    """

    def __init__(self, backbone: Backbone, **settings: Any) -> None:
        super().__init__()
        self.backbone = backbone
        names = [f.name for f in fields(AnalogyParams)]
        unknown, missing = sorted(set(settings) - set(names)), [n for n in names if n not in settings]
        if unknown or missing:
            raise ConfigError(
                f"Deep Image Analogy: unknown settings {unknown} / missing settings {missing}; "
                f"the settings are {', '.join(names)} (see conf/method/dia.yaml)"
            )
        self.params = AnalogyParams(**settings)
        for level in self.params.levels:
            backbone.channels(self.params.layer(level))  # a ConfigError naming the valid ids

    def analyse(self, src_img: Tensor, trg_img: Tensor) -> list[AnalogyResult]:
        """Deep Image Analogy of every pair (A = source, B' = target).

        Runs outside inference mode (the deconvolutions need autograd), whatever the caller's mode.

        Args:
            src_img: (B, 3, Hs, Ws) in [0, 1].
            trg_img: (B, 3, Ht, Wt) in [0, 1].

        Returns:
            One :class:`~.analogy.AnalogyResult` per pair.
        """
        with torch.inference_mode(False):
            return [
                deep_image_analogy(self.backbone, src.clone(), trg.clone(), self.params)
                for src, trg in zip(src_img, trg_img)
            ]

    def forward(
        self,
        src_img: Tensor,
        trg_img: Tensor,
        src_points: Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
        dense: str | None = None,
    ) -> MatchOutput:
        """Transfer points with Phi_{a->b}; the flow when asked; extras ``warped``,
        ``analogy_a_prime``, ``analogy_b`` (see :meth:`Matcher.forward`).

        Args:
            src_img: (B, 3, Hs, Ws) in [0, 1].
            trg_img: (B, 3, Ht, Wt) in [0, 1].
            src_points: (B, N, 2) source points (x, y), NaN-padded.
            src_ids / trg_ids: unused (nothing is cached).
            dense: None, ``"forward"`` (Phi_{a->b}) or ``"backward"`` (Phi_{b->a}).

        Returns:
            :class:`MatchOutput`: ``points`` (B, N, 2) in target pixels (NaN for NaN queries),
            ``flow`` when asked, and the extras of the module docstring.
        """
        results = self.analyse(src_img, trg_img)
        points = torch.stack([move_points(p, nnf_to_flow(r.nnf_ab)) for p, r in zip(src_points, results)])
        warped = torch.stack([src[:, r.nnf_ba[..., 0], r.nnf_ba[..., 1]] for src, r in zip(src_img, results)])
        extras = {
            "warped": warped,
            "analogy_a_prime": torch.stack([r.a_prime for r in results]),
            "analogy_b": torch.stack([r.b for r in results]),
        }
        flow = None
        if dense is not None:
            flow = torch.stack([nnf_to_flow(r.nnf_ab if dense == "forward" else r.nnf_ba) for r in results])
        return MatchOutput(points=points, extras=extras, flow=flow)

    def pair_pictures(self, src_img: Tensor, trg_img: Tensor, output: MatchOutput, index: int) -> dict[str, PairFile]:
        """The analogy of a pictured pair (:func:`~.pictures.analogy_pictures`): ``analogy`` (A, B',
        A', B side by side), ``a_prime`` and ``b``, from this pair's ``extras``."""
        return analogy_pictures(src_img, trg_img, output.extras["analogy_a_prime"][index], output.extras["analogy_b"][index])
