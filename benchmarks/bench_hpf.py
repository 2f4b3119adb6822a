"""Time Hyperpixel Flow per pair on real PF-WILLOW pairs, stage by stage.

Usage::

    python benchmarks/bench_hpf.py --pairs-per-category 18                # method=hpf, MobileNetV2 default set
    python benchmarks/bench_hpf.py --pairs-per-category 18 'method.layers=[3,6,10,13]'
    python benchmarks/bench_hpf.py --pairs-per-category 9 backbone=resnet101

The method, backbone and pairs come from the project's configs and dataset (``method=hpf
dataset=pfwillow`` with the PF-WILLOW root of ``../shared/data`` and random weights,
``backbone.net.weights=none``, by default: speed does not depend on the weights; any Hydra override
follows the options), so images are resized exactly as in ``evaluate.py`` (longer side at most 300).

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

import torch

from semcorr.lit.evaluation_runner import build_method
from semcorr.methods.hpf import HyperpixelFlow
from semcorr.methods.hpf.rhm import match_fast
from semcorr.methods.hpf.transfer import box_transfer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs import add_pair_arguments, parse, setup  # noqa: E402


def stage_times(model: HyperpixelFlow, src, trg, src_id, trg_id, clock) -> dict[str, float]:
    """Run the fast path's stages one after the other and time each (seconds of ``clock``)."""
    t: dict[str, float] = {}
    start = clock()
    s = model.hyperimages(src[0], [src_id] if src_id else None)[0]
    g = model.hyperimages(trg[0], [trg_id] if trg_id else None)[0]
    t["backbone"] = clock() - start
    match, _ = match_fast(s, g, model.rhm, model.exponent, model.ncells, model.kernel, model.workspace, t, clock)
    start = clock()
    box_transfer(s.grid, g.grid, match, src[1])
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser)
    args = parse(parser)
    cfg, dataset, indices = setup(args, ["method=hpf", "backbone.net.weights=none"])
    model = build_method(cfg.method)
    images, pairs = {}, []
    for index in indices:
        sample = dataset[index]
        images[sample["src_path"]] = (sample["src_img"][None], sample["src_kps"])
        images.setdefault(sample["trg_path"], (sample["trg_img"][None], sample["trg_kps"]))
        pairs.append((sample["src_path"], sample["trg_path"]))
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with torch.no_grad():
        a, b = pairs[0]
        model(images[a][0], images[b][0], images[a][1][None])  # warm-up
        print(
            f"{cfg.backbone.net.name} layers={list(model.layers)} pairs={len(pairs)} images={len(images)} "
            f"threads={torch.get_num_threads()} clock={args.clock}"
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
