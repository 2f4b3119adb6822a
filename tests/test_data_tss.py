"""TSS (semcorr.data.tss) read from the real sample in ../shared/data and from a generated fixture
in its official layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fixtures_dense import TSS_SAMPLE, dataset_from_config, make_tss, make_tss_pair, needs_tss_sample
from semcorr.data.collate import collate_pairs
from semcorr.data.flo import write_flo
from semcorr.data.tss import TSSDataset
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError
from semcorr.metrics.flow import flow_accuracy_per_pair
from semcorr.metrics.warping import resize_flow


# -- real sample ----------------------------------------------------------------------------------
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


# -- generated fixture ----------------------------------------------------------------------------
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


def test_config_instantiates(tmp_path):
    make_tss(tmp_path)
    ds = dataset_from_config("tss", tmp_path)
    assert isinstance(ds, TSSDataset) and ds.name == "tss" and len(ds) > 0
