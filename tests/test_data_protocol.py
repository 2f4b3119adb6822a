"""What the datasets contribute to the protocol: thresholds of every kind (on fixtures in the official
layouts), the stratified subset, PF-PASCAL's train/test leakage (the real CSVs), PF-WILLOW's pair list,
the pair-list hash and aspect-ratio changes."""

from __future__ import annotations

import hashlib
import logging
import shutil

import numpy as np
import pytest
import torch

from fixtures_dense import make_cub
from fixtures_keypoints import (
    PASCAL_SIZE,
    PFPASCAL_SPLITS,
    build_pfpascal,
    build_pfwillow,
    build_spair,
    read_csv_rows,
    require_shared,
)
from semcorr.data.collate import collate_pairs
from semcorr.data.cub import CUBDataset
from semcorr.data.datamodule import PairDataModule
from semcorr.data.pfpascal import PFPascalDataset
from semcorr.data.pfwillow import FOLDER_PAIRS, PFWillowDataset
from semcorr.data.sample import SampleDataset
from semcorr.data.spair import SPairDataset
from semcorr.data.subsets import stratified_subset
from semcorr.data.thresholds import keypoint_box, pck_threshold
from semcorr.errors import ConfigError


# -- thresholds ---------------------------------------------------------------------------------------
def test_threshold_rule_by_hand():
    assert pck_threshold("img", (300, 200), None) == 300.0
    assert pck_threshold("bbox", (300, 200), np.array([10, 20, 50, 100])) == 80.0  # max(40, 80)
    np.testing.assert_array_equal(keypoint_box(np.array([[3, 9], [np.nan, np.nan], [7, 1]])), [3, 1, 7, 9])
    assert np.isnan(pck_threshold("none", (3, 3), None))


def test_pfpascal_thresholds_img_default_and_bbox(tmp_path):
    build_pfpascal(tmp_path, "val", n=2)  # generated .mat boxes: (3, 4, w - 10, h - 6)
    w, h = PASCAL_SIZE
    r = 300 / w
    s = PFPascalDataset(tmp_path, split="val")[0]
    assert s["pck_threshold"] == max(int(w * r), int(h * r)) and s["pck_threshold_original"] == max(w, h)
    b = PFPascalDataset(tmp_path, split="val", threshold="bbox")[0]
    assert b["pck_threshold_original"] == pytest.approx(max(w - 13.0, h - 10.0))
    assert b["pck_threshold"] == pytest.approx(max(w - 13.0, h - 10.0) * r)
    with pytest.raises(ConfigError, match="dataset.threshold='kps' is not offered by pfpascal; valid: img, bbox"):
        PFPascalDataset(tmp_path, split="val", threshold="kps")


def test_pfwillow_thresholds_keypoint_box_default_and_img(tmp_path):
    info = build_pfwillow(tmp_path, {"car(G)": 2}, size=(600, 400))
    ds = PFWillowDataset(tmp_path)
    trg = info["kps"][ds.records[0].trg_path]
    extent = float((trg.max(0) - trg.min(0)).max())
    s = ds[0]
    assert ds.threshold == "bbox" and "spanned by the target keypoints" in ds.threshold_rule()
    assert s["pck_threshold"] == pytest.approx(extent * 0.5) and s["pck_threshold_original"] == pytest.approx(extent)
    img = PFWillowDataset(tmp_path, threshold="img")[0]
    assert img["pck_threshold"] == 300 and img["pck_threshold_original"] == 600


def test_spair_thresholds_bbox_default_and_img(tmp_path):
    build_spair(tmp_path)
    s = SPairDataset(tmp_path)[0]  # trg_bndbox [36, 92, 500, 200] in a 500 x 332 target
    assert s["pck_threshold_original"] == pytest.approx(464.0) and s["pck_threshold"] == pytest.approx(464 * 0.6)
    img = SPairDataset(tmp_path, threshold="img")[0]
    assert img["pck_threshold"] == 300 and img["pck_threshold_original"] == 500


def test_cub_thresholds_bbox_default_and_img(tmp_path):
    info = make_cub(tmp_path)
    ds = CUBDataset(tmp_path, max_side=None)
    _, _, w, h = info["boxes"][2]
    assert ds[0]["pck_threshold"] == pytest.approx(max(w, h))
    assert CUBDataset(tmp_path, max_side=None, threshold="img")[0]["pck_threshold"] == 44  # image 2 is 44 x 32


