"""The recurrent SAM-Net (Kim et al., "Semantic Attribute Matching Networks", CVPR 2019, Fig. 3).

One iteration ``l = 1..L`` (``F^{s<-t,0} = F^s``, ``T^0 = [I, 0]``, ``lambda^l = 1 - exp(-l)``):

1. ``C^l``: eq. 5 correlation of ``F^s`` / ``F^{s<-t,l-1}`` with the target on the 9x9 window of
   ``T^{l-1}`` (:mod:`.correlation`);
2. ``T^l = T^{l-1} + G(normalise(C^l))`` (eqs. 6-7, :mod:`.matching`), each matched point kept on the
   target map (:func:`~.affine.clamp_field`; the paper is silent, see :mod:`.losses` for why);
3. ``alpha^l`` = eq. 9 confidence of ``C^l``; ``B^l`` = eq. 8 blend of ``F^s`` and ``F^t``
   through ``T^l`` (:mod:`.blending`);
4. ``I^{s<-t,l}`` = decoder(``B^l``, droplinked source skips) (eq. 10, :mod:`.decoder`);
5. ``F^{s<-t,l}`` = the feature extractor applied to ``I^{s<-t,l}``.

Every iteration's field, image and confidence are kept (:class:`SAMNetIteration`) for the
pictures of Fig. 4. Gradients flow through all iterations (the paper caps L at 5 in training
"to avoid the gradient vanishing and exploding problem"). Training may run a few iterations without
gradients first (``detached``; the paper is silent): the L trained iterations then also learn to
continue a field already under way, which is what the test's iterations beyond L do.

Feature (the paper: VGG-19 relu4_1, H = 4). ``layers=None`` takes the backbone's pyramid level of
stride 8 (VGG-19 relu4_1 = id 3; MobileNetV2 ``features[6]``, 32 channels; ResNets the end of
layer2). A list of several ids gives a multi-layer feature (a departure, as the hyperpixels of HPF):
each layer is upsampled bilinearly to the grid of the finest one and the layers are concatenated
along channels, for ``F^s``, ``F^t`` and ``F^{s<-t}`` alike. The decoder's skip levels are the
pyramid levels below the finest layer, then the matching feature itself (VGG-19: relu1_1..relu4_1;
MobileNetV2 with ``layers=[4, ...]``: ids 1 and 3 at strides 2 and 4).

Coarse-to-fine search (a departure; the paper has one scale, the authors' earlier RTNs code iterates
on stride 16 before stride 8): the first ``coarse_iterations`` iterations read the correlation window
with its entries ``coarse_dilation`` cells apart (a 9x9 window spanning +-8 cells for dilation 2)
and regress their update with a matching network of their own; the later iterations use the
paper's dense window. Same grid, same features: only the search range changes.

Initial field (a departure): the paper starts from ``T^0 = [I, 0]`` (``init="identity"``); a 9x9
window moves a field by at most a few cells per iteration, too little for the displacements
between two instances. ``init="translation"`` starts from the whole-image translation that most
cells' best matches vote for (:func:`~.correlation.voted_translation`, the coarsest level of a
coarse-to-fine search: one cell of the size of the image), and the iterations refine locally
from there. ``init="argmax"`` starts every cell at its own most similar target cell
(:func:`~.correlation.argmax_field`), outliers included, which the local window cannot correct
(numbers in README).

``attribute_weight="zero"`` sets ``lambda^l = 0`` in eq. 5 only (the matching reads ``F^s``, the
paper's "wo/Att." ablation for the matching); the blend of eq. 8, the decoder and the losses keep
``lambda^l = 1 - exp(-l)``, so the attribute-transferred image is still made and trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError

from .affine import FIELD_CHANNELS, clamp_field, identity_field, translation_field
from .blending import blend_features
from .correlation import (
    ATTRIBUTE_WEIGHTS,
    attribute_weight,
    argmax_field,
    confidence,
    correlation_volume,
    local_correlation,
    matching_weight,
    mixed_volume,
    normalise_correlation,
    voted_translation,
)
from .decoder import FeatureDecoder
from .matching import MatchingNetwork, field_features

#: Stride of the default matching layer (that of VGG-19 relu4_1).
DEFAULT_STRIDE = 8

#: Initial fields (:class:`SAMNet` ``init``).
INITS = ("identity", "translation", "argmax")


def default_layer(backbone: Backbone) -> int:
    """The backbone's pyramid level of stride 8 (the first one if several), else the last level <= 8."""
    levels = [layer for layer in backbone.pyramid if backbone.stride(layer) <= DEFAULT_STRIDE]
    if not levels:
        raise ConfigError(
            f"backbone {backbone.name!r} has no feature of stride <= {DEFAULT_STRIDE}; set model.network.layers"
        )
    exact = [layer for layer in levels if backbone.stride(layer) == DEFAULT_STRIDE]
    return exact[0] if exact else levels[-1]


