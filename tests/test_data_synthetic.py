"""Random warps with exact ground truth, the synthetic pair dataset and the offline sample dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import DataLoader

from semcorr.data.collate import collate_pairs
from semcorr.data.sample import SHIPPED_PHOTOS, SampleDataset
from semcorr.data.synthetic import SyntheticPairsDataset
from semcorr.data.warps import (
    IDENTITY,
    Warp,
    WarpRanges,
    control_grid,
    inside,
    make_generator,
    sample_warp,
)
from semcorr.errors import ConfigError, DatasetNotFoundError
from semcorr.grid import pixel_points

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT / "../shared/data"
WILLOW = SHARED_DATA / "PF-dataset-WILLOW"

BASE_KEYS = {
    "src_img", "trg_img", "src_kps", "trg_kps", "n_kps", "pck_threshold", "pck_threshold_original", "category", "category_id",
    "pair_id", "index", "src_scale", "trg_scale", "src_path", "trg_path",
}
FLOW_KEYS = {"flow", "src_mask", "flow_threshold"}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small: one intra-op thread is as fast, and avoids OpenMP threads spinning
    against each other when the machine is busy (a 4x slowdown on 2 busy cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -- helpers ----------------------------------------------------------------------------------
def smooth_image(h: int, w: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(3, H, W) low-frequency pattern in [0, 1] (bilinear interpolation is nearly exact on it)."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    return torch.stack(
        [
            0.5 + 0.4 * torch.sin(xs / 9.0) * torch.cos(ys / 11.0),
            0.5 + 0.4 * torch.cos(xs / 13.0 + ys / 10.0),
            0.5 + 0.4 * torch.sin(ys / 8.0 - xs / 15.0),
        ]
    )


def bilinear(img: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Sample (C, H, W) at (N, 2) pixel points (x, y), zero outside: (C, N)."""
    h, w = img.shape[-2:]
    norm = torch.stack([2 * points[:, 0] / (w - 1) - 1, 2 * points[:, 1] / (h - 1) - 1], -1).to(img.dtype)
    return F.grid_sample(img[None], norm[None, None], mode="bilinear", align_corners=True)[0, :, 0]


def write_images(folder: Path, layout: dict[str, int], size: tuple[int, int] = (48, 64)) -> None:
    """Smooth RGB PNGs: ``layout`` maps a sub-folder ("" for the root) to a number of images."""
    for sub, count in layout.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            img = smooth_image(size[0] + 4 * i, size[1], torch.float64).permute(1, 2, 0).numpy()
            Image.fromarray((img * 255).round().astype(np.uint8)).save(folder / sub / f"img{i}.png")


# -- warps ------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [0, 1, 2])
def test_warp_maps_are_exact_inverses(key: int) -> None:
    h, w = 60, 80
    warp = sample_warp((h, w), WarpRanges(), make_generator(7, key))
    assert not warp.is_identity
    grid = pixel_points(h, w, dtype=torch.float64)
    # target -> source -> target, for every target pixel that samples the source
    src = warp.trg_to_src(grid)
    seen = inside(src, h, w)
    assert seen.float().mean() > 0.2
    back = warp.src_to_trg(src[seen])
    assert (back - grid[seen]).norm(dim=-1).max() < 1e-3
    # source -> target -> source, for every source pixel with a finite forward map
    trg, residual = warp.src_to_trg(grid, return_residual=True)
    ok = torch.isfinite(trg).all(-1)
    assert (warp.trg_to_src(trg[ok]) - grid[ok]).norm(dim=-1).max() < 1e-3
    assert residual[ok].max() < 1e-6  # the Newton solve is far tighter than the 1e-3 px check
    # every source pixel that some target pixel sees (i.e. lands inside the target) is found
    flow = warp.flow()
    valid = torch.isfinite(flow).all(0).reshape(-1)
    landed = inside(trg, h, w) & ok
    assert torch.equal(valid, landed)
    # ... and no source pixel seen well inside the target is missed (no false NaN)
    seen_inner = seen & inside(grid, h, w, margin=4.0)
    cells = src[seen_inner].round().long()
    assert valid.reshape(h, w)[cells[:, 1], cells[:, 0]].float().mean() > 0.99


