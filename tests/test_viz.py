"""Pictures: correct / wrong marks that cannot be mistaken, a legend, alphas in the title, labelled
strips, and the kind and pair of a picture read back from its path."""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pytest
import torch
from PIL import Image

from semcorr.viz.pictures import (
    CORRECT,
    KEYPOINT_COLOURS,
    WRONG,
    draw_pair,
    pair_title,
    picture_kind,
    picture_name,
    picture_pair_index,
)
from semcorr.viz.strip import GAP, LABEL_HEIGHT, save_strip


def test_keypoint_colours_are_never_the_colours_of_correct_and_wrong():
    for name in KEYPOINT_COLOURS:
        r, g, b = mcolors.to_rgb(name)
        hue, _, saturation = colorsys.rgb_to_hls(r, g, b)
        if saturation > 0.3 and max(r, g, b) - min(r, g, b) > 0.3:  # a real colour, not a grey
            degrees = 360 * hue
            assert not (degrees < 20 or degrees > 340), f"{name} is red-like"
            assert not 80 < degrees < 160, f"{name} is green-like"
    assert mcolors.to_rgb(CORRECT) == (0.0, 1.0, 0.0) and mcolors.to_rgb(WRONG) == (1.0, 0.0, 0.0)


def test_title_names_the_alphas():
    assert pair_title("car/a-b", [0.05, 0.1, 0.15], [0.2, 0.7, 0.9]) == "car/a-b  PCK@0.05/0.1/0.15: 20 / 70 / 90 %"
    assert pair_title("car/a-b", [0.1], None) == "car/a-b"


def _marks(ax) -> dict[str, list[tuple[float, float]]]:
    """Positions of the correct rings and wrong crosses drawn on an axis."""
    found: dict[str, list[tuple[float, float]]] = {"ring": [], "cross": []}
    for collection in ax.collections:
        offsets = [tuple(p) for p in collection.get_offsets()]
        edge = collection.get_edgecolor()
        face = collection.get_facecolor()
        if len(edge) and np.allclose(edge[0][:3], mcolors.to_rgb(CORRECT)) and (not len(face) or face[0][3] == 0):
            found["ring"] += offsets
        if len(face) and np.allclose(face[0][:3], mcolors.to_rgb(WRONG)):
            found["cross"] += offsets
    return found


def test_correct_and_wrong_predictions_get_their_own_marks_and_a_legend():
    img = torch.rand(3, 60, 80)
    src = torch.tensor([[10.0, 10.0], [30.0, 20.0], [50.0, 40.0]])
    gt = torch.tensor([[12.0, 11.0], [40.0, 30.0], [60.0, 50.0]])
    pred = torch.tensor([[14.0, 11.0], [70.0, 55.0], [math.nan, math.nan]])  # correct, wrong, none
    fig = draw_pair(img, img, src, pred, gt, threshold=10.0, title="t", alpha=0.1)
    target = fig.axes[1]
    marks = _marks(target)
    assert marks["ring"] == [(14.0, 11.0)] and marks["cross"] == [(70.0, 55.0)]
    assert target.get_title() == "target: 1/3 correct at alpha = 0.1"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert legend == ["ground truth", "correct: within alpha T = 10.0 px (alpha = 0.1)", "wrong",
                      "1 keypoint without prediction (wrong)"]
    numbers = [t.get_text() for t in fig.axes[0].texts]
    assert numbers == ["0", "1", "2"]  # keypoints numbered, the same numbers at their ground truth
    assert [t.get_text() for t in target.texts] == ["0", "1", "2"]


def test_pictures_without_ground_truth_show_predictions_only():
    img = torch.rand(3, 40, 40)
    fig = draw_pair(img, img, torch.tensor([[5.0, 5.0]]), torch.tensor([[7.0, 8.0]]), None, None)
    assert _marks(fig.axes[1]) == {"ring": [], "cross": []}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["prediction"]


def test_strip_panels_are_labelled(tmp_path):
    a, b = torch.ones(3, 20, 30), torch.ones(3, 25, 15)
    path = save_strip(tmp_path / "s.png", [a, b], labels=["A (source)", "B"])
    with Image.open(path) as strip:
        arr = np.asarray(strip)
    assert arr.shape == (LABEL_HEIGHT + 25, 30 + GAP + 15, 3)
    label_row = arr[:LABEL_HEIGHT]
    assert (label_row[:, :30] < 128).any() and (label_row[:, 30 + GAP :] < 128).any()  # text above each panel
    assert (arr[LABEL_HEIGHT:] == 255).all()  # the white panels below
    with pytest.raises(ValueError, match="2 labels for 1 panels"):
        save_strip(tmp_path / "x.png", [a], labels=["a", "b"])


def test_kind_and_pair_of_a_picture_from_its_path():
    folder = Path("/run/pictures")
    name = picture_name(7, "car(G)/a-b")
    assert name == "000007_car_G_a-b"
    cases = {
        f"{name}.png": "keypoints",
        f"{name}_matches.png": "matches",
        f"{name}/analogy.png": "analogy",  # DIA
        f"{name}/blend.png": "blend",  # NBB
        f"{name}/frame_003.png": "frame",
        f"{name}/attribute_transfer.png": "attribute_transfer",  # SAM-Net
    }
    for rel, kind in cases.items():
        assert picture_kind(folder / rel, folder) == kind, rel
        assert picture_pair_index(folder / rel, folder) == 7
    assert picture_pair_index(folder / "other.png", folder) is None
