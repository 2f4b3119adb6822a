"""TSS, Caltech-101 and CUB-200-2011 read from their official layouts; the .flo reader/writer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from semcorr.data.caltech import CaltechDataset
from semcorr.data.collate import collate_pairs
from semcorr.data.cub import CUBDataset
from semcorr.data.flo import read_flo, write_flo
from semcorr.data.tss import TSSDataset
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError
from semcorr.metrics.flow import flow_accuracy_per_pair
from semcorr.metrics.warping import resize_flow

try:
    from fixtures_dense import TSS_SAMPLE, make_caltech, make_cub, make_tss, make_tss_pair
except ImportError:  # tests/ imported as a package
    from tests.fixtures_dense import TSS_SAMPLE, make_caltech, make_cub, make_tss, make_tss_pair

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
needs_tss_sample = pytest.mark.skipif(
    not TSS_SAMPLE.is_dir(), reason=f"real TSS sample not available at {TSS_SAMPLE} (../shared/data is absent)"
)


# -- .flo -------------------------------------------------------------------------------------------
def test_flo_round_trip_keeps_values_and_unknowns(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(5, 7, 2)).astype(np.float32) * 10
    flow[1, 2] = np.nan
    flow[3, 4, 1] = np.inf
    write_flo(tmp_path / "a" / "f.flo", flow)
    raw = (tmp_path / "a" / "f.flo").read_bytes()
    assert raw[:4] == b"PIEH" and len(raw) == 12 + 5 * 7 * 2 * 4
    back = read_flo(tmp_path / "a" / "f.flo")
    assert back.shape == (5, 7, 2) and back.dtype == np.float32
    known = np.isfinite(flow).all(-1)
    assert np.array_equal(np.isfinite(back).all(-1), known)
    assert np.isnan(back[3, 4]).all()  # one unknown component makes the pixel unknown
    np.testing.assert_array_equal(back[known], flow[known])
    raw_values = read_flo(tmp_path / "a" / "f.flo", unknown_to_nan=False)
    assert raw_values[1, 2, 0] == pytest.approx(1e10)


def test_flo_accepts_channel_first_and_rejects_bad_files(tmp_path):
    flow = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    write_flo(tmp_path / "c.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "c.flo"), flow.transpose(1, 2, 0))
    (tmp_path / "bad.flo").write_bytes(b"XXXX" + bytes(20))
    with pytest.raises(AnnotationError, match="not a Middlebury"):
        read_flo(tmp_path / "bad.flo")
    good = (tmp_path / "c.flo").read_bytes()
    (tmp_path / "short.flo").write_bytes(good[:-4])
    with pytest.raises(AnnotationError, match="truncated"):
        read_flo(tmp_path / "short.flo")
    with pytest.raises(DatasetNotFoundError):
        read_flo(tmp_path / "missing.flo")


@needs_tss_sample
def test_flo_reads_real_tss_files():
    folder = TSS_SAMPLE / "JODS" / "car_01_02"
    flow = read_flo(folder / "flow1.flo")
    assert flow.shape == (212, 340, 2)  # (H, W) of image1
    from PIL import Image

    mask = np.asarray(Image.open(folder / "mask1.png")) > 0
    assert np.array_equal(np.isfinite(flow).all(-1), mask)  # known flow = foreground
    assert np.nanmax(np.abs(flow)) < 100


# -- TSS: real sample -------------------------------------------------------------------------------
@needs_tss_sample
def test_tss_real_sample_pairs_and_samples():
    ds = TSSDataset(TSS_SAMPLE)
    assert len(ds) == 12
    assert ds.categories == ["FG3DCar", "JODS", "PASCAL"]
    assert [r.pair_id for r in ds.records[:4]] == [
        "FG3DCar/001_005_1to2", "FG3DCar/001_005_2to1", "FG3DCar/001_021_1to2", "FG3DCar/001_021_2to1"]
    assert [r.groups["flip"] for r in ds.records] == [0] * 10 + [1, 1]
    rec = ds.records[5]  # JODS/car_01_02_2to1: image2 (340x240) -> image1 (340x212)
    assert rec.src_path.name == "image2.png" and rec.extra["flow"].name == "flow2.flo"
    s = ds[5]
    assert s["src_img"].shape == (3, 211, 300) and s["trg_img"].shape == (3, 187, 300)
    assert s["flow"].shape == (2, 211, 300) and s["src_mask"].shape == (211, 300) and s["trg_mask"].shape == (187, 300)
    assert s["src_mask"].dtype == torch.bool
    assert torch.equal(torch.isfinite(s["flow"]).all(0), s["src_mask"])
    assert s["flow_threshold"] == pytest.approx(0.05 * 340)
    assert s["src_size_orig"].tolist() == [240, 340] and s["trg_size_orig"].tolist() == [212, 340]
    assert s["n_kps"] == 0 and math.isnan(s["pck_threshold"]) and s["flip"] == 0
    # The ground truth predicts itself perfectly, on the resized grid and on the original one.
    pred = s["flow"][None]
    acc, _, n_known = flow_accuracy_per_pair(pred, s["flow"][None], s["src_mask"][None],
                                             threshold=s["flow_threshold"], trg_scale=s["trg_scale"][None])
    assert acc.item() == 1.0 and n_known.item() == s["src_mask"].sum()
    orig = ds.load_original(5)
    pred0 = resize_flow(torch.nan_to_num(pred), orig["flow"].shape[-2:], 1 / s["src_scale"], 1 / s["trg_scale"])
    acc0 = flow_accuracy_per_pair(pred0, orig["flow"][None], threshold=orig["flow_threshold"])[0]
    assert acc0.item() > 0.99


@needs_tss_sample
def test_tss_real_flow_direction_matches_corr_txt():
    """flow1 (resized, the convention of MatchOutput.flow) carries image1's corr.txt points onto image2's."""
    ds = TSSDataset(TSS_SAMPLE, categories=["PASCAL"])
    (index,) = [i for i, r in enumerate(ds.records) if r.pair_id == "PASCAL/bike_01_02_1to2"]
    s = ds[index]
    corr = np.loadtxt(TSS_SAMPLE / "PASCAL" / "bike_01_02" / "corr.txt")
    h1, w1 = s["src_size_orig"].tolist()
    h2, w2 = s["trg_size_orig"].tolist()
    p1 = corr[:, :2] * [w1, h1] * s["src_scale"].numpy()  # resized source pixels
    p2 = corr[:, 2:] * [w2, h2] * s["trg_scale"].numpy()
    errors = []
    for (x1, y1), (x2, y2) in zip(p1, p2):
        i, j = int(round(y1)), int(round(x1))
        if 0 <= i < s["flow"].shape[1] and 0 <= j < s["flow"].shape[2] and s["src_mask"][i, j]:
            u, v = s["flow"][:, i, j].tolist()
            errors.append(math.hypot(j + u - x2, i + v - y2))
    assert len(errors) >= 10 and np.median(errors) < 2.0


# -- TSS: generated fixture -------------------------------------------------------------------------
def test_tss_fixture_layout_and_constant_translation_after_resize(tmp_path):
    make_tss(tmp_path / "TSS")
    ds = TSSDataset(tmp_path / "TSS", max_side=20)  # 30x40 images -> scale 0.5
    assert len(ds) == 8 and ds.categories == ["FG3DCar", "JODS", "PASCAL"]
    assert [r.groups["flip"] for r in ds.records] == [0, 0, 0, 0, 0, 0, 1, 1]  # JODS: no flip_gt.txt -> 0
    s = ds[0]  # translation (3, -2) -> (1.5, -1.0) in resized pixels, exactly
    assert s["src_img"].shape == (3, 15, 20)
    known = s["src_mask"]
    assert known.any() and torch.equal(torch.isfinite(s["flow"]).all(0), known)
    assert torch.all(s["flow"][0][known] == 1.5) and torch.all(s["flow"][1][known] == -1.0)
    s = ds[1]  # 2to1: flow2 = -(3, -2)
    assert torch.all(s["flow"][0][s["src_mask"]] == -1.5) and torch.all(s["flow"][1][s["src_mask"]] == 1.0)
    s = ds[4]  # JODS with palette masks, 1to2: (-2, 1)
    assert s["src_mask"].sum() > 0 and torch.all(s["flow"][0][s["src_mask"]] == -1.0)


def test_tss_non_uniform_resize_scales_each_axis(tmp_path):
    make_tss_pair(tmp_path / "FG3DCar" / "a", translation=(4.0, 3.0))
    ds = TSSDataset(tmp_path, size=[15, 10])  # 30x40 -> 15x10: sx = 0.25, sy = 0.5
    s = ds[0]
    m = s["src_mask"]
    assert s["flow"].shape == (2, 15, 10)
    assert torch.all(s["flow"][0][m] == 1.0) and torch.all(s["flow"][1][m] == 1.5)
    # Errors measured in original pixels: a 1-resized-pixel x error is 4 original pixels.
    pred = s["flow"].clone()[None]
    pred[:, 0] += 1.0
    scale = s["trg_scale"][None]
    assert flow_accuracy_per_pair(pred, s["flow"][None], threshold=3.9, trg_scale=scale)[0].item() == 0.0
    assert flow_accuracy_per_pair(pred, s["flow"][None], threshold=4.0, trg_scale=scale)[0].item() == 1.0


def test_tss_flip_target_mirrors_image_mask_and_flow(tmp_path):
    make_tss(tmp_path)
    plain = TSSDataset(tmp_path, categories=["PASCAL"])
    flipped = TSSDataset(tmp_path, categories=["PASCAL"], flip_target=True)
    a, b = plain[0], flipped[0]
    assert a["flip"] == 1
    assert torch.equal(b["trg_img"], a["trg_img"].flip(-1)) and torch.equal(b["trg_mask"], a["trg_mask"].flip(-1))
    # image2 is image1 mirrored: after the oracle flip the ground truth is the identity.
    m = b["src_mask"]
    assert torch.all(b["flow"][:, m] == 0)
    assert torch.allclose(b["trg_img"], b["src_img"])
    assert torch.all(flipped.load_original(0)["flow"][:, m] == 0)
    # Without the flip the flow maps x -> W - 1 - x.
    xs = torch.arange(a["flow"].shape[-1]).float().expand_as(a["flow"][0])
    assert torch.equal(a["flow"][0][m], (a["flow"].shape[-1] - 1 - 2 * xs)[m])


def test_tss_batches_with_fixed_size(tmp_path):
    make_tss(tmp_path)
    ds = TSSDataset(tmp_path, size=[16, 16], categories=["FG3DCar"])
    batch = collate_pairs([ds[0], ds[1], ds[2]])
    assert batch["flow"].shape == (3, 2, 16, 16) and batch["src_mask"].shape == (3, 16, 16)
    assert batch["flow_threshold"].shape == (3,) and batch["flip"].tolist() == [0, 0, 0]
    assert batch["trg_size_orig"].tolist()[2] == [36, 44]


def test_tss_missing_data_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="python -m semcorr.data.download tss"):
        TSSDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="FG3DCar"):
        TSSDataset(tmp_path / "empty")
    make_tss_pair(tmp_path / "bad" / "JODS" / "p")
    (tmp_path / "bad" / "JODS" / "p" / "flow2.flo").unlink()
    with pytest.raises(DatasetNotFoundError, match="flow2.flo"):
        TSSDataset(tmp_path / "bad")
    make_tss_pair(tmp_path / "flip" / "JODS" / "p", flip=None)
    (tmp_path / "flip" / "JODS" / "p" / "flip_gt.txt").write_text("yes")
    with pytest.raises(AnnotationError, match="flip_gt"):
        TSSDataset(tmp_path / "flip")
    with pytest.raises(ConfigError):
        TSSDataset(tmp_path / "flip", alpha=0)


def test_tss_reads_through_archive_folder(tmp_path):
    make_tss_pair(tmp_path / "TSS_CVPR2016" / "JODS" / "car_01_02")
    ds = TSSDataset(tmp_path)
    assert [r.pair_id for r in ds.records] == ["JODS/car_01_02_1to2", "JODS/car_01_02_2to1"]


def test_tss_flow_size_mismatch_is_reported(tmp_path):
    make_tss_pair(tmp_path / "JODS" / "p")
    write_flo(tmp_path / "JODS" / "p" / "flow1.flo", np.zeros((10, 10, 2), np.float32))
    ds = TSSDataset(tmp_path)
    with pytest.raises(AnnotationError, match="flow1.flo"):
        ds[0]


# -- Caltech-101 ------------------------------------------------------------------------------------
def test_caltech_csv_layout_and_square_polygon_masks(tmp_path):
    make_caltech(tmp_path)
    ds = CaltechDataset(tmp_path, max_side=None)
    assert len(ds) == 3 and ds.categories == ["Faces", "airplanes"]
    assert ds.records[0].pair_id == "0001-Faces/image_0001-image_0002"
    assert "src_polygon" in ds.records[0].extra  # CSV polygons used (auto)
    s = ds[0]
    expected = np.zeros((16, 20), bool)
    expected[3:9, 4:11] = True  # square x 4..10, y 3..8: centres inside or on the border
    assert s["src_mask"].dtype == torch.bool and np.array_equal(s["src_mask"].numpy(), expected)
    expected_t = np.zeros((18, 22), bool)
    expected_t[2:13, 2:13] = True
    assert np.array_equal(s["trg_mask"].numpy(), expected_t)
    # the reference protocol (mask_transfer=polygon): the source polygon's vertices are the query points
    torch.testing.assert_close(s["src_kps"], torch.tensor([[4.0, 3.0], [10.0, 3.0], [10.0, 8.0], [4.0, 8.0]]))
    assert s["n_kps"] == 4 and torch.isnan(s["trg_kps"]).all() and math.isnan(s["pck_threshold"])
    flow_protocol = CaltechDataset(tmp_path, max_side=None, mask_transfer="flow")[0]
    assert flow_protocol["n_kps"] == 0 and np.array_equal(flow_protocol["src_mask"].numpy(), expected)


def test_caltech_masks_follow_the_resize(tmp_path):
    make_caltech(tmp_path)
    ds = CaltechDataset(tmp_path, max_side=10)  # 16x20 -> 8x10, vertices x 0.5: x 2..5, y 1.5..4
    m = ds[0]["src_mask"].numpy()
    expected = np.zeros((8, 10), bool)
    expected[2:5, 2:6] = True
    assert m.shape == (8, 10) and np.array_equal(m, expected)


@pytest.mark.parametrize("renamed", [False, True])
def test_caltech_mat_annotations_give_the_same_masks(tmp_path, renamed):
    make_caltech(tmp_path, polygons_in_csv=False, renamed_annotations=renamed)
    ds = CaltechDataset(tmp_path, max_side=None)  # auto -> .mat (the CSV has no polygons)
    assert "src_annotation" in ds.records[0].extra
    make_caltech(tmp_path / "csv")
    ref = CaltechDataset(tmp_path / "csv", max_side=None)
    for i in range(len(ds)):
        assert torch.equal(ds[i]["src_mask"], ref[i]["src_mask"]) and torch.equal(ds[i]["trg_mask"], ref[i]["trg_mask"])
    mat = CaltechDataset(tmp_path / "csv", max_side=None, polygons="mat")
    assert torch.equal(mat[2]["trg_mask"], ref[2]["trg_mask"])


def test_caltech_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="python -m semcorr.data.download caltech"):
        CaltechDataset(tmp_path / "nowhere")
    make_caltech(tmp_path, polygons_in_csv=False)
    with pytest.raises(AnnotationError, match="polygon columns"):
        CaltechDataset(tmp_path, polygons="csv")
    with pytest.raises(ConfigError):
        CaltechDataset(tmp_path, polygons="json")
    (tmp_path / "Annotations" / "Faces_2" / "annotation_0002.mat").unlink()
    with pytest.raises(DatasetNotFoundError, match="annotation_0002.mat"):
        CaltechDataset(tmp_path)
    (tmp_path / "test_pairs_caltech_with_category.csv").unlink()
    with pytest.raises(DatasetNotFoundError, match="test_pairs_caltech_with_category.csv"):
        CaltechDataset(tmp_path)


# -- CUB-200-2011 -----------------------------------------------------------------------------------
def test_cub_pairs_keypoints_threshold_and_masks(tmp_path):
    info = make_cub(tmp_path)
    ds = CUBDataset(tmp_path, max_side=None, pairs_per_class=10)
    # class 1 test images 1, 2, 3: image 3 shares no visible part -> only (1, 2) and (2, 1);
    # class 2 test images 5, 6 -> (5, 6), (6, 5). Train images never appear.
    assert [r.pair_id for r in ds.records] == [
        "001.Black_footed_Albatross/1-2", "001.Black_footed_Albatross/2-1",
        "002.Laysan_Albatross/5-6", "002.Laysan_Albatross/6-5"]
    assert ds.categories == ["001.Black_footed_Albatross", "002.Laysan_Albatross"]
    s = ds[0]
    xy = info["part_xy"]
    assert s["src_kps"].tolist() == [list(xy[(1, 2)]), list(xy[(1, 5)])]  # parts 2 and 5, visible in both
    assert s["trg_kps"].tolist() == [list(xy[(2, 2)]), list(xy[(2, 5)])]
    assert s["n_kps"] == 2
    x, y, w, h = info["boxes"][2]
    assert s["pck_threshold"] == pytest.approx(max(w, h))
    expected = np.zeros((30, 40), bool)
    expected[5:15, 8:20] = True  # grey 102 (2 of 5 annotators) stays background
    assert np.array_equal(s["src_mask"].numpy(), expected) and s["trg_mask"].shape == (32, 44)


def test_cub_draw_is_seeded_capped_and_resizes(tmp_path):
    make_cub(tmp_path)
    one = CUBDataset(tmp_path / "CUB_200_2011", pairs_per_class=1, seed=3, max_side=20)
    again = CUBDataset(tmp_path, pairs_per_class=1, seed=3, max_side=20)
    assert [r.pair_id for r in one.records] == [r.pair_id for r in again.records]
    assert len(one) == 2  # one pair per class
    seeds = {tuple(r.pair_id for r in CUBDataset(tmp_path, pairs_per_class=1, seed=k, masks=False).records) for k in range(8)}
    assert len(seeds) > 1  # the seed changes the draw
    s = one[0]
    sx, sy = s["trg_scale"].tolist()
    rec = one.records[0]
    x1, y1, x2, y2 = rec.trg_bbox
    assert s["pck_threshold"] == pytest.approx(max((x2 - x1) * sx, (y2 - y1) * sy))
    assert s["src_mask"].shape == s["src_img"].shape[-2:]


def test_cub_train_split_and_categories(tmp_path):
    make_cub(tmp_path)
    # Train split: one image per class -> no pair at all.
    with pytest.raises(DatasetNotFoundError, match="no pairs"):
        CUBDataset(tmp_path, split="train")
    ds = CUBDataset(tmp_path, categories=["002.Laysan_Albatross"])
    assert [r.pair_id for r in ds.records] == ["002.Laysan_Albatross/5-6", "002.Laysan_Albatross/6-5"]


def test_cub_masks_options_and_errors(tmp_path):
    make_cub(tmp_path, with_segmentations=False)
    auto = CUBDataset(tmp_path)  # default "auto": no segmentations -> no masks
    assert "src_mask" not in auto[0]
    with pytest.raises(DatasetNotFoundError, match="segmentations"):
        CUBDataset(tmp_path, masks=True)
    with pytest.raises(ConfigError):
        CUBDataset(tmp_path, pairs_per_class=0)
    with pytest.raises(DatasetNotFoundError, match="python -m semcorr.data.download cub"):
        CUBDataset(tmp_path / "nowhere")


# -- configs ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls, builder", [
    ("tss", TSSDataset, make_tss), ("caltech", CaltechDataset, make_caltech), ("cub", CUBDataset, make_cub)])
def test_dataset_configs_instantiate(tmp_path, name, cls, builder):
    builder(tmp_path)
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.name == name
    cfg.root = str(tmp_path)
    ds = instantiate(cfg)
    assert isinstance(ds, cls) and ds.name == name and len(ds) > 0
