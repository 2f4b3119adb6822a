"""Reading and writing Middlebury .flo files (semcorr.data.flo)."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures_dense import TSS_SAMPLE, needs_tss_sample
from semcorr.data.flo import read_flo, write_flo
from semcorr.errors import AnnotationError, DatasetNotFoundError


def test_flo_round_trip_keeps_values_and_unknowns(tmp_path):
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(5, 7, 2)).astype(np.float32) * 10
    flow[1, 2] = np.nan
    flow[3, 4, 1] = np.inf
    write_flo(tmp_path / "a" / "f.flo", flow)
    raw = (tmp_path / "a" / "f.flo").read_bytes()
    assert raw[:4] == b"PIEH" and len(raw) == 12 + 5 * 7 * 2 * 4
    back = read_flo(tmp_path / "a" / "f.flo")
    assert back.shape == (5, 7, 2) and back.dtype == np.float32
    known = np.isfinite(flow).all(-1)
    assert np.array_equal(np.isfinite(back).all(-1), known)
    assert np.isnan(back[3, 4]).all()  # one unknown component makes the pixel unknown
    np.testing.assert_array_equal(back[known], flow[known])
    raw_values = read_flo(tmp_path / "a" / "f.flo", unknown_to_nan=False)
    assert raw_values[1, 2, 0] == pytest.approx(1e10)


def test_flo_accepts_channel_first_and_rejects_bad_files(tmp_path):
    flow = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    write_flo(tmp_path / "c.flo", flow)
    np.testing.assert_array_equal(read_flo(tmp_path / "c.flo"), flow.transpose(1, 2, 0))
    (tmp_path / "bad.flo").write_bytes(b"XXXX" + bytes(20))
    with pytest.raises(AnnotationError, match="not a Middlebury"):
        read_flo(tmp_path / "bad.flo")
    good = (tmp_path / "c.flo").read_bytes()
    (tmp_path / "short.flo").write_bytes(good[:-4])
    with pytest.raises(AnnotationError, match="truncated"):
        read_flo(tmp_path / "short.flo")
    with pytest.raises(DatasetNotFoundError):
        read_flo(tmp_path / "missing.flo")


@needs_tss_sample
def test_flo_reads_real_tss_files():
    folder = TSS_SAMPLE / "JODS" / "car_01_02"
    flow = read_flo(folder / "flow1.flo")
    assert flow.shape == (212, 340, 2)  # (H, W) of image1
    from PIL import Image

    mask = np.asarray(Image.open(folder / "mask1.png")) > 0
    assert np.array_equal(np.isfinite(flow).all(-1), mask)  # known flow = foreground
    assert np.nanmax(np.abs(flow)) < 100
