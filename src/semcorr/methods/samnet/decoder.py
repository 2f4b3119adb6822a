"""Attribute-transfer decoder of SAM-Net: features -> image, symmetric to the feature extractor,
with droplink skips from the source features (eq. 10).

The decoder climbs the skip levels ``h = H..1`` (the backbone's pyramid levels up to the matching
layer; VGG-19: relu4_1, relu3_1, relu2_1, relu1_1). At each level the decoded feature is
droplinked with the source feature of that level::

    F_h^{s<-t} = (1 - b_h) D_h(B^{s<-t}) + b_h F_h^s                                (eq. 10)

``D_H`` is the identity (the blended feature itself); below, each level upsamples (bilinear, to
the skip's size) and applies ``convs_per_level`` 3x3 convolutions + ReLU, the first mapping the
channels of level h+1 to those of level h. After level 1 the decoder upsamples to the image size
if level 1 is coarser than the image (e.g. MobileNetV2, stride 2), and a 3x3 convolution and a
sigmoid give the RGB image in [0, 1].

Choices where the paper is silent: ``b_h`` is drawn per sample and level; "the probability of
b_h is 0.9" is read as ``P(b_h = 1) = 0.9`` (the skip is kept; the target attributes reach the
image only through the levels whose skip is dropped), and at test ``b_h = 0.5`` (a fixed average).
Two convolutions per level (the VGG mirror would have 1-4), no normalisation layers, sigmoid output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DropLink(nn.Module):
    """Eq. 10's stochastic link between a decoded feature and the skipped source feature.

    Args:
        p: training probability that ``b_h = 1`` (the source skip replaces the decoded feature).
        test_value: the fixed ``b_h`` in eval mode.
    """

    def __init__(self, p: float = 0.9, test_value: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)
        self.test_value = float(test_value)

    def forward(self, decoded: Tensor, skip: Tensor) -> Tensor:
        """``(1 - b) decoded + b skip``.

        Args:
            decoded / skip: (B, C, h, w).

        Returns:
            (B, C, h, w); in training ``b`` ~ Bernoulli(p) per sample, in eval ``b = test_value``.
        """
        if self.training:
            shape = (decoded.shape[0], 1, 1, 1)
            b = torch.bernoulli(torch.full(shape, self.p, device=decoded.device, dtype=decoded.dtype))
        else:
            b = decoded.new_tensor(self.test_value)
        return (1.0 - b) * decoded + b * skip

    def extra_repr(self) -> str:
        return f"p={self.p}, test_value={self.test_value}"


class FeatureDecoder(nn.Module):
    """Decoder from the blended feature to the attribute-transferred image.

    Args:
        channels: channels of the skip levels, finest first (``C_1..C_H``; C_H = the matching layer).
        convs_per_level: 3x3 convolutions per level below H.
        droplink_p / droplink_test: see :class:`DropLink`.
    """

    def __init__(
        self,
        channels: Sequence[int],
        convs_per_level: int = 2,
        droplink_p: float = 0.9,
        droplink_test: float = 0.5,
    ) -> None:
        super().__init__()
        widths = [int(c) for c in channels]
        self.levels = nn.ModuleList()
        for h in reversed(range(len(widths) - 1)):  # levels H-1 .. 1 (0-based index h)
            layers: list[nn.Module] = []
            for k in range(max(1, int(convs_per_level))):
                in_channels = widths[h + 1] if k == 0 else widths[h]
                layers += [nn.Conv2d(in_channels, widths[h], 3, padding=1), nn.ReLU(inplace=True)]
            self.levels.append(nn.Sequential(*layers))
        self.droplinks = nn.ModuleList([DropLink(droplink_p, droplink_test) for _ in widths])
        self.to_image = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, blended: Tensor, skips: Sequence[Tensor], image_hw: tuple[int, int]) -> Tensor:
        """Decode.

        Args:
            blended: (B, C_H, h, w) ``B^{s<-t,l}`` (eq. 8).
            skips: source features ``F_1^s..F_H^s``, each (B, C_h, h_h, w_h), finest first.
            image_hw: (H, W) of the output image.

        Returns:
            (B, 3, H, W) image in [0, 1].
        """
        x = self.droplinks[-1](blended, skips[-1])
        for block, h in zip(self.levels, reversed(range(len(skips) - 1))):
            x = F.interpolate(x, size=skips[h].shape[-2:], mode="bilinear", align_corners=False)
            x = self.droplinks[h](block(x), skips[h])
        if tuple(x.shape[-2:]) != tuple(image_hw):
            x = F.interpolate(x, size=tuple(image_hw), mode="bilinear", align_corners=False)
        return torch.sigmoid(self.to_image(x))
