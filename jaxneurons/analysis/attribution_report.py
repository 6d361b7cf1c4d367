"""The attribution pass's figures and report section, from attribution.json (95% bootstrap intervals drawn):
each `*_figure` builds a Figure (what a notebook shows), `write_figures` saves them as the run's PNGs."""

from __future__ import annotations

import os

import numpy as np

from matplotlib.figure import Figure

from jaxneurons.analysis.figures import CATEGORY_COLORS, _finish, _new_figure, save_figure
from jaxneurons.analysis.intervals import ci_text, error_bars, floats, num_text, or_zero, pct_text
from jaxneurons.analysis.sharing import CATEGORIES
from jaxneurons.pipeline.attribution import NULL_LABELS, NULLS, matching_warnings

NULL_COLOR = "black"
ANY_NULL_COLOR = "tab:brown"  # not another grey: non-activated is grey already


def top_share_figure(attribution: dict) -> Figure:
    """Per method: % of the top-k neurons of each layer in each category (the headline language), 95% band,
    and the |m|-drawn null's share (dashed)."""
    lang = attribution["headline"]["language"]
    methods = attribution["methods"]
    fig, axes = _new_figure(len(methods))
    for ax, method in zip(axes, methods):
        entry = attribution["per_language"][lang][method]
        lines = [(name, entry["top_k_share"][name]["per_layer"], CATEGORY_COLORS[name], "-") for name in CATEGORIES]
        lines.append(("|m|-drawn null (active)", entry["null"]["top_k_share"]["per_layer"], NULL_COLOR, "--"))
        lines.append(("|m|-drawn null (any)", entry["null_any"]["top_k_share"]["per_layer"], ANY_NULL_COLOR, ":"))
        for name, series, color, style in lines:
            values = np.asarray(series["value"], float)
            layers = np.arange(len(values))
            ax.plot(layers, values, color=color, linestyle=style, marker="x" if style == ":" else ".", label=name)
            if series["ci95"] is not None:
                ax.fill_between(layers, floats(series["ci95"][0]), floats(series["ci95"][1]), color=color, alpha=0.2)
        ax.set(title=f"{method}: top-{attribution['top_k']} neurons ({lang})", xlabel="layer",
               ylabel="% of the top neurons", ylim=(0, 100))
        ax.grid(alpha=0.3)
    # below the panels, never over a curve (the all-shared one runs near the top)
    axes[0].legend(fontsize="small", title="band: 95% bootstrap interval", loc="upper center",
                   bbox_to_anchor=(0.5, -0.18), ncol=3)
    return _finish(fig)


def attribution_share_figure(attribution: dict) -> Figure:
    """Per method and language: all-shared's top-k share and pooled positive share, each beside the
    |m|-drawn null's, with 95% error bars."""
    languages, methods = attribution["languages"], attribution["methods"]
    fig, axes = _new_figure(len(methods))
    x = np.arange(len(languages))
    bars = [("all-shared, top-k", lambda e: e["top_k_share"]["all_shared"]["mean"], "tab:blue", None),
            ("null, top-k", lambda e: e["null"]["top_k_share"]["mean"], "lightsteelblue", None),
            ("all-shared, pooled positive", lambda e: e["pooled_positive_share"]["all_shared"], "tab:blue", "//"),
            ("null, pooled positive", lambda e: e["null"]["pooled_positive_share"], "lightsteelblue", "//")]
    width = 0.8 / len(bars)
    for ax, method in zip(axes, methods):
        for i, (label, get, color, hatch) in enumerate(bars):
            stats = [get(attribution["per_language"][l][method]) for l in languages]
            ax.bar(x + i * width, [or_zero(s["value"]) for s in stats], width, color=color, hatch=hatch, label=label,
                   yerr=error_bars(stats), capsize=2)
        ax.axhline(attribution["neuron_share"]["all_shared"], color="gray", linestyle=":",
                   label="all-shared % of neurons")
        ax.set_xticks(x + width * (len(bars) - 1) / 2, languages)
        ax.set(title=f"{method}: share carried by all-shared neurons vs the null", ylabel="%", ylim=(0, 100))
    axes[0].legend(fontsize="small")
    return _finish(fig)


ATTRIBUTION_FIGURES = {  # name -> (builder, PNG file in figures/); the first is a result's default plot
    "top_share": (top_share_figure, "attribution_top_share.png"),
    "attribution_share": (attribution_share_figure, "attribution_share.png"),
}


