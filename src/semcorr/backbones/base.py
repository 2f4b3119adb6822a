"""The frozen feature extractor every method reads features from.

A :class:`Backbone` wraps the feature part of a torchvision network (``self.net``, whose
``state_dict`` keys are torchvision's) and exposes its intermediate outputs under integer layer
ids. A forward pass normalises the image with the ImageNet mean/std, runs the network stage by
stage and stops at the largest requested id. It does not switch autograd off itself: callers that
only need features wrap it in ``torch.no_grad()``/``torch.inference_mode()``; a method that
optimises the input (Deep Image Analogy) or fine-tunes the backbone (SAM-Net, ``trainable=True``)
gets gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral

import torch
from torch import Tensor, nn

from semcorr.errors import ConfigError

from .geometry import LayerGeometry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """Feature extractor with stable integer layer ids.

    Attributes:
        name: the backbone's name, e.g. ``"resnet101"``.
        layer_ids: every valid layer id, increasing (0..L-1).
        pyramid: five layer ids of non-decreasing stride, finest first, for coarse-to-fine
            methods (NBB, DIA). Each subclass documents its choice.
        trainable: ``False`` (default): parameters do not require grad and the module stays in
            eval mode even when a parent calls ``.train()`` (batch-norm statistics never move).
            ``True``: parameters require grad and ``.train()`` behaves as usual.
        net: the torchvision feature module holding every parameter (weights load into it).

    Subclasses call ``super().__init__`` with the geometry of their stages and implement
    :meth:`_step`.
    """

    def __init__(
        self,
        name: str,
        net: nn.Module,
        geometry: Sequence[LayerGeometry],
        pyramid: tuple[int, ...],
        trainable: bool = False,
    ) -> None:
        super().__init__()
        self.name = name
        self.net = net
        self.trainable = trainable
        self._geometry = tuple(geometry)
        self.layer_ids: tuple[int, ...] = tuple(range(len(self._geometry)))
        self.pyramid = pyramid
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(trainable)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:
        """Set train mode; a frozen (``trainable=False``) backbone always stays in eval mode.

        Args:
            mode: requested mode.

        Returns:
            ``self``.
        """
        return super().train(mode and self.trainable)

    def _check(self, layer: object) -> int:
        """The layer id as an int; :class:`ConfigError` listing the valid ids if it is not one."""
        if isinstance(layer, Integral) and not isinstance(layer, bool):
            if 0 <= int(layer) < len(self.layer_ids):
                return int(layer)
        raise ConfigError(
            f"layer id {layer!r} is not valid for backbone {self.name!r}; "
            f"valid ids are {self.layer_ids[0]}..{self.layer_ids[-1]}"
        )

    def channels(self, layer: int) -> int:
        """Number of channels C_l of layer ``layer``'s features (B, C_l, H_l, W_l)."""
        return self._geometry[self._check(layer)].channels

    def stride(self, layer: int) -> int:
        """Jump of layer ``layer``: input pixels between adjacent cells (H_l ~ H / stride)."""
        return self._geometry[self._check(layer)].stride

    def receptive_field(self, layer: int) -> int:
        """Receptive field size of layer ``layer`` in input pixels (side of a square)."""
        return self._geometry[self._check(layer)].receptive_field

    def _step(self, layer: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Run stage ``layer``.

        Args:
            layer: the id whose stage to run.
            x: (B, C, H, W) the input of the stage: the normalised image for id 0, else what
                the previous step passed on.

        Returns:
            ``(feature, passed_on)``: the id's feature (B, C_l, H_l, W_l) and the tensor the next
            stage consumes (the same tensor unless the id is taken before a non-linearity).
        """
        raise NotImplementedError

    def forward(self, img: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """Features of the requested layers.

        Args:
            img: (B, 3, H, W) float RGB in [0, 1]; ImageNet mean/std normalisation is applied here.
            layers: layer ids in any order (duplicates allowed).

        Returns:
            One (B, C_l, H_l, W_l) tensor per requested id, in the order requested. The network
            runs only up to the largest requested id.

        Raises:
            ConfigError: an id is not in :attr:`layer_ids`.
            ValueError: ``img`` is not (B, 3, H, W).
        """
        ids = [self._check(layer) for layer in layers]
        if img.dim() != 4 or img.shape[1] != 3:
            raise ValueError(f"expected an image batch (B, 3, H, W), got {tuple(img.shape)}")
        if not ids:
            return []
        wanted = set(ids)
        x = (img - self.mean) / self.std
        found: dict[int, Tensor] = {}
        for layer in range(max(ids) + 1):
            feature, x = self._step(layer, x)
            if layer in wanted:
                found[layer] = feature
        return [found[layer] for layer in ids]

    def extra_repr(self) -> str:
        """One-line summary shown by ``print(backbone)``."""
        return f"name={self.name!r}, layers=0..{self.layer_ids[-1]}, trainable={self.trainable}"
