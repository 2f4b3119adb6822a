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

Feature layer: ``layer=None`` takes the backbone's pyramid level of stride 8 (VGG-19 relu4_1 = id
3 as in the paper, H = 4; MobileNetV2 ``features[6]``, 32 channels; ResNets the end of layer2).
The decoder's skip levels are the pyramid levels below it plus the layer itself
(VGG-19: relu1_1..relu4_1; MobileNetV2: ids 1, 3, 6 at strides 2, 4, 8).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from semcorr.backbones import Backbone
from semcorr.errors import ConfigError

from .affine import clamp_field, identity_field
from .blending import blend_features
from .correlation import attribute_weight, confidence, local_correlation, normalise_correlation
from .decoder import FeatureDecoder
from .matching import MatchingNetwork

#: Stride of the default matching layer (that of VGG-19 relu4_1).
DEFAULT_STRIDE = 8


def default_layer(backbone: Backbone) -> int:
    """The backbone's pyramid level of stride 8 (the first one if several), else the last level <= 8."""
    levels = [layer for layer in backbone.pyramid if backbone.stride(layer) <= DEFAULT_STRIDE]
    if not levels:
        raise ConfigError(
            f"backbone {backbone.name!r} has no feature of stride <= {DEFAULT_STRIDE}; set model.network.layer"
        )
    exact = [layer for layer in levels if backbone.stride(layer) == DEFAULT_STRIDE]
    return exact[0] if exact else levels[-1]


def skip_layers(backbone: Backbone, layer: int) -> list[int]:
    """Decoder skip levels: the pyramid levels below ``layer``, then ``layer`` (finest first)."""
    return [level for level in backbone.pyramid if level < layer] + [layer]


@dataclass
class SAMNetIteration:
    """Outputs of one iteration ``l``.

    Attributes:
        field: (B, 6, h, w) ``T^l`` on the source feature grid (see :mod:`.affine`).
        image: (B, 3, H, W) attribute-transferred image ``I^{s<-t,l}`` in [0, 1].
        confidence: (B, 1, h, w) ``alpha^l`` (eq. 9).
        attr_feature: (B, C, h, w) ``F^{s<-t,l}``, the features of ``image``.
    """

    field: Tensor
    image: Tensor
    confidence: Tensor
    attr_feature: Tensor


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
        layer: matching layer id; None: :func:`default_layer`.
        window_radius: radius of ``P_i`` (4: 9x9).
        blend_radius: radius of ``N_i`` in eq. 8 (1: 3x3).
        matching_channels: widths of the matching U-Net (:class:`.matching.MatchingNetwork`).
        decoder_convs: convolutions per decoder level (:class:`.decoder.FeatureDecoder`).
        droplink_p / droplink_test: ``P(b_h = 1)`` in training / ``b_h`` at test (0.9 / 0.5).
        iterations: default number of iterations L (5 in training, the paper uses 10 at test).
    """

    def __init__(
        self,
        backbone: Backbone,
        layer: int | None = None,
        window_radius: int = 4,
        blend_radius: int = 1,
        matching_channels: Sequence[int] = (64, 128, 256),
        decoder_convs: int = 2,
        droplink_p: float = 0.9,
        droplink_test: float = 0.5,
        iterations: int = 5,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        if layer is not None and layer not in backbone.layer_ids:
            raise ConfigError(
                f"model.network.layer={layer!r} is not a layer of backbone {backbone.name!r} "
                f"(ids {backbone.layer_ids[0]}..{backbone.layer_ids[-1]}); null picks the stride-8 level"
            )
        if int(window_radius) < 1 or int(blend_radius) < 0:
            raise ConfigError(
                f"model.network: window_radius must be >= 1 and blend_radius >= 0, got {window_radius}, {blend_radius}"
            )
        self.layer = default_layer(backbone) if layer is None else int(layer)
        self.skip_layers = skip_layers(backbone, self.layer)
        self.window_radius = int(window_radius)
        self.blend_radius = int(blend_radius)
        self.iterations = int(iterations)
        window = (2 * self.window_radius + 1) ** 2
        self.matching = MatchingNetwork(window, matching_channels, max_shift=self.window_radius)
        self.decoder = FeatureDecoder(
            [backbone.channels(level) for level in self.skip_layers], decoder_convs, droplink_p, droplink_test
        )

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
        skips = self.backbone(src_img, self.skip_layers)
        src = skips[-1]
        trg = self.backbone(trg_img, [self.layer])[0]
        b, _, h, w = src.shape
        field = identity_field(b, h, w, src.device, src.dtype)
        attr = src
        out: list[SAMNetIteration] = []
        for step in range(1, int(detached) + steps + 1):
            with torch.set_grad_enabled(torch.is_grad_enabled() and step > int(detached)):
                it = self.iterate(step, src, attr, trg, field, skips, tuple(src_img.shape[-2:]))
            field, attr = it.field, it.attr_feature
            if step > int(detached):
                out.append(it)
        return SAMNetOutput(iterations=out, src_feature=src, trg_feature=trg)

    def iterate(
        self, step: int, src: Tensor, attr: Tensor, trg: Tensor, field: Tensor, skips: list[Tensor], hw: tuple[int, int]
    ) -> SAMNetIteration:
        """Iteration ``step`` (1-based) from the previous field and attribute-transferred features."""
        lam = attribute_weight(step)
        corr = local_correlation(src, attr, trg, field, lam, self.window_radius)
        field = clamp_field(field + self.matching(normalise_correlation(corr)), trg.shape[-2], trg.shape[-1])
        alpha = confidence(corr)
        blended = blend_features(src, trg, field, alpha, lam, self.blend_radius)
        image = self.decoder(blended, skips, hw)
        attr = self.backbone(image, [self.layer])[0]
        return SAMNetIteration(field=field, image=image, confidence=alpha, attr_feature=attr)
