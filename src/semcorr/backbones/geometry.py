"""Receptive field and jump of feature maps, computed by walking conv and pooling layers.

For a chain of layers with kernel ``k``, stride ``s`` and dilation ``d`` the classic recursion
(Araujo et al., Distill 2019) gives, starting from the input pixel (``rf = 1``, ``jump = 1``)::

    rf_out   = rf_in + (k - 1) * d * jump_in
    jump_out = jump_in * s

Padding moves the centre of a cell but changes neither quantity. Branches are walked along their
longest path: a ResNet bottleneck's ``downsample`` shortcut (a 1x1 conv) sees less of the image
than the main path, so it is skipped. All kernels here are square; the height component is used.

Hyperpixel Flow (Min et al., ICCV 2019) hard-codes the geometry of ResNet ids 0..9 in its
reference code; :data:`HPF_RESNET_JUMP` and :data:`HPF_RESNET_RF` keep that table. The calculator
reproduces it exactly for torchvision's ResNet-50/101 (stride on the 3x3 conv of a bottleneck);
``tests/test_backbones.py`` checks this.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import nn

#: HPF table, jump (stride in pixels) of ResNet layer ids 0..9.
HPF_RESNET_JUMP: tuple[int, ...] = (4, 4, 4, 4, 8, 8, 8, 8, 16, 16)
#: HPF table, receptive field size in pixels of ResNet layer ids 0..9.
HPF_RESNET_RF: tuple[int, ...] = (11, 19, 27, 35, 43, 59, 75, 91, 107, 139)

_SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class LayerGeometry:
    """Shape facts of one feature layer.

    Attributes:
        channels: C_l, the number of feature channels.
        stride: the jump, pixels of the input between horizontally adjacent cells.
        receptive_field: side in pixels of the square of input pixels that can affect a cell.
    """

    channels: int
    stride: int
    receptive_field: int


def _first(value: int | Sequence[int]) -> int:
    """The height component of a conv/pool hyper-parameter given as an int or a tuple."""
    return value if isinstance(value, int) else int(value[0])


def spatial_path(module: nn.Module, skip: Iterable[str] = ("downsample",)) -> list[nn.Module]:
    """Conv and pooling layers of ``module`` in execution order, along its longest path.

    Args:
        module: any module whose submodules are registered in the order they run (true of
            torchvision's ResNet bottlenecks, VGG and MobileNetV2 blocks).
        skip: names of branches to leave out (a path component equal to one of them).

    Returns:
        The ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.AvgPool2d`` leaves, ``module`` itself included.
    """
    skipped = set(skip)
    return [
        leaf
        for name, leaf in module.named_modules()
        if isinstance(leaf, _SPATIAL) and not skipped.intersection(name.split("."))
    ]


def propagate(layers: Iterable[nn.Module], rf: int = 1, jump: int = 1) -> tuple[int, int]:
    """Carry a receptive field and a jump through a chain of conv/pool layers.

    Args:
        layers: conv/pool modules in execution order (see :func:`spatial_path`).
        rf: receptive field (pixels) of the chain's input cells.
        jump: jump (pixels) of the chain's input cells.

    Returns:
        ``(rf, jump)`` of the chain's output cells.
    """
    for layer in layers:
        kernel = _first(layer.kernel_size)
        stride = _first(layer.stride)
        dilation = _first(getattr(layer, "dilation", 1))
        rf += (kernel - 1) * dilation * jump
        jump *= stride
    return rf, jump


def stage_geometry(stages: Sequence[Sequence[nn.Module]]) -> list[LayerGeometry]:
    """Geometry of the output of every stage of a feed-forward chain.

    Args:
        stages: for each layer id in order, the modules that run between the previous id's output
            and this id's output (e.g. ``[conv1, maxpool]`` for a ResNet stem, ``[block]`` for a
            bottleneck). Each must contain at least one ``nn.Conv2d``.

    Returns:
        One :class:`LayerGeometry` per stage; ``channels`` is the ``out_channels`` of the last
        conv of the stage.
    """
    rf, jump = 1, 1
    out: list[LayerGeometry] = []
    for modules in stages:
        path = [leaf for module in modules for leaf in spatial_path(module)]
        rf, jump = propagate(path, rf, jump)
        convs = [leaf for leaf in path if isinstance(leaf, nn.Conv2d)]
        out.append(LayerGeometry(channels=convs[-1].out_channels, stride=jump, receptive_field=rf))
    return out
