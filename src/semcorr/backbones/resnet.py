"""ResNet-50/101 and FCN-ResNet101 feature extractors in the Hyperpixel Flow layer convention.

Layer ids (HPF): id 0 is the stem output ``maxpool(relu(bn1(conv1(x))))`` (stride 4); id k >= 1 is
the k-th bottleneck counted over layer1..layer4, taken as ``bn3(conv3(.)) + identity`` BEFORE the
block's final ReLU. The next block still receives the ReLU'd tensor, exactly as in torchvision.
ResNet-50 has ids 0..16 (blocks 3, 4, 6, 3), ResNet-101 ids 0..33 (blocks 3, 4, 23, 3).

FCN-ResNet101 is the ``backbone`` of torchvision's ``fcn_resnet101``: a ResNet-101 whose layer3
and layer4 trade stride for dilation, so its strides stop at 8. Its geometry is computed (ids 8
and 9 have jump 8, not the 16 of the HPF table, which describes the plain ResNet).

Geometry: the jump and receptive field of every id are computed by
:func:`~semcorr.backbones.geometry.stage_geometry`. For the plain ResNets ids 0..9 are then set
from the HPF table (:data:`~semcorr.backbones.geometry.HPF_RESNET_JUMP` / ``HPF_RESNET_RF``), the
convention of the HPF reference code; the computed values are identical (checked by the tests).

Pyramid: ResNets have no stride-2 feature, so :attr:`Backbone.pyramid` is the stem and the last
block of each of layer1..layer4: ResNet-50 (0, 3, 7, 13, 16) with strides 4, 4, 8, 16, 32,
ResNet-101 (0, 3, 7, 30, 33) likewise, FCN-ResNet101 (0, 3, 7, 30, 33) with strides 4, 4, 8, 8, 8.
Coarse-to-fine methods must read :meth:`Backbone.stride` rather than assume a factor of 2.
"""

from __future__ import annotations

from itertools import accumulate

import torch
from torch import Tensor
from torchvision.models import resnet101, resnet50
from torchvision.models.resnet import Bottleneck

from .base import Backbone
from .geometry import HPF_RESNET_JUMP, HPF_RESNET_RF, LayerGeometry, stage_geometry

_BUILDERS = {"resnet50": resnet50, "resnet101": resnet101, "fcn_resnet101": resnet101}
_DILATED = {"fcn_resnet101"}


def bottleneck_pre_relu(block: Bottleneck, x: Tensor) -> Tensor:
    """Output of a torchvision bottleneck before its final ReLU.

    Args:
        block: a ``torchvision.models.resnet.Bottleneck``.
        x: (B, C_in, H, W) the block's input.

    Returns:
        (B, C_out, H / s, W / s) ``bn3(conv3(...)) + identity``, where identity is ``x`` or
        ``downsample(x)``; ``relu`` of it is what torchvision's block returns.
    """
    identity = x if block.downsample is None else block.downsample(x)
    out = block.relu(block.bn1(block.conv1(x)))
    out = block.relu(block.bn2(block.conv2(out)))
    return block.bn3(block.conv3(out)) + identity


class ResNetBackbone(Backbone):
    """ResNet-50, ResNet-101 or FCN-ResNet101 (dilated) in the HPF layer convention.

    ``net`` is the torchvision ResNet without ``avgpool`` and ``fc``: its ``state_dict`` keys are
    those of torchvision's ResNet minus ``fc.*``, and those of ``fcn_resnet101().backbone``.
    """

    def __init__(self, name: str, trainable: bool = False) -> None:
        """Build with random (torchvision default) initialisation.

        Args:
            name: ``"resnet50"``, ``"resnet101"`` or ``"fcn_resnet101"``.
            trainable: see :class:`Backbone`.
        """
        dilated = name in _DILATED
        net = _BUILDERS[name](weights=None, replace_stride_with_dilation=[False, dilated, dilated])
        del net.avgpool, net.fc
        blocks = [block for stage in (net.layer1, net.layer2, net.layer3, net.layer4) for block in stage]
        geometry = stage_geometry([[net.conv1, net.maxpool]] + [[block] for block in blocks])
        if not dilated:
            for layer, (jump, rf) in enumerate(zip(HPF_RESNET_JUMP, HPF_RESNET_RF)):
                geometry[layer] = LayerGeometry(geometry[layer].channels, jump, rf)
        stage_ends = accumulate(len(stage) for stage in (net.layer1, net.layer2, net.layer3, net.layer4))
        super().__init__(name, net, geometry, pyramid=(0, *stage_ends), trainable=trainable)
        self._blocks = blocks

    def _step(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Stem for id 0; else bottleneck ``layer`` (feature before ReLU, ReLU'd tensor passed on)."""
        if layer == 0:
            net = self.net
            stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
            return stem, stem
        feature = bottleneck_pre_relu(self._blocks[layer - 1], x)
        return feature, torch.relu(feature)
