"""Resizing: the HPF 300-px rule, keypoints scaled with the image, collate padding."""

import math

import pytest
import torch

from semcorr.data.collate import collate_pairs
from semcorr.data.transforms import Resize, resize_image, scale_points
from semcorr.errors import ConfigError


def test_max_side_rule_like_hpf():
    r = Resize(max_side=300)
    assert r.target_size(400, 600) == (200, 300)
    assert r.scale_factors(400, 600) == (0.5, 0.5)
    assert r.target_size(333, 500) == (int(333 * 0.6), 300)
    # never upscale by default
    assert r.target_size(100, 200) == (100, 200) and r.scale_factors(100, 200) == (1.0, 1.0)
    assert Resize(max_side=300, upscale=True).target_size(100, 200) == (150, 300)


def test_fixed_size_scales_axes_separately():
    r = Resize(size=(100, 50))
    assert r.target_size(200, 200) == (100, 50)
    assert r.scale_factors(200, 200) == (0.25, 0.5)


def test_keypoint_follows_resized_image_content():
    # a bright pixel block at known position stays under the scaled keypoint
    img = torch.zeros(3, 400, 600)
    img[:, 196:204, 296:304] = 1.0  # centre (300, 200) in x, y
    r = Resize(max_side=300)
    small = resize_image(img, r.target_size(400, 600))
    kp = scale_points(torch.tensor([[300.0, 200.0]]), *r.scale_factors(400, 600))
    x, y = kp[0].round().long().tolist()
    assert small[0, y, x] > 0.9 and small.shape[-2:] == (200, 300)


def test_invalid_resize_config():
    with pytest.raises(ConfigError):
        Resize(max_side=2)


def _sample(n, hw=(4, 4)):
    return {"src_img": torch.zeros(3, *hw), "src_kps": torch.ones(n, 2), "trg_kps": torch.ones(n, 2), "n_kps": n,
            "pck_threshold": 1.5, "pair_id": f"p{n}"}


def test_collate_pads_with_nan():
    batch = collate_pairs([_sample(1), _sample(3)])
    assert batch["src_kps"].shape == (2, 3, 2)
    assert math.isnan(batch["src_kps"][0, 1, 0].item()) and batch["src_kps"][1, 2, 0] == 1
    assert batch["n_kps"].tolist() == [1, 3] and batch["pair_id"] == ["p1", "p3"]
    assert batch["pck_threshold"].dtype == torch.float32


def test_collate_different_sizes_says_what_to_do():
    with pytest.raises(ConfigError, match="batch_size=1"):
        collate_pairs([_sample(1, (4, 4)), _sample(1, (5, 4))])
