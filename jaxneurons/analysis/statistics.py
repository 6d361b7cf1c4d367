"""The paper's statistics, in NumPy, from the per-example counts of `sharing.example_statistics`.

Percentages are of the layer's neurons (0..100). Layers are indexed from 0. Every value is a plain
Python float / list / dict so the result can go straight to JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxneurons.analysis.sharing import CATEGORIES

MAIN_THRESHOLD = 0.0  # the paper's tau; the headline statistics are taken at it


def threshold_key(threshold: float) -> str:
    """Key of a threshold in `threshold_sweep`: short decimal, free of float32 noise (0.1, not 0.100000001)."""
    return f"{float(threshold):g}"


def _main_threshold_index(thresholds_k: np.ndarray) -> int:
    """Index of tau = 0 among the thresholds; the headline statistics need it."""
    hits = np.flatnonzero(np.isclose(thresholds_k, MAIN_THRESHOLD, rtol=0.0, atol=1e-12))
    if hits.size == 0:
        raise ValueError(f"threshold {MAIN_THRESHOLD} must be among the thresholds, got {thresholds_k.tolist()}")
    return int(hits[0])


def _per_category(values_lc: np.ndarray) -> dict[str, list[float]]:
    """{category: list over layers} from an [L, 4] array."""
    return {name: values_lc[:, c].astype(float).tolist() for c, name in enumerate(CATEGORIES)}


def _mean_percent(percent_blc: np.ndarray) -> dict[str, list[float]] | None:
    """Mean over examples, per category and layer; None for an empty group."""
    return _per_category(percent_blc.mean(axis=0)) if len(percent_blc) else None


def _check_shapes(counts_bklc, activated_bknl, thresholds_k, languages, correct_bn, overlap_kcl) -> None:
    """Raise ValueError early on inconsistent inputs instead of returning wrong numbers."""
    b, k, l, c = counts_bklc.shape
    if c != len(CATEGORIES) or b == 0:
        raise ValueError(f"category_counts must be [B>0, K, L, {len(CATEGORIES)}], got {counts_bklc.shape}")
    if thresholds_k.shape != (k,):
        raise ValueError(f"{k} thresholds in the counts, {thresholds_k.shape} given")
    expected = (b, k, len(languages), l)
    if activated_bknl.shape != expected:
        raise ValueError(f"activated must be {expected} (B, K, N, L), got {activated_bknl.shape}")
    if correct_bn is not None and np.shape(correct_bn) != (b, len(languages)):
        raise ValueError(f"correct must be {(b, len(languages))} (B, N), got {np.shape(correct_bn)}")
    if overlap_kcl is not None and np.shape(overlap_kcl) != (k, c, l):
        raise ValueError(f"overlap must be {(k, c, l)} (K, 4, L), got {np.shape(overlap_kcl)}")


def summarize(
    category_counts_bklc,
    activated_bknl,
    thresholds: Sequence[float],
    languages: Sequence[str],
    neurons_per_layer: int,
    correct_bn=None,
    overlap_kcl=None,
) -> dict:
    """All statistics of the sharing analysis as a JSON-ready dict (see the module docstring for units).

    Keys: per_layer / per_layer_min / per_layer_max (category -> [L], tau = 0, mean and min-max band over
    examples), threshold_sweep (threshold_key(tau) -> per_layer), activated_per_language (language -> [L]
    mean activated neurons, tau = 0), overlap (category -> [L] %, tau = 0, or None), by_correctness (only
    with correct_bn: all_correct = correct in every language of the example), mean_over_layers, thresholds,
    categories.
    """
    counts_bklc = np.asarray(category_counts_bklc)
    activated_bknl = np.asarray(activated_bknl)
    thresholds_k = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    _check_shapes(counts_bklc, activated_bknl, thresholds_k, languages, correct_bn, overlap_kcl)
    k0 = _main_threshold_index(thresholds_k)

    percent_bklc = 100.0 * counts_bklc.astype(np.float64) / neurons_per_layer
    percent_blc = percent_bklc[:, k0]
    per_layer = _per_category(percent_blc.mean(axis=0))
    summary = {
        "categories": list(CATEGORIES),
        "thresholds": thresholds_k.tolist(),
        "per_layer": per_layer,
        "per_layer_min": _per_category(percent_blc.min(axis=0)),
        "per_layer_max": _per_category(percent_blc.max(axis=0)),
        "threshold_sweep": {
            threshold_key(tau): _per_category(percent_bklc[:, k].mean(axis=0)) for k, tau in enumerate(thresholds_k)
        },
        "activated_per_language": {
            lang: activated_bknl[:, k0, n].astype(np.float64).mean(axis=0).tolist()
            for n, lang in enumerate(languages)
        },
        "overlap": None if overlap_kcl is None else _per_category(np.asarray(overlap_kcl, np.float64)[k0].T),
        "mean_over_layers": {name: float(np.mean(values)) for name, values in per_layer.items()},
    }
    if correct_bn is not None:
        summary["by_correctness"] = _by_correctness(percent_blc, np.asarray(correct_bn, dtype=bool))
    return summary


def _by_correctness(percent_blc: np.ndarray, correct_bn: np.ndarray) -> dict:
    """Mean per-layer categories for examples answered correctly in every language vs the rest."""
    all_correct_b = correct_bn.all(axis=1)
    return {
        "all_correct": {
            "num_examples": int(all_correct_b.sum()),
            "per_layer": _mean_percent(percent_blc[all_correct_b]),
        },
        "not_all_correct": {
            "num_examples": int((~all_correct_b).sum()),
            "per_layer": _mean_percent(percent_blc[~all_correct_b]),
        },
    }
