"""VGG-19 feature extractor with the five levels used by NBB, Deep Image Analogy and SAM-Net.

Layer ids 0..4 are relu1_1, relu2_1, relu3_1, relu4_1, relu5_1: the outputs of
``vgg19().features[0:2]``, ``[2:7]``, ``[7:12]``, ``[12:21]`` and ``[21:30]``; strides 1, 2, 4, 8,
16. :attr:`Backbone.pyramid` is (0, 1, 2, 3, 4).

``net`` is the whole ``vgg19().features`` (its ``state_dict`` keys are torchvision's) so that
torchvision checkpoints load strictly; modules past relu5_1 (conv5_2..conv5_4, pool5) are never run.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.vgg import cfgs, make_layers

from .base import Backbone
from .geometry import stage_geometry

#: ``features`` index ranges of relu1_1 .. relu5_1.
VGG19_LEVELS: tuple[tuple[int, int], ...] = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))


class VGG19Backbone(Backbone):
    """VGG-19 (no batch norm) levels relu1_1..relu5_1 as layer ids 0..4."""

    def __init__(self, trainable: bool = False) -> None:
        """Build with random (PyTorch default conv) initialisation.

        Only the ``features`` part of VGG-19 is built (configuration ``"E"``): initialising the
        unused 120 M-parameter classifier would take seconds.

        Args:
            trainable: see :class:`Backbone`.
        """
        net = make_layers(cfgs["E"], batch_norm=False)
        stages = [net[start:stop] for start, stop in VGG19_LEVELS]
        super().__init__("vgg19", net, stage_geometry([[s] for s in stages]), (0, 1, 2, 3, 4), trainable)
        self._stages: list[nn.Sequential] = stages

    def _step(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run the ``features`` slice of level ``layer``; its output is both feature and next input."""
        out = self._stages[layer](x)
        return out, out
