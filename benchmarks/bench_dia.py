"""Speed (and PCK) of Deep Image Analogy on real PF-WILLOW pairs, stage by stage.

    python benchmarks/bench_dia.py --backbone vgg19 --size 224 --pairs 5
    python benchmarks/bench_dia.py --backbone vgg19 --size 448 --pairs 3 --preset fast
    python benchmarks/bench_dia.py --backbone vgg19 --size 224 --pairs 1 --preset paper
    python benchmarks/bench_dia.py --backbone mobilenet_v2 --size 224 --pairs 10 --lbfgs-iters 20

Images are read with PIL and resized to ``size`` x ``size`` (bilinear), keypoints scaled with
them. Pairs are ordered pairs of distinct images inside a sub-class, taken round-robin over the
sub-classes. Settings come from a preset of :data:`semcorr.methods.dia.PRESETS` (``--preset``:
``paper`` = the paper's settings, exact eq. 2, 100 L-BFGS iterations; ``fast`` = the CPU preset),
``--lbfgs-iters`` and ``--pca-dims`` override it. Reported: median seconds per pair of each stage
(features of both images, PatchMatch at each level (both directions), the reconstruction of each
level (warp + deconvolution + blend, both directions), the aggregation of A' and B, and the whole
pair) after ``--warmup`` untimed pairs, the process CPU time of a pair (on a shared machine wall
time grows with the load average, printed too; with one thread the CPU time approximates the wall
time of an idle machine), and PCK at alpha 0.05/0.1/0.15 with PF-WILLOW's threshold
(max extent of the target keypoints). With ``--weights none`` (random VGG-19, the only VGG-19
offline) the PCK is meaningless; the timing is not.
"""

from __future__ import annotations

import argparse
import sys
import os
import statistics
import time
from pathlib import Path

import torch

from semcorr.backbones import load_backbone
from semcorr.methods.dia import PRESETS, DeepImageAnalogy

sys.path.insert(0, str(Path(__file__).resolve().parent))
from willow import ALPHAS, add_pair_arguments, load, start, willow_pairs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser, pairs=3)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="fast")
    parser.add_argument("--lbfgs-iters", type=int, default=None, help="override the preset's L-BFGS iterations")
    parser.add_argument("--pca-dims", type=int, default=None, help="override the preset's PCA dimensions")
    parser.add_argument("--exact", action="store_true", help="exact eq. 2 distances (pca_dims=None)")
    args = parser.parse_args()
    weights = start(args)
    overrides: dict[str, object] = {}
    if args.lbfgs_iters is not None:
        overrides["lbfgs_iters"] = args.lbfgs_iters
    if args.pca_dims is not None:
        overrides["pca_dims"] = args.pca_dims
    if args.exact:
        overrides["pca_dims"] = None
    torch.manual_seed(0)
    matcher = DeepImageAnalogy.from_preset(load_backbone(args.backbone, weights), args.preset, **overrides)
    pairs = willow_pairs(args.root, args.pairs + args.warmup)
    stages: dict[str, list[float]] = {}
    cpu: list[float] = []
    pck: dict[float, list[float]] = {a: [] for a in ALPHAS}
    for n, (src_path, trg_path) in enumerate(pairs):
        (src, src_kps), (trg, trg_kps) = load(src_path, args.size), load(trg_path, args.size)
        tic = time.process_time()
        output = matcher(src, trg, src_kps[None], [str(src_path)], [str(trg_path)])
        if n < args.warmup:
            continue
        cpu.append(time.process_time() - tic)
        for name, seconds in matcher.analyse(src, trg, [str(src_path)], [str(trg_path)])[0].seconds.items():
            stages.setdefault(name, []).append(seconds)
        threshold = float((trg_kps.max(0).values - trg_kps.min(0).values).max())
        err = (output.points[0] - trg_kps).norm(dim=1)
        for a in ALPHAS:
            pck[a].append(float(((err <= a * threshold) & torch.isfinite(err)).float().mean()))
    load1 = os.getloadavg()[0]
    print(
        f"DIA {args.backbone} (weights={weights}), {args.size}x{args.size}, {len(pck[ALPHAS[0]])} PF-WILLOW pairs, "
        f"{torch.get_num_threads()} threads, load average {load1:.1f}"
    )
    print(f"  settings: {matcher.params}")
    for name, values in stages.items():
        print(f"  {name:<14} median {statistics.median(values):7.3f} s")
    print(f"  CPU time of the whole pair (all threads): median {statistics.median(cpu):.3f} s")
    print("  PCK " + ", ".join(f"@{a}: {100 * statistics.mean(v):.1f}" for a, v in pck.items()))


if __name__ == "__main__":
    main()
