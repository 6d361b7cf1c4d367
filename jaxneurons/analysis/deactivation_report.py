"""The deactivation pass's figure and report section, from interventions.json (95% bootstrap intervals drawn):
`interventions_figure` builds the Figure (what a notebook shows), `write_figures` saves it as the run's PNG."""

from __future__ import annotations

import os

import numpy as np

from matplotlib.figure import Figure

from jaxneurons.analysis.figures import CATEGORY_COLORS, _finish, _new_figure, save_figure
from jaxneurons.analysis.intervals import ci_text, error_bars, num_text, or_zero

def interventions_figure(interventions: dict) -> Figure:
    """Per run group: mean accuracy over languages, the gold answer's log-probability change from clean, and
    the contribution mass the set removes, with 95% error bars."""
    sets = interventions["sets"]
    names = list(sets)
    panels = [("accuracy (%)", lambda s: s["accuracy"]["mean"]),
              ("gold log-prob change from clean (nats)", lambda s: s.get("gold_logprob_change")),
              ("contribution mass removed (%)", lambda s: s["removed_mass"])]
    fig, axes = _new_figure(len(panels))
    x = np.arange(len(names))
    colors = [CATEGORY_COLORS.get(n.removesuffix("_count"), "black" if n == "clean" else "tab:purple")
              for n in names]
    for ax, (label, get) in zip(axes, panels):
        stats = [get(sets[n]) or {"value": None, "ci95": None} for n in names]
        ax.bar(x, [or_zero(s["value"]) for s in stats], 0.7, color=colors, yerr=error_bars(stats), capsize=3)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize="small")
        ax.set(ylabel=label)
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Neurons deactivated at the {interventions['meta']['deactivated_at']} "
                 "(error bars: 95% bootstrap over examples)")
    return _finish(fig)


DEACTIVATION_FIGURES = {"interventions": (interventions_figure, "interventions.png")}  # name -> (builder, PNG)


def plot_interventions(interventions: dict, path: str) -> str:
    """`interventions_figure` written to path (PNG); returns the path."""
    return save_figure(interventions_figure(interventions), path)


def write_figures(interventions: dict, figures_dir: str) -> dict[str, str]:
    """Every figure of DEACTIVATION_FIGURES written into figures_dir; {name: path} for the report."""
    return {name: save_figure(build(interventions), os.path.join(figures_dir, file))
            for name, (build, file) in DEACTIVATION_FIGURES.items()}


def interventions_section(interventions: dict, figures: dict[str, str], output_dir: str) -> str:
    sets, meta = interventions["sets"], interventions["meta"]
    languages = list(interventions["clean"])
    tests = interventions.get("paired_tests", {})
    lines = ["## Deactivation", "",
             f"Each example's neurons of a set are zeroed at the {meta['deactivated_at']}. `*_count`, "
             "`random` and `magnitude` zero as many neurons per layer as the example has all-shared ones (within "
             "the category; uniformly; among activated neurons with all-shared's |m| distribution), mean of "
             f"{meta['random_seeds']} seeds. Removed mass: {meta['removed_mass']}. Intervals: 95% bootstrap over "
             f"{meta['num_examples']} examples; vs all-shared: control minus all-shared-off accuracy (paired), "
             "exact sign test over examples.", "",
             "| set | neurons per layer | mean abs m | removed mass | mean accuracy | change from clean | "
             "gold log-prob change (nats) | vs all-shared (pp) | sign test p |", "|---" * 9 + "|"]
    for name, s in sets.items():
        test = tests.get(name, {}).get("correct")
        versus = (f"{ci_text(test['difference'], '')} | {test['sign_test_p']:.3g}" if test else "| ")
        lines.append(f"| {name} | {s['neurons_per_layer']:.0f} | {num_text(s['mean_abs_m'])} | "
                     f"{ci_text(s['removed_mass'])} | "
                     f"{ci_text(s['accuracy']['mean'])} | {ci_text(s['delta']['mean'], ' pp')} | "
                     f"{ci_text(s.get('gold_logprob_change'), '')} | {versus} |")
    lines += ["", "Accuracy per language (%):", "", "| set | " + " | ".join(languages) + " |",
              "|---" * (len(languages) + 1) + "|"]
    for name, s in sets.items():
        lines.append(f"| {name} | " + " | ".join(ci_text(s["accuracy"][l], "") for l in languages) + " |")
    lines += [""] + [f"![{name}]({os.path.relpath(path, output_dir)})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"
