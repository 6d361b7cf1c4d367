"""Matched neuron sets: the controls that tell "sharing matters" apart from "more neurons" or "big activations".

Both draws work on boolean masks over the last (neuron) axis, vectorised over any leading axes
(example, language, layer), in NumPy with a caller-given `np.random.Generator` (seeded per batch, so a
resumed run draws the same sets):

- `count_matched`: as many neurons of the pool as the target set has, picked uniformly within the pool.
- `magnitude_matched`: as many neurons of the pool as the target set has, with the target's |m|
  distribution: the target's |m| quantiles cut the axis into `bins` bins, each bin takes as many pool
  neurons (uniformly within the bin) as the target has there; a bin whose pool is too small passes the rest
  of its quota to the next lower bin (the target is the strongly activated set, so shortfalls are at the top).

A pool smaller than the target (after the carry) gives fewer neurons; callers report the counts drawn.
"""

from __future__ import annotations

import numpy as np

MATCH_BINS = 10


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
    """bool [..., F]: pool neurons matching the target set's count and |m| distribution (quantile bins)."""
    abs_m = np.asarray(abs_m_xf, np.float64)
    shape = abs_m.shape
    abs_m = abs_m.reshape(-1, shape[-1])
    target = np.broadcast_to(np.asarray(target_xf, bool), shape).reshape(abs_m.shape)
    pool = np.broadcast_to(np.asarray(pool_xf, bool), shape).reshape(abs_m.shape) & ~target
    edges_xq = _target_quantiles(abs_m, target, bins)
    bin_xf = (abs_m[..., None] > edges_xq[:, None, :]).sum(-1)  # 0 .. bins-1 (NaN edges: 0)
    take_xq = _carry_down(_group_counts(bin_xf, target, bins), _group_counts(bin_xf, pool, bins))
    rank = _rank_within(bin_xf, pool, rng)
    return (pool & (rank < np.take_along_axis(take_xq, bin_xf, -1))).reshape(shape)


def _group_counts(group_xf, mask_xf, groups) -> np.ndarray:
    """[X, groups]: how many masked neurons of each row fall in each group."""
    rows = np.arange(len(group_xf))[:, None] * groups + group_xf
    return np.bincount(rows[mask_xf], minlength=len(group_xf) * groups).reshape(len(group_xf), groups)


def _target_quantiles(abs_m_xf, target_xf, bins) -> np.ndarray:
    """[X, bins-1] inner quantiles of |m| over the target neurons of each row (NaN for an empty target)."""
    values = np.where(target_xf, abs_m_xf, np.nan)
    edges = np.full((len(values), bins - 1), np.nan)
    some = target_xf.any(-1)
    if some.any() and bins > 1:
        edges[some] = np.nanquantile(values[some], np.arange(1, bins) / bins, axis=-1).T
    return edges


def _carry_down(quota_xq, available_xq) -> np.ndarray:
    """Per bin, how many to take: the quota plus what the bins above could not fill, at most what is there."""
    take = np.zeros_like(quota_xq)
    carry = np.zeros(len(quota_xq), quota_xq.dtype)
    for q in range(quota_xq.shape[1] - 1, -1, -1):
        want = quota_xq[:, q] + carry
        take[:, q] = np.minimum(want, available_xq[:, q])
        carry = want - take[:, q]
    return take