def test_tps_interpolates_control_points_and_jacobian() -> None:
    warp = sample_warp((32, 32), WarpRanges(), make_generator(3, "tps"))
    ctrl = control_grid()
    assert torch.allclose(warp.tps(ctrl), ctrl + warp.jitter, atol=1e-12)
    u = torch.rand(40, 2, generator=make_generator(0, "u"), dtype=torch.float64) * 2 - 1
    eps = 1e-6
    cols = []
    for j in range(2):
        e = torch.zeros(2, dtype=torch.float64)
        e[j] = eps
        cols.append((warp.tps(u + e) - warp.tps(u - e)) / (2 * eps))
    assert torch.allclose(warp.tps_jacobian(u), torch.stack(cols, -1), atol=1e-7)
    assert torch.allclose(warp.tps_with_jacobian(u)[0], warp.tps(u), atol=1e-12)  # fused form = kornia


def test_affine_part_is_the_documented_map() -> None:
    h, w = 50, 70
    warp = Warp((h, w), angle=0.2, scale=1.1, translation=(0.1, -0.05))
    p = torch.tensor([[10.0, 15.0], [55.0, 20.0], [30.0, 40.0]], dtype=torch.float64)
    c = torch.tensor([(w - 1) / 2, (h - 1) / 2], dtype=torch.float64)
    rot = torch.tensor([[math.cos(0.2), -math.sin(0.2)], [math.sin(0.2), math.cos(0.2)]], dtype=torch.float64)
    expected = (p - c) @ (1.1 * rot).T + c + torch.tensor([0.1 * w, -0.05 * h], dtype=torch.float64)
    assert inside(expected, h, w).all()
    assert torch.allclose(warp.src_to_trg(p), expected, atol=1e-9)  # no TPS jitter: T is the identity


def test_rendered_target_matches_source_at_keypoints() -> None:
    h, w = 64, 80
    src = smooth_image(h, w)
    warp = sample_warp((h, w), WarpRanges(), make_generator(11, "render"))
    trg = warp.render(src)
    # exact at target pixels: trg(p) = bilinear(src, M(p))
    grid = pixel_points(h, w, dtype=torch.float64)
    assert torch.allclose(trg.reshape(3, -1), bilinear(src, warp.sampling_grid().reshape(-1, 2)), atol=1e-6)
    # at sub-pixel keypoints: equal up to bilinear interpolation error on a smooth image (the
    # margin keeps the target pixels around a keypoint off the zero padding)
    src_kps, trg_kps = warp.sample_keypoints(50, make_generator(11, "kps"), margin=3.0)
    assert len(src_kps) == 50
    assert inside(src_kps, h, w, 3.0).all() and inside(trg_kps, h, w, 3.0).all()
    assert torch.allclose(warp.trg_to_src(trg_kps), src_kps, atol=1e-9)
    assert (bilinear(trg, trg_kps) - bilinear(src, src_kps)).abs().max() < 0.01
    # float32 images render too
    assert torch.allclose(warp.render(src.float()).double(), trg, atol=1e-4)
    assert grid.shape == (h * w, 2)


def test_identity_warp() -> None:
    h, w = 40, 56
    warp = sample_warp((h, w), IDENTITY, make_generator(0, 0))
    assert warp.is_identity
    src = smooth_image(h, w).float()
    assert torch.allclose(warp.render(src), src, atol=1e-5)
    flow = warp.flow()
    assert torch.isfinite(flow).all()
    assert flow.abs().max() < 1e-6
    assert warp.trg_valid_mask().all()


