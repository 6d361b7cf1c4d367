"""Figures of the LAPE analysis, as `matplotlib.figure.Figure` objects on the Agg canvas (see analysis.figures)."""

from __future__ import annotations

import numpy as np

from jaxneurons.analysis.figures import CATEGORY_COLORS, _new_figure
from jaxneurons.analysis.sharing import CATEGORIES


def delta_heatmap(summary: dict):
    """NLL change from the clean model: masked language (rows) x evaluated language (columns), LAPE's neurons
    and, when run, the count-matched random masks."""
    languages, matrix = summary["languages"], summary["matrix"]
    masked = [c for c in summary["conditions"] if c != "none" and not c.startswith("random(")]
    panels = [("LAPE neurons zeroed", masked)]
    if any(c.startswith("random(") for c in summary["conditions"]):
        panels.append(("count-matched random neurons zeroed", [f"random({c})" for c in masked]))
    values = [np.array([[matrix[c][lang]["delta_nll"]["value"] for lang in languages] for c in rows])
              for _, rows in panels]
    top = max(float(np.nanmax(np.abs(v))) for v in values) or 1.0
    fig, axes = _new_figure(len(panels))
    for ax, (title, rows), value in zip(axes, panels, values):
        image = ax.imshow(value, cmap="Reds", vmin=0.0, vmax=top)
        ax.set_xticks(range(len(languages)), languages)
        ax.set_yticks(range(len(rows)), [r.removeprefix("random(").removesuffix(")") for r in rows])
        ax.set_xlabel("evaluated language")
        ax.set_ylabel("masked language")
        ax.set_title(title, fontsize=9)
        for i in range(value.shape[0]):
            for j in range(value.shape[1]):
                ax.text(j, i, f"{value[i, j]:.2f}", ha="center", va="center", fontsize=6)
        fig.colorbar(image, ax=ax, label="NLL change (nats/token)")
    fig.tight_layout()
    return fig


def category_bars(relation: dict):
    """Per LAPE set (and all neurons): mean share of its neurons in each of the paper's categories, with the
    95% interval over examples."""
    sets = list(relation["distribution"])
    fig, axes = _new_figure(1)
    ax, bottom = axes[0], np.zeros(len(sets))
    for c in CATEGORIES:
        share = np.array([relation["distribution"][s][c]["value"] or 0.0 for s in sets])
        ax.bar(range(len(sets)), share, bottom=bottom, color=CATEGORY_COLORS[c], label=c.replace("_", "-"))
        bottom += share
    ax.set_xticks(range(len(sets)), sets, rotation=45, fontsize=8)
    ax.set_ylabel("% of the set's neurons (mean over examples)")
    ax.set_title(f"LAPE neurons in the paper's categories ({relation.get('task', '')}, tau = 0)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
