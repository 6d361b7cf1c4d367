"""Stateless building blocks of the decoder: norms, activations, rotary and ALiBi positions, attention masks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models.config import ModelConfig, RopeConfig

NEG_INF = -1e30  # finite, so that fully masked rows (padding queries) give no NaN, even under jax.grad


def activation(name: str, x: jax.Array) -> jax.Array:
    if name == "silu":
        return jax.nn.silu(x)
    if name == "gelu_tanh":
        return jax.nn.gelu(x, approximate=True)
    if name == "gelu":
        return jax.nn.gelu(x, approximate=False)
    raise ValueError(f"unknown activation {name!r}")


def softcap(x: jax.Array, cap: float | None) -> jax.Array:
    """tanh(x / cap) * cap (Gemma 2's soft cap of attention scores), or x when cap is None."""
    return x if cap is None else jnp.tanh(x / cap) * cap


def normalize(kind: str, x: jax.Array, scale: jax.Array, bias: jax.Array | None, eps: float,
              inv_rms: jax.Array | None = None) -> jax.Array:
    """RMSNorm (w * x), Gemma's RMSNorm ((1 + w) * x) or LayerNorm, computed in float32 like transformers.

    inv_rms: for the RMS kinds, a given 1/RMS factor (broadcast against x[..., :1]) instead of x's own, which
    makes the norm linear in x (integrated gradients hold it at its clean value)."""
    x32 = x.astype(jnp.float32)
    if kind in ("layer", "layer_nobias"):  # layer_nobias: Cohere's LayerNorm (mean subtracted, no bias)
        if inv_rms is not None:
            raise ValueError("inv_rms applies to RMS norms only, not LayerNorm")
        mean = x32.mean(-1, keepdims=True)
        var = jnp.square(x32 - mean).mean(-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + eps) * scale.astype(jnp.float32)
        return (y if bias is None else y + bias.astype(jnp.float32)).astype(x.dtype)
    if inv_rms is None:
        inv_rms = jax.lax.rsqrt(jnp.square(x32).mean(-1, keepdims=True) + eps)
    y = x32 * inv_rms.astype(jnp.float32)
    if kind == "rms_offset":
        return (y * (1.0 + scale.astype(jnp.float32))).astype(x.dtype)
    return y.astype(x.dtype) * scale.astype(x.dtype)


def rope_frequencies(rope: RopeConfig, head_dim: int) -> np.ndarray:
    """Inverse frequencies [head_dim/2], with linear or llama3 scaling."""
    inv_freq = 1.0 / (rope.theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    if rope.rope_type == "linear":
        return inv_freq / rope.param("factor")
    if rope.rope_type == "llama3":
        factor, low, high = rope.param("factor"), rope.param("low_freq_factor"), rope.param("high_freq_factor")
        old_len = rope.param("original_max_position_embeddings")
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > old_len / low, inv_freq / factor, inv_freq)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return np.where(medium, smoothed, scaled)
    return inv_freq


def rope_tables(rope: RopeConfig, head_dim: int, positions_bt: jax.Array, interleaved: bool = False
                ) -> tuple[jax.Array, jax.Array]:
    """cos and sin [B, T, R] in float32 over the R = int(head_dim * partial_rotary_factor) rotated dims, in
    transformers' rotate-half layout (frequencies concatenated) or interleaved (each repeated twice, Cohere)."""
    rotary_dim = int(head_dim * rope.partial_rotary_factor)
    inv_freq = jnp.asarray(rope_frequencies(rope, rotary_dim), jnp.float32)
    angles = positions_bt.astype(jnp.float32)[..., None] * inv_freq
    angles = jnp.repeat(angles, 2, axis=-1) if interleaved else jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def no_rope_tables(head_dim: int, positions_bt: jax.Array) -> tuple[jax.Array, jax.Array]:
    """cos = 1, sin = 0: `apply_rope` then returns x exactly (layers without positional embedding, Cohere 2)."""
    shape = (*positions_bt.shape, head_dim)
    return jnp.ones(shape, jnp.float32), jnp.zeros(shape, jnp.float32)


def apply_rope(x_bthd: jax.Array, cos_btr: jax.Array, sin_btr: jax.Array, interleaved: bool = False) -> jax.Array:
    """x rotated on its first R = cos.shape[-1] dims (the rest passes unchanged); rotate-half pairs dims
    (i, i + R/2), interleaved pairs (2i, 2i + 1)."""
    rotary_dim = cos_btr.shape[-1]
    x, rest = x_bthd[..., :rotary_dim], x_bthd[..., rotary_dim:]
    if interleaved:
        rotated = jnp.stack([-x[..., 1::2], x[..., ::2]], axis=-1).reshape(x.shape)
    else:
        half = rotary_dim // 2
        rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos_btr[:, :, None].astype(x.dtype), sin_btr[:, :, None].astype(x.dtype)
    out = x * cos + rotated * sin
    return out if rest.shape[-1] == 0 else jnp.concatenate([out, rest], axis=-1)


def alibi_slopes(num_heads: int) -> np.ndarray:
    """BLOOM's per-head ALiBi slopes (geometric, with interleaved extras when heads is not a power of 2)."""
    closest = 2 ** math.floor(math.log2(num_heads))
    base = 2 ** (-(2 ** -(math.log2(closest) - 3)))
    slopes = base ** np.arange(1, 1 + closest)
    if closest != num_heads:
        extra_base = 2 ** (-(2 ** -(math.log2(2 * closest) - 3)))
        remaining = min(closest, num_heads - closest)
        slopes = np.concatenate([slopes, extra_base ** np.arange(1, 1 + 2 * remaining, 2)])
    return slopes.astype(np.float32)


def alibi_bias(num_heads: int, positions_bs: jax.Array) -> jax.Array:
    """ALiBi bias [B, H, 1, S] over key positions (softmax is shift-invariant, so only key positions matter)."""
    slopes = jnp.asarray(alibi_slopes(num_heads))
    return slopes[None, :, None, None] * positions_bs.astype(jnp.float32)[:, None, None, :]


def attention_masks(config: ModelConfig, segments_bs: jax.Array, length: int) -> tuple[jax.Array, jax.Array]:
    """Boolean masks [B, 1, 1, T, S] for global and sliding-window layers: causal, padding keys hidden, and a
    query sees only keys of its own sequence when several are packed into one row (see `positions_from_mask`)."""
    q = jnp.arange(length)[:, None]
    k = jnp.arange(segments_bs.shape[1])[None, :] - (segments_bs.shape[1] - length)
    keys = segments_bs[:, None, :]
    same = (keys == segments_bs[:, -length:, None]) & (keys != 0)  # [B, T, S]
    causal = (k <= q)[None, None, None] & same[:, None, None]
    if config.sliding_window is None:
        return causal, causal
    return causal, causal & ((q - k) < config.sliding_window)[None, None, None]


def positions_from_mask(segments_bt: jax.Array) -> jax.Array:
    """Position of each token within its sequence, counted over real tokens only (left padding changes nothing).

    segments_bt is an attention mask (0 = padding, 1 = token), or segment ids when several sequences are
    packed one after another into a row: 1, 1, 1, 2, 2, 0, 0 holds a 3-token and a 2-token sequence; each
    sequence's positions restart at 0.
    """
    real = segments_bt != 0
    count = jnp.cumsum(real.astype(jnp.int32), axis=1)
    seen = jax.lax.cummax(jnp.where(real, segments_bt, 0).astype(jnp.int32), axis=1)
    previous = jnp.pad(seen[:, :-1], ((0, 0), (1, 0)))
    starts = real & (segments_bt != previous)
    before = jax.lax.cummax(jnp.where(starts, count - 1, 0), axis=1)  # real tokens of earlier sequences
    return jnp.maximum(count - 1 - before, 0)


def last_token_index(mask_bt: jax.Array) -> jax.Array:
    """Index of each row's last real token, for left or right padding."""
    length = mask_bt.shape[1]
    return length - 1 - jnp.argmax((mask_bt[:, ::-1] != 0).astype(jnp.int32), axis=1)
