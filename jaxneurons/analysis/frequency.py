"""How often each neuron is all-shared across items (tau = 0): is it the same neurons in every item, or do they
change from item to item (claim (i)'s second half)?

Per layer, of the neurons all-shared in at least one item ("ever"): the % all-shared in every item, and in at
least half the items. The histogram gives, of the ever-all-shared neurons, the % whose frequency (items where
it is all-shared / items) falls in each tenth.

The 95% intervals come from the delete-one jackknife over items (value +- 1.96 x the jackknife standard error),
not the bootstrap: a bootstrap resample holds about 63% distinct items, and both shares depend on the number of
items (a neuron all-shared in one item drops out of "ever" when that item is not drawn; fewer items leave more
neurons "in every item"), so the percentile interval lay wholly above the value (gemma3-270m, NLI: 9.3% in every
item, interval [10.1, 11.7]). Leaving one item out keeps E - 1 of E.
"""

from __future__ import annotations

import numpy as np

from jaxneurons.analysis.bootstrap import finite
from jaxneurons.analysis.statistics import MAIN_THRESHOLD

HISTOGRAM_BINS = 10
SHARES = {"every": 1.0, "half": 0.5}  # of the items a neuron is all-shared in, at least
Z95 = 1.959963984540054


def all_shared_bits(active_bits_enlb: np.ndarray) -> np.ndarray:
    """uint8 [E, L, ceil(F / 8)]: neurons activated in every language (packed flags AND-ed over languages)."""
    return np.bitwise_and.reduce(active_bits_enlb, axis=1)


def _shares(frequency_xf: np.ndarray, num_items: int) -> dict[str, np.ndarray]:
    """{"ever": ever-all-shared neurons [X], "every"/"half": % of them [X]} from frequencies over num_items items."""
    ever_x = np.sum(frequency_xf > 0, axis=-1)
    out = {"ever": ever_x.astype(np.float64)}
    for name, share in SHARES.items():
        held_x = np.sum(frequency_xf >= share * num_items, axis=-1)
        out[name] = np.where(ever_x > 0, 100.0 * held_x / np.maximum(ever_x, 1), np.nan)
    return out


def _jackknife(point, leave_one_out_e: np.ndarray):
    """(lo, hi) = point -+ 1.96 x the delete-one jackknife standard error (over the first axis; NaN-safe)."""
    n = len(leave_one_out_e)
    centered = leave_one_out_e - np.nanmean(leave_one_out_e, axis=0)
    se = np.sqrt((n - 1) / n * np.nansum(centered ** 2, axis=0))
    return point - Z95 * se, point + Z95 * se


def _estimate(point, leave_one_out_e) -> dict:
    """{"value", "ci95"} (lists for per-layer values; None for NaN); ci95 None without leave-one-out values."""
    point = np.asarray(point, np.float64)
    as_plain = (lambda x: finite(x)) if point.ndim else (lambda x: finite(np.atleast_1d(x))[0])
    if leave_one_out_e is None:
        return {"value": as_plain(point), "ci95": None}
    lo, hi = _jackknife(point, leave_one_out_e)
    return {"value": as_plain(point), "ci95": [as_plain(lo), as_plain(hi)]}


def frequency_summary(all_shared_elb: np.ndarray, neurons_per_layer: int, intervals: bool = True) -> dict:
    """The "overlap_frequency" block of sharing.json from per-item all-shared flags (packed, [E, L, F / 8]);
    intervals=False (a run with bootstrap 0) leaves them out."""
    num_items, num_layers = all_shared_elb.shape[:2]
    intervals = intervals and num_items > 1
    point = {name: np.zeros(num_layers) for name in ("ever", *SHARES)}
    left_out = {name: np.zeros((num_items, num_layers)) for name in SHARES}
    edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
    histogram_lb = np.zeros((num_layers, HISTOGRAM_BINS))
    for layer in range(num_layers):
        flags_ef = np.unpackbits(all_shared_elb[:, layer], axis=-1, count=neurons_per_layer)
        frequency_f = flags_ef.sum(axis=0, dtype=np.int64)
        for name, value in _shares(frequency_f, num_items).items():
            point[name][layer] = value
        if intervals:
            for name, values_e in _shares(frequency_f - flags_ef, num_items - 1).items():
                if name in left_out:
                    left_out[name][:, layer] = values_e
        histogram_lb[layer] = np.histogram(frequency_f[frequency_f > 0] / num_items, bins=edges)[0]
    pooled_b = 100.0 * histogram_lb.sum(0) / max(histogram_lb.sum(), 1)
    per_layer_lb = 100.0 * histogram_lb / np.maximum(histogram_lb.sum(1, keepdims=True), 1)
    out = {"category": "all_shared", "threshold": MAIN_THRESHOLD, "num_items": int(num_items),
           "interval": "delete-one jackknife over items" if intervals else None,
           "ever_per_layer": (100.0 * point["ever"] / neurons_per_layer).tolist()}
    for name in SHARES:
        loo = left_out[name] if intervals else None
        out[name] = {"per_layer": _estimate(point[name], loo),
                     "mean_over_layers": _estimate(_nanmean(point[name]), None if loo is None else _nanmean(loo))}
    out["histogram"] = {"bin_edges": edges.tolist(), "per_layer": per_layer_lb.tolist(), "pooled": pooled_b.tolist()}
    return out


def _nanmean(values_xl: np.ndarray) -> np.ndarray:
    """Mean over layers (the last axis) of the layers that have an ever-all-shared neuron (NaN if none)."""
    present = ~np.isnan(values_xl)
    return np.where(present.any(-1), np.nansum(values_xl, -1) / np.maximum(present.sum(-1), 1), np.nan)
