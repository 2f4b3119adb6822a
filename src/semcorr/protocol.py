"""The protocol record: how a result was measured, written into every ``metrics.json``.

Most disagreements between published semantic-correspondence numbers are protocol confusions, not
method differences: per-pair vs per-keypoint PCK, the PCK threshold (PF-WILLOW's keypoint box once
computed over batch padding), square resizing that distorts distances, a subset taken for the full
benchmark, test pairs that are training pairs. So every result carries its protocol, and
``python -m semcorr.report`` refuses to put results of different protocols in one table.

The record (``metrics.json["protocol"]``, also in the W&B run config) has two parts:

* the EVALUATION protocol, which must be identical for two numbers to be compared: what the
  dataset reports (:meth:`semcorr.data.base.PairDataset.protocol`: dataset, split, pair list and
  its SHA-256, subset rule, threshold kind and rule, image-size policy and aspect changes, flips,
  dataset options) and the metric settings (alphas, the correctness rule, the PCK averages,
  ``metrics.resolution``, the metric families);
* ``method``: what the compared methods are allowed to differ in -- the method, its read-out,
  backbone and weights, what it was trained on, its margin pruning. :data:`METHOD_KEY` is left
  out of the comparison.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

#: The record's key of the method part (not compared between runs of one table).
METHOD_KEY = "method"
#: What each PCK average means (the ``pck_averages`` of the record).
PCK_AVERAGES = {
    "pck": "mean over pairs of the fraction of correct keypoints",
    "pck_kp": "correct keypoints over all keypoints (pooled)",
    "pck_cat": "mean over categories of the per-category pck",
}
#: The correctness rule of every keypoint metric here.
CORRECT_IF = "distance <= alpha * T"


def method_protocol(
    name: str, method: Any, weights: str | None = None, trained_on: Sequence[str] | None = None
) -> dict[str, Any]:
    """The method part of a record.

    Args:
        name: the method's name (its config name).
        method: the :class:`~semcorr.methods.base.Matcher` (its ``readout``, ``backbone``,
            ``trained_on`` and ``margin_pruning`` are read where it has them).
        weights: the backbone weights setting (``backbone.net.weights``).
        trained_on: ``<dataset>/<split>`` the weights were fit on; None: the method's own
            ``trained_on``.
    """
    backbone = getattr(method, "backbone", None)
    out: dict[str, Any] = {
        "name": name,
        "readout": str(getattr(method, "readout", "native")),
        "backbone": getattr(backbone, "name", None),
        "weights": weights if backbone is not None else None,
        "trained_on": sorted(trained_on if trained_on is not None else getattr(method, "trained_on", ())),
    }
    if getattr(method, "margin_pruning", None) is not None:
        out["margin_pruning"] = bool(method.margin_pruning)
    return out


def build_protocol(
    dataset: Any, families: Sequence[str], alphas: Sequence[float], resolution: str, method: Mapping[str, Any]
) -> dict[str, Any]:
    """The full record of an evaluation run.

    Args:
        dataset: the evaluated :class:`~semcorr.data.base.PairDataset`.
        families: the metric families scored (``pck``, ``flow``, ``masks``).
        alphas: PCK alphas.
        resolution: ``metrics.resolution``.
        method: :func:`method_protocol` of the evaluated method.
    """
    record = dict(dataset.protocol())
    record["metrics"] = list(families)
    if "pck" in families:
        record.update(
            alphas=[float(a) for a in alphas], correct_if=CORRECT_IF, pck_averages=dict(PCK_AVERAGES), resolution=resolution
        )
    record[METHOD_KEY] = dict(method)
    return record


def run_record(
    dataset: Any,
    method: Any,
    families: Sequence[str],
    alphas: Sequence[float],
    resolution: str,
    name: str,
    weights: str | None = None,
    trained_on: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The record of an evaluation run (:func:`build_protocol` of :func:`method_protocol`), warning
    when the method was trained on pairs that overlap the evaluated ones (the dataset's
    ``leakage``) or prunes margins against the dataset's protocol (Caltech-101's
    ``margin_pruning``)."""
    record = build_protocol(dataset, families, alphas, resolution, method_protocol(name, method, weights, trained_on))
    warning = dataset.leakage(record[METHOD_KEY]["trained_on"])
    if warning:
        log.warning("%s: %s", dataset.name, warning)
    wanted, used = getattr(dataset, "margin_pruning", None), record[METHOD_KEY].get("margin_pruning")
    if wanted is not None and used is not None and wanted != used:
        log.warning("%s: method.margin_pruning=%s departs from the dataset's protocol (dataset.margin_pruning=%s).",
                    dataset.name, used, wanted)
    return record


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b": value}``; values normalised as JSON would store them (tuples
    become lists), so a record read back from ``metrics.json`` equals a fresh one."""
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.loads(json.dumps(value))
    return out


def evaluation_part(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """The compared fields of a record, flattened (everything but :data:`METHOD_KEY`); ``{}`` for
    a run written before protocols were recorded."""
    return flatten({k: v for k, v in (record or {}).items() if k != METHOD_KEY})


def differing_fields(records: Sequence[Mapping[str, Any] | None]) -> list[str]:
    """The compared fields (flattened names) whose values are not the same in all records; a field
    missing from some records counts as differing."""
    parts = [evaluation_part(r) for r in records]
    keys = sorted({k for p in parts for k in p})
    missing = object()
    return [k for k in keys if len({json.dumps(p.get(k, missing), sort_keys=True, default=str) for p in parts}) > 1]


def protocol_key(record: Mapping[str, Any] | None) -> str:
    """A hashable identity of a record's evaluation part (runs with equal keys share a table)."""
    return json.dumps(evaluation_part(record), sort_keys=True)


