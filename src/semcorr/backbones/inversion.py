"""Feature inversion: the input of the sub-network between two layers of a backbone that best
reproduces given features at the upper layer, found by L-BFGS. Deep Image Analogy's deconvolution
(eq. 5, :mod:`semcorr.methods.dia.deconv`) and NBB's semantic hybrids (section 5.2,
:mod:`semcorr.methods.nbb.hybrid`) both use it.

``CNN_lower^upper`` is cut out of :attr:`Backbone.net` (the torchvision feature module) by
:func:`subnetwork`, per backbone:

- VGG-19 (ids 0..4 = relu1_1..relu5_1): ``features[end(lower):end(upper)]`` with ``end`` the stop
  index of a level in :data:`~semcorr.backbones.vgg.VGG19_LEVELS`; between adjacent levels this is
  the slice ``[2:7]``, ``[7:12]``, ``[12:21]`` or ``[21:30]`` (e.g. relu4_1 -> relu5_1 runs
  conv4_2 .. pool4, conv5_1, relu5_1).
- MobileNetV2 (id i = output of ``features[i]``): the blocks ``features[lower + 1 : upper + 1]``.
- ResNet-50/101, FCN-ResNet101 (id k >= 1 = k-th bottleneck before its final ReLU, id 0 = stem):
  ReLU, the bottlenecks ``lower + 1 .. upper - 1``, then bottleneck ``upper`` stopped before its
  final ReLU (:func:`~semcorr.backbones.resnet.bottleneck_pre_relu`).

``lower = IMAGE_INPUT`` (-1) starts from the ImageNet-normalised image: VGG-19 ``features[:end]``,
MobileNetV2 ``features[: upper + 1]``, ResNets the stem then the bottlenecks (the ``"reference"``
deconvolution form of DIA optimises one level below the finest level it reconstructs, the image
there; NBB's hybrid ends with an image).

The optimisation uses ``torch.optim.LBFGS`` with the reference code's history of 4 updates and
either a strong-Wolfe line search (the reference code's GPU path uses strong Wolfe too) or plain
L-BFGS steps; the loss is eq. 5's squared norm (a sum). torch's L-BFGS makes a tiny first step
(``1 / |g|_1``) and its strong-Wolfe search then spends most of a small budget growing it, so a
budget of about 10 iterations converges much further without the line search (measured, bfloat16,
224 x 224, from another image's features: loss ratio after 10 iterations 0.02-0.14 without,
0.05-0.39 with, on VGG-19 levels 1-3 (random weights) and MobileNetV2 levels 1-4 (ImageNet
weights)); with the paper's ~100 iterations the line search is the robust choice.

``bf16=True`` runs the sub-network under bfloat16 autocast (the variable, the loss and the L-BFGS
state stay float32), a speed option for CPUs with AMX/AVX-512-BF16 and for GPUs. The variable is
stored flat in channels-last order, so the sub-network sees a channels-last input (faster CPU
convolutions) without copies while L-BFGS sees the contiguous vector it needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import Backbone
from .resnet import bottleneck_pre_relu
from .vgg import VGG19_LEVELS
from semcorr.errors import ConfigError

#: L-BFGS history size (the reference code's ``HISTORY_SIZE``).
LBFGS_HISTORY = 4

#: The ``lower`` layer id of :func:`subnetwork` that means the ImageNet-normalised image.
IMAGE_INPUT = -1

_RESNETS = ("resnet50", "resnet101", "fcn_resnet101")


class _ResNetSpan(nn.Module):
    """Optionally the stem, then ReLU, full bottlenecks, and the last bottleneck before its final
    ReLU (HPF ids; with the stem and no bottleneck: the stem alone, id 0)."""

    def __init__(self, stem: nn.Module | None, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_lower, H, W) normalised image or pre-ReLU feature -> (B, C_upper, H', W') feature."""
        if self.stem is not None:
            x = self.stem(x)
        if not len(self.blocks):
            return x
        x = torch.relu(x)
        for block in self.blocks[:-1]:
            x = block(x)
        return bottleneck_pre_relu(self.blocks[-1], x)


