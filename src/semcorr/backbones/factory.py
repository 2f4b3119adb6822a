"""``load_backbone``: build a backbone by name and fill it with weights (the Hydra entry point).

``weights`` is one of ``"imagenet"`` (torchvision's weights: ImageNet-1k V1 for the
classification networks, the ``COCO_WITH_VOC_LABELS_V1`` segmentation weights for FCN-ResNet101,
as in Hyperpixel Flow), ``"offline"`` (mobilenet_v2 only, see :mod:`.weights`), ``"none"``
(random initialisation, for tests and timing) or the path of a local ``state_dict`` file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn
from torchvision.models import MobileNet_V2_Weights, ResNet50_Weights, ResNet101_Weights, VGG19_Weights, WeightsEnum
from torchvision.models.segmentation import FCN_ResNet101_Weights

from semcorr.errors import ConfigError, WeightsError

from .base import Backbone
from .mobilenet import MobileNetV2Backbone
from .resnet import ResNetBackbone
from .vgg import VGG19Backbone
from .weights import (
    StateDictLayout,
    download_state_dict,
    load_strict,
    offline_mobilenet_v2_state_dict,
    read_state_dict,
)


@dataclass(frozen=True)
class _Entry:
    """How to build one backbone and where its pretrained weights come from."""

    build: Callable[[bool], Backbone]
    imagenet: WeightsEnum
    layout: StateDictLayout
    offline: Callable[[nn.Module], dict[str, Tensor]] | None = None


_REGISTRY: dict[str, _Entry] = {
    "resnet50": _Entry(
        lambda trainable: ResNetBackbone("resnet50", trainable),
        ResNet50_Weights.IMAGENET1K_V1,
        StateDictLayout("", ("fc.",)),
    ),
    "resnet101": _Entry(
        lambda trainable: ResNetBackbone("resnet101", trainable),
        ResNet101_Weights.IMAGENET1K_V1,
        StateDictLayout("", ("fc.",)),
    ),
    "fcn_resnet101": _Entry(
        lambda trainable: ResNetBackbone("fcn_resnet101", trainable),
        FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
        StateDictLayout("backbone.", ("classifier.", "aux_classifier.")),
    ),
    "vgg19": _Entry(VGG19Backbone, VGG19_Weights.IMAGENET1K_V1, StateDictLayout("features.", ("classifier.",))),
    "mobilenet_v2": _Entry(
        MobileNetV2Backbone,
        MobileNet_V2_Weights.IMAGENET1K_V1,
        StateDictLayout("features.", ("classifier.",)),
        offline=offline_mobilenet_v2_state_dict,
    ),
}

#: Names accepted by :func:`load_backbone`.
BACKBONE_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def load_backbone(name: str, weights: str = "imagenet", device: str = "cpu", trainable: bool = False) -> Backbone:
    """Build a backbone and load its weights.

    Args:
        name: one of :data:`BACKBONE_NAMES`.
        weights: ``"imagenet"``, ``"offline"`` (mobilenet_v2), ``"none"`` (or ``None``) or the path
            of a ``state_dict`` file.
        device: where to put it, e.g. ``"cpu"``, ``"cuda"``.
        trainable: ``False``: frozen feature extractor (eval mode, no grad); ``True``: fine-tunable.

    Returns:
        The :class:`Backbone` on ``device``; its forward maps (B, 3, H, W) images in [0, 1] to a
        list of (B, C_l, H_l, W_l) features.

    Raises:
        ConfigError: unknown ``name``.
        WeightsError: the weights cannot be had or do not fit (the message names the fix).
    """
    if name not in _REGISTRY:
        raise ConfigError(f"unknown backbone {name!r}; valid names are {', '.join(BACKBONE_NAMES)}")
    entry = _REGISTRY[name]
    spec = "none" if weights is None else str(weights)
    if spec == "offline" and entry.offline is None:
        offline = [n for n, e in _REGISTRY.items() if e.offline is not None]
        raise WeightsError(
            f"no offline weights exist for backbone {name!r} (only for {', '.join(offline)}). Options: "
            "weights=imagenet (torchvision download, or a file already in the torch hub cache), "
            "weights=/path/to/file.pth (a torchvision state_dict), weights=none (random)."
        )
    backbone = entry.build(trainable)
    if spec == "offline" and entry.offline is not None:
        load_strict(backbone.net, entry.offline(backbone.net), "the offline weights package", name)
    elif spec == "imagenet":
        state_dict = entry.layout.feature_part(download_state_dict(entry.imagenet, name))
        load_strict(backbone.net, state_dict, entry.imagenet.url, name)
    elif spec != "none":
        load_strict(backbone.net, entry.layout.feature_part(read_state_dict(spec, name)), repr(spec), name)
    return backbone.to(device)
