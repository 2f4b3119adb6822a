"""Builders of tiny TSS, Caltech-101 and CUB-200-2011 folders in their exact official layouts.

Images are generated (random RGB), annotations are written in the official formats (Middlebury
``.flo``, MATLAB ``.mat`` via ``scipy.io.savemat``, whitespace text files, PNG masks), so the
dataset classes read them exactly as they read the real releases.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from semcorr.data.flo import write_flo

SHARED_DATA = Path(__file__).resolve().parents[1] / "../shared/data"
TSS_SAMPLE = SHARED_DATA / "TSS-sample"
DATASET_CONF = Path(__file__).resolve().parents[1] / "conf" / "dataset"
#: Marks the tests that read the real TSS sample.
needs_tss_sample = pytest.mark.skipif(
    not TSS_SAMPLE.is_dir(), reason=f"real TSS sample not available at {TSS_SAMPLE} (../shared/data is absent)"
)


def dataset_from_config(name: str, root: Path):
    """Instantiate ``conf/dataset/<name>.yaml`` with ``root``; checks the config's name."""
    cfg = OmegaConf.load(DATASET_CONF / f"{name}.yaml")
    assert cfg.name == name
    cfg.root = str(root)
    return instantiate(cfg)


def save_image(path: Path, height: int, width: int, seed: int = 0, fmt: str | None = None) -> np.ndarray:
    """Write a random RGB image and return it as (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return arr


def save_mask(path: Path, mask: np.ndarray, value: int = 255, mode: str = "L") -> None:
    """Write a bool mask as an 8-bit PNG (foreground = ``value``) or a palette PNG (index 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        img = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
        img.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
        img.save(path)
    else:
        Image.fromarray((mask * value).astype(np.uint8)).save(path)


def box_mask(height: int, width: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """(H, W) bool mask, True on columns x0..x1-1 and rows y0..y1-1."""
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


# -- TSS ------------------------------------------------------------------------------------------
def make_tss_pair(
    folder: Path,
    size1: tuple[int, int] = (30, 40),
    size2: tuple[int, int] = (30, 40),
    translation: tuple[float, float] = (3.0, -2.0),
    flip: int | None = 0,
    seed: int = 0,
    mask_mode: str = "L",
) -> dict:
    """One TSS pair folder whose ground truth is a constant translation on the foreground.

    ``flow1`` = ``translation`` on ``mask1`` (a box), unknown elsewhere; ``flow2`` = ``-translation``
    on ``mask2`` (the box moved by the translation). ``flip=None`` omits ``flip_gt.txt``.
    """
    (h1, w1), (h2, w2) = size1, size2
    tx, ty = translation
    save_image(folder / "image1.png", h1, w1, seed)
    save_image(folder / "image2.png", h2, w2, seed + 1)
    mask1 = box_mask(h1, w1, 5, 6, 20, 18)
    mask2 = box_mask(h2, w2, 5 + int(tx), 6 + int(ty), 20 + int(tx), 18 + int(ty))
    flow1 = np.full((h1, w1, 2), np.nan, dtype=np.float32)
    flow1[mask1] = (tx, ty)
    flow2 = np.full((h2, w2, 2), np.nan, dtype=np.float32)
    flow2[mask2] = (-tx, -ty)
    write_flo(folder / "flow1.flo", flow1)
    write_flo(folder / "flow2.flo", flow2)
    save_mask(folder / "mask1.png", mask1, mode=mask_mode)
    save_mask(folder / "mask2.png", mask2, mode=mask_mode)
    if flip is not None:
        (folder / "flip_gt.txt").write_text(str(flip))
    (folder / "pair.txt").write_text("Image1,Image2\nsrc.jpg,trg.jpg\n")
    (folder / "corr.txt").write_text("0.5\t0.5\t0.5\t0.5\n")
    return {"flow1": flow1, "flow2": flow2, "mask1": mask1, "mask2": mask2}


def make_tss_mirror_pair(folder: Path, size: tuple[int, int] = (24, 32), seed: int = 5) -> dict:
    """A ``flip_gt = 1`` pair: image2 is image1 mirrored; flow1 maps x -> W - 1 - x on the box."""
    h, w = size
    img1 = save_image(folder / "image1.png", h, w, seed)
    Image.fromarray(img1[:, ::-1].copy()).save(folder / "image2.png")
    mask1 = box_mask(h, w, 4, 5, 14, 15)
    mask2 = mask1[:, ::-1].copy()
    xs = np.arange(w, dtype=np.float32)[None, :].repeat(h, axis=0)
    flow1 = np.full((h, w, 2), np.nan, dtype=np.float32)
    flow1[mask1, 0] = (w - 1 - 2 * xs)[mask1]
    flow1[mask1, 1] = 0.0
    flow2 = np.full((h, w, 2), np.nan, dtype=np.float32)
    flow2[mask2, 0] = (w - 1 - 2 * xs)[mask2]
    flow2[mask2, 1] = 0.0
    write_flo(folder / "flow1.flo", flow1)
    write_flo(folder / "flow2.flo", flow2)
    save_mask(folder / "mask1.png", mask1)
    save_mask(folder / "mask2.png", mask2)
    (folder / "flip_gt.txt").write_text("1")
    return {"flow1": flow1, "mask1": mask1, "image1": img1}


def make_tss(root: Path) -> Path:
    """A TSS root with 2 FG3DCar folders, 1 JODS folder (palette masks, no flip_gt.txt), 1 PASCAL
    mirrored folder: 8 directed pairs."""
    make_tss_pair(root / "FG3DCar" / "001_005", translation=(3.0, -2.0), seed=0)
    make_tss_pair(root / "FG3DCar" / "001_021", size2=(36, 44), translation=(4.0, 2.0), seed=2)
    make_tss_pair(root / "JODS" / "car_01_02", translation=(-2.0, 1.0), flip=None, seed=4, mask_mode="P")
    make_tss_mirror_pair(root / "PASCAL" / "bike_01_03")
    return root


# -- Caltech-101 ----------------------------------------------------------------------------------
CALTECH_ANNOT = {"Faces": "Faces_2", "airplanes": "Airplanes_Side_2"}


def write_caltech_annotation(path: Path, polygon: np.ndarray) -> None:
    """Write an official-style annotation: ``box_coord`` [top bottom left right], ``obj_contour``
    (2, N) relative to the box's top-left corner."""
    x, y = polygon[:, 0], polygon[:, 1]
    top, bottom, left, right = float(y.min()), float(y.max()), float(x.min()), float(x.max())
    box = np.array([[top, bottom, left, right]])
    contour = np.stack([x - left, y - top])
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"box_coord": box, "obj_contour": contour})


