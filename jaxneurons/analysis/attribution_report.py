"""Figures and report sections of attribution.json and interventions.json."""

from __future__ import annotations

import os

import numpy as np

from jaxneurons.analysis.figures import CATEGORY_COLORS, _new_figure, _save
from jaxneurons.analysis.sharing import CATEGORIES


def plot_top_share(attribution: dict, path: str) -> str:
    """Per method: % of the top-k neurons of each layer in each category (the headline language)."""
    lang = attribution["headline"]["language"]
    methods = attribution["methods"]
    fig, axes = _new_figure(len(methods))
    for ax, method in zip(axes, methods):
        shares = attribution["per_language"][lang][method]["top_share"]
        for name in CATEGORIES:
            ax.plot(shares[name], color=CATEGORY_COLORS[name], marker=".", label=name)
        ax.set(title=f"{method}: top-{attribution['top_k']} neurons ({lang})", xlabel="layer",
               ylabel="% of the top neurons", ylim=(0, 100))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def plot_attribution_share(attribution: dict, path: str) -> str:
    """Per language: share of the positive attribution carried by all-shared neurons, next to their share."""
    languages, methods = attribution["languages"], attribution["methods"]
    fig, (ax,) = _new_figure()
    width = 0.8 / (len(methods) + 1)
    x = np.arange(len(languages))
    ax.bar(x, [attribution["neuron_share"]["all_shared"]] * len(languages), width, color="lightgray",
           label="all-shared % of neurons")
    for i, method in enumerate(methods):
        values = [attribution["per_language"][l][method]["attribution_share"]["all_shared"] or 0 for l in languages]
        ax.bar(x + (i + 1) * width, values, width, label=f"% of positive {method}")
    ax.set_xticks(x + width * len(methods) / 2, languages)
    ax.set(title="All-shared neurons: share of neurons vs share of attribution", ylabel="%", ylim=(0, 100))
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_interventions(interventions: dict, path: str) -> str:
    """Accuracy per language, clean and with each category deactivated."""
    runs = [k for k in interventions if k != "meta"]
    languages = list(interventions["clean"])
    fig, (ax,) = _new_figure()
    width = 0.8 / len(runs)
    x = np.arange(len(languages))
    for i, run in enumerate(runs):
        ax.bar(x + i * width, [interventions[run][l] for l in languages], width, label=run,
               color=CATEGORY_COLORS.get(run, "black" if run == "clean" else "tab:purple"))
    ax.set_xticks(x + width * (len(runs) - 1) / 2, languages)
    ax.set(title=f"Accuracy with neurons deactivated ({interventions['meta']['positions']} position)",
           ylabel="accuracy", ylim=(0, 1))
    ax.legend(fontsize="small")
    return _save(fig, path)


def attribution_section(attribution: dict, figures: dict[str, str], output_dir: str) -> str:
    h = attribution["headline"]
    lines = ["## Attribution", "",
             f"Top-k = {attribution['top_k']} of {attribution['neurons_per_layer']} neurons per layer (the paper's "
             "800 of 16,384 scaled to this width). Share of the positive attribution toward the gold answer's "
             "first token carried by each category, per language:", ""]
    for method in attribution["methods"]:
        lines += [f"**{method}**", "", "| language | " + " | ".join(CATEGORIES) + " |",
                  "|---" * (len(CATEGORIES) + 1) + "|"]
        for lang in attribution["languages"]:
            share = attribution["per_language"][lang][method]["attribution_share"]
            lines.append(f"| {lang} | " + " | ".join(_pct(share[c]) for c in CATEGORIES) + " |")
        lines.append("")
    carried = ", ".join(f"{m} {_pct(v)}" for m, v in h["all_shared_attribution_pct"].items())
    lines += [f"Headline ({h['language']}): all-shared neurons are {_pct(h['all_shared_neuron_pct'])} of the "
              f"neurons and carry {carried} of the positive attribution (the paper: under 30% of neurons, 91.6% "
              "of the contribution, German XNLI, BLOOMZ).", ""]
    lines += [f"![{name}]({os.path.relpath(path, output_dir)})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


def interventions_section(interventions: dict, figures: dict[str, str], output_dir: str) -> str:
    runs = [k for k in interventions if k != "meta"]
    languages = list(interventions["clean"])
    lines = ["## Deactivation", "",
             f"Accuracy when each example's neurons of one category are set to 0 at the "
             f"{interventions['meta']['positions']} position(s); `random` zeroes as many random neurons per layer "
             f"as all-shared has (mean of {interventions['meta']['random_seeds']} seeds).", "",
             "| intervention | " + " | ".join(languages) + " | mean |", "|---" * (len(languages) + 2) + "|"]
    for run in runs:
        values = [interventions[run][l] for l in languages]
        lines.append(f"| {run} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {np.mean(values):.3f} |")
    lines += [""] + [f"![{name}]({os.path.relpath(path, output_dir)})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.1f}%"
