"""Image loading: RGB values, conversions of grayscale / RGBA / 16-bit, clear errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from semcorr.data.images import load_image
from semcorr.errors import DatasetNotFoundError, ImageError


def test_rgb_values(tmp_path):
    arr = np.zeros((4, 5, 3), np.uint8)
    arr[1, 2] = [255, 128, 0]
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = load_image(tmp_path / "a.png")
    assert img.shape == (3, 4, 5) and img.dtype == torch.float32
    assert img[:, 1, 2].tolist() == pytest.approx([1.0, 128 / 255, 0.0])


@pytest.mark.parametrize(
    "mode, make",
    [
        ("L", lambda: Image.fromarray(np.full((4, 4), 51, np.uint8), "L")),
        ("RGBA", lambda: Image.fromarray(np.dstack([np.full((4, 4, 3), 51, np.uint8), np.full((4, 4), 255, np.uint8)]), "RGBA")),
        ("I;16", lambda: Image.fromarray(np.full((4, 4), 51 * 257, np.uint16))),
    ],
)
def test_conversions(tmp_path, mode, make):
    img = make()
    img.save(tmp_path / "x.png")
    out = load_image(tmp_path / "x.png")
    assert out.shape == (3, 4, 4)
    assert torch.allclose(out, torch.full_like(out, 51 / 255))
    with pytest.raises(ImageError, match=r"x\.png.*convert"):
        load_image(tmp_path / "x.png", convert=False)


def test_transparent_pixels_become_white(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    assert torch.allclose(load_image(tmp_path / "t.png"), torch.ones(3, 2, 2))


def test_corrupt_and_missing(tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8not really a jpeg")
    with pytest.raises(ImageError, match=r"bad\.jpg.*corrupt"):
        load_image(tmp_path / "bad.jpg")
    with pytest.raises(DatasetNotFoundError, match=r"nothere\.png.*download"):
        load_image(tmp_path / "nothere.png")
