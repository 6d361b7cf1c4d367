"""Matched neuron sets: the controls that tell "sharing matters" apart from "more neurons" or "big activations".

The draws work on boolean masks over the last (neuron) axis, vectorised over any leading axes
(example, language, layer), in NumPy with a caller-given `np.random.Generator` (seeded per batch, so a
resumed run draws the same sets):

- `count_matched`: as many neurons of the pool as the target set has, picked uniformly within the pool.
- `magnitude_matched`: as many neurons of the pool as the target set has, with the target's |m|
  distribution: the target's own sorted |m| values cut the |m| axis into `bins` closed bins, each bin takes
  as many pool neurons (uniformly within the bin) as the target has there. The targets a bin cannot serve
  (its pool is too small: the top bins, as the target is the strongly activated set) are then matched one
  by one, largest first, to the unused pool neuron nearest in |m| (`_fill_nearest`, any |m|, also above
  the target's largest). The previous draw passed such a shortfall down as extra quota drawn uniformly in
  the lower bins, which under-filled the top: on smollm2-135m the control held 0.71x the all-shared set's
  mean |m| (BUILD_NOTES "Controls that are what their names say").
- `top_magnitude`: the pool's `count` largest-|m| neurons (the strongest control a pool allows).
- `mass_matched`: pool neurons in a random order, each kept while it brings the summed value (contribution
  mass |m| * ||v||) nearer the target's.

No draw can match a target whose |m| the pool does not have: `match_ratios` gives the achieved count, mean
and mass ratios (control / target), and callers warn when a ratio is off by more than MATCH_TOLERANCE.
A pool smaller than the target gives fewer neurons.
"""

from __future__ import annotations

import numpy as np

MATCH_BINS = 50  # bins per row: 124 all-shared neurons -> 3 targets a bin
DRAWS_VERSION = 2  # in the passes' identity: 2 = the nearest fill and the issue-26 sets (1: carry-down), so a
# checkpoint drawn the old way is refused instead of mixed
MATCH_TOLERANCE = 0.1  # a control whose mean |m| or mass ratio is off by more than this is not "matched"