def make_caltech(root: Path, polygons_in_csv: bool = True, renamed_annotations: bool = False) -> dict:
    """A Caltech-101 root: 2 categories x 2 images, 3 pairs in ``test_pairs_caltech_with_category.csv``.

    Polygons: squares with known pixel extents. Returns {image relpath: polygon}.
    """
    specs = {
        "Faces/image_0001.jpg": ((16, 20), np.array([[4, 3], [10, 3], [10, 8], [4, 8]], dtype=float)),
        "Faces/image_0002.jpg": ((18, 22), np.array([[2, 2], [12, 2], [12, 12], [2, 12]], dtype=float)),
        "airplanes/image_0007.jpg": ((20, 30), np.array([[5, 4], [25, 4], [25, 15], [5, 15]], dtype=float)),
        "airplanes/image_0012.jpg": ((20, 30), np.array([[1, 1], [20, 1], [20, 10], [1, 10]], dtype=float)),
    }
    for i, (rel, ((h, w), poly)) in enumerate(specs.items()):
        save_image(root / "101_ObjectCategories" / rel, h, w, seed=10 + i, fmt="JPEG")
        cat, name = rel.split("/")
        number = name.split("_")[1].split(".")[0]
        annot_dir = cat if renamed_annotations else CALTECH_ANNOT.get(cat, cat)
        write_caltech_annotation(root / "Annotations" / annot_dir / f"annotation_{number}.mat", poly)
    pairs = [("Faces/image_0001.jpg", "Faces/image_0002.jpg", 1), ("Faces/image_0002.jpg", "Faces/image_0001.jpg", 1),
             ("airplanes/image_0007.jpg", "airplanes/image_0012.jpg", 6)]
    with open(root / "test_pairs_caltech_with_category.csv", "w", newline="") as f:
        writer = csv.writer(f)
        header = ["source_image", "target_image", "class"]
        if polygons_in_csv:
            header += ["XA", "YA", "XB", "YB"]
        writer.writerow(header)
        for src, trg, cls in pairs:
            row = [f"101_ObjectCategories/{src}", f"101_ObjectCategories/{trg}", cls]
            if polygons_in_csv:
                ps, pt = specs[src][1], specs[trg][1]
                fmt = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
                row += [fmt(ps[:, 0]), fmt(ps[:, 1]), fmt(pt[:, 0]), fmt(pt[:, 1])]
            writer.writerow(row)
    return {rel: poly for rel, (_, poly) in specs.items()}