def plot_top_share(attribution: dict, path: str) -> str:
    """`top_share_figure` written to path (PNG); returns the path."""
    return save_figure(top_share_figure(attribution), path)


def plot_attribution_share(attribution: dict, path: str) -> str:
    """`attribution_share_figure` written to path (PNG); returns the path."""
    return save_figure(attribution_share_figure(attribution), path)


def write_figures(attribution: dict, figures_dir: str) -> dict[str, str]:
    """Every figure of ATTRIBUTION_FIGURES written into figures_dir; {name: path} for the report."""
    return {name: save_figure(build(attribution), os.path.join(figures_dir, file))
            for name, (build, file) in ATTRIBUTION_FIGURES.items()}


def attribution_section(attribution: dict, figures: dict[str, str], output_dir: str) -> str:
    h = attribution["headline"]
    lines = ["## Attribution", "",
             f"Top-k = {attribution['top_k']} of {attribution['neurons_per_layer']} neurons per layer (the paper's "
             f"800 of 16,384 scaled to this width); scores toward {attribution.get('target', 'the gold token')}. "
             f"Intervals: 95% bootstrap over the {attribution['num_examples']} examples.", "",
             f"**Headline ({h['language']})**: {h['statistic']}. All-shared neurons are "
             f"{pct_text(h['all_shared_neuron_pct'])} of the neurons{_active_text(h)}.", ""]
    lines += _active_top_lines(h, attribution["methods"])
    headline_entry = attribution["per_language"][h["language"]]
    nulls = [n for n in NULLS if all(n in headline_entry[m] for m in attribution["methods"])]
    off = {n for n in nulls if any(line.startswith(NULL_LABELS[n]) for line in matching_warnings(attribution))}
    lines += ["| method | statistic | all-shared | " + " | ".join(NULL_LABELS[n] + (" NOT matched" if n in off else "")
                                                         for n in nulls) + " |", "|---" * (3 + len(nulls)) + "|"]
    for m in attribution["methods"]:
        entry = attribution["per_language"][h["language"]][m]
        for label, key in (("top-k share", "top_k_share"), ("pooled positive share", "pooled_positive_share")):
            cells = [ci_text(entry[n][key]["mean"] if key == "top_k_share" else entry[n][key]) for n in nulls]
            lines.append(f"| {m} | {label} | {ci_text(h[f'all_shared_{key}'][m])} | " + " | ".join(cells) + " |")
    lines += ["", "The nulls: per example, language and layer, neurons that are not all-shared: drawn for the "
              "all-shared set's count and |m| distribution (bins of the all-shared set's own sorted |m|, a short "
              "bin served by the nearest neurons; mean of the seeds) among the neurons active in that language "
              "(act > 0; `null (active)`) or among all (`null (any)`); the all-shared count of largest-|m| "
              "neurons (`null (top abs m)`); random neurons until their summed |m| is nearest all-shared's "
              "(`null (abs m mass)`). A null is only matched where its ratios are within 10% (NOT matched "
              "otherwise). The paper's figure (91.6% of the contribution, German XNLI, BLOOMZ) is the top-k "
              "share. Matching check (mean neurons per layer; mean |m| per neuron):", "",
              "| language | " + " | ".join(_SET_NAMES.get(s, s) for s in
                                            attribution["per_language"][h["language"]]["matching"]["sets"]) + " |",
              "|---" * (1 + len(attribution["per_language"][h["language"]]["matching"]["sets"])) + "|"]
    for lang in attribution["languages"]:
        match = attribution["per_language"][lang]["matching"]
        lines.append(f"| {lang} | " + " | ".join(f"{match['count_per_layer'][s]:.0f}; {num_text(match['mean_abs_m'][s])}"
                                                 for s in match["sets"]) + " |")
    lines += [""] + _ratio_lines(attribution) + _matching_warning(attribution)
    for method in attribution["methods"]:
        lines += [f"**{method}**: top-k share (mean over layers) per category, per language", "",
                  "| language | " + " | ".join(CATEGORIES) + " |", "|---" * (len(CATEGORIES) + 1) + "|"]
        for lang in attribution["languages"]:
            share = attribution["per_language"][lang][method]["top_k_share"]
            lines.append(f"| {lang} | " + " | ".join(ci_text(share[c]["mean"]) for c in CATEGORIES) + " |")
        lines.append("")
    lines += _completeness_lines(attribution)
    lines += [f"![{name}]({os.path.relpath(path, output_dir)})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


_SET_NAMES = {"matched_null": "null (active)", "matched_any": "null (any)", "top_null": "null (top abs m)",
              "mass_null": "null (abs m mass)", "other_active": "other active", "all": "all neurons",
              "all_shared": "all-shared"}


def _active_text(h: dict) -> str:
    active = h.get("all_shared_active_pct")
    return "" if not active else f", {ci_text(active)} of the neurons active in {h['language']}"


def _active_top_lines(h: dict, methods) -> list[str]:
    """The base rate of the top-k share: all-shared's share of the active neurons among the top-k."""
    top = h.get("all_shared_active_top_k_pct") or {}
    if not any(top.get(m) for m in methods):
        return []
    return [f"All-shared share of the top-k neurons that are active in {h['language']}: " +
            ", ".join(f"{m} {ci_text(top[m])}" for m in methods if top.get(m)) + ".", ""]


def _ratio_lines(attribution: dict) -> list[str]:
    """Per language, each null's count; mean |m|; |m| mass ratio to all-shared."""
    first = attribution["per_language"][attribution["languages"][0]]["matching"]
    nulls = [n for n in NULLS if f"{n}_count_ratio" in first]
    lines = ["Ratios to all-shared (neurons; mean |m|; |m| mass):", "",
             "| language | " + " | ".join(NULL_LABELS[n] for n in nulls) + " |", "|---" * (1 + len(nulls)) + "|"]
    for lang in attribution["languages"]:
        match = attribution["per_language"][lang]["matching"]
        lines.append(f"| {lang} | " + " | ".join("; ".join(num_text(match.get(f"{n}_{k}")) for k in
                                                          ("count_ratio", "abs_m_ratio", "mass_ratio"))
                                                for n in nulls) + " |")
    return lines + [""]


def _matching_warning(attribution: dict) -> list[str]:
    """Each null that misses what its name promises (`pipeline.attribution.matching_warnings`), as report lines."""
    return [line for w in matching_warnings(attribution) for line in (f"**Warning: {w}.**", "")]


def _completeness_lines(attribution: dict) -> list[str]:
    """IG's completeness error per layer, the worst (example, language, layer) row, the nodes the adaptive IG
    used, and a plain warning when a layer's pooled error or any row's error misses the tolerance."""
    ig = attribution.get("ig")
    if not ig:
        return []
    c = ig["completeness"]
    tolerance = c["tolerance"]
    errors = ", ".join(num_text(v) for v in c["error_per_layer"])
    lines = [f"IG completeness error per layer ({c['definition']}): {errors}.", ""]
    worst = c.get("worst_row")
    if c.get("worst_row_relative_error") is not None:
        lines += [f"Worst per-row completeness error per layer ({c['row_definition']}): "
                  f"{', '.join(num_text(v) for v in c['worst_row_relative_error'])}.", ""]
    nodes = c.get("nodes")
    if nodes and nodes.get("max_used") is not None:
        used = ", ".join(f"{level}: {count}" for level, count in zip(nodes["levels"], nodes["rows_per_level"]))
        lines += [f"IG quadrature nodes per (example, language, layer) row, adaptive up to {nodes['levels'][-1]} "
                  f"(nodes: rows): {used}; at most {nodes['max_used']} used.", ""]
        if nodes.get("at_max_above_tolerance"):
            lines += [f"**Warning: {nodes['at_max_above_tolerance']} row(s) reached the maximum of "
                      f"{nodes['levels'][-1]} IG nodes without meeting the {tolerance:.0%} completeness tolerance "
                      "(raise --ig_max_steps).**", ""]
    max_error = c.get("max_error")
    if max_error is None or max_error > tolerance:
        lines += [f"**Warning: IG does not satisfy completeness here (worst layer {num_text(max_error)} > "
                  f"{tolerance:.0%}); its attributions are not a decomposition of the probability change.**", ""]
    if worst is not None and worst["error"] > tolerance:
        lines += [f"**Warning: IG misses completeness by more than {tolerance:.0%} on "
                  f"{c['rows_above_tolerance']} of {c['rows']} (example, language, layer) rows; the worst is "
                  f"example {worst['example']} in {worst['language']} at layer {worst['layer']}, off by "
                  f"{num_text(worst['error'])} (relative to the probability change).**", ""]
    return lines