def _rank_within(group_xf: np.ndarray, pool_xf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rank [X, F] of each pool neuron among the pool neurons of its group (int codes >= 0)."""
    key = np.where(pool_xf, group_xf + rng.random(pool_xf.shape), np.inf)
    order = np.argsort(key, axis=-1, kind="stable")
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(pool_xf.shape[-1])[None].repeat(len(order), 0), axis=-1)
    size_xg = _group_counts(group_xf, pool_xf, int(group_xf.max(initial=0)) + 1)
    start_xg = np.cumsum(size_xg, -1) - size_xg
    return position - np.take_along_axis(start_xg, group_xf, -1)


def count_matched(count_x, pool_xf, rng: np.random.Generator) -> np.ndarray:
    """bool [..., F]: min(count, pool size) neurons drawn uniformly from pool, per leading index."""
    pool = np.asarray(pool_xf, bool)
    shape = pool.shape
    pool = pool.reshape(-1, shape[-1])
    count = np.broadcast_to(np.asarray(count_x), shape[:-1]).reshape(-1, 1)
    rank = _rank_within(np.zeros(pool.shape, np.int64), pool, rng)
    return (pool & (rank < count)).reshape(shape)


def magnitude_matched(abs_m_xf, target_xf, pool_xf, rng: np.random.Generator, bins: int = MATCH_BINS) -> np.ndarray:
    """bool [..., F]: pool neurons matching the target set's count and |m| distribution.

    The target's sorted |m| values are cut into `bins` runs of w = ceil(count / bins) consecutive targets;
    bin g spans |m| from its first target to the next bin's first (the last bin: to the largest target), and
    takes as many pool neurons, drawn uniformly among the pool neurons in that span, as it holds targets (at
    most as many as are there). A bin's targets left without a neuron (its largest ones) then take, largest
    first, the unused pool neuron nearest in |m| (`_fill_nearest`).
    """
    abs_m = np.asarray(abs_m_xf, np.float64)
    shape = abs_m.shape
    abs_m = abs_m.reshape(-1, shape[-1])
    target = np.broadcast_to(np.asarray(target_xf, bool), shape).reshape(abs_m.shape)
    pool = np.broadcast_to(np.asarray(pool_xf, bool), shape).reshape(abs_m.shape) & ~target
    count_x1 = target.sum(-1, keepdims=True)
    width_x1 = np.maximum(1, -(-count_x1 // bins))
    below = _targets_below(abs_m, target)  # targets sorted before each neuron
    eligible = pool & (below >= 1) & (below <= count_x1 - 1)  # inside [smallest, largest target]
    group = np.where(target, below // width_x1, np.maximum(below - 1, 0) // width_x1)
    groups = int(group.max(initial=0)) + 1
    quota_xg = _group_counts(group, target, groups)
    take_xg = np.minimum(quota_xg, _group_counts(group, eligible, groups))
    drawn = eligible & (_rank_within(group, eligible, rng) < np.take_along_axis(take_xg, group, -1))
    from_top = np.take_along_axis(quota_xg, group, -1) - 1 - (below - group * width_x1)  # 0: the bin's largest
    unserved = target & (from_top < np.take_along_axis(quota_xg - take_xg, group, -1))
    return _fill_nearest(abs_m, unserved, pool & ~drawn, drawn).reshape(shape)


def _fill_nearest(abs_m_xf, unserved_xf, free_xf, drawn_xf) -> np.ndarray:
    """drawn plus, per row, one free neuron for each unserved target, largest target first, each the free neuron
    nearest in |m| (ties: the lower index); a row with no more free neurons than unserved targets takes them all."""
    drawn, free = drawn_xf.copy(), free_xf.copy()
    need = unserved_xf.sum(-1)
    short = free.sum(-1) <= need
    drawn[short] |= free[short]
    rows = np.flatnonzero(~short & (need > 0))
    if not len(rows):
        return drawn
    values = -np.sort(-np.where(unserved_xf[rows], abs_m_xf[rows], -np.inf), -1)  # largest first
    for j in range(int(need[rows].max())):
        r = rows[need[rows] > j]
        pick = np.where(free[r], np.abs(abs_m_xf[r] - values[need[rows] > j, j, None]), np.inf).argmin(-1)
        drawn[r, pick] = True
        free[r, pick] = False
    return drawn


def top_magnitude(abs_m_xf, count_x, pool_xf) -> np.ndarray:
    """bool [..., F]: per leading index, the min(count, pool size) pool neurons of largest |m| (ties: lower index)."""
    abs_m = np.asarray(abs_m_xf, np.float64)
    pool = np.broadcast_to(np.asarray(pool_xf, bool), abs_m.shape)
    order = np.argsort(np.where(pool, -abs_m, np.inf), axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(abs_m.shape[-1]), abs_m.shape), axis=-1)
    return pool & (rank < np.asarray(count_x)[..., None])


def mass_matched(value_xf, target_mass_x, pool_xf, rng: np.random.Generator) -> np.ndarray:
    """bool [..., F]: per leading index, pool neurons in a uniformly random order, each kept when it brings the
    running sum of value (>= 0) nearer target_mass (value / 2 below what is missing), so the sum ends within half
    a neuron of the target, a large neuron that would overshoot skipped for the smaller ones after it. A pool
    whose whole sum is below the target is taken whole."""
    value = np.asarray(value_xf, np.float64)
    shape = value.shape
    pool = np.broadcast_to(np.asarray(pool_xf, bool), shape).reshape(-1, shape[-1])
    value = value.reshape(pool.shape)
    order = np.argsort(np.where(pool, rng.random(pool.shape), np.inf), axis=-1)
    step = np.take_along_axis(np.where(pool, value, 0.0), order, -1)
    in_pool = np.take_along_axis(pool, order, -1)
    target = np.broadcast_to(np.asarray(target_mass_x, np.float64), shape[:-1]).reshape(-1)
    total, keep = np.zeros(len(pool)), np.zeros(pool.shape, bool)
    for j in range(int(in_pool.sum(-1).max(initial=0))):  # the pool comes first in the order
        keep[:, j] = in_pool[:, j] & (total + step[:, j] / 2 < target)
        total += np.where(keep[:, j], step[:, j], 0.0)
    out = np.zeros(pool.shape, bool)
    np.put_along_axis(out, order, keep, axis=-1)
    return out.reshape(shape)


def match_ratios(abs_m_xf, control_xf, target_xf, contribution_xf=None) -> dict:
    """Pooled over every leading index: the control's size, mean |m| per neuron and summed contribution (|m| when
    not given) divided by the target's (None where the target's is 0)."""
    abs_m = np.asarray(abs_m_xf, np.float64)
    mass = abs_m if contribution_xf is None else np.asarray(contribution_xf, np.float64)
    sizes = [np.asarray(mask, bool).sum() for mask in (control_xf, target_xf)]
    sums = [(abs_m * mask).sum() for mask in (control_xf, target_xf)]
    masses = [(mass * mask).sum() for mask in (control_xf, target_xf)]
    means = [s / n if n else None for s, n in zip(sums, sizes)]
    return {"count_ratio": _ratio(sizes[0], sizes[1]),
            "mean_abs_m_ratio": _ratio(means[0], means[1]) if means[0] is not None else None,
            "mass_ratio": _ratio(masses[0], masses[1])}


def off_by_more(ratio, tolerance: float = MATCH_TOLERANCE) -> bool:
    """True when a ratio is missing or further than tolerance from 1."""
    return ratio is None or abs(ratio - 1) > tolerance


def _ratio(num, den):
    return float(num / den) if den else None


def _targets_below(abs_m_xf, target_xf) -> np.ndarray:
    """int [X, F]: how many target neurons come before each neuron when the row is sorted by |m|."""
    order = np.argsort(abs_m_xf, axis=-1, kind="stable")
    flags = np.take_along_axis(target_xf, order, -1).astype(np.int64)
    before_sorted = np.cumsum(flags, -1) - flags
    below = np.empty_like(before_sorted)
    np.put_along_axis(below, order, before_sorted, axis=-1)
    return below


def _group_counts(group_xf, mask_xf, groups) -> np.ndarray:
    """[X, groups]: how many masked neurons of each row fall in each group."""
    rows = np.arange(len(group_xf))[:, None] * groups + group_xf
    return np.bincount(rows[mask_xf], minlength=len(group_xf) * groups).reshape(len(group_xf), groups)
