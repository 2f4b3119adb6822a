"""Feature deconvolution (eq. 5, section 4.3): the input of the sub-network between two pyramid
levels that best reproduces given features at the upper level, found by L-BFGS.

``CNN_{L-1}^L`` is cut out of :attr:`Backbone.net` (the torchvision feature module) by
:func:`subnetwork`, per backbone:

- VGG-19 (ids 0..4 = relu1_1..relu5_1): ``features[end(lower):end(upper)]`` with ``end`` the stop
  index of a level in :data:`~semcorr.backbones.vgg.VGG19_LEVELS`; between adjacent levels this is
  the slice ``[2:7]``, ``[7:12]``, ``[12:21]`` or ``[21:30]`` (e.g. relu4_1 -> relu5_1 runs
  conv4_2 .. pool4, conv5_1, relu5_1).
- MobileNetV2 (id i = output of ``features[i]``): the blocks ``features[lower + 1 : upper + 1]``.
- ResNet-50/101, FCN-ResNet101 (id k >= 1 = k-th bottleneck before its final ReLU, id 0 = stem):
  ReLU, the bottlenecks ``lower + 1 .. upper - 1``, then bottleneck ``upper`` stopped before its
  final ReLU (:func:`~semcorr.backbones.resnet.bottleneck_pre_relu`).

The optimisation uses ``torch.optim.LBFGS`` with the reference code's history of 4 updates and
either a strong-Wolfe line search (the reference code backtracks) or plain L-BFGS steps; the loss
is eq. 5's squared norm (a sum). torch's L-BFGS makes a tiny first step (``1 / |g|_1``) and its
strong-Wolfe search then spends most of a small budget growing it, so a budget of about 10
iterations converges much further without the line search (measured, bfloat16, 224 x 224, from
another image's features: loss ratio after 10 iterations 0.02-0.14 without, 0.05-0.39 with, on
VGG-19 levels 1-3 (random weights) and MobileNetV2 levels 1-4 (ImageNet weights)).

``bf16=True`` runs the sub-network under bfloat16 autocast (the variable, the loss and the L-BFGS
state stay float32), a speed option for CPUs with AMX/AVX-512-BF16 and for GPUs. The variable is
stored flat in channels-last order, so the sub-network sees a channels-last input (faster CPU
convolutions) without copies while L-BFGS sees the contiguous vector it needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semcorr.backbones import Backbone
from semcorr.backbones.resnet import bottleneck_pre_relu
from semcorr.backbones.vgg import VGG19_LEVELS
from semcorr.errors import ConfigError

#: L-BFGS history size (the reference code's ``HISTORY_SIZE``).
LBFGS_HISTORY = 4

_RESNETS = ("resnet50", "resnet101", "fcn_resnet101")


class _ResNetSpan(nn.Module):
    """ReLU, full bottlenecks, then the last bottleneck before its final ReLU (HPF ids)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_lower, H, W) pre-ReLU feature -> (B, C_upper, H', W') pre-ReLU feature."""
        x = torch.relu(x)
        for block in self.blocks[:-1]:
            x = block(x)
        return bottleneck_pre_relu(self.blocks[-1], x)


def subnetwork(backbone: Backbone, lower: int, upper: int) -> nn.Module:
    """``CNN_lower^upper``: the modules of ``backbone.net`` mapping layer ``lower``'s features to
    layer ``upper``'s (see the module docstring for the cut of each backbone).

    Args:
        backbone: a VGG-19, MobileNetV2 or ResNet backbone.
        lower: layer id of the input features.
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
        return net[VGG19_LEVELS[lower][1] : VGG19_LEVELS[upper][1]]
    if backbone.name == "mobilenet_v2":
        return net[lower + 1 : upper + 1]
    if backbone.name in _RESNETS:
        blocks = [block for stage in (net.layer1, net.layer2, net.layer3, net.layer4) for block in stage]
        return _ResNetSpan(blocks[lower:upper])
    raise ConfigError(
        f"Deep Image Analogy cannot cut sub-networks out of backbone {backbone.name!r}; "
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

    Gradients are enabled inside even when the caller runs under ``torch.no_grad()``; the
    sub-network's parameters are not updated (the frozen backbone's do not require grad).

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
    b, c, h, w = init.shape
    # The variable is the input in channels-last order, flat: its NCHW view below is a
    # channels-last tensor (fast CPU convolutions) while L-BFGS sees a contiguous vector.
    flat = init.detach().float().permute(0, 2, 3, 1).reshape(-1).clone().requires_grad_(True)
    target = target.detach().float()
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

    with torch.enable_grad():
        optimizer.step(closure)
    return flat.detach().view(b, h, w, c).permute(0, 3, 1, 2).contiguous()
