"""Sharing analysis: the paper's four neuron categories (on the device), their statistics, figures, report."""

from jaxneurons.analysis.figures import (
    plot_activated_per_language,
    plot_all,
    plot_categories_per_layer,
    plot_overlap,
    plot_threshold_sweep,
)
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
