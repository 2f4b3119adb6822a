"""Caltech-101 mask transfer pairs (semcorr.data.caltech) read from a fixture in the official layout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fixtures_dense import dataset_from_config, make_caltech
from semcorr.data.caltech import CaltechDataset
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError


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


def test_config_instantiates(tmp_path):
    make_caltech(tmp_path)
    ds = dataset_from_config("caltech", tmp_path)
    assert isinstance(ds, CaltechDataset) and ds.name == "caltech" and len(ds) > 0
