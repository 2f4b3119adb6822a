"""PF-WILLOW (semcorr.data.pfwillow) read from fixtures in its official layouts and from
../shared/data."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from hydra.utils import instantiate

from fixtures_keypoints import PFWILLOW_REAL, build_pfwillow, dataset_config, require_shared
from semcorr.data.pfwillow import PFWillowDataset
from semcorr.errors import AnnotationError, DatasetNotFoundError, ImageError


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


def test_config_instantiates(tmp_path):
    node = dataset_config("pfwillow", tmp_path, "PF-WILLOW")
    build_pfwillow(tmp_path / "PF-WILLOW", {"car(G)": 2})
    ds = instantiate(node)
    assert ds.name == "pfwillow" and len(ds) > 0
