"""Deep Image Analogy on real pairs: PCK of the mapping after every level, and time per stage.

    python benchmarks/bench_dia.py                                   # all PF-WILLOW pairs, method=dia
    python benchmarks/bench_dia.py --pairs-per-category 5 method=dia_paper
    python benchmarks/bench_dia.py --categories 'car(M)' 'duck(S)' method.pyramid=[null,null,3,6,13]
    python benchmarks/bench_dia.py backbone=vgg19 backbone.net.weights=none dataset.size=[224,224]

The method, backbone and dataset come from the project's configs (``conf/evaluate.yaml``; any
Hydra override may follow the options, the defaults here are ``method=dia dataset=pfwillow`` with
the PF-WILLOW root of ``../shared/data``), and the pairs are read by the project's dataset, so the
preprocessing and the PCK threshold are exactly those of ``evaluate.py`` (PF-WILLOW: max side 300,
T = max extent of the target keypoints) and scored by its PCK family (``pck@A``: per-pair PCK
averaged over pairs, :class:`~semcorr.metrics.pck.PCKEvaluator`).

Reported, per level L used (coarse to fine): PCK at each alpha of the mapping phi_{a->b}^L right
after that level's PatchMatch, upsampled to the image (the keypoint moves with the displacement of
its cell), then the final mapping's PCK, over all pairs and per category; and median seconds per pair of each stage (features,
PatchMatch and reconstruction per level, aggregation, whole pair; ``--clock cpu`` counts the
process CPU time, which with one thread approximates the wall time of an idle machine).
``--pairs-per-category N`` takes N pairs of every category, drawn with ``--seed`` (all by default).
With random weights (``backbone.net.weights=none``, the only VGG-19 offline) the PCK is meaningless;
the timing is not, except that PatchMatch on random features may converge differently.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

from semcorr.grid import move_points
from semcorr.lit.evaluation_runner import build_method
from semcorr.methods.dia import nnf_to_flow
from semcorr.methods.dia.patchmatch import upsample_nnf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pairs import Scores, add_pair_arguments, one_pair, parse, setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_pair_arguments(parser)
    args = parse(parser)
    cfg, dataset, indices = setup(args, ["method=dia"])
    matcher = build_method(cfg.method)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    alphas = list(cfg.alphas)
    scores = Scores(dataset, alphas, str(cfg.metrics.resolution))
    stages: dict[str, list[float]] = defaultdict(list)
    for n, index in enumerate(indices):
        sample = dataset[index]
        src, trg = sample["src_img"], sample["trg_img"]
        tic = clock()
        result = matcher.analyse(src[None], trg[None])[0]
        stages["pair"].append(clock() - tic)
        for name, seconds in result.seconds.items():
            stages[name].append(seconds)
        sizes = (tuple(src.shape[-2:]), tuple(trg.shape[-2:]))
        fields = {f"L{level}": upsample_nnf(nnf, *sizes) for level, nnf in result.level_nnfs.items()}
        fields["final"] = result.nnf_ab
        batch = one_pair(sample)
        final = [scores.add(name, batch, move_points(sample["src_kps"], nnf_to_flow(nnf))) for name, nnf in fields.items()][-1]
        print(f"[{n + 1}/{len(indices)}] {sample['pair_id']}: PCK@{alphas[1]:g} final {100 * float(final[1]):.1f}, "
              f"{stages['pair'][-1]:.2f} s", file=sys.stderr, flush=True)
    print(f"DIA, {cfg.backbone.net.name} ({cfg.backbone.net.weights}), {dataset.name}, {len(indices)} pairs, "
          f"{torch.get_num_threads()} thread(s), {args.clock} clock")
    print(f"  settings: {matcher.params}")
    print("  PCK after each level: " + "; ".join(f"{name} {scores.summary(name)}" for name in scores.evaluators)
          + f"  (alphas {', '.join(f'{a:g}' for a in alphas)})")
    for category in sorted({dataset.records[i].category for i in indices}):
        print(f"    {category}: " + "; ".join(f"{name} {scores.summary(name, category)}" for name in scores.evaluators))
    print("  median s/pair: " + ", ".join(f"{name} {statistics.median(v):.3f}" for name, v in stages.items()))


if __name__ == "__main__":
    main()
