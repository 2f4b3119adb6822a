"""Hyperpixel Flow: geometry, RHM on hand-checked inputs, fast == straightforward, transfer rules.

CPU only and small; a fake backbone (strided convolutions of the image) stands in for a real one.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from semcorr.methods.hpf import (
    HyperpixelFlow,
    box_transfer,
    box_transfer_reference,
    build_hyperimage,
    dense_box_transfer,
    gaussian_kernel,
    hough_space,
    hyperpixel_grid,
    match_fast,
    match_reference,
    rhm_reference,
)
from semcorr.methods.hpf.rhm import HoughVoter, block_argmax
from semcorr.methods.hpf.rhm_reference import pair_bins
from semcorr.methods.hpf.similarity import SourceScaledCosine, Workspace, reference_cosine
from semcorr.methods.hpf.transfer import covering_cells


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


class FakeBackbone(nn.Module):
    """Translation-equivariant features: id 0 a 4x4/4 convolution of the image (stride 4), ids 1
    and 2 a 1x1 convolution of id 0 taken at every 2nd / 4th cell (strides 8 and 16), id 3 a
    second stride-4 map (a 1x1 convolution of id 0, same size as the base)."""

    name = "fake"
    layer_ids = (0, 1, 2, 3)
    pyramid = (0, 1, 2)
    _strides = (4, 8, 16, 4)
    _rf = (4, 12, 28, 4)
    _channels = (8, 12, 16, 6)

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w0 = nn.Parameter(torch.randn(8, 3, 4, 4, generator=g), requires_grad=False)
        self.w1 = nn.Parameter(torch.randn(12, 8, 1, 1, generator=g), requires_grad=False)
        self.w2 = nn.Parameter(torch.randn(16, 8, 1, 1, generator=g), requires_grad=False)
        self.w3 = nn.Parameter(torch.randn(6, 8, 1, 1, generator=g), requires_grad=False)
        self.calls = 0

    def forward(self, img: torch.Tensor, layers) -> list[torch.Tensor]:
        self.calls += 1
        f0 = F.conv2d(img - 0.5, self.w0, stride=4)
        maps = {
            0: f0,
            1: F.conv2d(f0, self.w1)[:, :, ::2, ::2],
            2: F.conv2d(f0, self.w2)[:, :, ::4, ::4],
            3: F.conv2d(f0, self.w3),
        }
        return [maps[i] for i in layers]

    def stride(self, layer: int) -> int:
        return self._strides[layer]

    def receptive_field(self, layer: int) -> int:
        return self._rf[layer]

    def channels(self, layer: int) -> int:
        return self._channels[layer]


def random_hyperimage(h: int, w: int, seed: int, prune: bool = True, fold: int = 8):
    """Hyperimage of random features: a stride-4 base (+ a same-stride layer), strides 8 (7
    channels) and 16 (9 channels); ``fold=8`` joins the stride-8 layer to the base and keeps the
    stride-16 one coarse."""
    g = torch.Generator().manual_seed(seed)
    layers = [
        torch.randn(c, -(-h // s), -(-w // s), generator=g) for c, s in [(6, 4), (5, 4), (7, 8), (9, 16)]
    ]
    return build_hyperimage(layers, (4, 4, 8, 16), (h, w), 4, 27, prune, fold)


# ---------------------------------------------------------------- constants and geometry
def test_gaussian_kernel_constants():
    k = gaussian_kernel(7).double().numpy()
    sigma = 7 / 2 / 2.354
    ax = np.arange(-3, 4)
    expected = np.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2 * sigma**2))
    expected /= expected.sum()
    assert k.shape == (7, 7)
    np.testing.assert_allclose(k, expected, rtol=1e-5)
    assert math.isclose(k.sum(), 1.0, rel_tol=1e-6)
    np.testing.assert_allclose(k, k.T)
    total = np.exp(-(ax[None, :] ** 2 + ax[:, None] ** 2) / (2 * sigma**2)).sum()
    assert math.isclose(k[3, 3], 1 / total, rel_tol=1e-5)


def test_hough_space_constants():
    space = hough_space((300, 200), (250, 300), 8192)
    cell = math.sqrt(550 * 500 / 8192)
    assert space.cell == pytest.approx(cell)
    assert (space.nbins_x, space.nbins_y) == (int(550 / cell) + 1, int(500 / cell) + 1) == (95, 87)


@pytest.mark.parametrize("jump,rf", [(4, 11), (4, 27), (8, 59), (16, 139), (2, 3), (4, 19)])
@pytest.mark.parametrize("hw", [(225, 300), (300, 212), (37, 41)])
def test_margin_pruning_matches_box_rule(jump, rf, hw):
    fh, fw = -(-hw[0] // jump), -(-hw[1] // jump)
    grid = hyperpixel_grid((fh, fw), hw, jump, rf)
    ys, xs = torch.meshgrid(torch.arange(fh), torch.arange(fw), indexing="ij")
    r = rf // 2
    x0, y0, x1, y1 = xs * jump - r, ys * jump - r, xs * jump + r, ys * jump + r
    keep = (x0 >= -jump) & (y0 >= -jump) & (x1 < hw[1] + jump) & (y1 < hw[0] + jump)
    assert grid.size == int(keep.sum())
    boxes = torch.stack([x0, y0, x1, y1], -1)[keep].float()
    assert torch.equal(grid.boxes(), boxes)
    assert hyperpixel_grid((fh, fw), hw, jump, rf, margin_pruning=False).size == fh * fw


def test_margin_pruning_counts_resnet_base():
    # ResNet id 2 (jump 4, rf 27) on a 300x225 image: 75x57 cells, columns 3..72, rows 3..53 kept
    grid = hyperpixel_grid((57, 75), (225, 300), 4, 27)
    assert (grid.rows, grid.cols) == (range(3, 54), range(3, 73))
    assert grid.size == 51 * 70


# ---------------------------------------------------------------- RHM by hand
# two 2x2 grids (jump 4, rf 3) in 8x8 images; ncells 16 -> cell 4, 5x5 bins. Hyperpixel i = (x, y):
# 0 = (0,0), 1 = (1,0), 2 = (0,1), 3 = (1,1); offset (8,8) - 4 (xs,ys) + 4 (xt,yt), bin = offset / 4
HAND_SIM = torch.tensor(
    [
        [0.9, 0.1, 0.0, 0.0],
        [0.0, 0.8, 0.0, 0.85],
        [0.2, 0.0, 0.7, 0.0],
        [0.0, 0.0, 0.4, 0.6],
    ]
)


def hand_grids():
    g = hyperpixel_grid((2, 2), (8, 8), 4, 3, margin_pruning=False)
    return g, g


def hand_votes() -> torch.Tensor:
    votes = torch.zeros(5, 5)  # [bin_y, bin_x]
    votes[2, 2] = 0.9 + 0.8 + 0.7 + 0.6  # zero offset
    votes[2, 3] = 0.1  # (0 -> 1), dx = +1
    votes[3, 2] = 0.85  # (1 -> 3), dy = +1
    votes[2, 1] = 0.4  # (3 -> 2), dx = -1
    votes[1, 2] = 0.2  # (2 -> 0), dy = -1
    return votes


def smooth_by_hand(votes: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    out = torch.zeros_like(votes)
    n, m = votes.shape
    for y in range(n):
        for x in range(m):
            for dy in range(-3, 4):
                for dx in range(-3, 4):
                    if 0 <= y + dy < n and 0 <= x + dx < m:
                        out[y, x] += kernel[dy + 3, dx + 3] * votes[y + dy, x + dx]
    return out


def test_rhm_hand_bins_votes_and_argmax():
    src, trg = hand_grids()
    space = hough_space(src.image_wh, trg.image_wh, 16)
    assert (space.nbins_x, space.nbins_y, space.cell) == (5, 5, 4.0)
    bx = torch.tensor([[2, 3, 2, 3], [1, 2, 1, 2], [2, 3, 2, 3], [1, 2, 1, 2]])
    by = torch.tensor([[2, 2, 3, 3], [2, 2, 3, 3], [1, 1, 2, 2], [1, 1, 2, 2]])
    assert torch.equal(pair_bins(src, trg, space), bx + 5 * by)

    kernel = gaussian_kernel(7)
    conf, votes = rhm_reference(HAND_SIM, src, trg, 16, kernel)
    torch.testing.assert_close(votes, hand_votes())
    smoothed = smooth_by_hand(hand_votes(), kernel)
    torch.testing.assert_close(conf, HAND_SIM * smoothed.reshape(-1)[bx + 5 * by])
    # RHM prefers the geometrically consistent 1 -> 1 over the more similar 1 -> 3
    assert conf.argmax(1).tolist() == [0, 1, 2, 3]
    assert HAND_SIM.argmax(1).tolist() == [0, 3, 2, 3]

    # the fast voter takes the source hyperpixels in reverse order, a block of rows at a time
    voter = HoughVoter(src, trg, 16, kernel, Workspace(), torch.device("cpu"), max_rows=1)
    rows = HAND_SIM.flip(0).view(2, 2, 2, 2)
    for start in (1, 0):
        voter.add_rows(start, rows[start : start + 1], torch.ones(1, 2, 1, 1))
    voter.finish()
    torch.testing.assert_close(voter.votes, hand_votes())
    fast_conf = (rows * voter.weights(0, 2)).reshape(4, 4).flip(0)
    torch.testing.assert_close(fast_conf, conf)


def test_block_argmax_first_occurrence():
    block = torch.tensor([[[0.0, 2.0], [2.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]], [[1.0, 0.0], [3.0, 3.0]]])
    values, index = block_argmax(block)
    assert values.tolist() == [2.0, 0.0, 3.0]
    assert index.tolist() == [1, 0, 2]


# ---------------------------------------------------------------- fast == straightforward
@pytest.mark.parametrize("prune,fold", [(True, 8), (False, 8), (True, 0), (True, 64)])
def test_fast_cosine_equals_straightforward(prune, fold):
    src, trg = random_hyperimage(61, 83, 0, prune, fold), random_hyperimage(70, 50, 1, prune, fold)
    assert len(src.groups) == (fold < 7) + (fold < 9)
    ref = reference_cosine(src, trg)
    hs, ws = src.grid.shape
    cosine = SourceScaledCosine(src, trg, Workspace())
    fast = torch.empty(hs, ws, trg.grid.size)
    for start in range(0, hs, 3):  # blocks of 3 rows, the last one shorter
        cosine.fill(start, min(start + 3, hs), fast[start : start + 3])
    fast = fast.view_as(ref).flip(0) * src.inv_norm[:, None]
    err = (fast - ref).abs().max() / ref.abs().max()
    assert err < 1e-5


@pytest.mark.parametrize("rhm", [True, False])
@pytest.mark.parametrize("prune", [True, False])
def test_fast_matches_equal_straightforward(rhm, prune):
    src, trg = random_hyperimage(66, 90, 2, prune), random_hyperimage(75, 58, 3, prune)
    kernel = gaussian_kernel(7)
    m_fast, s_fast = match_fast(src, trg, rhm, 3.0, 8192, kernel, Workspace())
    m_ref, s_ref = match_reference(src, trg, rhm, 3.0, 8192, kernel)
    assert torch.equal(m_fast, m_ref)
    torch.testing.assert_close(s_fast, s_ref, rtol=1e-5, atol=1e-7)
    pts = torch.rand(40, 2) * torch.tensor([90.0, 66.0])
    fast_pts = box_transfer(src.grid, trg.grid, m_fast, pts)
    ref_pts = box_transfer_reference(src.grid.boxes(), trg.grid.boxes(), m_ref, pts)
    torch.testing.assert_close(fast_pts, ref_pts, equal_nan=True, rtol=0, atol=1e-4)


@pytest.mark.parametrize("fold", [0, 12, 64])
def test_matcher_fast_and_reference_agree(fold):
    img_s, img_t = torch.rand(2, 1, 3, 64, 80).unbind(0)
    pts = torch.rand(1, 12, 2) * 60
    outs = [
        HyperpixelFlow(FakeBackbone(), [0, 1, 2, 3], fast=fast, fold_channels=fold)(img_s, img_t, pts)
        for fast in (True, False)
    ]
    torch.testing.assert_close(outs[0].points, outs[1].points, equal_nan=True, rtol=0, atol=1e-4)
    for key in ("sparse_src", "sparse_trg"):
        torch.testing.assert_close(outs[0].extras[key], outs[1].extras[key])


# ---------------------------------------------------------------- transfer
def toy_grids():
    # 3x3 cells, jump 4, rf 5: boxes [4c - 2, 4c + 2], no pruning; target identical
    g = hyperpixel_grid((3, 3), (12, 12), 4, 5, margin_pruning=False)
    return g, g


def test_transfer_toy_grid_by_hand():
    src, trg = toy_grids()
    match = torch.arange(8, -1, -1)  # reversed; target top-left of k = (4 (k % 3) - 2, 4 (k // 3) - 2)
    pts = torch.tensor([[4.5, 4.5], [2.0, 4.5], [2.0, 2.0], [-5.0, 3.0], [float("nan"), 1.0]])
    expected = torch.tensor(
        [
            [4.5, 4.5],  # only box 4 (x 2..6, y 2..6) -> match 4: (2, 2) + (2.5, 2.5)
            [6.0, 4.5],  # boxes 3, 4: ((6, 2) + (4, 2.5) + (2, 2) + (0, 2.5)) / 2
            [6.0, 6.0],  # boxes 0, 1, 3, 4: ((10, 10) + (2, 10) + (10, 2) + (2, 2)) / 4
            [float("nan")] * 2,  # in no box
            [float("nan")] * 2,
        ]
    )
    for out in (
        box_transfer_reference(src.boxes(), trg.boxes(), match, pts),
        box_transfer(src, trg, match, pts),
    ):
        torch.testing.assert_close(out, expected, equal_nan=True)


def test_transfer_single_box():
    g = hyperpixel_grid((3, 3), (12, 12), 4, 3, margin_pruning=False)  # boxes [4c - 1, 4c + 1]
    match = torch.tensor([4, 4, 4, 4, 8, 4, 4, 4, 4])
    pts = torch.tensor([[4.5, 3.0], [2.0, 4.0], [5.0, 5.0]])
    # (4.5, 3): box 4 only -> match 8, top-left (7, 7) + (4.5 - 3, 3 - 3); x = 2 lies in no box
    expected = torch.tensor([[8.5, 7.0], [float("nan")] * 2, [9.0, 9.0]])
    torch.testing.assert_close(box_transfer(g, g, match, pts), expected, equal_nan=True)
    torch.testing.assert_close(box_transfer_reference(g.boxes(), g.boxes(), match, pts), expected, equal_nan=True)


@pytest.mark.parametrize("jump,rf", [(4, 11), (4, 27), (8, 43), (4, 3)])
def test_covering_cells_exact(jump, rf):
    grid_points = torch.arange(-20, 80, dtype=torch.float32)
    coords = torch.cat([grid_points, torch.rand(200) * 100 - 20, grid_points + 0.5])
    lo, hi = covering_cells(coords, 2, 15, jump, rf // 2)
    cells = torch.arange(2, 17)
    box_lo, box_hi = (cells * jump - rf // 2).float(), (cells * jump + rf // 2).float()
    inside = (coords[:, None] >= box_lo) & (coords[:, None] <= box_hi)
    for i in range(len(coords)):
        found = torch.nonzero(inside[i]).flatten()
        if len(found) == 0:
            assert lo[i] > hi[i]
        else:
            assert (lo[i].item(), hi[i].item()) == (found.min().item(), found.max().item())


@pytest.mark.parametrize("prune", [True, False])
def test_dense_flow_equals_point_rule(prune):
    src, trg = random_hyperimage(37, 45, 4, prune), random_hyperimage(41, 39, 5, prune)
    match, _ = match_fast(src, trg, True, 3.0, 8192, gaussian_kernel(7), Workspace())
    flow = dense_box_transfer(src.grid, trg.grid, match)
    ys, xs = torch.meshgrid(torch.arange(37.0), torch.arange(45.0), indexing="ij")
    pix = torch.stack([xs, ys], -1).view(-1, 2)
    ref = box_transfer_reference(src.grid.boxes(), trg.grid.boxes(), match, pix) - pix
    torch.testing.assert_close(flow.permute(1, 2, 0).reshape(-1, 2), ref, equal_nan=True, rtol=0, atol=1e-4)


# ---------------------------------------------------------------- matcher end to end
def shifted_pair(shift: int = 16):
    """Source 68x84 and a target whose content is the source's moved by (+shift, +shift).

    68 = 4 * 17 and 84 = 4 * 21: base maps of 17 x 21 cells, an odd 4 m + 1 each, so that the
    stride-8 and stride-16 maps upsample (align_corners=True) at exact half / quarter cells and the
    hyperimage shifts with the image by shift / 4 cells.
    """
    g = torch.Generator().manual_seed(7)
    big = torch.rand(3, 68 + shift, 84 + shift, generator=g)
    return big[:, shift:, shift:][None], big[:, :68, :84][None]


@pytest.mark.parametrize("rhm", [True, False])
@pytest.mark.parametrize("fast,fold", [(True, 0), (True, 64), (False, 0)])
def test_synthetic_shift_is_exact(rhm, fast, fold):
    src, trg = shifted_pair(16)
    g = torch.Generator().manual_seed(3)
    # keypoints whose covering boxes (jump 4, half rf 2) all have a counterpart inside the target
    pts = torch.stack([torch.rand(30, generator=g) * 58 + 2, torch.rand(30, generator=g) * 42 + 2], -1)
    pts[:5] = torch.tensor([[2.0, 2.0], [10.0, 6.0], [30.0, 30.0], [60.0, 44.0], [6.0, 42.0]])
    model = HyperpixelFlow(FakeBackbone(), [0, 1, 2], rhm=rhm, fast=fast, margin_pruning=False, fold_channels=fold)
    out = model(src, trg, pts[None])
    torch.testing.assert_close(out.points[0], pts + 16, rtol=0, atol=1e-4)
    flow = model(src, trg, pts[None], dense="forward").flow  # the same pass gives the flow
    torch.testing.assert_close(flow[0, :, 2:44, 2:60], torch.full((2, 42, 58), 16.0), rtol=0, atol=1e-4)
    back = model(src, trg, pts[None], dense="backward").flow  # target -> source: the reverse shift
    torch.testing.assert_close(back[0, :, 18:60, 18:76], torch.full((2, 42, 58), -16.0), rtol=0, atol=1e-4)


def test_forward_batch_padding_extras_and_cache():
    backbone = FakeBackbone()
    model = HyperpixelFlow(backbone, [0, 2], sparse_k=7)
    src = torch.rand(2, 3, 48, 64)
    trg = torch.rand(2, 3, 48, 64)
    pts = torch.rand(2, 5, 2) * 40
    pts[1, 3:] = float("nan")
    out = model(src, trg, pts, ["a", "b"], ["c", "a"])
    assert out.points.shape == (2, 5, 2)
    assert torch.isnan(out.points[1, 3:]).all() and not torch.isnan(out.points[:, :3]).any()
    assert out.extras["sparse_src"].shape == (2, 7, 2) and out.extras["sparse_trg"].shape == (2, 7, 2)
    assert out.extras["sparse_score"].shape == (2, 7)
    scores = out.extras["sparse_score"][0]
    assert torch.all(scores[:-1] >= scores[1:])
    assert backbone.calls == 2 and len(model.cache) == 3
    again = model(src, trg, pts, ["a", "b"], ["c", "a"])
    assert backbone.calls == 2  # every image cached
    torch.testing.assert_close(again.points, out.points, equal_nan=True)
    # the per-pair entry points used by the layer search give the same answer
    feats = dict(zip((0, 2), (f[0] for f in backbone(src[:1], [0, 2]))))
    s = model.hyperimage_from_features(feats, [2, 0], (48, 64))
    t = model.hyperimages(trg[:1])[0]
    torch.testing.assert_close(model.transfer(s, t, pts[0]), out.points[0], equal_nan=True)
    model.clear_cache()
    assert len(model.cache) == 0


def test_no_hyperpixel_left_gives_nan():
    model = HyperpixelFlow(FakeBackbone(), [0])
    model.backbone._rf = (40, 12, 28, 4)  # boxes wider than the image: all pruned
    out = model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.rand(1, 3, 2) * 10)
    assert torch.isnan(out.points).all() and torch.isnan(out.extras["sparse_src"]).all()
    flow = model(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), torch.zeros(1, 0, 2), dense="forward").flow
    assert flow.shape == (1, 2, 16, 16) and torch.isnan(flow).all()


def test_bad_layer_ids_raise():
    from semcorr.errors import ConfigError

    class Strict(FakeBackbone):
        def stride(self, layer):
            if layer not in self.layer_ids:
                raise ConfigError(f"bad layer {layer}")
            return super().stride(layer)

    with pytest.raises(ConfigError):
        HyperpixelFlow(Strict(), [0, 9])
    with pytest.raises(ConfigError):
        HyperpixelFlow(Strict(), [])


# ---------------------------------------------------------------- real data (slow)
WILLOW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "PF-dataset-WILLOW"


def willow_image(path: Path) -> torch.Tensor:
    from PIL import Image

    img = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    h, w = img.shape[-2:]
    r = min(1.0, 300 / max(h, w))
    return F.interpolate(img[None], size=(int(h * r), int(w * r)), mode="bilinear", align_corners=False)


@pytest.mark.slow
def test_real_pairs_fast_equals_reference():
    if not WILLOW.is_dir():
        pytest.skip(f"PF-WILLOW not found at {WILLOW}")
    from semcorr.backbones import load_backbone
    from semcorr.errors import WeightsError

    try:
        backbone = load_backbone("mobilenet_v2", "offline")
    except WeightsError as err:
        pytest.skip(f"offline MobileNetV2 weights unavailable: {err}")
    src_path, trg_path = sorted((WILLOW / "car(G)").glob("*.png"))[:2]
    src, trg = willow_image(src_path), willow_image(trg_path)
    fast = HyperpixelFlow(backbone, [3, 6, 10, 13])
    ref = HyperpixelFlow(backbone, [3, 6, 10, 13], fast=False)
    m_fast, score_fast = fast.match(fast.hyperimages(src)[0], fast.hyperimages(trg)[0])
    m_ref, score_ref = ref.match(ref.hyperimages(src)[0], ref.hyperimages(trg)[0])
    assert torch.equal(m_fast, m_ref)
    torch.testing.assert_close(score_fast, score_ref, rtol=1e-4, atol=1e-9)
