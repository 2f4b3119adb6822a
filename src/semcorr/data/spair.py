"""SPair-71k (Min et al., "SPair-71k: A Large-scale Benchmark for Semantic Correspondence", 2019).

Layout read (``root`` = the content of the official ``SPair-71k.tar.gz``'s ``SPair-71k/``)::

    ROOT/
      JPEGImages/<category>/<image>.jpg
      ImageAnnotation/<category>/<image>.json          (not needed here)
      PairAnnotation/{trn,val,test}/<id>-<src>-<trg>:<category>.json
      Layout/{large,small}/{trn,val,test}.txt            one pair name per line

The official split names are ``trn``, ``val``, ``test``; the config names ``train``, ``val``,
``test`` map to them (``trn`` is accepted too). ``layout="large"`` (53,340 / 5,384 / 12,234
pairs) is the benchmark; ``layout="small"`` is the release's reduced list. A pair annotation
gives ``src_imname``, ``trg_imname``, ``category``, ``src_kps`` / ``trg_kps`` ([[x, y], ...],
pixels, matched by position), ``src_bndbox`` / ``trg_bndbox`` ([x1, y1, x2, y2]), ``mirror``
and the difficulty levels ``viewpoint_variation`` (0-2), ``scale_variation`` (0-2),
``truncation`` (0-3), ``occlusion`` (0-3) that the paper's Table 6 breaks results down by.

PCK threshold (``threshold``, HPF's ``--thres``): ``"bbox"`` (default), max(w, h) of
``trg_bndbox`` with w = x2 - x1, h = y2 - y1, each scaled by the target's resize factor (the HPF /
SPair protocol); ``"img"``, max(H, W) of the target image.

Samples carry the four difficulty fields (ints, :attr:`SPairDataset.group_fields`) and
``mirror`` (int, the release's ``mirror`` flag passed through as stored; nothing is flipped).

Ambiguities: the release does not say whether box and keypoint coordinates are 0- or 1-based;
they are used as stored (as the reference code does). A Layout line whose annotation file is
missing is an error (the file is named), not silently skipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from semcorr.data.base import PairDataset, PairRecord
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError

#: Config split name -> official folder / layout file name.
SPLIT_DIRS = {"train": "trn", "trn": "trn", "val": "val", "test": "test"}
GROUP_FIELDS = ("viewpoint_variation", "scale_variation", "truncation", "occlusion")


class SPairDataset(PairDataset):
    """SPair-71k pairs (see the module docstring for the layout and the rules).

    Args:
        root: the ``SPair-71k`` folder.
        split: ``"test"``, ``"val"`` or ``"train"`` (``"trn"`` also accepted).
        layout: ``"large"`` (the benchmark lists) or ``"small"``.
        **kwargs: the :class:`~semcorr.data.base.PairDataset` arguments (threshold ``"bbox"``
            or ``"img"``).
    """

    download_name = "spair"
    thresholds = ("bbox", "img")
    box_source = "trg_bndbox of the pair annotation"
    requires_keypoints = True
    group_fields = GROUP_FIELDS
    splits = ("test", "val", "train", "trn")

    def __init__(self, root: str | Path, split: str = "test", layout: str = "large", **kwargs: Any) -> None:
        if layout not in ("large", "small"):
            raise ConfigError(f"SPairDataset: layout must be 'large' or 'small', got {layout!r}")
        self.layout = layout
        kwargs.setdefault("name", "spair")
        super().__init__(root, split=split, **kwargs)

    @property
    def split_dir(self) -> str:
        """Official name of the split (``trn``, ``val`` or ``test``)."""
        return SPLIT_DIRS[self.split]

    def load_records(self) -> list[PairRecord]:
        layout_file = self.require(self.root / "Layout" / self.layout / f"{self.split_dir}.txt")
        self.pair_source = f"Layout/{self.layout}/{self.split_dir}.txt"
        ann_dir = self.root / "PairAnnotation" / self.split_dir
        if not ann_dir.is_dir():
            raise DatasetNotFoundError(self.missing_message(ann_dir))
        names = [line.strip() for line in layout_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = []
        for name in names:
            path = ann_dir / f"{name}.json"
            if not path.is_file():
                raise DatasetNotFoundError(
                    f"{self.name}: pair annotation {path} listed in {layout_file} not found. Re-download with "
                    f"`python -m semcorr.data.download spair --root {self.root}`, or set dataset.root=PATH."
                )
            records.append(self.read_pair(path))
        return records

    def read_pair(self, path: Path) -> PairRecord:
        """Read one ``PairAnnotation`` JSON file into a record."""
        try:
            ann = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise AnnotationError(f"Cannot read pair annotation {path} ({exc}). Replace the file.") from exc
        try:
            category = str(ann["category"])
            src_kps = np.asarray(ann["src_kps"], dtype=np.float64).reshape(-1, 2)
            trg_kps = np.asarray(ann["trg_kps"], dtype=np.float64).reshape(-1, 2)
            trg_bbox = np.asarray(ann["trg_bndbox"], dtype=np.float64).reshape(-1)
            groups = {k: int(ann[k]) for k in GROUP_FIELDS}
            src_name, trg_name = str(ann["src_imname"]), str(ann["trg_imname"])
        except KeyError as exc:
            raise AnnotationError(f"Pair annotation {path} lacks the field {exc}. Replace the file.") from exc
        except (TypeError, ValueError) as exc:
            raise AnnotationError(f"Pair annotation {path} has a malformed field ({exc}). Replace the file.") from exc
        if trg_bbox.shape != (4,):
            raise AnnotationError(f"Pair annotation {path}: trg_bndbox must be [x1, y1, x2, y2], got {ann['trg_bndbox']}.")
        image_dir = self.root / "JPEGImages" / category
        return PairRecord(
            pair_id=str(ann.get("filename") or path.stem),
            src_path=image_dir / src_name,
            trg_path=image_dir / trg_name,
            category=category,
            src_kps=src_kps,
            trg_kps=trg_kps,
            trg_bbox=trg_bbox,
            groups=groups,
            annotations=(str(path), str(path)),
            extra={
                "mirror": int(ann.get("mirror", 0) or 0),
                "src_bbox": np.asarray(ann.get("src_bndbox", [np.nan] * 4), dtype=np.float64),
                "kps_ids": list(ann.get("kps_ids", [])),
                "annotation": path,
            },
        )

    def protocol_options(self) -> dict[str, Any]:
        return {"layout": self.layout}

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = super().__getitem__(index)
        sample["mirror"] = int(self.records[index].extra["mirror"])
        return sample