def skip_layers(backbone: Backbone, layer: int) -> list[int]:
    """Decoder skip levels below the matching feature: the pyramid levels below ``layer``, finest first."""
    return [level for level in backbone.pyramid if level < layer]


def check_layers(backbone: Backbone, layers: int | Sequence[int] | None) -> list[int]:
    """The matching layer ids, sorted (``None``: :func:`default_layer`); the first, the finest, is the grid."""
    if layers is None:
        return [default_layer(backbone)]
    ids = [layers] if isinstance(layers, int) else list(layers)
    bad = [layer for layer in ids if layer not in backbone.layer_ids]
    if not ids or bad or len(set(ids)) != len(ids):
        raise ConfigError(
            f"model.network.layers={layers!r} must be distinct layer ids of backbone {backbone.name!r} "
            f"(ids {backbone.layer_ids[0]}..{backbone.layer_ids[-1]}); null picks the stride-8 level"
        )
    return sorted(int(layer) for layer in ids)


@dataclass
class SAMNetIteration:
    """Outputs of one iteration ``l``.

    Attributes:
        field: (B, 6, h, w) ``T^l`` on the source feature grid (see :mod:`.affine`).
        image: (B, 3, H, W) attribute-transferred image ``I^{s<-t,l}`` in [0, 1].
        confidence: (B, 1, h, w) ``alpha^l`` (eq. 9).
        attr_feature: (B, C, h, w) ``F^{s<-t,l}``, the features of ``image``.

    With ``attribute_weight="zero"`` nothing reads the attribute path of an iteration before the
    last, so it is not computed there: ``image``, ``confidence`` and ``attr_feature`` are None for
    those iterations (the field is always there).
    """

    field: Tensor
    image: Tensor | None
    confidence: Tensor | None
    attr_feature: Tensor | None


@dataclass
class SAMNetOutput:
    """Outputs of a forward pass.

    Attributes:
        iterations: one :class:`SAMNetIteration` per iteration, in order.
        src_feature / trg_feature: (B, C, h, w) ``F^s`` and ``F^t``.
    """

    iterations: list[SAMNetIteration]
    src_feature: Tensor
    trg_feature: Tensor

    @property
    def final(self) -> SAMNetIteration:
        """The last iteration (``L``)."""
        return self.iterations[-1]


