"""The checks every keypoint dataset inherits from semcorr.data.base.PairDataset (degenerate
annotations, roots, images): errors that name the file, shown through PF-WILLOW, PF-PASCAL and
SPair-71k."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from fixtures_keypoints import build_pfpascal, build_pfwillow, build_spair, read_csv_rows
from semcorr.data.pfpascal import PFPascalDataset
from semcorr.data.pfwillow import PFWillowDataset
from semcorr.data.spair import SPairDataset
from semcorr.errors import AnnotationError, ConfigError, ImageError


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
