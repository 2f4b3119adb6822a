"""The nearest-neighbour baseline: read-outs on tiny similarity maps with known answers, the matcher
on features whose nearest neighbours are known, the box read-out as HPF with one layer."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import compose_config
from semcorr.backbones.base import Backbone
from semcorr.backbones.geometry import LayerGeometry
from semcorr.errors import ConfigError
from semcorr.lit.evaluation_runner import build_method
from semcorr.methods.hpf import HyperpixelFlow
from semcorr.methods.nn import NearestNeighbour, read_out


def test_argmax_reads_the_best_cell_centre():
    sim = torch.zeros(1, 3, 4)
    sim[0, 2, 1] = 1.0  # row 2, column 1 of a stride-8 map -> pixel (8, 16)
    assert read_out(sim, 8, "argmax").tolist() == [[8.0, 16.0]]


def test_soft_argmax_is_the_expectation_under_the_softmax():
    """Two cells (columns 0 and 1 of one row, stride 10) with similarities 0 and T ln 3: weights 1/4 and
    3/4, so x = 7.5."""
    t = 0.02
    sim = torch.tensor([[[0.0, t * math.log(3.0)]]])
    (x, y), = read_out(sim, 10, "soft_argmax", temperature=t).tolist()
    assert x == pytest.approx(7.5) and y == 0.0


def test_kernel_soft_argmax_suppresses_a_distant_second_mode():
    """A 1 x 9 map with equal peaks at columns 1 and 8: the soft argmax lands between them, the kernel soft
    argmax (sigma 1 cell around the argmax, column 1) stays on the first: the far peak's similarity is
    multiplied by exp(-49 / 2) and its neighbours' weights vanish too."""
    sim = torch.full((1, 1, 9), 0.1)
    sim[0, 0, 1] = sim[0, 0, 8] = 0.9
    soft = read_out(sim, 1, "soft_argmax", temperature=0.02)[0, 0].item()
    kernel = read_out(sim, 1, "kernel_soft_argmax", temperature=0.02, sigma=1.0)[0, 0].item()
    assert soft == pytest.approx(4.5, abs=1e-3)
    # by hand: weights of columns 0, 1, 2 are exp((0.1 e^-1/2) / T), exp(0.9 / T), exp((0.1 e^-1/2) / T), the rest ~0
    side = math.exp(0.1 * math.exp(-0.5) / 0.02 - 0.9 / 0.02)
    assert kernel == pytest.approx((0 * side + 1 + 2 * side) / (1 + 2 * side), abs=1e-6)
    with pytest.raises(ConfigError, match="method.readout"):
        read_out(sim, 1, "median")


class Pixels(Backbone):
    """A 'backbone' whose layer 0 is the input image sampled every 4 pixels (stride 4): features are
    the RGB values, so nearest neighbours are known by construction."""

    def __init__(self) -> None:
        super().__init__("pixels", torch.nn.Identity(), [LayerGeometry(3, 4, 4)], pyramid=(0, 0, 0, 0, 0))

    def forward(self, img, layers):
        return [img[..., ::4, ::4] for _ in layers]


def coloured(h: int, w: int, spots: dict[tuple[int, int], tuple[float, float, float]]) -> torch.Tensor:
    img = torch.full((1, 3, h, w), 0.2)
    img[0, 2] = 1.0  # a blue background: every feature has a non-zero norm
    for (y, x), rgb in spots.items():
        img[0, :, y, x] = torch.tensor(rgb)
    return img


def test_matcher_finds_the_uniquely_coloured_cell_and_keeps_nan_queries():
    src = coloured(16, 16, {(4, 8): (1.0, 0.0, 0.0), (12, 0): (0.0, 1.0, 0.0)})
    trg = coloured(16, 24, {(8, 20): (1.0, 0.0, 0.0), (0, 4): (0.0, 1.0, 0.0)})
    points = torch.tensor([[[8.0, 4.0], [0.0, 12.0], [float("nan"), float("nan")]]])
    for readout in ("argmax", "kernel_soft_argmax"):
        out = NearestNeighbour(Pixels(), 0, readout=readout, temperature=0.001, sigma=0.5)(src, trg, points, ["s"], ["t"])
        torch.testing.assert_close(out.points[0, :2], torch.tensor([[20.0, 8.0], [4.0, 0.0]]), atol=1e-3, rtol=0)
        assert torch.isnan(out.points[0, 2]).all()
    matcher = NearestNeighbour(Pixels(), 0)
    flow = matcher(src, trg, points[:, :0], ["s"], ["t"], dense="forward").flow
    assert flow.shape == (1, 2, 16, 16) and flow[0, :, 4, 8].tolist() == [12.0, 4.0]  # (8, 4) -> (20, 8)
    back = matcher(src, trg, points[:, :0], ["s"], ["t"], dense="backward").flow
    assert back.shape == (1, 2, 16, 24) and back[0, :, 8, 20].tolist() == [-12.0, -4.0]  # (20, 8) -> (8, 4)


def test_box_readout_is_hpf_with_one_layer_and_no_hough_matching():
    from semcorr.backbones import load_backbone

    backbone = load_backbone("mobilenet_v2", weights="none")
    torch.manual_seed(0)
    src, trg = torch.rand(1, 3, 96, 128), torch.rand(1, 3, 112, 96)
    points = torch.tensor([[[40.0, 30.0], [90.0, 60.0]]])
    box = NearestNeighbour(backbone, 9, readout="box")(src, trg, points)
    hpf = HyperpixelFlow(backbone, [9], rhm=False)(src, trg, points)
    torch.testing.assert_close(box.points, hpf.points, equal_nan=True)
    assert box.extras.keys() == hpf.extras.keys()


def test_config_builds_each_readout(tmp_path):
    for readout in ("argmax", "soft_argmax", "kernel_soft_argmax", "box"):
        cfg = compose_config("evaluate", ["method=nn", f"method.readout={readout}", "backbone.net.weights=none",
                                          "logger=none"], tmp_path)
        matcher = build_method(cfg.method)
        assert isinstance(matcher, NearestNeighbour) and matcher.readout == readout and matcher.layer == 9
        assert matcher.margin_pruning == (True if readout == "box" else None)
    with pytest.raises(ConfigError, match="method.readout must be one of"):
        NearestNeighbour(Pixels(), 0, readout="mean")
