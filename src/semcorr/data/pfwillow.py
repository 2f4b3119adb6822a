"""PF-WILLOW (Ham et al., "Proposal Flow", CVPR 2016): 900 test pairs of 10 sub-classes.

Layout read (``root`` = the folder ``python -m semcorr.data.download pfwillow --root ROOT`` fills;
the official ``PF-dataset.zip`` unpacks to ``PF-dataset/``, whose content is ``ROOT``)::

    ROOT/
      <subclass>/<image>.png       e.g. ``car(G)/Cars_006a.png``
      <subclass>/<image>.mat       ``pts_coord``: (2, 10) float, row 0 = x, row 1 = y (pixels)
      test_pairs.csv               optional pair list (HPF's release of PF-WILLOW)
      test_pairs_pf.csv            optional pair list (CNNGeometric release)

A ``ROOT`` that holds ``PF-dataset/`` is read through it. Pairs: every ordered pair of distinct
images inside one sub-class (10 x 9 = 90 per sub-class, 900 in all), sub-classes and images in
sorted order; the category is the sub-class name (e.g. ``car(G)``).

The CSV form (HPF's ``test_pairs.csv``, the ``test_pairs_pf.csv`` of CNNGeometric / WeakAlign
in the same format): columns ``imageA, imageB`` then 20 source values ``XA1..XA10, YA1..YA10``
and 20 target values ``XB1..XB10, YB1..YB10`` (read by position, as the reference code does);
image paths are ``PF-dataset/<subclass>/<image>.png``, resolved against ``ROOT`` with or without
the leading ``PF-dataset/``. It is used when ``pairs_csv=FILE`` is given, or when
``source="auto"`` (the default) and the folder has one of :data:`CSV_NAMES` (HPF's first: the
reference evaluates the pairs of its ``test_pairs.csv``); ``source="folder"`` ignores any CSV.
Which one was read is recorded in the protocol (``pairs``).

PCK threshold (``threshold``, HPF's ``--thres``): ``"bbox"`` (default), max(w, h) of the box
spanned by the TARGET's keypoints (PF-WILLOW has no annotated box; this is what HPF's PF-WILLOW
loader computes for ``--thres bbox``), from that pair's own keypoints, never from a padded batch;
``"img"``, max(H, W) of the target image. Both in resized target pixels (or original ones, see
:mod:`semcorr.data.thresholds`).

Ambiguities: the release does not say whether coordinates are 0- or 1-based; they are used as
stored. The order of the 900 pairs is not part of the release; the folder order is the
sorted order above (the CSV keeps its own order).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from semcorr.data.base import PairDataset, PairRecord
from semcorr.data.pfpascal import read_mat
from semcorr.data.thresholds import keypoint_box
from semcorr.errors import AnnotationError, ConfigError, DatasetNotFoundError

#: The 10 sub-classes of the full release.
SUBCLASSES = (
    "car(G)", "car(M)", "car(S)", "duck(S)", "motorbike(G)", "motorbike(M)", "motorbike(S)",
    "winebottle(M)", "winebottle(wC)", "winebottle(woC)",
)
#: Pair lists looked for in the folder, in this order (HPF's, then CNNGeometric's).
CSV_NAMES = ("test_pairs.csv", "test_pairs_pf.csv")
#: ``pair_source`` of the folder scan.
FOLDER_PAIRS = "all ordered pairs of distinct images within a sub-class (folder scan)"
IMAGE_EXTS = (".png", ".jpg", ".jpeg")


def read_pts_coord(path: Path) -> np.ndarray:
    """Read ``pts_coord`` (2, N) of a PF-WILLOW ``.mat`` file as (N, 2) (x, y) float64."""
    pts = read_mat(path, "pts_coord")
    if pts.ndim != 2 or pts.shape[0] != 2:
        raise AnnotationError(f"{path}: pts_coord has shape {pts.shape}, expected (2, N). Replace the file.")
    return np.ascontiguousarray(pts.T)


class PFWillowDataset(PairDataset):
    """PF-WILLOW pairs (see the module docstring for the layout and the rules).

    Args:
        root: folder holding the sub-class folders (or ``PF-dataset/``).
        split: ``"test"`` (the only split).
        pairs_csv: a ``test_pairs.csv``-style list to read instead of scanning folders.
        source: ``"auto"`` (a CSV of :data:`CSV_NAMES` at ``root`` if present, else folders),
            ``"folder"`` or ``"csv"``.
        **kwargs: the :class:`~semcorr.data.base.PairDataset` arguments (threshold ``"bbox"``
            or ``"img"``).
    """

    download_name = "pfwillow"
    thresholds = ("bbox", "img")
    box_source = "the box spanned by the target keypoints (PF-WILLOW has no annotated box)"
    requires_keypoints = True
    splits = ("test",)

    def __init__(
        self,
        root: str | Path,
        split: str = "test",
        pairs_csv: str | Path | None = None,
        source: str = "auto",
        **kwargs: Any,
    ) -> None:
        if source not in ("auto", "folder", "csv"):
            raise ConfigError(f"PFWillowDataset: source must be 'auto', 'folder' or 'csv', got {source!r}")
        self.pairs_csv = Path(pairs_csv).expanduser() if pairs_csv else None
        self.source = source
        kwargs.setdefault("name", "pfwillow")
        super().__init__(root, split=split, **kwargs)

    @property
    def data_dir(self) -> Path:
        """Folder holding the sub-class folders (``root`` or ``root/PF-dataset``)."""
        inner = self.root / "PF-dataset"
        if inner.is_dir() and not any(p.is_dir() and p.name in SUBCLASSES for p in self.root.iterdir()):
            return inner
        return self.root

    def load_records(self) -> list[PairRecord]:
        if self.source == "folder":
            return self.folder_records()
        csv_path = self.pairs_csv
        if csv_path is None:
            found = [folder / name for name in CSV_NAMES for folder in (self.data_dir, self.root) if (folder / name).is_file()]
            csv_path = found[0] if found else None
        if csv_path is None:
            if self.source == "csv":
                raise DatasetNotFoundError(
                    self.missing_message(self.root / CSV_NAMES[0]) + f" (nor {CSV_NAMES[1]}; or pass dataset.pairs_csv=FILE)"
                )
            return self.folder_records()
        return self.csv_records(self.require(csv_path))

    def target_box(self, record: PairRecord) -> np.ndarray:
        """The box spanned by the target's keypoints (original pixels), PF-WILLOW's ``bbox``."""
        return keypoint_box(record.trg_kps)

    # -- official folder layout -----------------------------------------------------------
    def folder_records(self) -> list[PairRecord]:
        data_dir = self.data_dir
        self.pair_source = FOLDER_PAIRS
        records = []
        folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
        for folder in folders:
            images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))
            if not images:
                continue
            kps = {}
            for img in images:
                mat = img.with_suffix(".mat")
                if not mat.is_file():
                    raise DatasetNotFoundError(
                        f"{self.name}: annotation {mat} of image {img.name} not found. Every image needs "
                        f"its .mat file with pts_coord; re-download with `python -m semcorr.data.download "
                        f"pfwillow --root {self.root}` or remove the image."
                    )
                kps[img] = read_pts_coord(mat)
            for src in images:
                for trg in images:
                    if src == trg:
                        continue
                    records.append(
                        PairRecord(
                            pair_id=f"{folder.name}/{src.stem}-{trg.stem}",
                            src_path=src,
                            trg_path=trg,
                            category=folder.name,
                            src_kps=kps[src],
                            trg_kps=kps[trg],
                            annotations=(str(src.with_suffix(".mat")), str(trg.with_suffix(".mat"))),
                        )
                    )
        if not records:
            raise DatasetNotFoundError(
                self.missing_message(data_dir / "<subclass>/<image>.png")
                + " (expected sub-class folders such as 'car(G)' holding .png images and .mat annotations)"
            )
        return records

    # -- CSV layout -----------------------------------------------------------------------
    def resolve_image(self, name: str, where: str) -> Path:
        rel = Path(name.strip().replace("\\", "/"))
        candidates = [self.root / rel, self.root.parent / rel]
        if rel.parts and rel.parts[0] == "PF-dataset":
            stripped = Path(*rel.parts[1:])
            candidates += [self.data_dir / stripped, self.root / stripped]
        for path in candidates:
            if path.is_file():
                return path
        raise DatasetNotFoundError(
            f"{self.name}: {where}: image {name} not found (looked in {', '.join(str(p) for p in candidates)}). "
            f"Download it with `python -m semcorr.data.download pfwillow --root {self.root}` or fix dataset.root."
        )

    def csv_records(self, csv_path: Path) -> list[PairRecord]:
        self.pair_source = f"{csv_path.name} (pair list)"
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
        if rows and not _is_number(rows[0][2] if len(rows[0]) > 2 else ""):
            rows = rows[1:]  # header
        records = []
        for i, row in enumerate(rows):
            where = f"{csv_path.name} row {i + 1}"
            if len(row) < 4 or (len(row) - 2) % 4:
                raise AnnotationError(
                    f"{where}: expected imageA, imageB and 4N coordinates (XA.., YA.., XB.., YB..), got {len(row)} columns."
                )
            try:
                values = np.array([float(v) for v in row[2:]], dtype=np.float64)
            except ValueError as exc:
                raise AnnotationError(f"{where}: non-numeric coordinate ({exc}). Fix the CSV.") from exc
            n = len(values) // 4
            src_kps = values[: 2 * n].reshape(2, n).T
            trg_kps = values[2 * n :].reshape(2, n).T
            src = self.resolve_image(row[0], where)
            trg = self.resolve_image(row[1], where)
            records.append(
                PairRecord(
                    pair_id=f"{i + 1:04d}-{src.parent.name}/{src.stem}-{trg.stem}",
                    src_path=src,
                    trg_path=trg,
                    category=src.parent.name,
                    src_kps=np.ascontiguousarray(src_kps),
                    trg_kps=np.ascontiguousarray(trg_kps),
                    annotations=(f"{csv_path} row {i + 1}",) * 2,
                )
            )
        return records


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
