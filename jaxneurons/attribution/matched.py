"""Matched neuron sets: the controls that tell "sharing matters" apart from "more neurons" or "big activations".

Both draws work on boolean masks over the last (neuron) axis, vectorised over any leading axes
(example, language, layer), in NumPy with a caller-given `np.random.Generator` (seeded per batch, so a
resumed run draws the same sets):

- `count_matched`: as many neurons of the pool as the target set has, picked uniformly within the pool.
- `magnitude_matched`: as many neurons of the pool as the target set has, with the target's |m|
  distribution: the target's own sorted |m| values cut the |m| axis into `bins` closed bins, each bin takes
  as many pool neurons (uniformly within the bin) as the target has there; a bin whose pool is too small
  passes the rest of its quota to the next lower bin (the target is the strongly activated set, so
  shortfalls are at the top), and what the lowest bin cannot take goes back up.

A pool smaller than the target (after the carry) gives fewer neurons; callers report the counts drawn.
"""

from __future__ import annotations

import numpy as np

MATCH_BINS = 50  # bins per row: 124 all-shared neurons -> 3 targets a bin


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
    takes as many pool neurons, drawn uniformly among the pool neurons in that span, as it holds targets. Pool
    neurons outside the target's range are never drawn, so the bins are closed on both ends.
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
    take_xg = _carry_down(_group_counts(group, target, groups), _group_counts(group, eligible, groups))
    rank = _rank_within(group, eligible, rng)
    return (eligible & (rank < np.take_along_axis(take_xg, group, -1))).reshape(shape)


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


def _carry_down(quota_xq, available_xq) -> np.ndarray:
    """Per bin, how many to take: the quota plus what the bins above could not fill, at most what is there;
    what is still missing below the lowest bin goes back up to the nearest bins with neurons to spare."""
    take = np.zeros_like(quota_xq)
    carry = np.zeros(len(quota_xq), quota_xq.dtype)
    for q in range(quota_xq.shape[1] - 1, -1, -1):
        want = quota_xq[:, q] + carry
        take[:, q] = np.minimum(want, available_xq[:, q])
        carry = want - take[:, q]
    for q in range(quota_xq.shape[1]):
        extra = np.minimum(carry, available_xq[:, q] - take[:, q])
        take[:, q] += extra
        carry -= extra
    return take
