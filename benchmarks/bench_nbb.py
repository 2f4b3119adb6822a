"""Speed (and PCK) of Neural Best Buddies on real PF-WILLOW pairs, stage by stage.

    python benchmarks/bench_nbb.py --backbone vgg19 --pairs 10 --size 224
    python benchmarks/bench_nbb.py --backbone mobilenet_v2 --pairs 50

Images are read with PIL and resized to ``size`` x ``size`` (bilinear), keypoints scaled with
them. Pairs are ordered pairs of distinct images inside a sub-class, taken round-robin over the
sub-classes. Reported: median seconds per pair of each stage (features of both images, matching
at each level, top-k selection, MLS keypoint transfer + warped source) and of the whole pair
(after ``--warmup`` untimed pairs), the number of final pairs, and PCK at alpha 0.05/0.1/0.15
with PF-WILLOW's threshold (max extent of the target keypoints). With ``--weights none`` (random
VGG-19, the only VGG-19 offline) the PCK is meaningless; the timing is not.
"""

from __future__ import annotations

import argparse
import sys
import statistics
import time
from pathlib import Path

import torch

from semcorr.backbones import load_backbone
from semcorr.methods.nbb import NeuralBestBuddies

sys.path.insert(0, str(Path(__file__).resolve().parent))
from willow import ALPHAS, add_pair_arguments, load, start, willow_pairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser, pairs=10)
    parser.add_argument("--levels", type=int, nargs="+", default=[5, 4, 3, 2, 1])
    args = parser.parse_args()
    weights = start(args)
    torch.manual_seed(0)
    matcher = NeuralBestBuddies(load_backbone(args.backbone, weights), levels=args.levels)
    pairs = willow_pairs(args.root, args.pairs + args.warmup)
    stages: dict[str, list[float]] = {}
    counts, pck = [], {a: [] for a in ALPHAS}
    for n, (src_path, trg_path) in enumerate(pairs):
        (src, src_kps), (trg, trg_kps) = load(src_path, args.size), load(trg_path, args.size)
        times: dict[str, float] = {}
        tic = time.perf_counter()
        feats_src, feats_trg = matcher.features(src), matcher.features(trg)
        times["features"] = time.perf_counter() - tic
        corr = matcher.match([f[0] for f in feats_src], [f[0] for f in feats_trg], (args.size,) * 2, (args.size,) * 2)
        for level, seconds in zip(matcher.levels, corr.buddies.seconds):
            times[f"level {level}"] = seconds
        tic = time.perf_counter()
        matcher.select(corr)
        times["selection"] = time.perf_counter() - tic
        tic = time.perf_counter()
        pred = matcher.transfer(corr, src_kps)
        matcher.warp(src[0], corr, (args.size, args.size))
        times["mls"] = time.perf_counter() - tic
        times["total"] = sum(times.values())
        if n < args.warmup:
            continue
        for name, seconds in times.items():
            stages.setdefault(name, []).append(seconds)
        counts.append(int(corr.src.shape[0]))
        threshold = float((trg_kps.max(0).values - trg_kps.min(0).values).max())
        err = (pred - trg_kps).norm(dim=1)
        for a in ALPHAS:
            pck[a].append(float(((err <= a * threshold) & torch.isfinite(err)).float().mean()))
    print(f"NBB {args.backbone} (weights={weights}), {args.size}x{args.size}, {len(counts)} PF-WILLOW pairs, "
          f"{torch.get_num_threads()} threads, levels {args.levels}")
    for name, values in stages.items():
        print(f"  {name:<10} median {statistics.median(values):7.3f} s")
    print(f"  final pairs per pair: median {statistics.median(counts):.0f} (min {min(counts)}, max {max(counts)})")
    print("  PCK " + ", ".join(f"@{a}: {100 * statistics.mean(v):.1f}" for a, v in pck.items()))


if __name__ == "__main__":
    main()
