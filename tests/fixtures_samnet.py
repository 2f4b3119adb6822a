"""Shared pieces of the SAM-Net tests: a tiny fast backbone, a tiny network, photos to warp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from semcorr.backbones.base import Backbone
from semcorr.backbones.geometry import stage_geometry
from semcorr.methods.samnet import SAMNet


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread (autouse in the modules that import it): on a small shared CPU, OpenMP
    threads spin against other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class TinyBackbone(Backbone):
    """Three stride-2 convolutions (strides 2, 4, 8; 4, 8, 8 channels): a fast fake extractor."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        net = nn.Sequential(
            nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()),
        )
        super().__init__("tiny", net, stage_geometry([[m] for m in net]), (0, 1, 2))

    def _step(self, layer: int, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.net[layer](x)
        return out, out


def tiny_net(**kwargs) -> SAMNet:
    """A :class:`SAMNet` on :class:`TinyBackbone` with a small matching U-Net."""
    return SAMNet(TinyBackbone(), matching_channels=(8, 16), **kwargs)


def write_photos(folder, count: int = 4, size: int = 64) -> None:
    """Smooth random images (blurred noise + a bright square) that survive warping."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        noise = torch.from_numpy(rng.random((1, 3, size // 8, size // 8))).float()
        img = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        img[:, size // 4 : size // 2, size // 3 : 2 * size // 3] = 1.0
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / f"img{i}.png")
