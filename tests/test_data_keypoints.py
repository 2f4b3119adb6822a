"""PF-PASCAL, PF-WILLOW, SPair-71k and user-pair datasets read from fixtures in their official layouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from omegaconf import OmegaConf
from PIL import Image

from fixtures_keypoints import (
    PFWILLOW_REAL,
    PASCAL_SIZE,
    build_pfpascal,
    build_pfwillow,
    build_spair,
    parse_row_kps,
    pascal_mat_kps,
    read_csv_rows,
    require_shared,
    write_csv,
    write_image,
)
from semcorr.data.collate import collate_pairs
from semcorr.data.pairs import ImagePairsDataset
from semcorr.data.pfpascal import CLASSES, PFPascalDataset
from semcorr.data.pfwillow import PFWillowDataset
from semcorr.data.spair import SPairDataset
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError, ImageError

CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"


# -- PF-PASCAL --------------------------------------------------------------------------------
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


# -- PF-WILLOW --------------------------------------------------------------------------------
def test_pfwillow_folder_layout(tmp_path):
    info = build_pfwillow(tmp_path, {"car(G)": 3, "duck(S)": 2}, size=(600, 400))
    ds = PFWillowDataset(tmp_path)
    assert len(ds) == 3 * 2 + 2 * 1
    assert ds.categories == ["car(G)", "duck(S)"]
    rec = ds.records[0]
    assert rec.category == "car(G)" and rec.src_path != rec.trg_path
    np.testing.assert_allclose(rec.src_kps, info["kps"][rec.src_path])
    np.testing.assert_allclose(rec.trg_kps, info["kps"][rec.trg_path])
    s = ds[0]
    r = 300 / 600
    torch.testing.assert_close(s["trg_kps"], torch.tensor(info["kps"][rec.trg_path] * r, dtype=torch.float32))
    extent = (info["kps"][rec.trg_path].max(0) - info["kps"][rec.trg_path].min(0)).max()
    assert s["pck_threshold"] == pytest.approx(extent * r, rel=1e-5)
    full = PFWillowDataset(tmp_path, max_side=None)[0]
    assert s["pck_threshold"] / full["pck_threshold"] == pytest.approx(r, rel=1e-6)
    assert tuple(s["trg_img"].shape[-2:]) == (200, 300)


def test_pfwillow_csv_layout_matches_folders(tmp_path):
    info = build_pfwillow(tmp_path, {"car(G)": 3, "winebottle(wC)": 2}, csv_name="test_pairs_pf.csv")
    by_csv = PFWillowDataset(tmp_path)  # found at root
    by_folder = PFWillowDataset(tmp_path, source="folder")
    assert len(by_csv) == len(by_folder) == 8
    key = lambda r: (r.src_path, r.trg_path)  # noqa: E731
    folder = {key(r): r for r in by_folder.records}
    for rec in by_csv.records:
        other = folder[key(rec)]
        np.testing.assert_allclose(rec.src_kps, other.src_kps, atol=1e-5)
        np.testing.assert_allclose(rec.trg_kps, other.trg_kps, atol=1e-5)
        assert rec.category == other.category
    moved = tmp_path / "elsewhere.csv"
    info["csv"].rename(moved)
    assert len(PFWillowDataset(tmp_path, pairs_csv=moved)) == 8
    with pytest.raises(DatasetNotFoundError):
        PFWillowDataset(tmp_path, source="csv")


def test_pfwillow_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"python -m semcorr\.data\.download pfwillow --root"):
        PFWillowDataset(tmp_path / "missing")
    tmp_path.joinpath("empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="download pfwillow"):
        PFWillowDataset(tmp_path / "empty")
    info = build_pfwillow(tmp_path / "w", {"car(G)": 2})
    a, b = info["images"]["car(G)"]
    scipy.io.savemat(str(a.with_suffix(".mat")), {"pts_coord": np.zeros((2, 0))})
    with pytest.raises(AnnotationError, match="no keypoints"):
        PFWillowDataset(tmp_path / "w")
    scipy.io.savemat(str(a.with_suffix(".mat")), {"pts_coord": np.stack([5000.0 + np.arange(10), 5.0 + np.arange(10)])})
    ds = PFWillowDataset(tmp_path / "w")
    with pytest.raises(AnnotationError, match="outside"):
        ds[0]
    a.with_suffix(".mat").unlink()
    with pytest.raises(DatasetNotFoundError, match=a.with_suffix(".mat").name):
        PFWillowDataset(tmp_path / "w")
    scipy.io.savemat(str(a.with_suffix(".mat")), {"pts_coord": info["kps"][a].T.copy()})
    b.write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError, match=b.name):
        PFWillowDataset(tmp_path / "w")[0]


def test_pfwillow_real_folder():
    root = require_shared(PFWILLOW_REAL)
    ds = PFWillowDataset(root)
    assert len(ds) == 450
    assert len(ds.categories) == 5 and all(len([r for r in ds.records if r.category == c]) == 90 for c in ds.categories)
    for index in range(0, 450, 45):
        rec = ds.records[index]
        pts = scipy.io.loadmat(str(rec.trg_path.with_suffix(".mat")))["pts_coord"]
        s = ds[index]
        r = float(s["trg_scale"][0])
        assert s["n_kps"] == 10
        assert s["pck_threshold"] == pytest.approx(float((pts.max(1) - pts.min(1)).max()) * r, rel=1e-5)
        torch.testing.assert_close(s["trg_kps"], torch.tensor(pts.T * r, dtype=torch.float32))
        assert max(s["trg_img"].shape[-2:]) <= 300


# -- SPair-71k --------------------------------------------------------------------------------
def test_spair_real_annotation(tmp_path):
    info = build_spair(tmp_path)
    real = info["real"]
    ds = SPairDataset(tmp_path, split="test")
    assert len(ds) == 3
    rec = ds.records[0]
    assert rec.pair_id == "000001-2008_002719-2008_004100:aeroplane"
    assert rec.category == "aeroplane" and ds.categories == ["aeroplane"]
    np.testing.assert_array_equal(rec.src_kps, [[212, 153], [300, 130], [330, 127]])
    np.testing.assert_array_equal(rec.trg_kps, [[39, 145], [364, 171], [416, 173]])
    np.testing.assert_array_equal(rec.trg_bbox, [36, 92, 500, 200])
    assert rec.groups == {"viewpoint_variation": 0, "scale_variation": 0, "truncation": 2, "occlusion": 2}
    s = ds[0]
    r = 300 / 500  # the target is 500 x 332
    assert tuple(s["trg_img"].shape[-2:]) == (int(332 * r), 300)
    assert s["pck_threshold"] == pytest.approx(max(500 - 36, 200 - 92) * r)
    torch.testing.assert_close(s["trg_kps"], torch.tensor(real["trg_kps"], dtype=torch.float32) * r)
    full = SPairDataset(tmp_path, split="test", max_side=None)[0]
    assert full["pck_threshold"] == pytest.approx(464.0)
    for name in SPairDataset.group_fields:
        assert isinstance(s[name], int)
    fixed = SPairDataset(tmp_path, split="test", size=(240, 320))
    batch = collate_pairs([fixed[i] for i in range(3)])
    expected = [ann["viewpoint_variation"] for ann in info["pairs"]["test"]]
    assert batch["viewpoint_variation"].tolist() == expected
    assert batch["mirror"].tolist() == [0, 0, 0]


def test_spair_splits_and_layouts(tmp_path):
    info = build_spair(tmp_path)
    train = SPairDataset(tmp_path, split="train")
    assert len(train) == 1 and train.split_dir == "trn"
    assert train.records[0].pair_id == info["pairs"]["trn"][0]["filename"]
    assert len(SPairDataset(tmp_path, split="trn")) == 1
    assert len(SPairDataset(tmp_path, split="val")) == 1
    assert len(SPairDataset(tmp_path, split="test", layout="small")) == 1
    with pytest.raises(ConfigError):
        SPairDataset(tmp_path, layout="medium")


def test_spair_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"python -m semcorr\.data\.download spair --root"):
        SPairDataset(tmp_path / "none")
    build_spair(tmp_path)
    ann = tmp_path / "PairAnnotation" / "test" / "000001-2008_002719-2008_004100:aeroplane.json"
    text = ann.read_text()
    real_trg = '"trg_kps": [[39, 145], [364, 171], [416, 173]]'
    ann.write_text(text.replace(real_trg, '"trg_kps": [[39, 145], [364, 171], [416, 999]]'))
    with pytest.raises(AnnotationError, match="outside"):
        SPairDataset(tmp_path)[0]
    ann.write_text(text.replace('"src_kps": [[212, 153], [300, 130], [330, 127]]', '"src_kps": []')
                   .replace('"trg_kps": [[39, 145], [364, 171], [416, 173]]', '"trg_kps": []'))
    with pytest.raises(AnnotationError, match="no keypoints"):
        SPairDataset(tmp_path)
    ann.write_text(text)
    img = tmp_path / "JPEGImages" / "aeroplane" / "2008_004100.jpg"
    img.write_bytes(b"garbage")
    with pytest.raises(ImageError, match="2008_004100.jpg"):
        SPairDataset(tmp_path)[0]
    ann.unlink()
    with pytest.raises(DatasetNotFoundError, match="000001-2008_002719-2008_004100:aeroplane.json"):
        SPairDataset(tmp_path)


# -- degenerate annotations, roots, images: errors that name the file ----------------------------
@pytest.mark.parametrize(
    ("points", "problem"),
    [
        (np.zeros((10, 2)), r"all 10 keypoints are at \(0, 0\)"),
        (np.full((10, 2), 55.0), r"all 10 keypoints are at \(55, 55\): their box has zero extent"),
        (np.concatenate([np.arange(9.0)[:, None] * [10.0, 5.0] + 20, [[60.0, 40.0]]]), r"keypoints 4 and 9 are both at \(60, 40\)"),
    ],
    ids=["origin", "zero-extent", "duplicates"],
)
def test_pfwillow_degenerate_keypoints_name_the_file(tmp_path, points, problem):
    """A zeroed .mat used to pass: the PCK threshold became 0 and PCK dropped silently."""
    info = build_pfwillow(tmp_path / "w", {"car(G)": 3})
    bad = info["images"]["car(G)"][1].with_suffix(".mat")
    scipy.io.savemat(str(bad), {"pts_coord": points.T.copy()})
    with pytest.raises(AnnotationError, match=problem) as err:
        PFWillowDataset(tmp_path / "w")
    message = str(err.value)
    assert str(bad) in message and "car(G)/car_000-car_001" in message  # the file, then the first pair it breaks
    assert "target keypoints" in message  # pair car_000 -> car_001: the bad file is its target


def test_pfwillow_csv_row_with_zeroed_keypoints_names_the_row(tmp_path):
    info = build_pfwillow(tmp_path / "w", {"car(G)": 2}, csv_name="test_pairs_pf.csv")
    lines = info["csv"].read_text().splitlines()
    cells = lines[2].split(",")
    lines[2] = ",".join(cells[:22] + ["0"] * 20)  # the target keypoints of row 2
    info["csv"].write_text("\n".join(lines) + "\n")
    with pytest.raises(AnnotationError, match=r"test_pairs_pf\.csv row 2: all 10 keypoints are at \(0, 0\)"):
        PFWillowDataset(tmp_path / "w")


def test_a_lone_keypoint_is_fine_with_a_box_threshold_but_not_with_a_keypoint_threshold(tmp_path):
    build_spair(tmp_path / "spair")
    ann = tmp_path / "spair" / "PairAnnotation" / "test" / "000001-2008_002719-2008_004100:aeroplane.json"
    ann.write_text(ann.read_text().replace("[[212, 153], [300, 130], [330, 127]]", "[[212, 153]]")
                   .replace("[[39, 145], [364, 171], [416, 173]]", "[[39, 145]]"))
    assert len(SPairDataset(tmp_path / "spair").records[0].src_kps) == 1  # SPair: T is the target box
    info = build_pfwillow(tmp_path / "w", {"car(G)": 2}, csv_name="test_pairs_pf.csv")
    lines = info["csv"].read_text().splitlines()
    header = lines[0].split(",")
    keep = [0, 1] + [i for i, name in enumerate(header) if name[1:] == "1" or name[2:] == "1"]  # XA1, YA1, XB1, YB1
    info["csv"].write_text("\n".join(",".join(line.split(",")[i] for i in keep) for line in lines) + "\n")
    with pytest.raises(AnnotationError, match=r"row 1: the box of the PCK threshold, the box spanned by the target "
                                              r"keypoints .*, is \(.*\): zero extent, so T would be 0"):
        PFWillowDataset(tmp_path / "w")
    assert len(PFWillowDataset(tmp_path / "w", threshold="img").records[0].src_kps) == 1  # T from the image: fine


def test_pfpascal_duplicated_keypoints_name_the_csv_line(tmp_path):
    _, rows = read_csv_rows("test")
    xa, ya = rows[0]["XA"].split(";"), rows[0]["YA"].split(";")
    row = dict(rows[0], XA=";".join([xa[0]] + xa[:-1]), YA=";".join([ya[0]] + ya[:-1]))  # keypoint 1 repeats 0
    build_pfpascal(tmp_path, "test", rows=[row], images=False)
    with pytest.raises(AnnotationError, match=r"test_pairs\.csv line 2: keypoints 0 and 1 are both at .*source keypoints"):
        PFPascalDataset(tmp_path)


def test_a_file_as_root_says_a_folder_is_needed(tmp_path):
    (tmp_path / "willow.zip").write_bytes(b"PK")
    with pytest.raises(ConfigError, match=r"dataset.root=.*willow\.zip is a file; it must be the dataset's folder"):
        PFWillowDataset(tmp_path / "willow.zip")


def test_corrupt_image_hint_names_the_dataset(tmp_path):
    info = build_pfwillow(tmp_path / "w", {"car(G)": 2})
    info["images"]["car(G)"][1].write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageError) as err:
        PFWillowDataset(tmp_path / "w")[0]
    assert f"python -m semcorr.data.download pfwillow --root {tmp_path / 'w'}" in str(err.value)
    assert "NAME" not in str(err.value)


# -- user pairs -------------------------------------------------------------------------------
def test_pairs_csv(tmp_path):
    write_image(tmp_path / "img" / "a.jpg", 64, 48)
    write_image(tmp_path / "img" / "b.png", 40, 30, seed=1)
    (tmp_path / "pairs.csv").write_text("source,target\nimg/a.jpg,img/b.png\nimg/b.png,img/a.jpg\n")
    ds = ImagePairsDataset(tmp_path)
    assert len(ds) == 2 and ds.categories == ["pairs"]
    s = ds[0]
    assert s["n_kps"] == 0 and math.isnan(s["pck_threshold"]) and s["src_kps"].shape == (0, 2)
    assert tuple(s["src_img"].shape) == (3, 48, 64)
    (tmp_path / "pairs.csv").write_text("source,target\nimg/a.jpg,img/missing.jpg\n")
    with pytest.raises(DatasetNotFoundError, match="missing.jpg"):
        ImagePairsDataset(tmp_path)
    (tmp_path / "pairs.csv").write_text("img/a.jpg\n")
    with pytest.raises(AnnotationError, match="incomplete pair"):
        ImagePairsDataset(tmp_path)


def test_pairs_folders_and_names(tmp_path):
    write_image(tmp_path / "cats" / "1.jpg", 32, 32)
    write_image(tmp_path / "cats" / "2.jpg", 32, 32, seed=1)
    write_image(tmp_path / "x_A.png", 20, 20)
    write_image(tmp_path / "x_B.png", 20, 20, seed=2)
    ds = ImagePairsDataset(tmp_path)
    assert [(r.pair_id, r.category) for r in ds.records] == [("x", "pairs"), ("cats", "cats")]
    assert ds.records[1].src_path.name == "1.jpg"
    assert len(collate_pairs([ds[0]])["pair_id"]) == 1


def test_pairs_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="dataset.root"):
        ImagePairsDataset(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no image pairs"):
        ImagePairsDataset(tmp_path / "empty")
    write_image(tmp_path / "a" / "dog_A.jpg", 16, 16)
    with pytest.raises(AnnotationError, match="dog_A.jpg has no partner dog_B"):
        ImagePairsDataset(tmp_path / "a")
    write_image(tmp_path / "b" / "one" / "only.jpg", 16, 16)
    with pytest.raises(AnnotationError, match="incomplete pair.*only.jpg"):
        ImagePairsDataset(tmp_path / "b")
    for i in range(3):
        write_image(tmp_path / "c" / "three" / f"{i}.jpg", 16, 16)
    with pytest.raises(AnnotationError, match="holds 3 images"):
        ImagePairsDataset(tmp_path / "c")
    write_image(tmp_path / "d" / "lonely.jpg", 16, 16)
    with pytest.raises(AnnotationError, match="belongs to no pair"):
        ImagePairsDataset(tmp_path / "d")


# -- configs ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pfpascal", "pfwillow", "spair", "pairs"])
def test_configs_instantiate(tmp_path, name):
    from hydra.utils import instantiate

    conf = OmegaConf.load(CONF / f"{name}.yaml")
    assert conf.name == name
    roots = {"pfpascal": "PF-PASCAL", "pfwillow": "PF-WILLOW", "spair": "SPair-71k", "pairs": "pairs"}
    cfg = OmegaConf.create({"paths": {"data_dir": str(tmp_path)}, "dataset": conf})
    assert cfg.dataset.root == str(tmp_path / roots[name])
    root = tmp_path / roots[name]
    if name == "pfpascal":
        build_pfpascal(root, "test", n=2, images=False)
    elif name == "pfwillow":
        build_pfwillow(root, {"car(G)": 2})
    elif name == "spair":
        build_spair(root)
    else:
        write_image(root / "p_A.jpg", 16, 16)
        write_image(root / "p_B.jpg", 16, 16)
    ds = instantiate(cfg.dataset)
    assert ds.name == name and len(ds) > 0
