"""A folder of the user's own pairs (semcorr.data.pairs): CSV and folder layouts, errors."""

from __future__ import annotations

import math

import pytest
from hydra.utils import instantiate

from fixtures_keypoints import dataset_config, write_image
from semcorr.data.collate import collate_pairs
from semcorr.data.pairs import ImagePairsDataset
from semcorr.errors import AnnotationError, DatasetNotFoundError


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


def test_config_instantiates(tmp_path):
    node = dataset_config("pairs", tmp_path, "pairs")
    write_image(tmp_path / "pairs" / "p_A.jpg", 16, 16)
    write_image(tmp_path / "pairs" / "p_B.jpg", 16, 16)
    ds = instantiate(node)
    assert ds.name == "pairs" and len(ds) > 0
