"""PF-WILLOW pairs for the speed benchmarks, read straight from the official folder layout.

Shared by ``bench_nbb.py`` and ``bench_dia.py``: pairs, images, the common options and their start-up
(run them from the repository root or from ``benchmarks/``: this module sits beside them).
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.io import loadmat

ROOT = Path(__file__).resolve().parents[1] / "../shared/data/PF-dataset-WILLOW"
ALPHAS = (0.05, 0.1, 0.15)


def willow_pairs(root: Path, count: int) -> list[tuple[Path, Path]]:
    """``count`` ordered pairs of distinct images of one sub-class, round-robin over sub-classes."""
    per_class = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(folder.glob("*.png"))
        per_class.append(list(itertools.permutations(images, 2)))
    spread = [pair for group in itertools.zip_longest(*per_class) for pair in group if pair is not None]
    return spread[:count]


def load(path: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, size, size) image in [0, 1] and its (10, 2) keypoints (x, y) in resized pixels."""
    img = Image.open(path).convert("RGB")
    scale = torch.tensor([size / img.width, size / img.height])
    array = np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    kps = torch.as_tensor(loadmat(str(path.with_suffix(".mat")))["pts_coord"].T, dtype=torch.float32)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None], kps * scale


def add_pair_arguments(parser: argparse.ArgumentParser, pairs: int) -> None:
    """The options every PF-WILLOW benchmark takes: backbone, weights, size, pairs, warm-up, root, threads."""
    parser.add_argument("--backbone", default="vgg19")
    parser.add_argument("--weights", default=None, help="default: offline for mobilenet_v2, none otherwise")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--pairs", type=int, default=pairs)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")


def start(args: argparse.Namespace) -> str:
    """Apply ``--threads``, check ``--root`` and return the backbone weights to load."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.root.is_dir():
        raise SystemExit(f"PF-WILLOW not found at {args.root}; pass --root")
    return args.weights or ("offline" if args.backbone == "mobilenet_v2" else "none")