class SAMNet(nn.Module):
    """Semantic attribute matching network.

    Args:
        backbone: feature extractor (frozen unless built with ``trainable=True``).
        layers: matching layer id, or several (multi-layer feature, see the module docstring);
            None: :func:`default_layer`.
        window_radius: radius of ``P_i`` (4: 9x9).
        blend_radius: radius of ``N_i`` in eq. 8 (1: 3x3).
        matching_channels: widths of the matching U-Net (:class:`.matching.MatchingNetwork`).
        decoder_convs: convolutions per decoder level (:class:`.decoder.FeatureDecoder`).
        droplink_p / droplink_keeps / droplink_test: eq. 10's probability, its reading and the
            test value (:class:`.decoder.DropLink`).
        iterations: default number of iterations L (5 in training, the paper uses 10 at test).
        attribute_weight: ``"paper"`` (``lambda^l = 1 - exp(-l)`` in eq. 5) or ``"zero"``.
        coarse_iterations: leading iterations with the dilated window (0: none, the paper).
        coarse_dilation: spacing of their window entries in cells.
        init: the initial field: ``"identity"`` (the paper), ``"translation"`` or ``"argmax"``.
        field_input: also give the matching network the current field (:mod:`.matching`; the
            paper: False).
    """

    def __init__(
        self,
        backbone: Backbone,
        layers: int | Sequence[int] | None = None,
        window_radius: int = 4,
        blend_radius: int = 1,
        matching_channels: Sequence[int] = (64, 128, 256),
        decoder_convs: int = 2,
        droplink_p: float = 0.9,
        droplink_keeps: str = "decoded",
        droplink_test: float = 0.5,
        iterations: int = 5,
        attribute_weight: str = "paper",
        coarse_iterations: int = 0,
        coarse_dilation: int = 2,
        init: str = "identity",
        field_input: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if int(window_radius) < 1 or int(blend_radius) < 0:
            raise ConfigError(
                f"model.network: window_radius must be >= 1 and blend_radius >= 0, got {window_radius}, {blend_radius}"
            )
        if attribute_weight not in ATTRIBUTE_WEIGHTS:
            raise ConfigError(f"model.network.attribute_weight must be one of {ATTRIBUTE_WEIGHTS}, got {attribute_weight!r}")
        if init not in INITS:
            raise ConfigError(f"model.network.init must be one of {INITS}, got {init!r}")
        if int(coarse_iterations) < 0 or int(coarse_dilation) < 1:
            raise ConfigError(
                f"model.network: coarse_iterations must be >= 0 and coarse_dilation >= 1, "
                f"got {coarse_iterations}, {coarse_dilation}"
            )
        self.layers = check_layers(backbone, layers)
        self.skip_layers = skip_layers(backbone, self.layers[0])
        self.window_radius = int(window_radius)
        self.blend_radius = int(blend_radius)
        self.iterations = int(iterations)
        self.attribute_weight = attribute_weight
        self.coarse_iterations, self.coarse_dilation = int(coarse_iterations), int(coarse_dilation)
        self._settings = {
            "layers": list(self.layers),
            "window_radius": self.window_radius,
            "blend_radius": self.blend_radius,
            "matching_channels": [int(c) for c in matching_channels],
            "decoder_convs": int(decoder_convs),
            "droplink_p": float(droplink_p),
            "droplink_keeps": str(droplink_keeps),
            "droplink_test": float(droplink_test),
            "iterations": self.iterations,
            "attribute_weight": attribute_weight,
            "coarse_iterations": self.coarse_iterations,
            "coarse_dilation": self.coarse_dilation,
            "init": init,
            "field_input": bool(field_input),
        }
        self.init = init
        self.field_input = bool(field_input)
        inputs = (2 * self.window_radius + 1) ** 2 + (FIELD_CHANNELS if self.field_input else 0)
        self.matching = MatchingNetwork(inputs, matching_channels, max_shift=self.window_radius)
        self.coarse_matching = (
            MatchingNetwork(inputs, matching_channels, max_shift=self.window_radius * self.coarse_dilation)
            if self.coarse_iterations > 0
            else None
        )
        feature_channels = sum(backbone.channels(layer) for layer in self.layers)
        project = backbone.channels(self.layers[0]) if len(self.layers) > 1 else None
        self.decoder = FeatureDecoder(
            [backbone.channels(level) for level in self.skip_layers] + [feature_channels],
            decoder_convs,
            droplink_p,
            droplink_keeps,
            droplink_test,
            project=project,
        )

    def settings(self) -> dict[str, Any]:
        """The constructor's arguments but the backbone, as plain values:
        ``SAMNet(backbone, **net.settings())`` builds the same network (checkpoints store them)."""
        return dict(self._settings)

    def features(self, img: Tensor, with_skips: bool = False) -> tuple[Tensor, list[Tensor]]:
        """The matching feature of an image, and the decoder's source skips below it.

        Args:
            img: (B, 3, H, W) in [0, 1].
            with_skips: also return the skip levels (the source image).

        Returns:
            ``(feature, skips)``: (B, C, h, w) with C the channels of :attr:`layers` summed and
            (h, w) the grid of the finest; ``skips`` the :attr:`skip_layers` features, finest
            first (empty without ``with_skips``).
        """
        wanted = self.layers + (self.skip_layers if with_skips else [])
        found = self.backbone(img, wanted)
        parts, skips = found[: len(self.layers)], found[len(self.layers) :]
        size = parts[0].shape[-2:]
        parts = [p if p.shape[-2:] == size else F.interpolate(p, size=size, mode="bilinear", align_corners=False) for p in parts]
        return (parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)), skips

    def forward(
        self, src_img: Tensor, trg_img: Tensor, iterations: int | None = None, detached: int = 0
    ) -> SAMNetOutput:
        """Run ``detached`` iterations without gradients, then L iterations.

        Args:
            src_img: (B, 3, H, W) source images in [0, 1].
            trg_img: (B, 3, H', W') target images in [0, 1].
            iterations: L (default: :attr:`iterations`).
            detached: iterations run first under ``torch.no_grad`` (training: the L iterations with
                gradients then start from a field that is already under way, as iterations L+1, L+2...
                at test do; they count in ``lambda^l``). Not in the output.

        Returns:
            :class:`SAMNetOutput` of the L iterations; features are (B, C, h, w) with h ~ H / stride.
        """
        steps = self.iterations if iterations is None else int(iterations)
        if steps < 1 or int(detached) < 0:
            raise ConfigError(f"SAM-Net needs at least one iteration and detached >= 0, got {steps}, {detached}")
        src, skips = self.features(src_img, with_skips=True)
        trg, _ = self.features(trg_img)
        lifted = (self.decoder.lift(src), self.decoder.lift(trg))
        skips = [*skips, lifted[0]]
        volume = correlation_volume(src, trg)
        b, _, h, w = src.shape
        if self.init == "argmax":
            field = argmax_field(volume, (h, w))
        elif self.init == "translation":
            field = clamp_field(translation_field(voted_translation(volume, (h, w)), h, w), trg.shape[-2], trg.shape[-1])
        else:
            field = identity_field(b, h, w, src.device, src.dtype)
        attr = src
        out: list[SAMNetIteration] = []
        last = int(detached) + steps
        for step in range(1, last + 1):
            with torch.set_grad_enabled(torch.is_grad_enabled() and step > int(detached)):
                it = self.iterate(step, volume, attr, trg, field, lifted, skips, tuple(src_img.shape[-2:]), step == last)
            field = it.field
            attr = attr if it.attr_feature is None else it.attr_feature
            if step > int(detached):
                out.append(it)
        return SAMNetOutput(iterations=out, src_feature=src, trg_feature=trg)

    def iterate(
        self,
        step: int,
        volume: Tensor,
        attr: Tensor,
        trg: Tensor,
        field: Tensor,
        lifted: tuple[Tensor, Tensor],
        skips: list[Tensor],
        hw: tuple[int, int],
        last: bool = True,
    ) -> SAMNetIteration:
        """Iteration ``step`` (1-based) from the previous field and attribute-transferred features.

        ``volume``: the :func:`~.correlation.correlation_volume` of ``F^s`` and ``F^t``;
        ``lifted``: ``F^s`` and ``F^t`` through the decoder's :attr:`~.decoder.FeatureDecoder.lift`
        (what eq. 8 blends); ``skips``: the decoder's source skips, the lifted ``F^s`` last;
        ``last``: the final iteration (with ``attribute_weight="zero"`` the only one whose attribute
        path is computed).
        """
        coarse = step <= self.coarse_iterations
        matching = self.coarse_matching if coarse else self.matching
        dilation = self.coarse_dilation if coarse else 1
        mixed = mixed_volume(volume, attr, trg, matching_weight(step, self.attribute_weight))
        corr = local_correlation(mixed, field, self.window_radius, dilation)
        inputs = normalise_correlation(corr)
        if self.field_input:
            inputs = torch.cat([inputs, field_features(field)], dim=1)
        field = clamp_field(field + matching(inputs), trg.shape[-2], trg.shape[-1])
        if self.attribute_weight == "zero" and not last:
            return SAMNetIteration(field=field, image=None, confidence=None, attr_feature=None)
        alpha = confidence(corr)
        blended = blend_features(lifted[0], lifted[1], field, alpha, attribute_weight(step), self.blend_radius)
        image = self.decoder(blended, skips, hw)
        attr, _ = self.features(image)
        return SAMNetIteration(field=field, image=image, confidence=alpha, attr_feature=attr)
