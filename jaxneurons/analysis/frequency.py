"""How often each neuron is all-shared across items (tau = 0): is it the same neurons in every item, or do they
change from item to item (claim (i)'s second half)?

Per layer, of the neurons all-shared in at least one item ("ever"): the % all-shared in every item, and in at
least half the items. The 95% intervals resample items (analysis.bootstrap; a neuron's frequency is recounted
in each resample, so "ever" changes with it). The histogram gives, of the ever-all-shared neurons, the % whose
frequency (items where it is all-shared / items) falls in each tenth.
"""

from __future__ import annotations

import warnings

import numpy as np

from jaxneurons.analysis.bootstrap import finite, interval, resample_counts
from jaxneurons.analysis.statistics import MAIN_THRESHOLD

HISTOGRAM_BINS = 10
SHARES = {"every": 1.0, "half": 0.5}  # of the items a neuron is all-shared in, at least


def all_shared_bits(active_bits_enlb: np.ndarray) -> np.ndarray:
    """uint8 [E, L, ceil(F / 8)]: neurons activated in every language (packed flags AND-ed over languages)."""
    return np.bitwise_and.reduce(active_bits_enlb, axis=1)


def _layer_shares(counts_re: np.ndarray, all_shared_ef: np.ndarray) -> dict[str, np.ndarray]:
    """{"ever": ever-all-shared neurons [R], "every"/"half": % of them [R]} for each weighting of the items."""
    frequency_rf = counts_re.astype(np.float32) @ all_shared_ef.astype(np.float32)  # integer sums: exact
    total = counts_re.sum(axis=1, keepdims=True)
    ever_r = np.sum(frequency_rf > 0.5, axis=1)
    out = {"ever": ever_r.astype(np.float64)}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, share in SHARES.items():
            held_r = np.sum(frequency_rf >= share * total - 1e-3, axis=1)
            out[name] = np.where(ever_r > 0, 100.0 * held_r / np.maximum(ever_r, 1), np.nan)
    return out


def _estimate(point, replicates_r) -> dict:
    """{"value", "ci95"} (lists for per-layer values; None for NaN); ci95 None without replicates."""
    point = np.asarray(point, np.float64)
    as_plain = (lambda x: finite(x)) if point.ndim else (lambda x: finite(np.atleast_1d(x))[0])
    if replicates_r is None:
        return {"value": as_plain(point), "ci95": None}
    lo, hi = interval(replicates_r)
    return {"value": as_plain(point), "ci95": [as_plain(lo), as_plain(hi)]}


def frequency_summary(all_shared_elb: np.ndarray, neurons_per_layer: int, bootstrap: int = 1000) -> dict:
    """The "overlap_frequency" block of sharing.json from per-item all-shared flags (packed, [E, L, F / 8])."""
    num_items, num_layers = all_shared_elb.shape[:2]
    weights_re = np.ones((1, num_items))
    if bootstrap:
        weights_re = np.concatenate([weights_re, resample_counts(num_items, bootstrap)])
    shares = {name: np.zeros((len(weights_re), num_layers)) for name in ("ever", *SHARES)}
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    histogram_lb = np.zeros((num_layers, HISTOGRAM_BINS))
    for layer in range(num_layers):
        flags_ef = np.unpackbits(all_shared_elb[:, layer], axis=-1, count=neurons_per_layer)
        for name, values_r in _layer_shares(weights_re, flags_ef).items():
            shares[name][:, layer] = values_r
        frequency_f = flags_ef.mean(axis=0)
        histogram_lb[layer] = np.histogram(frequency_f[frequency_f > 0], bins=edges)[0]
    with np.errstate(invalid="ignore"):
        pooled_b = 100.0 * histogram_lb.sum(0) / max(histogram_lb.sum(), 1)
        per_layer_lb = 100.0 * histogram_lb / np.maximum(histogram_lb.sum(1, keepdims=True), 1)
    out = {"category": "all_shared", "threshold": MAIN_THRESHOLD, "num_items": int(num_items),
           "ever_per_layer": (100.0 * shares["ever"][0] / neurons_per_layer).tolist()}
    for name in SHARES:
        values_rl = shares[name]
        rest = values_rl[1:] if bootstrap else None
        with warnings.catch_warnings():  # a resample without any all-shared neuron: NaN, no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            mean_r = np.nanmean(values_rl, axis=1)
        out[name] = {"per_layer": _estimate(values_rl[0], rest),
                     "mean_over_layers": _estimate(mean_r[0], mean_r[1:] if bootstrap else None)}
    out["histogram"] = {"bin_edges": edges.tolist(), "per_layer": per_layer_lb.tolist(), "pooled": pooled_b.tolist()}
    return out
