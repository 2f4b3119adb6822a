"""PF-PASCAL (semcorr.data.pfpascal) read from fixtures in its official layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from hydra.utils import instantiate
from PIL import Image

from fixtures_keypoints import (
    PASCAL_SIZE,
    build_pfpascal,
    dataset_config,
    parse_row_kps,
    pascal_mat_kps,
    read_csv_rows,
    write_csv,
    write_image,
)
from semcorr.data.collate import collate_pairs
from semcorr.data.pfpascal import CLASSES, PFPascalDataset
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError, ImageError


def test_pfpascal_test_split_counts_and_categories(tmp_path):
    build_pfpascal(tmp_path, "test", images=False)  # construction reads no image in this split
    ds = PFPascalDataset(tmp_path, split="test")
    assert len(ds) == 299
    _, rows = read_csv_rows("test")
    assert [r.category for r in ds.records] == [CLASSES[int(row["class"]) - 1] for row in rows]
    assert ds.records[0].category == "aeroplane"
    assert set(ds.categories) <= set(CLASSES) and len(ds.categories) == 20
    assert len({r.pair_id for r in ds.records}) == 299


def test_pfpascal_first_test_row_exact_and_resize(tmp_path):
    info = build_pfpascal(tmp_path, "test", n=3)
    row = info["rows"][0]
    src_exp, trg_exp = parse_row_kps(row)
    assert src_exp[0].tolist() == [253.631662222222, 58.1813333333333]  # XA[0], YA[0] of the real row
    ds = PFPascalDataset(tmp_path, split="test", max_side=None)
    rec = ds.records[0]
    assert rec.src_path.name == "2011_001407.jpg" and rec.trg_path.name == "2010_004184.jpg"
    np.testing.assert_array_equal(rec.src_kps, src_exp)
    np.testing.assert_array_equal(rec.trg_kps, trg_exp)
    assert rec.src_kps.shape == (11, 2)
    full = ds[0]
    w, h = info["sizes"]["2010_004184.jpg"]
    assert full["pck_threshold"] == max(w, h)
    torch.testing.assert_close(full["trg_kps"], torch.tensor(trg_exp, dtype=torch.float32))

    small = PFPascalDataset(tmp_path, split="test", max_side=300)[0]
    r = 300 / max(w, h)
    assert tuple(small["trg_img"].shape[-2:]) == (int(h * r), int(w * r))
    torch.testing.assert_close(small["trg_kps"], full["trg_kps"] * r)
    assert small["pck_threshold"] == max(int(h * r), int(w * r))
    assert small["pck_threshold"] / full["pck_threshold"] == pytest.approx(r, abs=1 / max(w, h))
    assert small["flip"] == 0 and small["n_kps"] == 11


def test_pfpascal_val_keypoints_from_mat(tmp_path):
    info = build_pfpascal(tmp_path, "val", n=6)
    ds = PFPascalDataset(tmp_path, split="val")
    assert len(ds) == 6
    for rec, row in zip(ds.records, info["rows"]):
        src, trg = Path(row["source_image"]).name, Path(row["target_image"]).name
        a = pascal_mat_kps(Path(src).stem, *info["sizes"][src])
        b = pascal_mat_kps(Path(trg).stem, *info["sizes"][trg])
        keep = np.isfinite(a).all(1) & np.isfinite(b).all(1)
        np.testing.assert_array_equal(rec.src_kps, a[keep])
        np.testing.assert_array_equal(rec.trg_kps, b[keep])
        assert rec.category == CLASSES[int(row["class"]) - 1]
    s = ds[0]
    assert s["n_kps"] == len(ds.records[0].src_kps) > 0
    r = 300 / max(PASCAL_SIZE)
    assert s["pck_threshold"] == max(int(PASCAL_SIZE[0] * r), int(PASCAL_SIZE[1] * r))


def test_pfpascal_bbox_threshold_option(tmp_path):
    build_pfpascal(tmp_path, "val", n=2)
    s = PFPascalDataset(tmp_path, split="val", threshold="bbox", max_side=None)[0]
    w, h = PASCAL_SIZE
    assert s["pck_threshold"] == pytest.approx(max(w - 13.0, h - 10.0))


def test_pfpascal_flip(tmp_path):
    header, rows = read_csv_rows("train")
    flipped = next(r for r in rows if r["flip"] == "1")
    pair = [dict(flipped, flip="0"), dict(flipped)]
    build_pfpascal(tmp_path, "train", rows=pair)
    # the same pair, not mirrored and mirrored, through the pairs_csv override
    custom = write_csv(tmp_path / "lists" / "mine.csv", header, pair)
    write_image(tmp_path / "PF-dataset-PASCAL" / "JPEGImages" / Path(flipped["source_image"]).name, 400, 320, seed=5)
    ds = PFPascalDataset(tmp_path, split="train", pairs_csv=custom)
    plain, mirrored = ds[0], ds[1]
    assert (plain["flip"], mirrored["flip"]) == (0, 1)
    assert ds.records[1].pair_id.endswith("-flip")
    r = 300 / 400
    torch.testing.assert_close(mirrored["src_img"], plain["src_img"].flip(-1))
    torch.testing.assert_close(mirrored["trg_img"], plain["trg_img"].flip(-1))
    exp = plain["src_kps"].clone()
    exp[:, 0] = 400 * r - exp[:, 0]  # x' = (W - x) r
    torch.testing.assert_close(mirrored["src_kps"], exp)
    torch.testing.assert_close(mirrored["src_kps"][:, 1], plain["src_kps"][:, 1])
    assert mirrored["pck_threshold"] == plain["pck_threshold"]
    # the mirrored image really is the mirror of the file
    src = np.asarray(Image.open(ds.records[0].src_path).convert("RGB"))
    ref = PFPascalDataset(tmp_path, split="train", pairs_csv=custom, max_side=None)[1]["src_img"]
    torch.testing.assert_close(ref, torch.from_numpy(src[:, ::-1].copy()).permute(2, 0, 1).float() / 255)
    batch = collate_pairs([plain, mirrored])
    assert batch["flip"].tolist() == [0, 1]


def test_pfpascal_train_split_found_and_mirrored(tmp_path):
    build_pfpascal(tmp_path, "train", n=12)
    ds = PFPascalDataset(tmp_path, split="train")
    assert len(ds) == 12
    _, rows = read_csv_rows("train")
    assert [r.extra["flip"] for r in ds.records] == [int(r["flip"]) for r in rows[:12]]
    (tmp_path / "train_pairs.csv").rename(tmp_path / "trn_pairs.csv")  # the HPF package's name
    assert len(PFPascalDataset(tmp_path, split="train")) == 12


def test_pfpascal_full_val_list(tmp_path):
    build_pfpascal(tmp_path, "val", images=False)  # no mirrored rows: no image is opened
    ds = PFPascalDataset(tmp_path, split="val")
    assert len(ds) == 308 and all(r.extra["flip"] == 0 for r in ds.records)
    assert all(len(r.src_kps) > 0 for r in ds.records)


def test_pfpascal_missing_folder_and_csv(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"python -m semcorr\.data\.download pfpascal --root"):
        PFPascalDataset(tmp_path / "nowhere")
    (tmp_path / "PF-dataset-PASCAL" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"test_pairs\.csv.*python -m semcorr\.data\.download pfpascal"):
        PFPascalDataset(tmp_path)
    with pytest.raises(ConfigError, match="split"):
        PFPascalDataset(tmp_path, split="trn")


def test_pfpascal_corrupt_image(tmp_path):
    info = build_pfpascal(tmp_path, "test", n=1)
    bad = info["data"] / "JPEGImages" / "2010_004184.jpg"
    bad.write_bytes(b"not a jpeg at all")
    ds = PFPascalDataset(tmp_path)
    with pytest.raises(ImageError, match="2010_004184.jpg"):
        ds[0]


def test_pfpascal_zero_keypoints(tmp_path):
    _, rows = read_csv_rows("test")
    row = dict(rows[0], XA="", YA="", XB="", YB="")
    build_pfpascal(tmp_path, "test", rows=[row], images=False)
    with pytest.raises(AnnotationError, match="no keypoints"):
        PFPascalDataset(tmp_path)


def test_pfpascal_zero_visible_keypoints_in_mat(tmp_path):
    info = build_pfpascal(tmp_path, "val", n=1)
    src = Path(info["rows"][0]["source_image"]).stem
    cls = CLASSES[int(info["rows"][0]["class"]) - 1]
    scipy.io.savemat(str(info["data"] / "Annotations" / cls / f"{src}.mat"),
                     {"kps": np.full((8, 2), np.nan), "bbox": np.array([[1.0, 1, 9, 9]])})
    with pytest.raises(AnnotationError, match="no keypoints"):
        PFPascalDataset(tmp_path, split="val")


def test_pfpascal_keypoints_outside_image(tmp_path):
    info = build_pfpascal(tmp_path, "test", n=1)
    write_image(info["data"] / "JPEGImages" / "2011_001407.jpg", 100, 80)  # XA goes up to 288
    ds = PFPascalDataset(tmp_path)
    with pytest.raises(AnnotationError, match="outside the 100x80 image"):
        ds[0]


def test_pfpascal_bad_class(tmp_path):
    _, rows = read_csv_rows("test")
    build_pfpascal(tmp_path, "test", rows=[dict(rows[0], **{"class": "21"})], images=False)
    with pytest.raises(AnnotationError, match="class 21"):
        PFPascalDataset(tmp_path)


def test_config_instantiates(tmp_path):
    node = dataset_config("pfpascal", tmp_path, "PF-PASCAL")
    build_pfpascal(tmp_path / "PF-PASCAL", "test", n=2, images=False)
    ds = instantiate(node)
    assert ds.name == "pfpascal" and len(ds) > 0
