"""Builders of small keypoint-benchmark fixtures in their exact official layouts (into tmp_path).

Annotations are the real ones where ``../shared/data`` has them (PF-PASCAL pair lists, the SPair-71k
pair annotation); images are generated (noise or solid colour) at sizes that hold the keypoints.
Nothing here is dataset data committed to the repository.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from omegaconf import DictConfig, OmegaConf
from PIL import Image

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
PFPASCAL_SPLITS = SHARED / "PF-PASCAL-splits"
PFWILLOW_REAL = SHARED / "PF-dataset-WILLOW"
SPAIR_REAL = SHARED / "SPair-71k-format"
DATASET_CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"


def dataset_config(name: str, data_dir: Path, folder: str) -> DictConfig:
    """``conf/dataset/<name>.yaml`` resolved with ``paths.data_dir=data_dir``; checks its name and
    that its root is ``data_dir/folder``."""
    conf = OmegaConf.load(DATASET_CONF / f"{name}.yaml")
    assert conf.name == name
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "dataset": conf})
    assert cfg.dataset.root == str(data_dir / folder)
    return cfg.dataset


def require_shared(path: Path) -> Path:
    """Return ``path`` under ../shared/data, or skip the test saying what is missing."""
    if not path.exists():
        pytest.skip(f"real benchmark data not found: {path.resolve()} (../shared/data is absent on this machine)")
    return path


def write_image(path: Path, width: int, height: int, seed: int = 0, kind: str = "noise") -> Path:
    """Write an RGB image of ``width`` x ``height`` (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if kind == "noise":
        arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    else:
        arr = np.empty((height, width, 3), dtype=np.uint8)
        arr[:] = rng.integers(0, 256, size=3, dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def read_csv_rows(split: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of the real PF-PASCAL ``<split>_pairs.csv`` (skips when absent)."""
    path = require_shared(PFPASCAL_SPLITS / f"{split}_pairs.csv")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def write_csv(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _coords(text: str) -> np.ndarray:
    return np.array([float(v) for v in text.split(";")])


# -- PF-PASCAL --------------------------------------------------------------------------------
PASCAL_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)
#: Size (W, H) of generated PF-PASCAL images unless their keypoints need more.
PASCAL_SIZE = (400, 320)
#: Keypoints per class in generated annotations; row k of an image is NaN when (k + seed) % 4 == 0.
N_MAT_KPS = 8


def pascal_mat_kps(stem: str, width: int, height: int) -> np.ndarray:
    """Deterministic (N_MAT_KPS, 2) keypoints of a generated annotation, some rows NaN."""
    seed = sum(map(ord, stem))
    rng = np.random.default_rng(seed)
    kps = np.stack([rng.uniform(5, width - 5, N_MAT_KPS), rng.uniform(5, height - 5, N_MAT_KPS)], 1)
    for k in range(N_MAT_KPS):
        if (k + seed) % 4 == 0:
            kps[k] = np.nan
    return kps


def build_pfpascal(
    root: Path,
    split: str = "test",
    rows: list[dict[str, str]] | None = None,
    n: int | None = None,
    images: bool = True,
    annotations: bool | None = None,
) -> dict:
    """PF-PASCAL in the official layout: ``root/PF-dataset-PASCAL/{JPEGImages,Annotations}`` and
    ``root/<split>_pairs.csv`` holding the first ``n`` real rows (or ``rows``).

    Returns:
        dict with ``rows`` (written), ``header``, ``sizes`` {image name: (W, H)}, ``csv`` path.
    """
    header, real = read_csv_rows(split)
    rows = list(rows if rows is not None else real[:n] if n else real)
    data = root / "PF-dataset-PASCAL"
    (data / "JPEGImages").mkdir(parents=True, exist_ok=True)
    csv_path = write_csv(root / f"{split}_pairs.csv", header, rows)
    annotations = ("XA" not in header) if annotations is None else annotations
    sizes: dict[str, tuple[int, int]] = {}
    classes: dict[str, set[str]] = {}  # an image can be annotated in several class folders
    for row in rows:
        for side, xs, ys in (("source_image", "XA", "YA"), ("target_image", "XB", "YB")):
            name = Path(row[side]).name
            w, h = sizes.get(name, PASCAL_SIZE)
            if xs in row and row[xs]:
                w = max(w, math.ceil(_coords(row[xs]).max()) + 4)
                h = max(h, math.ceil(_coords(row[ys]).max()) + 4)
            sizes[name] = (w, h)
            classes.setdefault(name, set()).add(PASCAL_CLASSES[(int(row["class"]) - 1) % len(PASCAL_CLASSES)])
    for i, (name, (w, h)) in enumerate(sorted(sizes.items())):
        if images:
            write_image(data / "JPEGImages" / name, w, h, seed=i, kind="solid")
        if annotations:
            stem = Path(name).stem
            kps = pascal_mat_kps(stem, w, h)
            bbox = np.array([[3.0, 4.0, w - 10.0, h - 6.0]])
            for cls in sorted(classes[name]):
                mat = data / "Annotations" / cls / f"{stem}.mat"
                mat.parent.mkdir(parents=True, exist_ok=True)
                scipy.io.savemat(str(mat), {"kps": kps, "bbox": bbox})
    return {"rows": rows, "header": header, "sizes": sizes, "csv": csv_path, "data": data}


def parse_row_kps(row: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) source and target keypoints of a real test_pairs.csv row."""
    src = np.stack([_coords(row["XA"]), _coords(row["YA"])], 1)
    trg = np.stack([_coords(row["XB"]), _coords(row["YB"])], 1)
    return src, trg


# -- PF-WILLOW --------------------------------------------------------------------------------
def willow_kps(subclass: str, index: int, width: int, height: int) -> np.ndarray:
    """Deterministic (10, 2) keypoints of a generated PF-WILLOW image."""
    rng = np.random.default_rng(1000 * len(subclass) + index)
    return np.stack([rng.uniform(10, width - 10, 10), rng.uniform(10, height - 10, 10)], 1)


def build_pfwillow(root: Path, subclasses: dict[str, int] | None = None, size: tuple[int, int] = (600, 400),
                   csv_name: str | None = None) -> dict:
    """PF-WILLOW in the official layout: ``root/<subclass>/<image>.png`` + ``.mat`` (pts_coord 2x10).

    With ``csv_name``, also write a CNNGeometric-style pair list (imageA, imageB, XA1..10, YA1..10,
    XB1..10, YB1..10; paths ``PF-dataset/<subclass>/<image>.png``) holding every ordered pair.

    Returns:
        dict with ``kps`` {path: (10, 2)}, ``images`` {subclass: [paths]}, ``csv`` (or None).
    """
    subclasses = subclasses or {"car(G)": 3, "duck(S)": 2}
    w, h = size
    kps, images = {}, {}
    for c, (sub, count) in enumerate(sorted(subclasses.items())):
        images[sub] = []
        for i in range(count):
            img = write_image(root / sub / f"{sub[:3]}_{i:03d}.png", w, h, seed=10 * c + i)
            pts = willow_kps(sub, i, w, h)
            scipy.io.savemat(str(img.with_suffix(".mat")), {"pts_coord": pts.T.copy()})
            kps[img] = pts
            images[sub].append(img)
    csv_path = None
    if csv_name:
        csv_path = root / csv_name
        header = ["imageA", "imageB"] + [f"{a}{s}{k}" for s in "AB" for a in "XY" for k in range(1, 11)]
        with open(csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for sub, imgs in images.items():
                for a in imgs:
                    for b in imgs:
                        if a != b:
                            writer.writerow(
                                [f"PF-dataset/{sub}/{a.name}", f"PF-dataset/{sub}/{b.name}"]
                                + [f"{v:.6f}" for v in kps[a].T.reshape(-1)]
                                + [f"{v:.6f}" for v in kps[b].T.reshape(-1)]
                            )
    return {"kps": kps, "images": images, "csv": csv_path}


# -- SPair-71k --------------------------------------------------------------------------------
def real_spair_pair() -> tuple[Path, dict]:
    """Path and content of the real SPair-71k pair annotation in ../shared (skips when absent)."""
    folder = require_shared(SPAIR_REAL / "PairAnnotation" / "test")
    path = sorted(folder.glob("*.json"))[0]
    return path, json.loads(path.read_text())


def build_spair(root: Path) -> dict:
    """SPair-71k in the official layout, from the real files in ../shared.

    ``test``: the real Layout/large/test.txt (3 lines); its first pair annotation is the real file
    copied byte for byte, the two others are derived from it (the images named by the layout line,
    difficulty fields changed). ``trn`` and ``val`` hold one derived pair each; ``Layout/small``
    lists the first test pair only. Images are generated at the sizes the annotations give.

    Returns:
        dict with ``pairs`` {split: [annotation dicts]} and ``real`` (the real annotation dict).
    """
    real_path, real = real_spair_pair()
    layout_lines = (require_shared(SPAIR_REAL / "Layout" / "large" / "test.txt")).read_text().split()
    shutil.copytree(SPAIR_REAL / "ImageAnnotation", root / "ImageAnnotation")
    pairs: dict[str, list[dict]] = {"test": [], "trn": [], "val": []}
    lines: dict[str, list[str]] = {"test": list(layout_lines), "trn": [], "val": []}
    for i, line in enumerate(layout_lines):
        if line == real_path.stem:
            ann = real
            dest = root / "PairAnnotation" / "test" / real_path.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real_path, dest)
        else:
            ann = derive_spair(real, line, i)
            write_json(root / "PairAnnotation" / "test" / f"{line}.json", ann)
        pairs["test"].append(ann)
    for split, pid in (("trn", 900001), ("val", 800001)):
        name = f"{pid:06d}-{real['trg_imname'][:-4]}-{real['src_imname'][:-4]}:{real['category']}"
        ann = derive_spair(real, name, pid % 7, swap=True)
        write_json(root / "PairAnnotation" / split / f"{name}.json", ann)
        pairs[split].append(ann)
        lines[split].append(name)
    for split, names in lines.items():
        path = root / "Layout" / "large" / f"{split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(names) + "\n")
    small = root / "Layout" / "small" / "test.txt"
    small.parent.mkdir(parents=True, exist_ok=True)
    small.write_text(layout_lines[0] + "\n")
    sizes = {}
    for anns in pairs.values():
        for ann in anns:
            sizes[ann["src_imname"]] = tuple(ann["src_imsize"][:2])
            sizes[ann["trg_imname"]] = tuple(ann["trg_imsize"][:2])
    for i, (name, (w, h)) in enumerate(sorted(sizes.items())):
        write_image(root / "JPEGImages" / real["category"] / name, w, h, seed=i, kind="solid")
    return {"pairs": pairs, "real": real}


def derive_spair(real: dict, name: str, i: int, swap: bool = False) -> dict:
    """A pair annotation in the real one's format for layout line ``name``."""
    pid, src, rest = name.split("-", 2)
    trg, category = rest.split(":")
    ann = json.loads(json.dumps(real))
    ann.update(pair_id=int(pid), filename=name, src_imname=f"{src}.jpg", trg_imname=f"{trg}.jpg", category=category)
    if swap:
        for key in ("imsize", "bndbox", "kps", "pose"):
            a, b = f"src_{key}", f"trg_{key}"
            ann[a], ann[b] = real[b], real[a]
    elif src != real["src_imname"][:-4] or trg != real["trg_imname"][:-4]:
        ann["trg_imsize"] = [400, 300, 3]
        ann["trg_bndbox"] = [20, 30, 220 + 10 * i, 280]
        ann["trg_kps"] = [[40 + 10 * i, 60], [120, 90 + i], [200, 250]]
    ann["viewpoint_variation"] = i % 3
    ann["scale_variation"] = (i + 1) % 3
    ann["truncation"] = i % 4
    ann["occlusion"] = (i + 2) % 4
    return ann


def write_json(path: Path, content: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path
