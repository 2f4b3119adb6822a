"""Time Hyperpixel Flow per pair on real PF-WILLOW pairs, stage by stage.

Usage::

    python benchmarks/bench_hpf.py --backbone mobilenet_v2 --layers 3,6,10,13 --pairs 90
    python benchmarks/bench_hpf.py --backbone resnet101 --layers 2,17,21,22,25,26,28 --pairs 45

Pairs are the PF-WILLOW test pairs (every ordered pair of distinct images inside a sub-class,
sub-classes in name order) of ``--data``; images are resized to a longer side of at most 300
(bilinear, ``align_corners=False``) and keypoints with them. Weights default to ``none`` (random):
speed does not depend on them.

Two runs: ``cached`` passes image ids so every image goes through the backbone once, as in an
evaluation run; ``uncached`` runs the backbone for both images of every pair. Each prints the
median over the pairs of every stage of the fast path (backbone incl. hyperimage assembly,
similarity, voting = Hough voting + confidence + argmax, transfer), timed in a first pass, and of
the end-to-end ``HyperpixelFlow.forward`` (``total``, the number that counts) in a second pass.
With the cache most pairs find both images cached, so the median hides the backbone; the
``mean`` rows amortise it.

On a machine shared with other busy processes, OpenMP's spinning worker threads lose most of
their time slices and multi-threaded timings balloon; compare ``--threads 1`` or run with
``OMP_WAIT_POLICY=PASSIVE`` there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.io
import torch
from PIL import Image

from semcorr.backbones import load_backbone
from semcorr.data.transforms import Resize, resize_image
from semcorr.methods.hpf import HyperpixelFlow
from semcorr.methods.hpf.rhm import match_fast
from semcorr.methods.hpf.transfer import transfer_points

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "PF-dataset-WILLOW"


def load_pairs(root: Path, count: int) -> list[tuple[str, str]]:
    """The first ``count`` PF-WILLOW pairs: ordered pairs of distinct images per sub-class."""
    pairs = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        images = sorted(str(p) for p in sub.glob("*.png"))
        pairs += [(a, b) for a in images for b in images if a != b]
    return pairs[:count]


def load_image(path: str, resize: Resize) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (1, 3, H, W) in [0, 1] resized, and its keypoints (10, 2) scaled alike."""
    img = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)
    h, w = img.shape[-2:]
    kps = torch.from_numpy(scipy.io.loadmat(path[:-4] + ".mat")["pts_coord"].T.astype(np.float32))
    sx, sy = resize.scale_factors(h, w)
    return resize_image(img, resize.target_size(h, w))[None], kps * torch.tensor([sx, sy])


def stage_times(model: HyperpixelFlow, src, trg, src_id, trg_id, clock) -> dict[str, float]:
    """Run the fast path's stages one after the other and time each (seconds of ``clock``)."""
    t: dict[str, float] = {}
    start = clock()
    s = model.hyperimages(src[0], [src_id] if src_id else None)[0]
    g = model.hyperimages(trg[0], [trg_id] if trg_id else None)[0]
    t["backbone"] = clock() - start
    match, _ = match_fast(s, g, model.rhm, model.exponent, model.ncells, model.kernel, model.workspace, t, clock)
    start = clock()
    transfer_points(s.grid, g.grid, match, src[1])
    t["transfer"] = clock() - start
    return t


def run(model: HyperpixelFlow, pairs, images, cached: bool, clock) -> dict[str, list[float]]:
    """Time every pair: stages (fresh cache state per pass) and end-to-end forward."""
    times: dict[str, list[float]] = {k: [] for k in ("backbone", "similarity", "voting", "transfer", "total")}
    for passno in ("stages", "total"):
        model.clear_cache()
        for a, b in pairs:
            src, trg = images[a], images[b]
            ids = (a, b) if cached else (None, None)
            if passno == "stages":
                for k, v in stage_times(model, src, trg, *ids, clock).items():
                    times[k].append(v)
            else:
                start = clock()
                model(src[0], trg[0], src[1][None], [a] if cached else None, [b] if cached else None)
                times["total"].append(clock() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--layers", default="3,6,10,13", help="comma-separated layer ids")
    parser.add_argument("--pairs", type=int, default=90)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or process CPU time (summed over threads; with --threads 1 about the wall "
        "time on an idle core, and robust to other processes)",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"PF-WILLOW not found at {args.data}; pass --data", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    layers = [int(v) for v in args.layers.split(",")]
    backbone = load_backbone(args.backbone, args.weights, args.device)
    model = HyperpixelFlow(backbone, layers).to(args.device)
    pairs = load_pairs(args.data, args.pairs)
    resize = Resize(max_side=300)
    images = {}
    for path in sorted({p for pair in pairs for p in pair}):
        img, kps = load_image(path, resize)
        images[path] = (img.to(args.device), kps.to(args.device))
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with torch.no_grad():
        a, b = pairs[0]
        model(images[a][0], images[b][0], images[a][1][None])  # warm-up
        print(
            f"{args.backbone} layers={layers} pairs={len(pairs)} images={len(images)} "
            f"threads={torch.get_num_threads()} device={args.device} clock={args.clock}"
        )
        stages = ("backbone", "similarity", "voting", "transfer", "total")
        print(f"{'median s/pair':<14}" + "".join(f"{k:>12}" for k in stages))
        for cached in (True, False):
            times = run(model, pairs, images, cached, clock)
            name = "cached" if cached else "uncached"
            print(f"{name:<14}" + "".join(f"{statistics.median(times[k]):>12.4f}" for k in times))
            print(f"{name + ' mean':<14}" + "".join(f"{statistics.fmean(times[k]):>12.4f}" for k in times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
