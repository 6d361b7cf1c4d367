"""Figures of the sharing analysis: each `*_figure` function builds one `matplotlib.figure.Figure` (what a
notebook shows), `save_figure` writes it as a PNG (atomically); the `plot_*` functions do both and return the
path, as the pass's writer and report use them.

Built on `matplotlib.figure.Figure` with the Agg canvas, not pyplot: no display, no global state, no
figures piling up in memory over a long run.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from jaxneurons.analysis.intervals import floats
from jaxneurons.analysis.io import atomic_path
from jaxneurons.analysis.sharing import CATEGORIES

DPI = 120
CATEGORY_COLORS = {
    "all_shared": "tab:blue",
    "partial_shared": "tab:orange",
    "specific": "tab:green",
    "non_activated": "tab:gray",
}


def _title(sharing: dict, what: str) -> str:
    """'what: model / task' from the keys the caller added to the summary (when present)."""
    source = " / ".join(str(sharing[k]) for k in ("model", "task") if sharing.get(k))
    return f"{what}: {source}" if source else what


def _new_figure(ncols: int = 1) -> tuple[Figure, list]:
    """A figure with `ncols` side-by-side axes on the Agg canvas."""
    fig = Figure(figsize=(6.4 * min(ncols, 2), 4.2 * ((ncols + 1) // 2)), dpi=DPI)
    FigureCanvasAgg(fig)
    if ncols == 1:
        return fig, [fig.add_subplot(1, 1, 1)]
    rows = (ncols + 1) // 2
    return fig, [fig.add_subplot(rows, 2, i + 1) for i in range(ncols)]


def _finish(fig: Figure) -> Figure:
    """Integer ticks on the layer axes and a tight layout: the figure as shown and as saved."""
    for ax in fig.axes:
        if ax.get_xlabel() == "layer":
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike) -> str:
    """Write the figure as a PNG atomically and return its path."""
    with atomic_path(path) as tmp_path:
        fig.savefig(tmp_path, format="png", dpi=DPI)
    return os.fspath(path)


def categories_per_layer_figure(sharing: dict) -> Figure:
    """The paper's main figure: % of neurons per category and layer (tau = 0), with the 95% bootstrap interval
    of the mean (dark band, when sharing.json has per_layer_ci95) and the min-max over examples (light band)."""
    fig, (ax,) = _new_figure()
    ci = sharing.get("per_layer_ci95")
    for name in CATEGORIES:
        mean_l = np.asarray(sharing["per_layer"][name])
        layers = np.arange(len(mean_l))
        color = CATEGORY_COLORS[name]
        ax.plot(layers, mean_l, color=color, label=name, marker=".")
        ax.fill_between(
            layers, sharing["per_layer_min"][name], sharing["per_layer_max"][name], color=color, alpha=0.1
        )
        if ci:
            lo_hi_l2 = np.asarray(ci[name], np.float64)
            ax.fill_between(layers, lo_hi_l2[:, 0], lo_hi_l2[:, 1], color=color, alpha=0.4)
    _control_lines(ax, sharing.get("controls"))
    ax.set(title=_title(sharing, "Neuron categories per layer"), xlabel="layer", ylabel="% of the layer's neurons")
    ax.set_ylim(0, 100)
    band = "dark band = 95% CI of the mean, light = min-max over examples" if ci else "band = min-max over examples"
    ax.legend(title=f"mean; {band}", fontsize="small")
    ax.grid(alpha=0.3)
    return _finish(fig)


CONTROL_STYLES = {"non_parallel": "--", "same_language": ":"}  # the controls' lines beside the parallel grouping


def _control_lines(ax, controls: dict | None) -> None:
    """The grouping controls' all-shared % per layer (sharing.json "controls"), dashed / dotted."""
    if not controls or not controls.get("categories"):
        return
    for grouping, style in CONTROL_STYLES.items():
        values_l = floats(controls["categories"][grouping]["all_shared"]["per_layer"]["value"])
        ax.plot(np.arange(len(values_l)), values_l, style, color=CATEGORY_COLORS["all_shared"],
                label=f"all_shared, {grouping.replace('_', '-')} control")