def test_pfwillow_keypoint_box_ignores_the_padding_of_a_batch(tmp_path):
    """Regression (DHPF / CHM code): the keypoint box must come from the pair's own keypoints. Two
    sub-classes annotated with 10 and 4 keypoints, batched 3 per batch with a fixed size, so the
    4-keypoint pairs are padded with NaN; every T equals the box of that pair's own keypoints, the
    same as unbatched, and PCK of a padded batch equals PCK pair by pair."""
    import scipy.io

    from semcorr.methods.base import MatchOutput
    from semcorr.metrics.pck import PCKEvaluator

    info = build_pfwillow(tmp_path, {"car(G)": 2, "duck(S)": 2}, size=(200, 160))
    for img in info["images"]["duck(S)"]:
        scipy.io.savemat(str(img.with_suffix(".mat")), {"pts_coord": info["kps"][img][:4].T.copy()})
    ds = PFWillowDataset(tmp_path, size=(160, 200))  # same size: no rescaling, batches stack
    datamodule = PairDataModule(test=ds, batch_size=3)
    expected = [float((ds.records[i].trg_kps.max(0) - ds.records[i].trg_kps.min(0)).max()) for i in range(len(ds))]
    loader = datamodule.test_dataloader()
    batched, single = PCKEvaluator([0.05, 0.1], ds.categories), PCKEvaluator([0.05, 0.1], ds.categories)
    mixed = 0
    for batch in loader:
        n = batch["n_kps"].tolist()
        mixed += len(set(n)) > 1
        for i, index in enumerate(batch["index"].tolist()):
            assert batch["pck_threshold"][i].item() == pytest.approx(expected[index], rel=1e-6)
        guess = batch["trg_kps"].flip(-1)  # wrong-ish predictions, NaN where padded
        batched.update(batch, MatchOutput(guess))
        for i in range(len(n)):
            one = collate_pairs([ds[batch["index"][i].item()]])
            single.update(one, MatchOutput(guess[i : i + 1, : n[i]]))
    assert mixed == 1  # the batch holding a 10- and a 4-keypoint pair
    assert batched.compute() == pytest.approx(single.compute())


# -- stratified subsets ----------------------------------------------------------------------------
def test_stratified_subset_rule():
    cats = ["a"] * 6 + ["b"] * 3 + ["c"] * 1
    assert stratified_subset(cats) == list(range(10))
    two = stratified_subset(cats, pairs_per_category=2, seed=3)
    assert [cats[i] for i in two].count("a") == 2 and [cats[i] for i in two].count("b") == 2 and 9 in two
    assert two == sorted(two) and two == stratified_subset(cats, pairs_per_category=2, seed=3)
    assert two != stratified_subset(cats, pairs_per_category=2, seed=4)
    capped = stratified_subset(cats, max_pairs=4, seed=0)  # round robin: a, b, c, then a
    assert sorted(cats[i] for i in capped) == ["a", "a", "b", "c"]
    with pytest.raises(ConfigError, match="dataset.max_pairs must be >= 1"):
        stratified_subset(cats, max_pairs=0)


def test_subset_of_a_dataset_is_stratified_and_recorded(tmp_path):
    build_pfwillow(tmp_path, {"car(G)": 3, "duck(S)": 3, "car(M)": 2})  # 6 + 6 + 2 pairs
    full = PFWillowDataset(tmp_path)
    assert full.subset is None and full.protocol()["subset"] is None
    ds = PFWillowDataset(tmp_path, max_pairs=5, subset_seed=1)
    assert sorted(r.category for r in ds.records) == ["car(G)", "car(G)", "car(M)", "car(M)", "duck(S)"]
    assert ds.protocol()["subset"] == {"of": 14, "categories": None, "pairs_per_category": None, "max_pairs": 5, "seed": 1}
    assert ds.protocol()["pairs_sha256"] != full.protocol()["pairs_sha256"]
    k = PFWillowDataset(tmp_path, pairs_per_category=1, categories=["duck(S)", "car(M)"])
    assert sorted(r.category for r in k.records) == ["car(M)", "duck(S)"]
    assert k.protocol()["subset"]["categories"] == ["car(M)", "duck(S)"]


