"""SPair-71k (semcorr.data.spair) read from fixtures in its official layout (real annotations where
../shared/data has them)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from fixtures_keypoints import build_spair, dataset_config
from semcorr.data.collate import collate_pairs
from semcorr.data.spair import SPairDataset
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError, ImageError


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


def test_config_instantiates(tmp_path):
    node = dataset_config("spair", tmp_path, "SPair-71k")
    build_spair(tmp_path / "SPair-71k")
    ds = instantiate(node)
    assert ds.name == "spair" and len(ds) > 0
