"""MobileNetV2 feature extractor: layer ids index ``torchvision.models.mobilenet_v2().features``.

Id i (0..18) is the output of ``features[i]``. Strides: id 0-1: 2, 2-3: 4, 4-6: 8, 7-13: 16,
14-18: 32. :attr:`Backbone.pyramid` is (1, 3, 6, 13, 17): the last block at each of the strides
2, 4, 8, 16, 32 (id 18 is the 1x1 conv to 1280 channels meant for the classifier, not a
spatial feature, so 17 stands for stride 32).
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models import mobilenet_v2

from .base import Backbone
from .geometry import stage_geometry


class MobileNetV2Backbone(Backbone):
    """MobileNetV2 ``features[0..18]`` as layer ids 0..18; ``net`` is that ``features`` module."""

    def __init__(self, trainable: bool = False) -> None:
        """Build with random (torchvision default) initialisation.

        Args:
            trainable: see :class:`Backbone`.
        """
        net = mobilenet_v2(weights=None).features
        geometry = stage_geometry([[block] for block in net])
        super().__init__("mobilenet_v2", net, geometry, (1, 3, 6, 13, 17), trainable)

    def _step(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run ``features[layer]``; its output is both feature and next input."""
        out = self.net[layer](x)
        return out, out
