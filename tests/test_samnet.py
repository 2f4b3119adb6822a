"""SAM-Net: affine fields, eqs. 5/8/9/11-13 on hand-built inputs, training, checkpoints, configs."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra.errors import InstantiationException
from PIL import Image
from torch import nn

from conftest import ROOT, compose_config
from fixtures_keypoints import build_pfwillow
from semcorr.backbones import load_backbone
from semcorr.backbones.base import Backbone
from semcorr.backbones.geometry import stage_geometry
from semcorr.cli import find_user_error
from semcorr.errors import ConfigError, WeightsError
from semcorr.lit.evaluate import build_method, run_evaluation
from semcorr.lit.samnet import EpochSampler, SAMNetModule, run_training
from semcorr.methods.samnet import SAMNet, SAMNetIteration, SAMNetLoss, SAMNetMatcher, SAMNetOutput
from semcorr.methods.samnet.affine import (
    cell_grid,
    identity_field,
    sample_window,
    transfer_points,
    clamp_field,
    translation_field,
    window_offsets,
)
from semcorr.methods.samnet.blending import blend_features
from semcorr.methods.samnet.correlation import attribute_weight, confidence, local_correlation
from semcorr.methods.samnet.decoder import DropLink
from semcorr.methods.samnet.losses import attribute_matching_loss, flow_loss, patch_distances
from semcorr.methods.samnet.matcher import transfer_image_points


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: on a small shared CPU, OpenMP threads spin against other processes."""
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


