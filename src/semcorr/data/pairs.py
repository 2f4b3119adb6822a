"""A folder of the user's own image pairs, without ground truth (for predictions and pictures).

Layouts read, in this order (the first that applies wins):

1. ``ROOT/pairs.csv``: one pair per row, columns ``source,target`` (paths relative to ``ROOT``
   or absolute) and an optional ``category`` column; a header row naming the columns is
   optional (without one, the first two columns are source and target).
2. Otherwise the folder is scanned:

   - ``ROOT/<name>_A.<ext>`` + ``ROOT/<name>_B.<ext>``: pair ``<name>``, A is the source, B
     the target (``_a`` / ``_b`` also accepted), category ``"pairs"``;
   - ``ROOT/<sub>/`` holding exactly two images: one pair, the images in sorted name order
     (source first), category ``<sub>``; a sub-folder may instead hold ``<name>_A`` /
     ``<name>_B`` files (category ``<sub>``).

Images: ``.jpg .jpeg .png .bmp .tif .tiff .webp`` (any case). Hidden files are ignored.
Errors name the file and the fix: an empty folder, a ``_A`` without its ``_B``, a sub-folder
with one or more than two unnamed images, an image at ``ROOT`` that belongs to no pair.

No keypoints: ``requires_keypoints = False``, samples have ``n_kps = 0`` and
``pck_threshold = nan`` (threshold rule ``"none"``).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from semcorr.data.base import PairDataset, PairRecord
from semcorr.errors import AnnotationError, DatasetNotFoundError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
CSV_NAME = "pairs.csv"
DEFAULT_CATEGORY = "pairs"
_NAMED = re.compile(r"^(?P<name>.+)_(?P<side>[ABab])$")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


class ImagePairsDataset(PairDataset):
    """User image pairs without ground truth (see the module docstring for the layouts).

    Args:
        root: the folder of pairs.
        split: ``"test"`` (the only split).
        pairs_csv: a pair list to read instead of ``ROOT/pairs.csv`` (paths relative to its folder).
        **kwargs: the :class:`~semcorr.data.base.PairDataset` arguments.
    """

    download_name = None
    thresholds = ("none",)
    requires_keypoints = False
    splits = ("test",)

    def __init__(self, root: str | Path, split: str = "test", pairs_csv: str | Path | None = None, **kwargs: Any) -> None:
        self.pairs_csv = Path(pairs_csv).expanduser() if pairs_csv else None
        kwargs.setdefault("name", "pairs")
        super().__init__(root, split=split, **kwargs)

    def load_records(self) -> list[PairRecord]:
        if self.pairs_csv is not None:
            return self.csv_records(self.require(self.pairs_csv))
        if (self.root / CSV_NAME).is_file():
            return self.csv_records(self.root / CSV_NAME)
        self.pair_source = "folder scan (<name>_A/_B files, two-image sub-folders)"
        records = self.folder_pairs(self.root, DEFAULT_CATEGORY, top=True)
        for sub in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            records += self.folder_pairs(sub, sub.name, top=False)
        if not records:
            raise DatasetNotFoundError(
                f"{self.name}: no image pairs found in {self.root}. Put the pairs there as "
                f"{CSV_NAME} (columns source,target), as <name>_A.jpg + <name>_B.jpg files, or as "
                "sub-folders holding exactly two images each."
            )
        return records

    def folder_pairs(self, folder: Path, category: str, top: bool) -> list[PairRecord]:
        """Pairs of one folder: ``_A``/``_B`` names, else (sub-folders) exactly two images."""
        images = _images(folder)
        if not images:
            return []
        named: dict[str, dict[str, Path]] = {}
        loose = []
        for img in images:
            m = _NAMED.match(img.stem)
            if m:
                named.setdefault(m["name"], {})[m["side"].upper()] = img
            else:
                loose.append(img)
        prefix = "" if top else f"{folder.name}/"
        if not named and not top:
            if len(images) == 2:
                return [PairRecord(pair_id=folder.name, src_path=images[0], trg_path=images[1], category=category)]
            if len(images) == 1:
                raise AnnotationError(
                    f"{self.name}: incomplete pair in {folder}: only {images[0].name}. Add the second image "
                    "(a pair folder holds exactly two images)."
                )
            raise AnnotationError(
                f"{self.name}: {folder} holds {len(images)} images ({', '.join(p.name for p in images[:5])}"
                f"{', ...' if len(images) > 5 else ''}); a pair folder holds exactly two images, or name "
                "them <name>_A / <name>_B."
            )
        if loose:
            raise AnnotationError(
                f"{self.name}: image {loose[0]} belongs to no pair. Rename it <name>_A / <name>_B"
                + (", move it into a sub-folder with its partner," if top else "")
                + f" or list the pairs in {CSV_NAME}."
            )
        records = []
        for name in sorted(named):
            sides = named[name]
            if set(sides) != {"A", "B"}:
                have = next(iter(sides.values()))
                want = f"{name}_{'B' if 'A' in sides else 'A'}"
                raise AnnotationError(
                    f"{self.name}: incomplete pair: {have} has no partner {want}.<ext> in {folder}. "
                    "Add it or remove the file."
                )
            records.append(PairRecord(pair_id=prefix + name, src_path=sides["A"], trg_path=sides["B"], category=category))
        return records

    def csv_records(self, csv_path: Path) -> list[PairRecord]:
        self.pair_source = f"{csv_path.name} (pair list)"
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            rows = [[c.strip() for c in r] for r in csv.reader(f) if any(c.strip() for c in r)]
        if not rows:
            raise DatasetNotFoundError(f"{self.name}: {csv_path} lists no pairs. Add rows 'source,target'.")
        columns = {"source": 0, "target": 1}
        header = [c.lower() for c in rows[0]]
        first_line = 1
        if "source" in header and "target" in header:
            columns = {c: header.index(c) for c in ("source", "target", "category") if c in header}
            rows, first_line = rows[1:], 2
        base = csv_path.parent
        records = []
        for i, row in enumerate(rows):
            where = f"{csv_path} row {i + first_line}"
            if len(row) <= max(columns["source"], columns["target"]) or not row[columns["source"]] or not row[columns["target"]]:
                raise AnnotationError(f"{self.name}: {where}: incomplete pair {row}; each row needs a source and a target image.")
            paths = []
            for key in ("source", "target"):
                path = Path(row[columns[key]]).expanduser()
                path = path if path.is_absolute() else base / path
                if not path.is_file():
                    raise DatasetNotFoundError(
                        f"{self.name}: {where}: {key} image {path} not found. Fix the path in {csv_path.name}."
                    )
                paths.append(path)
            category = DEFAULT_CATEGORY
            if "category" in columns and len(row) > columns["category"] and row[columns["category"]]:
                category = row[columns["category"]]
            records.append(
                PairRecord(
                    pair_id=f"{i + 1:04d}-{paths[0].stem}-{paths[1].stem}",
                    src_path=paths[0],
                    trg_path=paths[1],
                    category=category,
                )
            )
        return records
