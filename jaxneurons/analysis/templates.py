"""Template spread: how much the sharing headline moves when only the prompt template changes.

A template sweep runs the sharing pass once per prompt template (`Task.formulations` groups the templates
that end alike: in the same English words, or in the item's own language). Each run's interval covers the
items only; the spread across templates is the part of the uncertainty that interval leaves out. Per
formulation: the templates' mean of the all-shared share (mean over layers, tau = 0), their standard deviation
and range, and a t interval over templates (mean +- t(0.975, k-1) * sd / sqrt(k)), which treats the k templates
as a sample of the templates one could have written; next to them, the mean half-width of the item intervals.
The same for the parallel excess (parallel minus non-parallel grouping) where every run has the controls.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

# t quantiles t(0.975, df) for df = 1..30 (beyond: the normal's 1.96 is within 0.05 of them)
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
MEASURES = ("all_shared", "parallel_excess")
ALL = "all templates"


def t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96


def template_estimates(sharing: Mapping) -> dict:
    """One template's headline numbers from its sharing.json: the all-shared % (mean over layers, tau = 0) and the
    parallel excess in points, each {"value", "ci95"} (None without controls), the per-layer all-shared %, the
    mean accuracy over languages, n and the prompt format."""
    cats = (sharing.get("controls") or {}).get("categories")
    accuracy = sharing.get("accuracy") or {}
    return {
        "prompt_format": sharing.get("prompt_format"), "num_examples": sharing["num_examples"],
        "all_shared": {"value": sharing["mean_over_layers"]["all_shared"],
                       "ci95": (sharing.get("mean_over_layers_ci95") or {}).get("all_shared")},
        "parallel_excess": cats["parallel_excess"]["all_shared"]["mean_over_layers"] if cats else None,
        "all_shared_per_layer": list(sharing["per_layer"]["all_shared"]),
        "accuracy": float(np.mean(list(accuracy.values()))) if accuracy else None,
    }


def spread(estimates: Sequence[Mapping]) -> dict | None:
    """{"k", "mean", "sd", "range", "ci95_between", "item_half_width"} of the templates' values (estimates:
    {"value", "ci95"}); None when some template lacks the measure. sd and the t interval need k >= 2."""
    if not estimates or any(e is None for e in estimates):
        return None
    values = np.array([e["value"] for e in estimates], np.float64)
    k = len(values)
    sd = float(values.std(ddof=1)) if k > 1 else None
    half = t975(k - 1) * sd / math.sqrt(k) if k > 1 else None
    widths = [(e["ci95"][1] - e["ci95"][0]) / 2 for e in estimates if e.get("ci95") and e["ci95"][0] is not None]
    return {"k": k, "mean": float(values.mean()), "sd": sd, "range": float(values.max() - values.min()),
            "ci95_between": None if half is None else [float(values.mean() - half), float(values.mean() + half)],
            "item_half_width": float(np.mean(widths)) if len(widths) == k else None}


def template_summary(sharing_by_format: Mapping[str, Mapping], formulation_of: Mapping[str, str | None]) -> dict:
    """templates.json: per template its estimates (and formulation), per formulation (and over all templates
    when there are several formulations) the spread of each measure, and the per-layer sd of the all-shared %.

    sharing_by_format: prompt format -> its sharing.json; formulation_of: format -> formulation (None: none)."""
    first = next(iter(sharing_by_format.values()))
    templates = {name: {**template_estimates(s), "formulation": formulation_of.get(name)}
                 for name, s in sharing_by_format.items()}
    groups: dict[str, list[str]] = {}
    for name, t in templates.items():
        groups.setdefault(t["formulation"] or ALL, []).append(name)
    if len(groups) > 1:
        groups[ALL] = list(templates)
    formulations = {}
    for group, names in groups.items():
        per_layer = np.array([templates[n]["all_shared_per_layer"] for n in names], np.float64)
        formulations[group] = {
            "templates": names,
            **{m: spread([templates[n][m] for n in names]) for m in MEASURES},
            "all_shared_sd_per_layer": per_layer.std(axis=0, ddof=1).tolist() if len(names) > 1 else None}
    return {"model": first.get("model"), "task": first.get("task"), "languages": list(first["languages"]),
            "num_examples": int(min(t["num_examples"] for t in templates.values())),
            "templates": templates, "formulations": formulations}


def _pp(stat: Mapping | None, unit: str = "%") -> str:
    if stat is None:
        return "n/a"
    ci = stat.get("ci95")
    return f"{stat['value']:.1f}{unit}" + (f" [{ci[0]:.1f}, {ci[1]:.1f}]" if ci and ci[0] is not None else "")


def _spread_text(s: Mapping | None, unit: str) -> str:
    if s is None:
        return "n/a"
    if s["sd"] is None:
        return f"{s['mean']:.1f}{unit} (one template: no spread)"
    lo, hi = s["ci95_between"]
    item = "n/a" if s["item_half_width"] is None else f"+-{s['item_half_width']:.2f}"
    return (f"mean {s['mean']:.1f}{unit}, sd {s['sd']:.2f}, range {s['range']:.2f}, 95% over templates "
            f"[{lo:.1f}, {hi:.1f}]; item interval {item}")


def templates_section(summary: Mapping) -> str:
    """The markdown of templates.md: one row per template, then the spread per formulation."""
    lines = [f"# Template spread: {summary.get('model')} / {summary.get('task')}", "",
             f"Languages {', '.join(summary['languages'])}; n = {summary['num_examples']} items (the fewest of any "
             "template). Each template's interval is over its items (bootstrap, 95%); the spread is over the "
             "templates: their sd, range and a t interval that treats them as a sample of possible templates.", "",
             "| template | formulation | n | all-shared % (mean over layers) | parallel excess (pp) | mean accuracy |",
             "|---|---|---|---|---|---|"]
    for name, t in summary["templates"].items():
        acc = "n/a" if t["accuracy"] is None else f"{t['accuracy']:.3f}"
        lines.append(f"| {name} | {t['formulation'] or '-'} | {t['num_examples']} | {_pp(t['all_shared'])} | "
                     f"{_pp(t['parallel_excess'], '')} | {acc} |")
    lines += [""]
    for group, g in summary["formulations"].items():
        lines += [f"**{group}** ({', '.join(g['templates'])}):",
                  f"- all-shared: {_spread_text(g['all_shared'], '%')}",
                  f"- parallel excess: {_spread_text(g['parallel_excess'], ' pp')}", ""]
    return "\n".join(lines).rstrip() + "\n"


def templates_figure(summary: Mapping):
    """The all-shared % (and parallel excess, when present) of every template with its item interval, grouped
    by formulation: a `matplotlib.figure.Figure`."""
    from jaxneurons.analysis.figures import _finish, _new_figure

    measures = [m for m in MEASURES if all(t[m] is not None for t in summary["templates"].values())]
    fig, axes = _new_figure(len(measures))
    names = list(summary["templates"])
    groups = list(dict.fromkeys(summary["templates"][n]["formulation"] or ALL for n in names))
    for ax, measure in zip(axes, measures):
        for x, name in enumerate(names):
            t = summary["templates"][name]
            value, ci = t[measure]["value"], t[measure].get("ci95")
            err = None if not ci or ci[0] is None else [[value - ci[0]], [ci[1] - value]]
            color = f"C{groups.index(t['formulation'] or ALL)}"
            ax.errorbar([x], [value], yerr=err, fmt="o", color=color, capsize=3)
        for i, group in enumerate(groups):
            ax.plot([], [], "o", color=f"C{i}", label=group)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        label = "all-shared % (mean over layers)" if measure == "all_shared" else "parallel excess (pp)"
        ax.set_ylabel(label)
        ax.set_title(f"{label} per template: {summary.get('model')} / {summary.get('task')}", fontsize=9)
        ax.legend(fontsize=8)
    return _finish(fig)


def write_templates(output_dir: str, summary: Mapping) -> dict:
    """templates.json (with provenance), templates.md and figures/templates.png in output_dir; returns the summary
    as written."""
    import os

    from jaxneurons.analysis.figures import save_figure
    from jaxneurons.analysis.io import write_text_atomic
    from jaxneurons.pipeline.outputs import write_result_json

    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    written = write_result_json(os.path.join(output_dir, "templates.json"), dict(summary))
    save_figure(templates_figure(summary), os.path.join(output_dir, "figures", "templates.png"))
    write_text_atomic(os.path.join(output_dir, "templates.md"), templates_section(summary))
    return written