# -- affine fields ------------------------------------------------------------------------------
def warp_features(feature: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """``F^t(i + f_i)`` on the source grid (the window of offset 0)."""
    return sample_window(feature, field, torch.zeros(1, 2))[:, :, 0]


def test_identity_field_warps_to_identity():
    feat = torch.randn(2, 5, 6, 7)
    field = identity_field(2, 6, 7)
    assert torch.allclose(warp_features(feat, field), feat, atol=1e-6)
    pts = torch.tensor([[[0.0, 0.0], [3.3, 2.7], [6.0, 5.0]]]).expand(2, -1, -1)
    assert torch.allclose(transfer_points(field, pts), pts, atol=1e-6)


def test_translation_field_shifts_features_and_points():
    feat = torch.randn(1, 3, 8, 9)
    field = translation_field(torch.tensor([[2.0, 1.0]]), 8, 9)
    warped = warp_features(feat, field)
    assert torch.allclose(warped[:, :, :7, :7], feat[:, :, 1:, 2:], atol=1e-6)  # F^t(i + f)
    assert torch.all(warped[:, :, 7:, :] == 0) and torch.all(warped[:, :, :, 7:] == 0)  # outside the map
    pts = torch.tensor([[[0.5, 0.5], [4.25, 6.0], [-1.0, 3.0]]])
    assert torch.allclose(transfer_points(field, pts), pts + torch.tensor([2.0, 1.0]), atol=1e-6)
    half = translation_field(torch.tensor([[0.5, 0.0]]), 8, 9)  # bilinear between two cells
    assert torch.allclose(warp_features(feat, half)[..., :8], 0.5 * (feat[..., :8] + feat[..., 1:]), atol=1e-6)


def test_affine_part_drives_window_and_point_extrapolation():
    # a field sampled from one global affine map x -> S x + t: f_c = (S - I) c + t, A_c = S
    s_mat, t = torch.tensor([[1.2, 0.3], [-0.2, 0.9]]), torch.tensor([1.5, -0.5])
    grid = cell_grid(4, 5)  # (2, 4, 5): x, y
    field = identity_field(1, 4, 5)
    field[0, :4] = s_mat.reshape(4, 1, 1)
    field[0, 4:] = torch.einsum("rc,chw->rhw", s_mat - torch.eye(2), grid) + t[:, None, None]
    pts = torch.tensor([[[1.5, 2.25], [0.0, 0.0], [3.9, 2.1], [-1.0, 5.5], [7.0, -2.0]]])  # last two outside
    assert torch.allclose(transfer_points(field, pts), pts @ s_mat.T + t, atol=1e-5)
    # the correlation window is stretched by A: offset (1, 1) reads the target at i + A (1, 1) = i + (2, 3)
    feat = torch.arange(64.0).reshape(1, 1, 8, 8)
    big = identity_field(1, 8, 8)
    big[:, :4] = torch.tensor([2.0, 0.0, 0.0, 3.0])[:, None, None]
    window = sample_window(feat, big, torch.tensor([[1.0, 1.0]]))
    assert window[0, 0, 0, 2, 3] == feat[0, 0, 5, 5]


def test_window_offsets_follow_unfold_order():
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    cols = F.unfold(x, 3, padding=1).reshape(9, 5, 5)
    offsets = window_offsets(1)
    assert torch.equal(offsets[4], torch.tensor([0.0, 0.0]))
    for k, (dx, dy) in enumerate(offsets.long().tolist()):
        assert cols[k, 2, 2] == x[0, 0, 2 + dy, 2 + dx]


# -- eqs. 5, 8, 9 -------------------------------------------------------------------------------
def test_blending_identity_translation_and_affine_by_hand():
    src, trg = torch.randn(1, 4, 6, 6), torch.randn(1, 4, 6, 6)
    alpha = torch.rand(1, 1, 6, 6) + 0.1
    lam = attribute_weight(2)
    assert lam == pytest.approx(1 - math.exp(-2))
    out = blend_features(src, trg, identity_field(1, 6, 6), alpha, lam)
    assert torch.allclose(out, (1 - lam) * src + lam * trg, atol=1e-6)
    shift = blend_features(src, trg, translation_field(torch.tensor([[1.0, 0.0]]), 6, 6), alpha, lam)
    assert torch.allclose(shift[..., :5], (1 - lam) * src[..., :5] + lam * trg[..., 1:], atol=1e-6)
    # A = 2I, f = 0: neighbour j = i + e predicts j - 2e = i - e; weights alpha_j
    field = identity_field(1, 6, 6)
    field[:, 0] = field[:, 3] = 2.0
    out = blend_features(src, trg, field, alpha, 1.0)
    i = (3, 2)  # (y, x)
    num = sum(alpha[0, 0, i[0] + dy, i[1] + dx] * trg[0, :, i[0] - dy, i[1] - dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    den = sum(alpha[0, 0, i[0] + dy, i[1] + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert torch.allclose(out[0, :, i[0], i[1]], num / den, atol=1e-5)


def test_correlation_and_confidence_peak_at_the_match():
    torch.manual_seed(0)
    src = torch.randn(1, 16, 10, 10)
    trg = torch.roll(src, shifts=(1, 2), dims=(2, 3))  # F^t(i + (2, 1)) = F^s(i)
    corr = local_correlation(src, src, trg, identity_field(1, 10, 10), attribute_weight(1))
    assert corr.shape == (1, 81, 10, 10)
    best = window_offsets(4)[corr[0, :, 5, 5].argmax()]
    assert best.tolist() == [2.0, 1.0] and corr[0, :, 5, 5].max() == pytest.approx(1.0, abs=1e-5)
    at_match = local_correlation(src, src, trg, translation_field(torch.tensor([[2.0, 1.0]]), 10, 10), 0.5)
    conf_match, conf_off = confidence(at_match), confidence(corr)
    assert conf_match[0, 0, 5, 5] > 1.5 * conf_off[0, 0, 5, 5]  # eq. 9 on cosines: a soft confidence
    assert torch.allclose(conf_match[0, 0, 5, 5], torch.softmax(at_match[0, :, 5, 5], 0)[40])


def test_droplink_train_and_test():
    link = DropLink(p=1.0, test_value=0.5)
    a, b = torch.zeros(3, 2, 2, 2), torch.ones(3, 2, 2, 2)
    assert torch.equal(link.train()(a, b), b)
    assert torch.allclose(link.eval()(a, b), torch.full_like(a, 0.5))
    assert torch.equal(DropLink(p=0.0).train()(a, b), a)


# -- eqs. 11-13 ---------------------------------------------------------------------------------
def test_matching_loss_is_minimal_at_the_true_shift():
    torch.manual_seed(0)
    src = torch.randn(1, 16, 12, 12)
    trg = torch.roll(src, shifts=(1, 2), dims=(2, 3))  # true field: f = (2, 1)
    losses = {}
    for fx in range(-1, 5):
        for fy in range(-2, 4):
            field = translation_field(torch.tensor([[float(fx), float(fy)]]), 12, 12)
            losses[(fx, fy)] = attribute_matching_loss(src, trg, field, tau=0.0).item()
    assert min(losses, key=losses.get) == (2, 1)
    other, identity = torch.randn_like(src), identity_field(1, 12, 12)
    plain = attribute_matching_loss(src, other, identity, tau=0.0).item()
    assert attribute_matching_loss(src, other, identity, tau=50.0).item() == pytest.approx(50.0)  # max(-log K, tau)
    assert plain <= attribute_matching_loss(src, other, identity, tau=0.5).item() <= plain + 0.5
    assert attribute_matching_loss(src, other, identity, tau=0.5, truncation="cap").item() <= 0.5 + 1e-6  # min
    with pytest.raises(ConfigError):
        attribute_matching_loss(src, src, identity, truncation="both")


def test_negatives_are_shifted_transformations_on_the_target_map():
    # D(i, d) by hand: 1x1 patches, source cell (0, 0) matched to target (2, 1) of a 3x4 target
    attr = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    trg = torch.zeros(1, 2, 3, 4)
    trg[:, 0] = 1.0
    trg[0, :, 1, 3] = torch.tensor([0.0, 1.0])  # the cell right of the match is orthogonal
    field = translation_field(torch.tensor([[2.0, 1.0]]), 1, 1)
    dist, inside = patch_distances(attr, trg, field, window_radius=1, patch_radius=0)
    # offsets (dx, dy) row-major from (-1, -1): every candidate is on the 3x4 map
    assert inside.all()
    assert dist[0, :, 0, 0].tolist() == pytest.approx([0, 0, 0, 0, 0, 2, 0, 0, 0])
    expected = -math.log(1 / (8 + math.exp(-2)))
    assert attribute_matching_loss(attr, trg, field, tau=0.0, window_radius=1, patch_radius=0).item() == pytest.approx(
        expected, abs=1e-5
    )
    # matched at the corner (3, 2): the 5 candidates off the map are left out of the softmax; of the
    # 4 left, (3, 1) is the orthogonal cell
    corner = translation_field(torch.tensor([[3.0, 2.0]]), 1, 1)
    _, inside = patch_distances(attr, trg, corner, window_radius=1, patch_radius=0)
    assert inside[0, :, 0, 0].tolist() == [True, True, False, True, True, False, False, False, False]
    assert attribute_matching_loss(attr, trg, corner, tau=0.0, window_radius=1, patch_radius=0).item() == pytest.approx(
        math.log(3 + math.exp(-2)), abs=1e-5
    )


def test_off_map_candidates_do_not_beat_a_weak_match():
    # attribute-transferred cells u and target cells v at cosine 0.4 (post-ReLU features are often
    # that far apart): a zero feature off the map would be closer (distance 1 < 2 - 2 * 0.4) and win
    # the softmax; they are left out, so every cell scores log(#candidates on the map)
    u, v = torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)
    u[:, 0] = 1.0
    v[:, 0], v[:, 1] = 0.4, math.sqrt(1 - 0.4**2)
    per_axis = torch.tensor([sum(1 for q in range(8) if abs(q - p) <= 4) for p in range(8)], dtype=torch.float64)
    expected = torch.log(per_axis[:, None] * per_axis[None, :]).mean().item()  # 5..8 candidates per axis
    loss = attribute_matching_loss(u, v, identity_field(1, 8, 8), tau=0.0, patch_radius=0)
    assert loss.item() == pytest.approx(expected, abs=1e-4)


def test_flow_loss_is_the_end_point_error_in_cells():
    # 32x32 images, a 4x4 grid (8 px cells); the ground truth moves everything 16 px right = 2 cells
    flow = torch.zeros(1, 2, 32, 32)
    flow[:, 0] = 16.0
    valid = torch.ones(1, 32, 32, dtype=torch.bool)
    true = translation_field(torch.tensor([[2.0, 0.0]]), 4, 4)
    identity = identity_field(1, 4, 4)
    assert flow_loss([true], flow, valid, (32, 32)).item() == pytest.approx(0.0, abs=1e-5)
    assert flow_loss([identity], flow, valid, (32, 32)).item() == pytest.approx(2.0, abs=1e-5)
    assert flow_loss([identity, true], flow, valid, (32, 32)).item() == pytest.approx(1.0, abs=1e-5)  # mean over iterations
    # undefined pixels (NaN flow) are left out: only the left half counts, where the error is 3 cells
    flow[:, 0, :, 16:] = float("nan")
    flow[:, 0, :, :16] = 24.0
    assert flow_loss([identity], flow, torch.isfinite(flow).all(1), (32, 32)).item() == pytest.approx(3.0, abs=1e-5)
    criterion = SAMNetLoss(flow=2.0)
    out = SAMNetOutput([SAMNetIteration(true, torch.rand(1, 3, 32, 32), torch.ones(1, 1, 4, 4), torch.rand(1, 8, 4, 4))],
                       torch.rand(1, 8, 4, 4), torch.rand(1, 8, 4, 4))
    terms = criterion(out, flow)
    assert terms["flow"].item() == pytest.approx(1.0, abs=1e-5)  # the true field is 1 cell short on the left half
    assert terms["loss"].item() == pytest.approx(terms["am"].item() + terms["content"].item()
                                                 + terms["smooth"].item() + 2.0 * terms["flow"].item(), rel=1e-5)
    assert "flow" not in criterion(out) and "flow" not in SAMNetLoss(flow=0.0)(out, flow)


def test_clamp_field_keeps_matches_on_the_target_map():
    field = translation_field(torch.tensor([[5.0, -3.0]]), 2, 3)
    field[:, 1] = 0.25  # A is left alone
    clamped = clamp_field(field, 4, 6)
    target = cell_grid(2, 3)[None] + clamped[:, 4:]
    assert target[0, 0].tolist() == [[5.0, 5.0, 5.0], [5.0, 5.0, 5.0]]  # x = i + 5 clamped at w' - 1 = 5
    assert target[0, 1].tolist() == [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]  # y = j - 3 clamped at 0
    assert torch.equal(clamped[:, :4], field[:, :4])
    inside = translation_field(torch.tensor([[1.0, 1.0]]), 2, 3)
    assert torch.equal(clamp_field(inside, 4, 6), inside)


# -- the network --------------------------------------------------------------------------------
def test_forward_shapes_and_untrained_network_is_identity():
    net = tiny_net(iterations=3)
    assert net.layer == 2 and net.skip_layers == [0, 1, 2]
    out = net.eval()(torch.rand(2, 3, 64, 48), torch.rand(2, 3, 64, 48))
    assert len(out.iterations) == 3
    it = out.final
    assert it.field.shape == (2, 6, 8, 6) and it.image.shape == (2, 3, 64, 48)
    assert it.confidence.shape == (2, 1, 8, 6) and it.attr_feature.shape == (2, 8, 8, 6)
    assert out.src_feature.shape == out.trg_feature.shape == (2, 8, 8, 6)
    assert torch.equal(it.field, identity_field(2, 8, 6))  # zero-initialised regression head
    assert float(it.image.detach().min()) >= 0 and float(it.image.detach().max()) <= 1
    mobile = SAMNet(load_backbone("mobilenet_v2", "none"), matching_channels=(8, 8))
    assert mobile.layer == 6 and mobile.skip_layers == [1, 3, 6]


def test_detached_iterations_run_first_without_gradients():
    torch.manual_seed(0)
    net = tiny_net(iterations=2).eval()
    nn.init.normal_(net.matching.head.weight, std=0.1)  # a network that moves the field
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


def test_epoch_sampler_depends_on_seed_and_progress_only():
    step = {"value": 0}
    a, b = EpochSampler(5, 12, seed=3, progress=lambda: step["value"]), EpochSampler(5, 12, seed=3)
    first = list(a)
    assert len(first) == 12 and sorted(first[:5]) == list(range(5))
    assert list(b) == first
    step["value"] = 6
    assert list(a) != first


# -- Lightning training, checkpoints, resume, configs ---------------------------------------------
def train_overrides(images, willow, steps: int, extra: list[str] = ()) -> list[str]:
    return [
        "model=samnet",
        "experiment=samnet_cpu",
        "backbone.net.weights=none",
        "logger=csv",
        "model.image_size=[48,48]",
        "model.batch_size=2",
        "model.network.matching_channels=[8,8]",
        "model.network.iterations=2",
        "model.val_iterations=2",
        "model.detached_iterations=1",
        f"model.stage1.max_steps={steps}",
        "model.stage2.max_steps=2",
        "model.val_every_n_steps=2",
        f"model.stage1.data.root={images}",
        "model.stage1.train_split=all",
        "model.stage1.val_split=all",
        "model.stage1.val_pairs=2",
        "model.stage1.data.pairs_per_image=1",
        "model.images.every_n_steps=2",
        "model.images.pairs=1",
        "model.trainer.log_every_n_steps=1",
        f"dataset.root={willow}",
        "dataset.max_pairs=4",
        *extra,
    ]


@pytest.fixture(scope="module")
def data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("samnet_data")
    write_photos(root / "images", count=4, size=64)
    build_pfwillow(root / "willow", subclasses={"car(G)": 2, "duck(S)": 2}, size=(96, 64))
    return root / "images", root / "willow"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dirs):
    """A 2-stage run (stage 1: 4 steps in 2 epochs, stage 2: 2 steps) with CSV logging."""
    out = tmp_path_factory.mktemp("samnet_run")
    cfg = compose_config("train", train_overrides(*data_dirs, steps=4), out)
    final = run_training(cfg)
    return out, final


def test_training_run_writes_checkpoints_panels_and_final(trained):
    out, final = trained
    info = json.loads((out / "checkpoints" / "final.json").read_text())
    assert info["checkpoint"] == str(final) and info["stage"] == 2 and final.is_file()
    assert "python evaluate.py method=samnet method.checkpoint=" in info["evaluate"] and "backbone=mobilenet_v2" in info["evaluate"]
    for stage in (1, 2):
        assert (out / "checkpoints" / f"stage{stage}" / "last.ckpt").is_file()
        assert list((out / "checkpoints" / f"stage{stage}").glob("best-step*.ckpt"))
        panels = sorted((out / f"stage{stage}" / "panels").glob("*.png"))
        assert {p.name.split("-")[0] for p in panels} == {"pairs", "iterations"}
    metrics = (out / "stage1" / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val/pck@0.1" in metrics and "val/epe" in metrics and "train/am" in metrics and "lr-Adam" in metrics
    ckpt = torch.load(out / "checkpoints" / "stage1" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 4 and ckpt["samnet"]["stage"] == 1


def test_checkpoint_round_trip_matcher_equals_module(trained):
    out, final = trained
    module = SAMNetModule.load_from_checkpoint(final, weights_only=True).eval()
    matcher = SAMNetMatcher(final, load_backbone("mobilenet_v2", "none"), iterations=3)
    assert matcher.size == (48, 48)
    torch.manual_seed(1)
    src, trg = torch.rand(1, 3, 48, 48), torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        expected = module(src, trg, 3).final.field
        got = matcher.run(src, trg).final.field
    assert torch.equal(expected, got)
    # points through the matcher at another image size: resize there and back
    src_big, trg_big = F.interpolate(src, size=(96, 72)), F.interpolate(trg, size=(60, 80))
    pts = torch.tensor([[[10.0, 20.0], [50.0, 70.0], [float("nan"), float("nan")]]])
    with torch.no_grad():
        result = matcher(src_big, trg_big, pts)
        field = matcher.run(src_big, trg_big).final.field
    assert torch.allclose(result.points, transfer_image_points(field, pts, (96, 72), (60, 80), (48, 48)), equal_nan=True)
    assert torch.isnan(result.points[0, 2]).all()
    assert "warped" not in result.extras  # the picture writer's backward pass makes it for pictured pairs only
    assert result.extras["warped_target"].shape == result.extras["attribute_transfer"].shape == (1, 3, 96, 72)
    flow = matcher(src_big, trg_big, pts, dense="forward").flow
    assert flow.shape == (1, 2, 96, 72)
    assert torch.allclose(flow[0, :, 20, 10] + torch.tensor([10.0, 20.0]), result.points[0, 0], atol=1e-4)


class StopAfterFirstValidation(pl.Callback):
    """Interrupts a run after its first validation (and checkpoint), like a killed job."""

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.should_stop = True


def test_resume_continues_exactly(tmp_path, data_dirs, trained):
    """4 steps straight == stopped after 2 steps, then resumed from last.ckpt to 4 (stage 1)."""
    straight, _ = trained
    out = tmp_path / "run"
    only1 = ["model.stage=1"]
    stop = "trainer.callbacks=[{_target_:test_samnet.StopAfterFirstValidation}]"
    run_training(compose_config("train", train_overrides(*data_dirs, steps=4, extra=[*only1, stop]), out))
    mid = tmp_path / "mid.ckpt"
    shutil.copy(out / "checkpoints" / "stage1" / "last.ckpt", mid)
    assert torch.load(mid, weights_only=True)["global_step"] == 2
    reference = torch.load(straight / "checkpoints" / "stage1" / "last.ckpt", weights_only=True)
    # resumed in place (last.ckpt of the run dir), and elsewhere with model.resume=PATH
    run_training(compose_config("train", train_overrides(*data_dirs, steps=4, extra=only1), out))
    other = tmp_path / "other"
    run_training(compose_config("train", train_overrides(*data_dirs, steps=4, extra=[*only1, f"model.resume={mid}"]), other))
    for run in (out, other):
        resumed = torch.load(run / "checkpoints" / "stage1" / "last.ckpt", weights_only=True)
        assert resumed["global_step"] == reference["global_step"] == 4
        for key, value in reference["state_dict"].items():
            assert torch.equal(resumed["state_dict"][key], value), key


def test_method_config_instantiates_and_errors_name_the_fix(tmp_path, trained, data_dirs):
    _, final = trained
    cfg = compose_config("evaluate", ["method=samnet", f"method.checkpoint={final}", "backbone.net.weights=none"], tmp_path)
    assert cfg.method.iterations is None
    matcher = build_method(cfg.method)
    assert isinstance(matcher, SAMNetMatcher) and matcher.iterations == 2  # the run's model.val_iterations
    assert SAMNetMatcher(final, load_backbone("mobilenet_v2", "none"), iterations=10).iterations == 10
    missing = compose_config("evaluate", ["method=samnet", "backbone.net.weights=none"], tmp_path)
    with pytest.raises(InstantiationException) as err:
        build_method(missing.method)
    user = find_user_error(err.value)
    assert isinstance(user, ConfigError) and "python train.py model=samnet" in str(user)
    with pytest.raises(WeightsError, match="python train.py model=samnet"):
        SAMNetMatcher(tmp_path / "nope.ckpt", load_backbone("mobilenet_v2", "none"))
    with pytest.raises(ConfigError, match="backbone=mobilenet_v2"):
        SAMNetMatcher(final, TinyBackbone())
    # evaluation end to end on the PF-WILLOW fixture
    _, willow = data_dirs
    ev = compose_config(
        "evaluate",
        ["method=samnet", f"method.checkpoint={final}", "method.iterations=2", "backbone.net.weights=none",
         "dataset=pfwillow", f"dataset.root={willow}", "dataset.max_pairs=2", "logger=none",
         "save_pictures=true", "max_pictures=1"],
        tmp_path / "eval",
    )
    metrics = run_evaluation(ev)
    assert metrics["n_pairs"] == 2 and 0.0 <= metrics["pck@0.1"] <= 100.0
    # the pictured pair's attribute transfer: source | target | I^{s<-t} | warped target, and I^{s<-t}
    strips = list((tmp_path / "eval" / "pictures").rglob("*_samnet.png"))
    transfers = list((tmp_path / "eval" / "pictures").rglob("*_attribute_transfer.png"))
    assert len(strips) == len(transfers) == 1
    transfer, strip = Image.open(transfers[0]), Image.open(strips[0])
    assert strip.height >= transfer.height and strip.width > 3 * transfer.width  # 3 source-sized panels + target


def test_train_script_smoke(tmp_path, data_dirs):
    """`python train.py model=samnet experiment=samnet_cpu ...` end to end (stage 1 only, 1 step, W&B offline)."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    overrides = [o for o in train_overrides(*data_dirs, steps=1) if not o.startswith("logger=")]
    overrides += ["model.stage=1", "model.val_every_n_steps=1", "model.images.every_n_steps=1", "logger=wandb", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run([sys.executable, "train.py", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "python evaluate.py method=samnet method.checkpoint=" in proc.stdout
    info = json.loads((tmp_path / "checkpoints" / "final.json").read_text())
    assert info["stage"] == 1 and os.path.isfile(info["checkpoint"])
    media = list((tmp_path / "stage1" / "wandb").glob("offline-run-*/files/media/images/**/*.png"))
    assert media, "the image panels were not logged to W&B"


def test_train_script_under_ddp_on_two_cpu_processes(tmp_path, data_dirs):
    """`train.py model=samnet trainer=ddp` trains with 2 CPU processes (gloo) and writes one checkpoint."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    overrides = train_overrides(*data_dirs, steps=2) + [
        "model.stage=1", "trainer=ddp", "trainer.devices=2", "trainer.accelerator=cpu", f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run([sys.executable, "train.py", *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((tmp_path / "checkpoints" / "final.json").read_text())
    assert info["stage"] == 1 and os.path.isfile(info["checkpoint"])
