"""Attribute-transfer decoder of SAM-Net: features -> image, symmetric to the feature extractor,
with droplink skips from the source features (eq. 10).

The decoder climbs the skip levels ``h = H..1`` (the backbone's pyramid levels up to the matching
feature; VGG-19: relu4_1, relu3_1, relu2_1, relu1_1). At each level the decoded feature is
droplinked with the source feature of that level::

    F_h^{s<-t} = (1 - b_h) D_h(B^{s<-t}) + b_h F_h^s                                (eq. 10)

``D_H`` is the identity (the blended feature itself); below, each level upsamples (bilinear, to
the skip's size) and applies ``convs_per_level`` 3x3 convolutions + ReLU, the first mapping the
channels of level h+1 to those of level h. When the matching feature concatenates several layers
(:class:`~.network.SAMNet` ``layers``), a 1x1 convolution (:attr:`FeatureDecoder.lift`) maps its many
channels to ``project`` (those of its finest layer) and a ReLU follows the top droplink. The network
applies ``lift`` to ``F^s`` and ``F^t`` before blending: a 1x1 convolution commutes with eq. 8's
weighted mean and with the droplink (both weight sums are 1), so blending the lifted features is
lifting the blend, at a fraction of the cost (exactly wherever the blend samples the target map;
off the map it blends zeros instead of the lifted zero, the convolution's bias). After level 1 the decoder
upsamples to the image size if level 1 is coarser than the image (e.g. MobileNetV2, stride 2),
and a 3x3 convolution and a sigmoid give the RGB image in [0, 1].

The droplink reading. The paper: "b_h is a binary random variable [...] if b_h = 0, this becomes
the no-skip connected layer", "the probability of b_h is defined as 0.9 and in testing b_h is set
to 0.5", and the droplink exists because plain skips make "the decoder networks reconstruct an
image using only low-level features". Two readings of "the probability of b_h":

* ``keeps="decoded"`` (default): ``P(b_h = 0) = p = 0.9``: the decoded stream is kept and the
  source skip replaces it at a level in 10% of the draws. The decoder learns to decode the blended
  features, which carry the target's attributes, and the skips keep it from ignoring any level.
* ``keeps="skip"``: ``P(b_h = 1) = p = 0.9``: the source skip replaces the decoded feature in 90% of
  the draws at every level, top included, so the image depends on the blended features in only
  ``(1 - p)^H`` of the steps (1e-4 for H = 4): the decoder learns to reconstruct the source from
  its own skips and never learns to decode the blend (the first CPU preset read it this way).

At test ``b_h = test_value`` (0.5) at every level. Where the paper is silent: ``b_h`` is drawn per
sample and level; two convolutions per level (the VGG mirror would have 1-4), no normalisation
layers, sigmoid output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semcorr.errors import ConfigError

#: Readings of the droplink probability (:class:`DropLink`).
DROPLINK_KEEPS = ("decoded", "skip")


class DropLink(nn.Module):
    """Eq. 10's stochastic link between a decoded feature and the skipped source feature.

    Args:
        p: the paper's "probability of b_h" (0.9).
        keeps: what ``p`` is the probability of in training: ``"decoded"`` (``P(b_h = 0) = p``)
            or ``"skip"`` (``P(b_h = 1) = p``); see the module docstring.
        test_value: the fixed ``b_h`` in eval mode.
    """

    def __init__(self, p: float = 0.9, keeps: str = "decoded", test_value: float = 0.5) -> None:
        super().__init__()
        if keeps not in DROPLINK_KEEPS:
            raise ConfigError(f"model.network.droplink_keeps must be one of {DROPLINK_KEEPS}, got {keeps!r}")
        if not (0.0 <= float(p) <= 1.0 and 0.0 <= float(test_value) <= 1.0):
            raise ConfigError(
                f"model.network.droplink_p ({p}) and droplink_test ({test_value}) must lie in [0, 1]"
            )
        self.p = float(p)
        self.keeps = keeps
        self.test_value = float(test_value)

    @property
    def skip_probability(self) -> float:
        """``P(b_h = 1)`` in training: the probability that the source skip replaces the decoded feature."""
        return self.p if self.keeps == "skip" else 1.0 - self.p

    def forward(self, decoded: Tensor, skip: Tensor) -> Tensor:
        """``(1 - b) decoded + b skip``.

        Args:
            decoded / skip: (B, C, h, w).

        Returns:
            (B, C, h, w); in training ``b`` ~ Bernoulli(:attr:`skip_probability`) per sample, in
            eval ``b = test_value``.
        """
        if self.training:
            shape = (decoded.shape[0], 1, 1, 1)
            b = torch.bernoulli(torch.full(shape, self.skip_probability, device=decoded.device, dtype=decoded.dtype))
        else:
            b = decoded.new_tensor(self.test_value)
        return (1.0 - b) * decoded + b * skip

    def extra_repr(self) -> str:
        return f"p={self.p}, keeps={self.keeps!r}, test_value={self.test_value}"


class FeatureDecoder(nn.Module):
    """Decoder from the blended feature to the attribute-transferred image.

    Args:
        channels: channels of the skip levels, finest first (``C_1..C_H``; C_H = the matching feature).
        convs_per_level: 3x3 convolutions per level below H.
        droplink_p / droplink_keeps / droplink_test: see :class:`DropLink`.
        project: output channels of :attr:`lift`, the 1x1 convolution applied to the top-level
            features before they reach the decoder (multi-layer matching features); None: no
            convolution (``lift`` is the identity).
    """

    def __init__(
        self,
        channels: Sequence[int],
        convs_per_level: int = 2,
        droplink_p: float = 0.9,
        droplink_keeps: str = "decoded",
        droplink_test: float = 0.5,
        project: int | None = None,
    ) -> None:
        super().__init__()
        widths = [int(c) for c in channels]
        top = widths[-1] if project is None else int(project)
        self.lift: nn.Module = nn.Identity() if project is None else nn.Conv2d(widths[-1], top, 1)
        self.top_activation: nn.Module = nn.Identity() if project is None else nn.ReLU()
        self.levels = nn.ModuleList()
        for h in reversed(range(len(widths) - 1)):  # levels H-1 .. 1 (0-based index h)
            layers: list[nn.Module] = []
            for k in range(max(1, int(convs_per_level))):
                in_channels = (top if h == len(widths) - 2 else widths[h + 1]) if k == 0 else widths[h]
                layers += [nn.Conv2d(in_channels, widths[h], 3, padding=1), nn.ReLU(inplace=True)]
            self.levels.append(nn.Sequential(*layers))
        self.droplinks = nn.ModuleList([DropLink(droplink_p, droplink_keeps, droplink_test) for _ in widths])
        self.to_image = nn.Conv2d(widths[0] if len(widths) > 1 else top, 3, 3, padding=1)

    def forward(self, blended: Tensor, skips: Sequence[Tensor], image_hw: tuple[int, int]) -> Tensor:
        """Decode.

        Args:
            blended: (B, C, h, w) ``B^{s<-t,l}`` (eq. 8) of lifted features (C = ``project`` or C_H).
            skips: source features ``F_1^s..F_H^s``, each (B, C_h, h_h, w_h), finest first, the
                top one lifted (``lift(F_H^s)``).
            image_hw: (H, W) of the output image.

        Returns:
            (B, 3, H, W) image in [0, 1].
        """
        x = self.top_activation(self.droplinks[-1](blended, skips[-1]))
        for block, h in zip(self.levels, reversed(range(len(skips) - 1))):
            x = F.interpolate(x, size=skips[h].shape[-2:], mode="bilinear", align_corners=False)
            x = self.droplinks[h](block(x), skips[h])
        if tuple(x.shape[-2:]) != tuple(image_hw):
            x = F.interpolate(x, size=tuple(image_hw), mode="bilinear", align_corners=False)
        return torch.sigmoid(self.to_image(x))
