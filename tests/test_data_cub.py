"""CUB-200-2011 (semcorr.data.cub) read from a fixture in the official layout: pairs, keypoints,
thresholds, masks."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures_dense import dataset_from_config, make_cub
from semcorr.data.cub import CUBDataset
from semcorr.errors import ConfigError, DatasetNotFoundError


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


def test_config_instantiates(tmp_path):
    make_cub(tmp_path)
    ds = dataset_from_config("cub", tmp_path)
    assert isinstance(ds, CUBDataset) and ds.name == "cub" and len(ds) > 0
