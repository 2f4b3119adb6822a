"""The interface every method implements, trained or not, so the evaluation loop never branches.

A method maps a batch of image pairs and query points in the source images to points in the
target images, and, when the caller asks (``dense=``), a dense flow field, from ONE pass over the
pair: the evaluation loop asks once per batch for everything the dataset needs (keypoints, and
the flow for dense ground truth), as detectron2's evaluators take ``outputs = model(inputs)``.
``dense="forward"`` is the source -> target flow on the source grid (TSS flow accuracy);
``dense="backward"`` the target -> source flow on the target grid (mask transfer by warping,
pictures). Methods with a natural dense output (HPF, NBB, DIA, SAM-Net) give it from the same
matching; :meth:`Matcher.flow_from_points` is the generic fallback that transfers every pixel.

Conventions: images are (B, 3, H, W) float RGB in [0, 1] (each backbone applies its own
normalisation); points are (B, N, 2) pixel coordinates (x, y) of the image they lie in, padded
with NaN. A predicted point of NaN means "no prediction" and counts as wrong.

Methods write no files. They return images in ``MatchOutput.extras`` (the keys the picture writer
reads are :data:`PICTURE_EXTRAS`; each method documents its own) and, for the pairs that get
pictures, compute their own pictures in :meth:`Matcher.pair_pictures`; the evaluation's callbacks
(:mod:`semcorr.lit.pictures`) write them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from semcorr.grid import pixel_points

#: Values of the ``dense`` argument of :meth:`Matcher.forward` besides None.
DENSE_DIRECTIONS = ("forward", "backward")


@dataclass
class MatchOutput:
    """What a method returns for a batch of pairs.

    Attributes:
        points: (B, N, 2) target-image coordinates of the query source points; NaN where the
            query was padding or the method has no answer.
        extras: optional tensors for pictures and applications, keyed by name, e.g.
            ``"warped"`` (B, 3, Ht, Wt) source warped onto the target, ``"sparse_src"`` /
            ``"sparse_trg"`` (B, K, 2) sparse matches. Each method documents its own.
        flow: the dense flow asked for with ``dense=``, else None: ``"forward"`` (B, 2, Hs, Ws)
            source pixel (x, y) -> target pixel (x + flow[0, y, x], y + flow[1, y, x]);
            ``"backward"`` (B, 2, Ht, Wt) target -> source likewise; NaN where there is no answer.
    """

    points: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    flow: torch.Tensor | None = None


#: The ``extras`` keys the evaluation's picture writer reads from any method (each method's
#: docstring lists its own keys besides these).
PICTURE_EXTRAS = {
    "warped": "(B, 3, Ht, Wt) the source warped onto the target: the third panel of <pair>.png",
    "sparse_src": "(B, K, 2) sparse matches in the source, NaN-padded: drawn in <pair>_matches.png",
    "sparse_trg": "(B, K, 2) their points in the target",
}


@dataclass
class Strip:
    """Images of one pair shown side by side in one picture (e.g. DIA's A, B', A', B).

    Attributes:
        panels: (3, H_k, W_k) images in [0, 1], left to right (heights may differ).
        labels: optional name of each panel, written above it (one per panel).
    """

    panels: list[torch.Tensor]
    labels: list[str] | None = None


#: One file of :meth:`Matcher.pair_pictures`: a (3, H, W) image in [0, 1] (``<stem>.png``), a
#: :class:`Strip` (``<stem>.png``, the panels side by side) or a JSON-ready dict (``<stem>.json``,
#: to which the writer adds the pair's ``pair_id``).
PairFile = torch.Tensor | Strip | dict


class Matcher(nn.Module):
    """Base class of all methods (baselines, HPF, NBB, DIA, SAM-Net).

    Subclasses implement :meth:`forward`. ``src_ids`` / ``trg_ids`` name the images (e.g. their
    file paths) so that a method may cache per-image work across pairs sharing an image.
    """

    #: Points transferred per call in :meth:`flow_from_points` (bounds memory).
    dense_chunk: int = 16384
    #: How points are read out of the method's matches, for the protocol record
    #: (:mod:`semcorr.protocol`): e.g. ``"box"`` (HPF's box transfer), ``"argmax"`` (the ``nn``
    #: baseline); ``"native"``: the method's own rule (see its docstring).
    readout: str = "native"
    #: ``<dataset>/<split>`` of the pairs the method's weights were fit on (protocol record; e.g.
    #: PF-PASCAL warns when a model trained on its ``train`` split is evaluated on its test pairs).
    trained_on: tuple[str, ...] = ()

    def forward(
        self,
        src_img: torch.Tensor,
        trg_img: torch.Tensor,
        src_points: torch.Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
        dense: str | None = None,
    ) -> MatchOutput:
        """Transfer points from source to target, and give the dense flow when asked.

        Args:
            src_img: (B, 3, Hs, Ws) source images in [0, 1].
            trg_img: (B, 3, Ht, Wt) target images in [0, 1].
            src_points: (B, N, 2) query points (x, y) in source pixels, NaN-padded (N may be 0).
            src_ids / trg_ids: optional image names of length B, for caching.
            dense: None, ``"forward"`` or ``"backward"`` (module docstring).

        Returns:
            :class:`MatchOutput` with ``points`` of shape (B, N, 2) and ``flow`` when asked.
        """
        raise NotImplementedError

    def pair_pictures(
        self, src_img: torch.Tensor, trg_img: torch.Tensor, output: MatchOutput, index: int
    ) -> dict[str, PairFile]:
        """The method's own pictures of one pair (analogies, alignments, hybrids...), computed
        but never written: the evaluation's picture writer
        (:class:`semcorr.lit.pictures.PictureWriter`) writes each into the pair's folder, for the
        pairs that get pictures only (costly applications run there alone).

        Args:
            src_img / trg_img: (3, Hs, Ws) / (3, Ht, Wt) images of the pair, in [0, 1].
            output: the :class:`MatchOutput` of the batch holding the pair (its ``extras``).
            index: position of the pair in that batch.

        Returns:
            File stem -> :data:`PairFile` (a stem holds letters, digits, ``.``, ``_`` and ``-``); the
            default gives none.
        """
        return {}

    @torch.no_grad()
    def flow_from_points(
        self,
        src_img: torch.Tensor,
        trg_img: torch.Tensor,
        src_ids: list[str] | None = None,
        trg_ids: list[str] | None = None,
    ) -> torch.Tensor:
        """Dense source -> target flow made by transferring every source pixel through
        :meth:`forward` (in chunks of :attr:`dense_chunk` pixels), for methods without a natural
        dense output.

        Returns:
            (B, 2, Hs, Ws) flow (the convention of :class:`MatchOutput`); NaN where the method
            has no answer.
        """
        b, _, h, w = src_img.shape
        grid = pixel_points(h, w, src_img.device)[None].expand(b, -1, -1)
        out = torch.cat(
            [
                self(src_img, trg_img, grid[:, i : i + self.dense_chunk], src_ids, trg_ids).points
                for i in range(0, h * w, self.dense_chunk)
            ],
            dim=1,
        )
        return (out - grid).reshape(b, h, w, 2).permute(0, 3, 1, 2)