def describe(record: Mapping[str, Any] | None) -> str:
    """The evaluation protocol in one line of Markdown (above a results table)."""
    if not record:
        return "protocol not recorded (a run from before protocol records)"
    parts = [f"**{record.get('dataset')}** `{record.get('split')}`, {record.get('n_pairs')} pairs: {record.get('pairs')} "
             f"(list sha256 `{str(record.get('pairs_sha256', ''))[:12]}`)"]
    subset = record.get("subset")
    if subset:
        rule = ", ".join(f"{k}={v}" for k, v in subset.items() if k != "of" and v is not None)
        parts.append(f"**subset** of {subset.get('of')} ({rule})")
    if "pck" in record.get("metrics", ()):
        alphas = "/".join(f"{a:g}" for a in record.get("alphas", ()))
        parts.append(f"PCK threshold `{record.get('threshold')}` (T = {record.get('threshold_rule')}), alpha {alphas}, "
                     f"correct if {record.get('correct_if')}, {record.get('resolution')} frame")
    size = record.get("image_size", {})
    if size.get("size"):
        resize = f"fixed size {size['size'][0]}x{size['size'][1]} (aspect changed in {size.get('aspect_changed_pairs')} pairs)"
    elif size.get("max_side"):
        resize = f"longer side {size['max_side']} px{'' if size.get('upscale') else ', never upscaled'}"
    else:
        resize = "original size"
    parts.append(resize)
    parts.append(f"flips: {record.get('flips')}")
    options = {k: v for k, v in (record.get("options") or {}).items() if isinstance(v, (str, int, float, bool))}
    if options:
        parts.append(", ".join(f"{k}: {v}" for k, v in options.items()))
    leakage = (record.get("options") or {}).get("leakage")
    if leakage:
        parts.append(f"{leakage['pairs_in_train']} pairs and {leakage['images_in_train']} of {leakage['images']} images "
                     f"also in {leakage['train_list']} (clean pairs: {leakage['clean_pairs']})")
    return "; ".join(parts)