def _estimate_line(ax, stat: dict, label: str, style: str = "-", color=None) -> None:
    """A per-layer estimate ({"value": [L], "ci95": [[L], [L]]}) as a line with its 95% interval as a band."""
    values_l = floats(stat["value"])
    layers = np.arange(len(values_l))
    (line,) = ax.plot(layers, values_l, style, color=color, label=label, marker=".")
    if stat.get("ci95"):
        ax.fill_between(layers, floats(stat["ci95"][0]), floats(stat["ci95"][1]), color=line.get_color(), alpha=0.2)


def similarity_figure(sharing: dict) -> Figure:
    """Mean cosine of the grouped rows' activation vectors per layer: parallel vs the grouping controls."""
    controls = sharing.get("controls") or {}
    if not controls.get("cosine"):
        raise ValueError("the summary has no grouping controls (sharing.json 'controls')")
    fig, (ax,) = _new_figure()
    for grouping, style in (("parallel", "-"), *CONTROL_STYLES.items()):
        _estimate_line(ax, controls["cosine"][grouping]["per_layer"], grouping.replace("_", "-"), style)
    ax.set(title=_title(sharing, "Similarity of the grouped rows"), xlabel="layer",
           ylabel="mean cosine of the activation vectors")
    ax.legend(title=f"band = 95% CI over {controls['num_items']} items", fontsize="small")
    ax.grid(alpha=0.3)
    return _finish(fig)


def overlap_frequency_figure(sharing: dict) -> Figure:
    """Of the neurons all-shared in at least one item: per layer, the % all-shared in every item / in at least half
    of them (95% CI over items); and how the items in which each is all-shared are spread (pooled over layers)."""
    freq = sharing.get("overlap_frequency")
    if not freq:
        raise ValueError("the summary has no overlap_frequency statistics")
    fig, (ax, hist) = _new_figure(2)
    for name, label, color in (("every", "in every item", CATEGORY_COLORS["all_shared"]),
                               ("half", "in >= half the items", "tab:purple")):
        _estimate_line(ax, freq[name]["per_layer"], label, "-", color)
    ax.set(title="All-shared in ...", xlabel="layer", ylabel="% of the neurons all-shared in >= 1 item")
    ax.set_ylim(0, 100)
    ax.legend(title=f"band = 95% CI (jackknife) over {freq['num_items']} items", fontsize="small")
    ax.grid(alpha=0.3)
    edges = np.asarray(freq["histogram"]["bin_edges"])
    hist.bar(100 * edges[:-1], freq["histogram"]["pooled"], width=100 * np.diff(edges), align="edge",
             color=CATEGORY_COLORS["all_shared"], edgecolor="white")
    hist.set(title="Per neuron, pooled over layers", xlabel="% of the items in which the neuron is all-shared",
             ylabel="% of the neurons all-shared in >= 1 item")
    hist.grid(alpha=0.3)
    fig.suptitle(_title(sharing, "How often each neuron is all-shared"))
    return _finish(fig)


def activated_per_language_figure(sharing: dict) -> Figure:
    """Mean number of activated neurons (tau = 0) per layer, one line per language."""
    fig, (ax,) = _new_figure()
    for language, mean_l in sharing["activated_per_language"].items():
        ax.plot(np.arange(len(mean_l)), mean_l, label=language, marker=".")
    ax.set(title=_title(sharing, "Activated neurons per language"), xlabel="layer", ylabel="activated neurons")
    ax.legend(fontsize="small", ncol=2)
    ax.grid(alpha=0.3)
    return _finish(fig)


