"""Sharing analysis: the paper's four neuron categories (on the device), their statistics, figures, report.

The figures need matplotlib, which the core does not: the plot functions here import it when first called.
"""

from jaxneurons.analysis.io import atomic_path, to_jsonable, write_json_atomic, write_text_atomic
from jaxneurons.analysis.report import write_report
from jaxneurons.analysis.sharing import (
    ALL_SHARED,
    CATEGORIES,
    INCONSISTENT,
    NON_ACTIVATED,
    NUM_CATEGORIES,
    PARTIAL_SHARED,
    SPECIFIC,
    OverlapState,
    categorize,
    consistent_category_map,
    example_statistics,
    overlap_init,
    overlap_result,
    overlap_update,
)
from jaxneurons.analysis.statistics import MAIN_THRESHOLD, summarize, threshold_key


def _lazy(name: str):
    """`jaxneurons.analysis.figures.<name>`, imported (with matplotlib) on the first call."""

    def plot(*args, **kwargs):
        from jaxneurons.analysis import figures

        return getattr(figures, name)(*args, **kwargs)

    plot.__name__ = plot.__qualname__ = name
    plot.__doc__ = f"See jaxneurons.analysis.figures.{name} (matplotlib is imported on the first call)."
    return plot


plot_activated_per_language = _lazy("plot_activated_per_language")
plot_all = _lazy("plot_all")
plot_categories_per_layer = _lazy("plot_categories_per_layer")
plot_overlap = _lazy("plot_overlap")
plot_threshold_sweep = _lazy("plot_threshold_sweep")

__all__ = [
    "ALL_SHARED",
    "CATEGORIES",
    "INCONSISTENT",
    "MAIN_THRESHOLD",
    "NON_ACTIVATED",
    "NUM_CATEGORIES",
    "PARTIAL_SHARED",
    "SPECIFIC",
    "OverlapState",
    "atomic_path",
    "categorize",
    "consistent_category_map",
    "example_statistics",
    "overlap_init",
    "overlap_result",
    "overlap_update",
    "plot_activated_per_language",
    "plot_all",
    "plot_categories_per_layer",
    "plot_overlap",
    "plot_threshold_sweep",
    "summarize",
    "threshold_key",
    "to_jsonable",
    "write_json_atomic",
    "write_report",
    "write_text_atomic",
]
