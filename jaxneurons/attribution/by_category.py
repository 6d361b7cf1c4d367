"""Attribution x sharing category: which categories hold the top neurons and the positive attribution.

All statistics are computed per (example, language, layer) on the device; only small arrays come back.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

NUM_CATEGORIES = 4
PAPER_TOP_K, PAPER_WIDTH = 800, 16384  # BLOOMZ-7b1: top 800 of 16,384 neurons per layer


def scaled_top_k(neurons_per_layer: int, top_k: int | None = None) -> int:
    """The paper's top-800-of-16,384 (4.9%) scaled to this model's layer width, unless given."""
    if top_k is not None:
        return max(1, min(int(top_k), neurons_per_layer))
    return max(1, round(PAPER_TOP_K * neurons_per_layer / PAPER_WIDTH))


@jax.jit
def category_masks(codes_blf):
    """[B, L, F, 4] one-hot of each neuron's category for its example."""
    return jax.nn.one_hot(codes_blf, NUM_CATEGORIES, dtype=jnp.float32)


def attribution_statistics(scores_bnlf, codes_blf, top_k: int):
    """Per example, language and layer:
    top_counts [B, N, L, 4]: how many of the layer's top_k neurons (by score) fall in each category;
    sum / max / min / mean [B, N, L, 4] of the score over each category's neurons (max/min NaN when empty);
    positive [B, N, 4]: the positive score summed over all layers per category (shares of the positive total).
    """
    return _statistics(scores_bnlf.astype(jnp.float32), codes_blf, top_k)


def _stats_impl(scores_bnlf, codes_blf, top_k):
    onehot = category_masks(codes_blf)[:, None]  # [B, 1, L, F, 4]
    _, top_idx = jax.lax.top_k(scores_bnlf, top_k)  # [B, N, L, k]
    top_codes = jnp.take_along_axis(jnp.broadcast_to(codes_blf[:, None], scores_bnlf.shape), top_idx, axis=-1)
    top_counts = jax.nn.one_hot(top_codes, NUM_CATEGORIES, dtype=jnp.int32).sum(-2)
    s = scores_bnlf[..., None]
    members = onehot > 0
    total = (s * onehot).sum(-2)
    count = onehot.sum(-2)
    biggest = jnp.where(members, s, -jnp.inf).max(-2)
    smallest = jnp.where(members, s, jnp.inf).min(-2)
    empty = count == 0
    positive = (jnp.maximum(s, 0) * onehot).sum((-2, -3))
    return {"top_counts": top_counts, "sum": total, "max": jnp.where(empty, jnp.nan, biggest),
            "min": jnp.where(empty, jnp.nan, smallest), "mean": jnp.where(empty, jnp.nan, total / jnp.maximum(count, 1)),
            "positive": positive}


_statistics = jax.jit(_stats_impl, static_argnames=("top_k",))


@functools.partial(jax.jit, static_argnames=("top_k",))
def top_mask(scores_xf, top_k: int) -> jax.Array:
    """bool [..., F]: the top_k neurons by score (the same `lax.top_k` choice as the category counts)."""
    width = scores_xf.shape[-1]
    _, top_idx = jax.lax.top_k(scores_xf.astype(jnp.float32).reshape(-1, width), top_k)
    mark = jax.vmap(lambda idx: jnp.zeros(width, bool).at[idx].set(True))
    return mark(top_idx).reshape(scores_xf.shape)