def subnetwork(backbone: Backbone, lower: int, upper: int) -> nn.Module:
    """``CNN_lower^upper``: the modules of ``backbone.net`` mapping layer ``lower``'s features to
    layer ``upper``'s (see the module docstring for the cut of each backbone).

    Args:
        backbone: a VGG-19, MobileNetV2 or ResNet backbone.
        lower: layer id of the input features, or :data:`IMAGE_INPUT` for the normalised image.
        upper: layer id of the output features (> lower).

    Returns:
        A module mapping (B, C_lower, H_lower, W_lower) to (B, C_upper, H_upper, W_upper); it shares
        the backbone's parameters.

    Raises:
        ConfigError: unknown backbone or ``upper <= lower``.
    """
    if upper <= lower:
        raise ConfigError(f"sub-network needs lower < upper, got {lower} and {upper}")
    net = backbone.net
    if backbone.name == "vgg19":
        start = 0 if lower == IMAGE_INPUT else VGG19_LEVELS[lower][1]
        return net[start : VGG19_LEVELS[upper][1]]
    if backbone.name == "mobilenet_v2":
        return net[lower + 1 : upper + 1]
    if backbone.name in _RESNETS:
        blocks = [block for stage in (net.layer1, net.layer2, net.layer3, net.layer4) for block in stage]
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool) if lower == IMAGE_INPUT else None
        return _ResNetSpan(stem, blocks[max(lower, 0) : upper])
    raise ConfigError(
        f"cannot cut sub-networks (feature inversion) out of backbone {backbone.name!r}; "
        f"use vgg19, mobilenet_v2 or {', '.join(_RESNETS)}"
    )


def deconvolve(
    subnet: nn.Module,
    target: Tensor,
    init: Tensor,
    iterations: int,
    bf16: bool = False,
    line_search: bool = True,
) -> Tensor:
    """Solve eq. 5, ``argmin_R ||subnet(R) - target||^2``, by L-BFGS from ``init``.

    Gradients are enabled inside even when the caller runs under ``torch.no_grad()`` or
    ``torch.inference_mode()`` (the Lightning test loop; tensors made there are copied out of it);
    the sub-network's parameters are not updated (the frozen backbone's do not require grad).

    Args:
        subnet: the sub-network between the two levels (:func:`subnetwork`).
        target: (B, C_upper, H_upper, W_upper) features to reproduce.
        init: (B, C_lower, H_lower, W_lower) starting point.
        iterations: L-BFGS iterations (``max_iter``); 0 returns ``init``.
        bf16: run the sub-network under bfloat16 autocast.
        line_search: strong-Wolfe line search (robust; spends function evaluations); False takes
            plain L-BFGS steps (one evaluation per iteration).

    Returns:
        (B, C_lower, H_lower, W_lower) the optimised input, float32, detached.
    """
    if iterations <= 0:
        return init.detach().float().clone()
    with torch.inference_mode(False), torch.enable_grad():
        return _lbfgs(subnet, target.detach().float().clone(), init.detach().float().clone(), iterations, bf16, line_search)


def _lbfgs(subnet: nn.Module, target: Tensor, init: Tensor, iterations: int, bf16: bool, line_search: bool) -> Tensor:
    """The L-BFGS solve of :func:`deconvolve` (normal tensors, gradients on)."""
    b, c, h, w = init.shape
    # The variable is the input in channels-last order, flat: its NCHW view below is a
    # channels-last tensor (fast CPU convolutions) while L-BFGS sees a contiguous vector.
    flat = init.permute(0, 2, 3, 1).reshape(-1).clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [flat],
        lr=1.0,
        max_iter=iterations,
        history_size=LBFGS_HISTORY,
        line_search_fn="strong_wolfe" if line_search else None,
    )

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(flat.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = subnet(flat.view(b, h, w, c).permute(0, 3, 1, 2))
        loss = F.mse_loss(out.float(), target, reduction="sum")
        loss.backward()
        return loss

    optimizer.step(closure)
    return flat.detach().view(b, h, w, c).permute(0, 3, 1, 2).contiguous()
