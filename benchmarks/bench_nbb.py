"""Neural Best Buddies on real pairs: PCK of densification variants on the same buddies, and time
per stage.

    python benchmarks/bench_nbb.py                                    # all PF-WILLOW pairs, method=nbb
    python benchmarks/bench_nbb.py --categories 'car(M)' 'duck(S)' --levels 5,4,3,2 5,4,3 5,4
    python benchmarks/bench_nbb.py --densify all local:1 local:2 local:4 --mls affine rigid
    python benchmarks/bench_nbb.py --pairs-per-category 2 backbone=vgg19 backbone.net.weights=none

The method, backbone and dataset come from the project's configs (``method=nbb dataset=pfwillow``
with the PF-WILLOW root of ``../shared/data`` by default; Hydra overrides follow the options) and
the pairs are read by the project's dataset (PF-WILLOW: max side 300, T = max extent of the
target keypoints; scored by the PCK family of ``evaluate.py``, ``pck@A``). For every level set of ``--levels`` the
best buddies of each pair are found once; every densification rule of ``--densify``
(``all`` or ``local:<outlier_cells>``) and MLS kind of ``--mls`` then transfers the keypoints
through the same buddies, so the table compares them on identical matches; ``folded`` is the mean
share of the target whose warp (the MLS map target -> source of that variant, as the pictures
use it) has a negative Jacobian determinant, i.e. shows the source mirrored. Without
``--levels`` / ``--densify`` / ``--mls`` the config's settings are used.

Time (median per pair; ``--clock cpu`` counts the process CPU time): features of both images
(uncached: every pair computes both), matching per level, top-k selection, densification and MLS
transfer of the first variant; and ``forward``: the config's matcher called as the evaluation
loop calls it (features cached per image, top-k, transfer, warped source), the number that counts. With random
weights (``backbone.net.weights=none``, the only VGG-19 offline) the PCK is meaningless and the
matching time is an upper bound: random features keep many more buddies than trained ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from semcorr.lit.evaluation_runner import build_method
from semcorr.methods.nbb.densify import consistent_buddies
from semcorr.methods.nbb.mls import mls_grid, mls_map

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs import Scores, add_pair_arguments, one_pair, parse, setup  # noqa: E402


def folded(field: torch.Tensor) -> float:
    """Share of an (H, W, 2) map's pixels with a negative forward-difference Jacobian."""
    dx = field[:-1, 1:] - field[:-1, :-1]
    dy = field[1:, :-1] - field[:-1, :-1]
    return float(((dx[..., 0] * dy[..., 1] - dx[..., 1] * dy[..., 0]) < 0).float().mean())


def parse_rule(text: str) -> tuple[str, float]:
    """``all`` or ``local:<cells>`` -> (rule, outlier cells)."""
    rule, _, cells = text.partition(":")
    return rule, float(cells) if cells else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser)
    parser.add_argument("--levels", nargs="*", default=None, help="level sets, e.g. 5,4,3,2 5,4")
    parser.add_argument("--densify", nargs="*", default=None, help="rules: all, local:<outlier_cells>")
    parser.add_argument("--mls", nargs="*", default=None, help="MLS kinds of the transfer")
    args = parse(parser)
    cfg, dataset, indices = setup(args, ["method=nbb"])
    base = build_method(cfg.method)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    level_sets = [[int(v) for v in text.split(",")] for text in args.levels] if args.levels else [base.levels]
    rules = [parse_rule(text) for text in args.densify] if args.densify else [(base.densify, base.outlier_px / base.strides[base.levels[0] - 1])]
    kinds = args.mls or [base.transfer_mls]
    alphas = list(cfg.alphas)
    forward = []
    for index in indices:
        sample = dataset[index]
        tic = clock()
        with torch.no_grad():
            base(sample["src_img"][None], sample["trg_img"][None], sample["src_kps"][None], [sample["src_path"]], [sample["trg_path"]])
        forward.append(clock() - tic)
    print(f"NBB, {cfg.backbone.net.name} ({cfg.backbone.net.weights}), {dataset.name}, {len(indices)} pairs, "
          f"{torch.get_num_threads()} thread(s), {args.clock} clock; PCK at alpha {', '.join(f'{a:g}' for a in alphas)}")
    for levels in level_sets:
        matcher = build_method(cfg.method, levels=levels, densify="all")
        top_stride = matcher.strides[levels[0] - 1]
        scores = Scores(dataset, alphas, str(cfg.metrics.resolution))
        folds: dict[tuple, list[float]] = defaultdict(list)
        stages: dict[str, list[float]] = defaultdict(list)
        counts: list[tuple[int, int]] = []
        for index in indices:
            sample = dataset[index]
            src, trg, batch = sample["src_img"][None], sample["trg_img"][None], one_pair(sample)
            tic = clock()
            feats_src, feats_trg = matcher.features(src)[0], matcher.features(trg)[0]
            stages["features"].append(clock() - tic)
            corr = matcher.match(feats_src, feats_trg, tuple(src.shape[-2:]), tuple(trg.shape[-2:]))
            for level, seconds in zip(levels, corr.buddies.seconds):
                stages[f"level {level}"].append(seconds)
            tic = clock()
            matcher.select(corr)
            stages["selection"].append(clock() - tic)
            for rule, cells in rules:
                for kind in kinds:
                    tic = clock()
                    kept = consistent_buddies(corr.src, corr.trg, rule, cells * top_stride, matcher.mls_alpha, kind)
                    pred = mls_map(corr.src[kept], corr.trg[kept], sample["src_kps"], matcher.mls_alpha, kind)
                    if (rule, cells, kind) == (rules[0] + (kinds[0],)):
                        stages["densify + MLS"].append(clock() - tic)
                        counts.append((int(corr.src.shape[0]), int(kept.sum())))
                    scores.add((rule, cells, kind), batch, pred)
                    if kept.any():
                        hw = tuple(trg.shape[-2:])
                        back = mls_grid(corr.trg[kept], corr.src[kept], hw[0], hw[1], matcher.mls_alpha, matcher.warp_step, kind)
                        folds[(rule, cells, kind)].append(folded(back))
        total = [sum(values[i] for values in stages.values()) for i in range(len(indices))]
        print(f"levels {levels} (layers {[matcher.layers[lv] for lv in levels]}), buddies per pair: median "
              f"{statistics.median(c[0] for c in counts):.0f}, kept {statistics.median(c[1] for c in counts):.0f}")
        for rule, cells, kind in scores.evaluators:
            name = rule if rule == "all" else f"{rule}:{cells:g}"
            share = 100 * statistics.fmean(folds[(rule, cells, kind)]) if folds[(rule, cells, kind)] else float("nan")
            print(f"  densify {name:<9} mls {kind:<10} PCK {scores.summary((rule, cells, kind))}   folded {share:4.1f}%")
        print("  median s/pair: " + ", ".join(f"{name} {statistics.median(v):.3f}" for name, v in stages.items())
              + f", total {statistics.median(total):.3f}")
    print(f"forward as in evaluate.py ({base.levels}, densify {base.densify}, {base.transfer_mls}): median "
          f"{statistics.median(forward):.3f} s/pair, mean {statistics.fmean(forward):.3f}")


if __name__ == "__main__":
    main()