# -- PF-PASCAL leakage -----------------------------------------------------------------------------
def test_pfpascal_leakage_counts_from_the_real_csvs(tmp_path):
    """95 of the 299 test pairs are rows of train_pairs.csv; 302 of the 506 test images occur in
    training pairs; 79 test pairs have neither image in training."""
    build_pfpascal(tmp_path, "test", images=False)
    shutil.copyfile(require_shared(PFPASCAL_SPLITS / "train_pairs.csv"), tmp_path / "train_pairs.csv")
    ds = PFPascalDataset(tmp_path, split="test")
    assert ds.leakage_counts() == {"train_list": "train_pairs.csv", "pairs_in_train": 95, "images_in_train": 302,
                                   "images": 506, "clean_pairs": 79}
    assert ds.subset_flags == ("clean",) and sum(r.extra["clean"] for r in ds.records) == 79
    assert ds.protocol()["options"]["leakage"]["pairs_in_train"] == 95
    assert ds.leakage([]) is None and ds.leakage(["spair/trn"]) is None
    assert "95 of these 299 test pairs are training pairs" in ds.leakage(["pfpascal/train"])
    # the counts by a second route: straight from the CSV rows
    _, test_rows = read_csv_rows("test")
    _, train_rows = read_csv_rows("train")
    train_images = {r[k].rsplit("/", 1)[-1] for r in train_rows for k in ("source_image", "target_image")}
    clean = [r for r in test_rows if not {r["source_image"].rsplit("/", 1)[-1], r["target_image"].rsplit("/", 1)[-1]} & train_images]
    assert len(clean) == 79


def test_pfpascal_clean_flag_reaches_the_samples(tmp_path):
    _, train_rows = read_csv_rows("train")
    info = build_pfpascal(tmp_path, "test", n=4)
    train_images = {r[k].rsplit("/", 1)[-1] for r in train_rows for k in ("source_image", "target_image")}
    shutil.copyfile(require_shared(PFPASCAL_SPLITS / "train_pairs.csv"), tmp_path / "train_pairs.csv")
    ds = PFPascalDataset(tmp_path, split="test")
    for i, row in enumerate(info["rows"]):
        names = {row["source_image"].rsplit("/", 1)[-1], row["target_image"].rsplit("/", 1)[-1]}
        assert ds[i]["clean"] is (not names & train_images)
    assert collate_pairs([ds[0], ds[1]])["clean"].dtype == torch.bool
    (tmp_path / "train_pairs.csv").unlink()
    alone = PFPascalDataset(tmp_path, split="test")  # no training list: nothing to flag
    assert alone.subset_flags == () and "clean" not in alone[0] and alone.leakage_counts() is None


# -- PF-WILLOW pair list, hash, aspect ------------------------------------------------------------
def test_pfwillow_reads_hpf_test_pairs_csv_first_and_says_so(tmp_path):
    build_pfwillow(tmp_path, {"car(G)": 3}, csv_name="test_pairs.csv")
    assert PFWillowDataset(tmp_path).protocol()["pairs"] == "test_pairs.csv (pair list)"
    assert PFWillowDataset(tmp_path, source="folder").protocol()["pairs"] == FOLDER_PAIRS
    (tmp_path / "test_pairs.csv").rename(tmp_path / "test_pairs_pf.csv")
    assert PFWillowDataset(tmp_path).pair_source == "test_pairs_pf.csv (pair list)"


def test_pair_list_hash_is_of_the_ordered_image_pairs(tmp_path):
    build_pfwillow(tmp_path, {"car(G)": 2})
    ds = PFWillowDataset(tmp_path)
    text = "car(G)/car_000.png -> car(G)/car_001.png\ncar(G)/car_001.png -> car(G)/car_000.png\n"
    assert ds.protocol()["pairs_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    moved = tmp_path.parent / "elsewhere"
    shutil.copytree(tmp_path, moved)
    assert PFWillowDataset(moved).pairs_sha256() == ds.pairs_sha256()  # the root does not enter it


def test_fixed_size_that_changes_the_aspect_ratio_is_warned_and_recorded(tmp_path, caplog):
    build_pfwillow(tmp_path, {"car(G)": 2}, size=(600, 400))
    assert PFWillowDataset(tmp_path).protocol()["image_size"] == {"max_side": 300, "size": None, "upscale": False,
                                                                   "aspect_changed_pairs": 0}
    same_aspect = PFWillowDataset(tmp_path, size=(200, 300))
    assert same_aspect.aspect_changed_pairs() == 0
    square = PFWillowDataset(tmp_path, size=(240, 240))
    with caplog.at_level(logging.WARNING):
        assert square.protocol()["image_size"]["aspect_changed_pairs"] == 2
        square.protocol()
    assert sum("changes the aspect ratio" in r.message for r in caplog.records) == 1  # once


def test_sample_dataset_protocol(tmp_path):
    ds = SampleDataset(tmp_path)
    record = ds.protocol()
    assert record["threshold"] == "img" and record["n_pairs"] == 8 and record["options"]["seed"] == 0
    assert record["pairs"].startswith("bundled photos")
