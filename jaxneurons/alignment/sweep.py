"""Alignment over several seeds and lambdas: what the objective changes, and how much that moves with the seed.

Each (lambda, seed) is one alignment run (`experiment.run_alignment`: before, after, and a lambda = 0 control
with the same data order). Its effect is after minus control_after (the same data, steps and seed, the task loss
alone), in points of mean all-shared % and of mean accuracy over languages; after minus before is reported
too. Per lambda, the spread over seeds: mean, sd, range and a t interval over seeds
(`analysis.templates.spread`), which conditions on these evaluation items and this training set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from jaxneurons.analysis import write_json_atomic, write_text_atomic
from jaxneurons.analysis.templates import spread

SWEEP_FILE = "alignment_sweep.json"
EFFECTS = ("sharing_vs_control", "accuracy_vs_control", "sharing_vs_before", "accuracy_vs_before")


def run_name(lambda_sharing: float, seed: int) -> str:
    """The folder of one run of a sweep, e.g. lambda1_seed0."""
    return f"lambda{lambda_sharing:g}_seed{seed}"


def effects(result: Mapping) -> dict[str, float]:
    """One alignment.json's effects in points: all-shared % and mean accuracy (in %) after the aligned training,
    minus the lambda = 0 control and minus before."""
    def accuracy(key):
        return 100.0 * float(np.mean(list(result[key]["accuracy"].values())))

    share = {key: result[key]["all_shared_pct"] for key in ("before", "after", "control_after")}
    return {"sharing_vs_control": share["after"] - share["control_after"],
            "accuracy_vs_control": accuracy("after") - accuracy("control_after"),
            "sharing_vs_before": share["after"] - share["before"],
            "accuracy_vs_before": accuracy("after") - accuracy("before")}


def sweep_summary(results: Mapping[tuple[float, int], Mapping]) -> dict:
    """alignment_sweep.json: per run its effects; per lambda the spread of each effect over seeds."""
    runs = {run_name(lam, seed): {"lambda_sharing": lam, "seed": seed, **effects(r)}
            for (lam, seed), r in results.items()}
    per_lambda = {}
    for lam in dict.fromkeys(lam for lam, _ in results):
        names = [run_name(lam, seed) for l, seed in results if l == lam]
        per_lambda[f"{lam:g}"] = {"runs": names, "seeds": [runs[n]["seed"] for n in names],
                                  **{e: spread([{"value": runs[n][e]} for n in names]) for e in EFFECTS}}
    config = next(iter(results.values()))["config"]
    return {"model": config.get("model"), "task": config.get("task"), "languages": config.get("languages"),
            "num_train": config.get("num_train"), "num_eval": config.get("num_eval"), "steps": config.get("steps"),
            "runs": runs, "per_lambda": per_lambda}


def _row(name: str, s: Mapping | None) -> str:
    if s is None:
        return f"| {name} | n/a | | | |"
    if s["sd"] is None:
        return f"| {name} | {s['mean']:+.2f} | (one seed) | | |"
    lo, hi = s["ci95_between"]
    return f"| {name} | {s['mean']:+.2f} | {s['sd']:.2f} | {s['range']:.2f} | [{lo:+.2f}, {hi:+.2f}] |"


def write_sweep(output_dir: str, summary: Mapping) -> str:
    """alignment_sweep.json and alignment_sweep.md in output_dir; returns the markdown's path."""
    write_json_atomic(os.path.join(output_dir, SWEEP_FILE), dict(summary))
    lines = [f"# Alignment over seeds: {summary['model']} on {summary['task']} ({', '.join(summary['languages'])})",
             "", f"{summary['num_train']} training and {summary['num_eval']} evaluation examples, {summary['steps']} "
             "steps a run. Effects in points: all-shared % (mean over layers) and mean accuracy over languages "
             "(%), after the aligned training minus the lambda = 0 control (the same data order and steps) or "
             "minus before. The interval is over seeds (t, 95%); it conditions on these items and this "
             "training set.", ""]
    for lam, g in summary["per_lambda"].items():
        lines += [f"**lambda = {lam}** (seeds {', '.join(str(s) for s in g['seeds'])})", "",
                  "| effect (points) | mean | sd | range | 95% over seeds |", "|---|---|---|---|---|"]
        lines += [_row(e.replace("_", " "), g[e]) for e in EFFECTS] + [""]
    return write_text_atomic(os.path.join(output_dir, "alignment_sweep.md"), "\n".join(lines).rstrip() + "\n")