# -- CUB-200-2011 ---------------------------------------------------------------------------------
def make_cub(root: Path, with_segmentations: bool = True) -> dict:
    """A CUB root (``root/CUB_200_2011`` + ``root/segmentations``): 2 classes.

    Class 1 (``001.Black_footed_Albatross``): test images 1, 2, 3, train image 4; image 3 shares
    no visible part with images 1 and 2 -> the test candidates of class 1 are (1,2) and (2,1).
    Class 2 (``002.Laysan_Albatross``): test images 5, 6 (common parts 1 and 3), train image 7.
    """
    base = root / "CUB_200_2011"
    classes = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross"}
    images = {
        1: (1, "Black_Footed_Albatross_0001_1.jpg", 0, (30, 40)),
        2: (1, "Black_Footed_Albatross_0002_2.jpg", 0, (32, 44)),
        3: (1, "Black_Footed_Albatross_0003_3.jpg", 0, (30, 40)),
        4: (1, "Black_Footed_Albatross_0004_4.jpg", 1, (30, 40)),
        5: (2, "Laysan_Albatross_0005_5.jpg", 0, (40, 60)),
        6: (2, "Laysan_Albatross_0006_6.jpg", 0, (36, 48)),
        7: (2, "Laysan_Albatross_0007_7.jpg", 1, (30, 40)),
    }
    n_parts = 15
    visible = {1: [1, 2, 5], 2: [2, 5, 9], 3: [12, 13], 4: [1, 2], 5: [1, 3, 4], 6: [1, 3, 7]}
    visible[7] = [1]
    boxes = {i: (2.0 + i, 3.0, 20.0, 12.0 + i) for i in images}
    lines_images, lines_labels, lines_split, lines_boxes, lines_parts = [], [], [], [], []
    part_xy = {}
    for image_id, (cls, name, train, (h, w)) in images.items():
        rel = f"{classes[cls]}/{name}"
        save_image(base / "images" / rel, h, w, seed=100 + image_id, fmt="JPEG")
        lines_images.append(f"{image_id} {rel}")
        lines_labels.append(f"{image_id} {cls}")
        lines_split.append(f"{image_id} {train}")
        x, y, bw, bh = boxes[image_id]
        lines_boxes.append(f"{image_id} {x:.1f} {y:.1f} {bw:.1f} {bh:.1f}")
        for part in range(1, n_parts + 1):
            if part in visible[image_id]:
                px, py = float(part + image_id), float(part + 2)
                part_xy[(image_id, part)] = (px, py)
                lines_parts.append(f"{image_id} {part} {px:.1f} {py:.1f} 1")
            else:
                lines_parts.append(f"{image_id} {part} 0.0 0.0 0")
        if with_segmentations:
            seg = np.zeros((h, w), dtype=np.uint8)
            seg[5:15, 8:20] = 255  # all annotators
            seg[15:20, 8:20] = 102  # 2 of 5 annotators: background at threshold 0.5
            seg_path = root / "segmentations" / Path(rel).with_suffix(".png")
            seg_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(seg).save(seg_path)
    (base / "parts").mkdir(parents=True, exist_ok=True)
    (base / "images.txt").write_text("\n".join(lines_images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(lines_labels) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(lines_split) + "\n")
    (base / "bounding_boxes.txt").write_text("\n".join(lines_boxes) + "\n")
    (base / "classes.txt").write_text("\n".join(f"{k} {v}" for k, v in classes.items()) + "\n")
    (base / "parts" / "parts.txt").write_text("\n".join(f"{p} part{p}" for p in range(1, n_parts + 1)) + "\n")
    (base / "parts" / "part_locs.txt").write_text("\n".join(lines_parts) + "\n")
    return {"base": base, "classes": classes, "images": images, "visible": visible, "boxes": boxes, "part_xy": part_xy}