def test_warps_reproducible() -> None:
    a = sample_warp((30, 40), WarpRanges(), make_generator(5, "img.png#0"))
    b = sample_warp((30, 40), WarpRanges(), make_generator(5, "img.png#0"))
    c = sample_warp((30, 40), WarpRanges(), make_generator(6, "img.png#0"))
    assert torch.equal(a.sampling_grid(), b.sampling_grid())
    assert not torch.allclose(a.sampling_grid(), c.sampling_grid())


def test_impossible_ranges_raise() -> None:
    ranges = WarpRanges(translation=0.25, min_overlap=1.0, max_tries=3)
    with pytest.raises(ConfigError, match="No acceptable warp"):
        sample_warp((20, 20), ranges, make_generator(0))
    with pytest.raises(ConfigError):
        WarpRanges(scale=(1.2, 0.8))


# -- synthetic dataset ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    write_images(root, {"": 1, "cats": 2, "dogs/sub": 1})
    (root / ".hidden").mkdir()
    Image.new("RGB", (20, 20)).save(root / ".hidden" / "skip.png")
    (root / "notes.txt").write_text("not an image")
    return root


def make_synthetic(root: Path, **kw) -> SyntheticPairsDataset:
    kw.setdefault("split", "all")
    kw.setdefault("size", (48, 64))
    return SyntheticPairsDataset(root, **kw)


def test_synthetic_records_and_keys(image_root: Path) -> None:
    ds = make_synthetic(image_root, pairs_per_image=2, n_kps=10)
    assert len(ds) == 8
    assert ds.categories == ["cats", "sub", "synthetic"]
    assert len({r.pair_id for r in ds.records}) == 8
    sample = ds[0]
    assert set(sample) == BASE_KEYS | FLOW_KEYS
    assert sample["src_img"].shape == sample["trg_img"].shape == (3, 48, 64)
    assert sample["src_kps"].shape == sample["trg_kps"].shape == (10, 2) and sample["n_kps"] == 10
    assert sample["flow"].shape == (2, 48, 64) and sample["flow"].dtype == torch.float32
    assert sample["src_mask"].shape == (48, 64) and sample["src_mask"].dtype == torch.bool
    original = Image.open(sample["src_path"]).size
    assert sample["flow_threshold"] == pytest.approx(0.05 * max(original))
    assert sample["pck_threshold"] == 64.0
    assert sample["src_path"] != sample["trg_path"]
    assert Path(sample["src_path"]).is_file()
    assert torch.allclose(sample["src_scale"], sample["trg_scale"])
    for s in ds:
        assert inside(s["src_kps"], 48, 64).all() and inside(s["trg_kps"], 48, 64).all()


def test_synthetic_flow_consistent_with_keypoints(image_root: Path) -> None:
    # The flow is exact at pixels (see the warp tests); at sub-pixel keypoints its bilinear
    # interpolation differs from trg - src by the interpolation error of a smooth field only.
    ds = make_synthetic(image_root, n_kps=30, size=(120, 160))
    errors = []
    for s in ds:
        flow_at = bilinear(s["flow"].double(), s["src_kps"].double()).T  # (N, 2)
        ok = torch.isfinite(flow_at).all(-1)  # kps next to a NaN flow pixel interpolate to NaN
        assert ok.float().mean() > 0.7
        errors.append((flow_at[ok] - (s["trg_kps"] - s["src_kps"]).double()[ok]).norm(dim=-1))
        assert torch.equal(s["src_mask"], torch.isfinite(s["flow"]).all(0))
    errors = torch.cat(errors)
    assert errors.max() < 0.3 and errors.median() < 0.05


