"""Resizing that every method sees identically: images, keypoints, masks and flows together.

Keypoints are pixel coordinates (x, y) of the image they belong to; resizing an image by
factors (sx, sy) maps a keypoint (x, y) to (x * sx, y * sy), as the HPF reference code does.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from semcorr.errors import ConfigError


@dataclass(frozen=True)
class Resize:
    """How images are resized before any method sees them.

    Attributes:
        max_side: if set, scale so that the longer side is ``max_side`` (aspect kept), new size
            ``(int(H r), int(W r))`` with ``r = max_side / max(H, W)``.
        size: if set, a fixed ``(H, W)`` (aspect not kept); overrides ``max_side``.
        upscale: allow ``r > 1``. The HPF protocol never upscales.
    """

    max_side: int | None = 300
    size: tuple[int, int] | None = None
    upscale: bool = False

    def __post_init__(self) -> None:
        if self.max_side is not None and self.max_side < 8:
            raise ConfigError(f"dataset.max_side must be >= 8 or null, got {self.max_side}")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 8):
            raise ConfigError(f"dataset.size must be [H, W] with both >= 8 or null, got {self.size}")

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Return the resized ``(H', W')`` for an image of size ``(height, width)``."""
        if self.size is not None:
            return int(self.size[0]), int(self.size[1])
        if self.max_side is None:
            return height, width
        r = self.max_side / max(height, width)
        if r >= 1.0 and not self.upscale:
            return height, width
        return int(height * r), int(width * r)

    def scale_factors(self, height: int, width: int) -> tuple[float, float]:
        """Return ``(sx, sy)`` mapping original pixel coordinates to resized ones."""
        if self.size is not None:
            return self.size[1] / width, self.size[0] / height
        if self.max_side is None:
            return 1.0, 1.0
        r = self.max_side / max(height, width)
        if r >= 1.0 and not self.upscale:
            return 1.0, 1.0
        return r, r


def resize_image(img: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize (align_corners=False, as the HPF reference). img: (C, H, W) -> (C, H', W')."""
    if tuple(img.shape[-2:]) == tuple(size):
        return img
    return F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a (H, W) mask to (H', W') (same dtype)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    out = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0]
    return out.to(mask.dtype)


def scale_points(points: torch.Tensor, sx: float, sy: float) -> torch.Tensor:
    """Scale (..., 2) pixel coordinates (x, y) by (sx, sy)."""
    return points * points.new_tensor([sx, sy])
