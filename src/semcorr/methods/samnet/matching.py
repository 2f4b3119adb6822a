"""Matching inference network of SAM-Net (eqs. 6-7): an encoder-decoder (U-Net [44]) that regresses
the residual affine field ``T^l - T^{l-1}`` from the normalised correlation ``C^l``.

Choices where the paper is silent: depth and widths (``channels``: one entry per scale, each
scale but the first halves the resolution with a stride-2 convolution; default (64, 128, 256)),
two 3x3 convolutions + ReLU per block, no normalisation layers, bilinear upsampling to the skip's
size (any h, w works), concatenated skips, and a zero-initialised 3x3 output convolution so that
an untrained network predicts the identity field (training starts from ``T = [I, 0]``).
The residual is in feature cells (translation) and unitless (``A``), and bounded smoothly per
iteration: ``df = r tanh(raw / r)`` with ``r`` the correlation window's radius (the correlation
sees no evidence farther away) and ``dA = 0.5 tanh(raw / 0.5)``. Both are the identity near 0 and
keep an early, too large step from throwing the whole field out of the target (where every
candidate of the loss reads zero and the gradient vanishes).

Field input (a departure, ``SAMNet(field_input=True)``): the paper's network sees the correlation
only, so it cannot tell that a cell's match disagrees with its neighbours'; with
:func:`field_features` of the current field as 6 more input channels it can learn that geometric
consistency (what regularised Hough matching gives HPF).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .affine import FIELD_CHANNELS


def conv_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Two 3x3 convolutions with ReLU; the first has ``stride``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
    )


def field_features(field: Tensor) -> Tensor:
    """The current field as network input: ``A - I`` and the displacement as a fraction of the map.

    Args:
        field: (B, 6, h, w).

    Returns:
        (B, 6, h, w): ``(a11 - 1, a12, a21, a22 - 1, fx / w, fy / h)``.
    """
    h, w = field.shape[-2:]
    shift = field.new_tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0]).view(1, FIELD_CHANNELS, 1, 1)
    scale = field.new_tensor([1.0, 1.0, 1.0, 1.0, 1.0 / w, 1.0 / h]).view(1, FIELD_CHANNELS, 1, 1)
    return (field - shift) * scale


class MatchingNetwork(nn.Module):
    """U-Net mapping a correlation volume to a residual affine field.

    Args:
        in_channels: K, the window entries of the correlation (81 for 9x9), + 6 with the field input.
        channels: widths of the scales, finest first (len >= 1).
        max_shift: bound of the translation residual per iteration (cells).
        max_affine: bound of each entry of the ``A`` residual per iteration.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (64, 128, 256),
        max_shift: float = 4.0,
        max_affine: float = 0.5,
    ) -> None:
        super().__init__()
        bound = torch.tensor([max_affine] * 4 + [max_shift] * 2, dtype=torch.float32)
        self.register_buffer("bound", bound.view(1, FIELD_CHANNELS, 1, 1), persistent=False)
        widths = [int(c) for c in channels]
        self.encoder = nn.ModuleList(
            [conv_block(in_channels, widths[0])]
            + [conv_block(widths[k - 1], widths[k], stride=2) for k in range(1, len(widths))]
        )
        self.decoder = nn.ModuleList(
            [conv_block(widths[k + 1] + widths[k], widths[k]) for k in reversed(range(len(widths) - 1))]
        )
        self.head = nn.Conv2d(widths[0], FIELD_CHANNELS, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, corr: Tensor) -> Tensor:
        """Residual field.

        Args:
            corr: (B, K, h, w) normalised correlation.

        Returns:
            (B, 6, h, w) residual ``(da11, da12, da21, da22, dfx, dfy)``.
        """
        skips = []
        x = corr
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.decoder, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.bound * torch.tanh(self.head(x) / self.bound)