def test_synthetic_reproducible_and_seeded(image_root: Path) -> None:
    a, b = make_synthetic(image_root, seed=1), make_synthetic(image_root, seed=1)
    c = make_synthetic(image_root, seed=2, with_flow=False)
    sa, sb = a[1], b[1]
    for key in ("trg_img", "src_kps", "trg_kps", "flow"):
        assert torch.equal(sa[key].nan_to_num(-7), sb[key].nan_to_num(-7))
    assert not torch.allclose(sa["trg_img"], c[1]["trg_img"])
    assert not torch.allclose(a.warp_of(1, (48, 64))[0].sampling_grid(), a.warp_of(2, (48, 64))[0].sampling_grid())
    # a pair's warp follows its name, not its position: filtering keeps it
    only_cats = make_synthetic(image_root, seed=1, categories=["cats"], with_flow=False)
    same = [i for i, r in enumerate(a.records) if r.pair_id == only_cats.records[0].pair_id][0]
    a.with_flow = False
    assert torch.equal(only_cats[0]["trg_img"], a[same]["trg_img"])


def test_synthetic_identity(image_root: Path) -> None:
    ds = make_synthetic(image_root, rotation=0.0, scale=(1.0, 1.0), translation=0.0, tps_jitter=0.0)
    s = ds[0]
    assert torch.allclose(s["trg_img"], s["src_img"], atol=1e-5)
    assert torch.allclose(s["src_kps"], s["trg_kps"], atol=1e-5)
    assert s["src_mask"].all() and s["flow"].abs().max() < 1e-5


def test_synthetic_batches_stack(image_root: Path) -> None:
    ds = make_synthetic(image_root, n_kps=6)
    batch = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_pairs)))
    assert batch["src_img"].shape == batch["trg_img"].shape == (3, 3, 48, 64)
    assert batch["src_kps"].shape == (3, 6, 2)
    assert batch["flow"].shape == (3, 2, 48, 64) and batch["src_mask"].shape == (3, 48, 64)
    assert batch["n_kps"].tolist() == [6, 6, 6] and len(batch["pair_id"]) == 3


def test_synthetic_options(image_root: Path) -> None:
    ds = make_synthetic(image_root, n_kps=0, with_flow=False, size=None, max_side=40)
    s = ds[0]
    assert set(s) == BASE_KEYS
    assert s["n_kps"] == 0 and math.isnan(s["pck_threshold"])
    assert max(s["src_img"].shape[-2:]) == 40 and s["src_img"].shape == s["trg_img"].shape
    # hash splits partition the images
    images: dict[str, set] = {}
    for split in ("train", "val", "test"):
        try:
            images[split] = {r.src_path for r in make_synthetic(image_root, split=split, val_fraction=0.3, test_fraction=0.3).records}
        except DatasetNotFoundError:  # a split may be empty with 4 images
            images[split] = set()
    assert sum(len(v) for v in images.values()) == len(set().union(*images.values())) == 4
    with pytest.raises(ConfigError):
        make_synthetic(image_root, split="bogus")
    with pytest.raises(ConfigError):
        make_synthetic(image_root, pairs_per_image=0)


@pytest.mark.skipif(not WILLOW.is_dir(), reason=f"real images not available: {WILLOW} is absent")
def test_synthetic_on_real_images() -> None:
    ds = SyntheticPairsDataset(WILLOW, split="all", categories=["duck(S)"], max_pairs=2, n_kps=20)
    assert ds.categories == ["duck(S)"]
    for index in range(len(ds)):
        s = ds[index]
        h, w = s["src_img"].shape[-2:]
        assert (h, w) == (240, 240) and s["n_kps"] == 20
        warp, _ = ds.warp_of(index, (h, w))
        # the rendered target is the source sampled by the warp, exactly
        expected = bilinear(s["src_img"].double(), warp.sampling_grid().reshape(-1, 2)).clamp(0, 1)
        assert (s["trg_img"].reshape(3, -1).double() - expected).abs().max() < 1e-4  # float32 rendering
        assert torch.allclose(warp.trg_to_src(s["trg_kps"].double()), s["src_kps"].double(), atol=1e-3)
        src_px = pixel_points(h, w, dtype=torch.float64)
        ok = s["src_mask"].reshape(-1)
        landed = src_px[ok] + s["flow"].reshape(2, -1).T[ok].double()
        assert (warp.trg_to_src(landed) - src_px[ok]).norm(dim=-1).max() < 1e-3
        assert ok.float().mean() > 0.2


