"""The recurrent SAM-Net (network.py): shapes, identity start, multi-layer features, coarse search,
detached iterations, the attribute weight, settings, and a few training steps."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fixtures_samnet import TinyBackbone, one_thread, tiny_net, write_photos  # noqa: F401 (autouse fixture)
from semcorr.backbones import load_backbone
from semcorr.errors import ConfigError
from semcorr.methods.samnet import SAMNet, SAMNetLoss
from semcorr.methods.samnet.affine import clamp_field, identity_field, translation_field
from semcorr.methods.samnet.correlation import argmax_field, correlation_volume, voted_translation
from semcorr.methods.samnet.matching import field_features


def moving(net: SAMNet) -> SAMNet:
    """The network with random regression heads, so that iterations move the field."""
    torch.manual_seed(0)
    for head in (net.matching.head, getattr(net.coarse_matching, "head", None)):
        if head is not None:
            nn.init.normal_(head.weight, std=0.1)
    return net


def test_forward_shapes_and_untrained_network_is_identity():
    net = tiny_net(iterations=3)
    assert net.layers == [2] and net.skip_layers == [0, 1]
    out = net.eval()(torch.rand(2, 3, 64, 48), torch.rand(2, 3, 64, 48))
    assert len(out.iterations) == 3
    it = out.final
    assert it.field.shape == (2, 6, 8, 6) and it.image.shape == (2, 3, 64, 48)
    assert it.confidence.shape == (2, 1, 8, 6) and it.attr_feature.shape == (2, 8, 8, 6)
    assert out.src_feature.shape == out.trg_feature.shape == (2, 8, 8, 6)
    assert torch.equal(it.field, identity_field(2, 8, 6))  # zero-initialised regression head
    assert float(it.image.detach().min()) >= 0 and float(it.image.detach().max()) <= 1
    mobile = SAMNet(load_backbone("mobilenet_v2", "none"), matching_channels=(8, 8))
    assert mobile.layers == [6] and mobile.skip_layers == [1, 3]


def test_multi_layer_feature_is_the_upsampled_concatenation_on_the_finest_grid():
    backbone = TinyBackbone()
    net = SAMNet(backbone, layers=[2, 1], matching_channels=(8,))
    assert net.layers == [1, 2] and net.skip_layers == [0]
    img = torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        feature, skips = net.features(img, with_skips=True)
        l0, l1, l2 = backbone(img, [0, 1, 2])
    assert feature.shape == (1, 16, 16, 12)  # 8 + 8 channels on the stride-4 grid of layer 1
    assert torch.equal(feature[:, :8], l1)
    assert torch.allclose(feature[:, 8:], F.interpolate(l2, size=(16, 12), mode="bilinear", align_corners=False))
    assert len(skips) == 1 and torch.equal(skips[0], l0)
    assert net.decoder.lift.out_channels == 8  # the many channels are lifted to those of the finest layer
    out = net.eval()(img, img, iterations=2)
    assert out.final.field.shape == (1, 6, 16, 12) and out.final.image.shape == (1, 3, 64, 48)
    with pytest.raises(ConfigError, match="model.network.layers"):
        SAMNet(backbone, layers=[1, 7])


def test_detached_iterations_run_first_without_gradients():
    net = moving(tiny_net(iterations=2)).eval()
    src, trg = torch.rand(1, 3, 64, 48), torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        five = net(src, trg, iterations=5)
    out = net(src, trg, iterations=2, detached=3)
    assert len(out.iterations) == 2  # only the trained ones
    for got, want in zip(out.iterations, five.iterations[3:]):  # iterations 4 and 5, lambda included
        assert torch.allclose(got.field, want.field, atol=1e-5) and torch.allclose(got.image, want.image, atol=1e-5)
    out.final.field.sum().backward()
    assert net.matching.head.weight.grad is not None and not five.final.field.requires_grad
    with pytest.raises(ConfigError):
        net(src, trg, detached=-1)


def test_coarse_iterations_use_their_own_network_and_a_wider_search():
    net = moving(tiny_net(iterations=4, coarse_iterations=2, coarse_dilation=3)).eval()
    assert net.coarse_matching is not None and net.coarse_matching.bound[0, 4].item() == 12.0  # radius 4 x 3
    src, trg = torch.rand(1, 3, 64, 48), torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        before = net(src, trg).iterations
        nn.init.zeros_(net.coarse_matching.head.weight)  # coarse iterations 1-2 now keep the identity
        after = net(src, trg).iterations
    assert not torch.equal(before[0].field, after[0].field)
    assert torch.equal(after[1].field, identity_field(1, 8, 6))
    assert not torch.equal(after[2].field, identity_field(1, 8, 6))  # iteration 3 is a fine one
    assert tiny_net().coarse_matching is None


def test_zero_attribute_weight_matches_on_the_source_features_only():
    paper = moving(tiny_net(iterations=3)).eval()
    zero = moving(tiny_net(iterations=3, attribute_weight="zero")).eval()
    src, trg = torch.rand(1, 3, 64, 48), torch.rand(1, 3, 64, 48)
    with torch.no_grad():
        out = zero(src, trg)
        for p in zero.decoder.parameters():  # the decoder cannot change the matching at lambda = 0
            p.add_(torch.randn_like(p))
        again = zero(src, trg)
        with_att = paper(src, trg)
    assert [it.image is None for it in out.iterations] == [True, True, False]  # only the last is decoded
    assert all(torch.equal(a.field, b.field) for a, b in zip(out.iterations, again.iterations))
    assert torch.allclose(out.iterations[0].field, with_att.iterations[0].field, atol=1e-6)  # F^{s<-t,0} = F^s
    assert not torch.equal(out.final.field, with_att.final.field)  # later ones do with the paper's lambda
    with pytest.raises(ConfigError, match="attribute_weight"):
        tiny_net(attribute_weight="half")


def test_initial_fields_translation_and_argmax():
    torch.manual_seed(0)
    src = F.interpolate(torch.rand(1, 3, 8, 6), size=(64, 48), mode="bicubic", align_corners=False)
    trg = torch.roll(src, shifts=16, dims=3)  # 2 cells of the stride-8 grid to the right
    for init in ("translation", "argmax"):
        net = tiny_net(iterations=2, init=init).eval()
        with torch.no_grad():
            out = net(src, trg)
            volume = correlation_volume(out.src_feature, out.trg_feature)
        if init == "argmax":
            expected = argmax_field(volume, (8, 6))
        else:
            expected = clamp_field(translation_field(voted_translation(volume, (8, 6)), 8, 6), 8, 6)
        assert torch.equal(out.iterations[0].field, expected), init  # the untrained head adds nothing
    assert voted_translation(volume, (8, 6)).tolist() == [[2.0, 0.0]]
    with pytest.raises(ConfigError, match="model.network.init"):
        tiny_net(init="random")


def test_field_input_reaches_the_matching_network():
    net = tiny_net(iterations=2, field_input=True)
    assert net.matching.encoder[0][0].in_channels == 81 + 6
    field = identity_field(1, 4, 5)
    field[:, 0], field[:, 4], field[:, 5] = 1.5, 2.0, -1.0
    features = field_features(field)
    assert features[0, :, 0, 0].tolist() == pytest.approx([0.5, 0.0, 0.0, 0.0, 2.0 / 5, -1.0 / 4])
    out = moving(net).eval()(torch.rand(1, 3, 64, 48), torch.rand(1, 3, 64, 48))
    assert out.final.field.shape == (1, 6, 8, 6)


def test_settings_rebuild_the_same_network():
    net = tiny_net(layers=[1, 2], iterations=2, coarse_iterations=1, attribute_weight="zero", droplink_keeps="skip",
                   init="argmax", field_input=True)
    again = SAMNet(TinyBackbone(), **net.settings())
    assert again.settings() == net.settings()
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_a_few_training_steps_reduce_the_loss(tmp_path):
    from semcorr.data.collate import collate_pairs
    from semcorr.data.synthetic import SyntheticPairsDataset

    write_photos(tmp_path / "img", count=2, size=48)
    data = SyntheticPairsDataset(tmp_path / "img", split="all", size=(48, 48), n_kps=0, with_flow=False)
    batch = collate_pairs([data[0], data[1]])
    torch.manual_seed(0)
    net = tiny_net(iterations=2)
    criterion = SAMNetLoss()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    losses = []
    net.train()
    for _ in range(10):
        loss = criterion(net(batch["src_img"], batch["trg_img"]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses)
    assert np.mean(losses[-3:]) < 0.92 * losses[0], losses