def threshold_sweep_figure(sharing: dict) -> Figure:
    """One panel per category: % of neurons per layer, one line per threshold."""
    sweep = sharing["threshold_sweep"]
    fig, axes = _new_figure(len(CATEGORIES))
    colors = [colormaps["viridis"](i / max(len(sweep) - 1, 1)) for i in range(len(sweep))]
    for ax, name in zip(axes, CATEGORIES):
        for color, (tau, per_layer) in zip(colors, sweep.items()):
            values_l = per_layer[name]
            ax.plot(np.arange(len(values_l)), values_l, color=color, label=f"tau={tau}")
        ax.set(title=name, xlabel="layer", ylabel="% of the layer's neurons")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    fig.suptitle(_title(sharing, "Threshold sweep"))
    return _finish(fig)


def overlap_figure(sharing: dict) -> Figure:
    """% of each layer's neurons that stay in the same category for every example (tau = 0)."""
    if not sharing.get("overlap"):
        raise ValueError("the summary has no overlap statistics")
    fig, (ax,) = _new_figure()
    for name in CATEGORIES:
        values_l = sharing["overlap"][name]
        ax.plot(np.arange(len(values_l)), values_l, color=CATEGORY_COLORS[name], label=name, marker=".")
    ax.set(
        title=_title(sharing, "Same category for every example"),
        xlabel="layer",
        ylabel="% of the layer's neurons",
    )
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _finish(fig)


ALIGNMENT_RUNS = (("before", "k-"), ("after", "r-"), ("control_after", "b--"))  # alignment.json key, line style


def plot_alignment_per_layer(alignment: dict, path: str | os.PathLike | None = None) -> Figure:
    """The alignment run's figure: % all-shared neurons per layer (tau = 0) before training, after it and after
    the control (lambda = 0), from alignment.json's evaluations. Written to `path` (atomically) when given;
    returns the Figure."""
    fig = Figure(figsize=(7, 3.5), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for key, style in ALIGNMENT_RUNS:
        run = alignment[key]
        ax.plot(run["all_shared_per_layer"], style, label=f"{key} ({run['all_shared_pct']:.2f}%)")
    ax.set(xlabel="layer", ylabel="% all-shared neurons")
    ax.legend()
    _finish(fig)
    if path is not None:
        save_figure(fig, path)
    return fig


SHARING_FIGURES = {  # name (the PNG is figures/<name>.png) -> builder; the first is a result's default plot
    "categories_per_layer": categories_per_layer_figure,
    "activated_per_language": activated_per_language_figure,
    "threshold_sweep": threshold_sweep_figure,
    "overlap": overlap_figure,
    "similarity": similarity_figure,
    "overlap_frequency": overlap_frequency_figure,
}
_NEEDS = {"overlap": lambda s: s.get("overlap"), "overlap_frequency": lambda s: s.get("overlap_frequency"),
          "similarity": lambda s: (s.get("controls") or {}).get("cosine")}


def sharing_figure_names(sharing: dict) -> list[str]:
    """The figures the summary supports (overlap, similarity, overlap_frequency only with their statistics)."""
    return [name for name in SHARING_FIGURES if name not in _NEEDS or _NEEDS[name](sharing)]


def plot_categories_per_layer(sharing: dict, path: str | os.PathLike) -> str:
    """`categories_per_layer_figure` written to path (PNG); returns the path."""
    return save_figure(categories_per_layer_figure(sharing), path)


def plot_activated_per_language(sharing: dict, path: str | os.PathLike) -> str:
    """`activated_per_language_figure` written to path (PNG); returns the path."""
    return save_figure(activated_per_language_figure(sharing), path)


def plot_threshold_sweep(sharing: dict, path: str | os.PathLike) -> str:
    """`threshold_sweep_figure` written to path (PNG); returns the path."""
    return save_figure(threshold_sweep_figure(sharing), path)


def plot_overlap(sharing: dict, path: str | os.PathLike) -> str:
    """`overlap_figure` written to path (PNG); returns the path."""
    return save_figure(overlap_figure(sharing), path)


def plot_all(sharing: dict, output_dir: str | os.PathLike) -> dict[str, str]:
    """Every figure the summary supports, written into output_dir; {figure name: path} for the report."""
    return {name: save_figure(SHARING_FIGURES[name](sharing), os.path.join(output_dir, f"{name}.png"))
            for name in sharing_figure_names(sharing)}