# -- sample dataset ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sample")


def test_sample_builds_offline(sample_root: Path, monkeypatch) -> None:
    ds = SampleDataset(sample_root)
    assert len(ds) == 2 * len(SHIPPED_PHOTOS) == 8
    assert ds.categories == sorted(SHIPPED_PHOTOS)
    assert ds.threshold == "img"
    folder = ds.cache_dir
    assert (folder / "pairs.json").is_file()
    assert not [p for p in sample_root.iterdir() if p.name.startswith(".tmp")]
    for s in ds:
        h, w = s["src_img"].shape[-2:]
        assert s["trg_img"].shape == s["src_img"].shape and max(h, w) == 300
        assert s["n_kps"] == 12
        assert inside(s["src_kps"], h, w).all() and inside(s["trg_kps"], h, w).all()
        assert s["pck_threshold"] == 300.0
        assert Path(s["src_path"]).is_file() and Path(s["trg_path"]).is_file()
    # keypoints are exact under the stored warp (original pixels)
    data = json.loads((folder / "pairs.json").read_text())
    for pair in data["pairs"]:
        size = Image.open(folder / pair["src"]).size[::-1]
        prm = pair["warp"]
        warp = Warp(size, prm["angle"], prm["scale"], prm["translation"], prm["jitter"])
        src = torch.tensor(pair["src_kps"], dtype=torch.float64)
        trg = torch.tensor(pair["trg_kps"], dtype=torch.float64)
        assert (warp.trg_to_src(trg) - src).norm(dim=-1).max() < 1e-3
    # the second construction reads the cache (building again would fail here)
    monkeypatch.setattr(SampleDataset, "build", lambda self, folder: pytest.fail("rebuilt the cache"))
    again = SampleDataset(sample_root)
    assert [r.pair_id for r in again.records] == [r.pair_id for r in ds.records]


def test_sample_splits_and_params(sample_root: Path) -> None:
    val = SampleDataset(sample_root, split="val", photos=["chelsea"], pairs_per_photo=1, n_kps=5)
    test = SampleDataset(sample_root, split="test", photos=["chelsea"], pairs_per_photo=1, n_kps=5)
    assert len(val) == len(test) == 1 and val.cache_dir != test.cache_dir
    assert not torch.equal(val[0]["trg_img"], test[0]["trg_img"])
    assert val[0]["n_kps"] == 5
    with pytest.raises(ConfigError):
        SampleDataset(sample_root, photos=["moon"])


# -- configs ----------------------------------------------------------------------------------
def _config(name: str, data_dir: Path, **overrides):
    cfg = OmegaConf.create(
        {"paths": {"data_dir": str(data_dir)}, "dataset": OmegaConf.load(ROOT / "conf" / "dataset" / f"{name}.yaml")}
    )
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"dataset.{key}", value)
    return cfg.dataset


def test_configs_instantiate(image_root: Path, sample_root: Path) -> None:
    sample = instantiate(_config("sample", sample_root.parent, root=str(sample_root)))
    assert isinstance(sample, SampleDataset) and sample.name == "sample" and len(sample) == 8
    cfg = _config("synthetic", image_root.parent, root=str(image_root), split="all", size=[32, 32])
    synthetic = instantiate(cfg)
    assert isinstance(synthetic, SyntheticPairsDataset) and synthetic.name == "synthetic"
    assert synthetic[0]["trg_img"].shape == (3, 32, 32)
    default = _config("synthetic", Path("/data"))
    assert default.root == "/data/synthetic" and list(default.size) == [240, 240]
