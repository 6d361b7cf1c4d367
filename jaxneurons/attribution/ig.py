"""Integrated gradients on FFN neurons (Knowledge Neurons, Dai et al. 2022), made fast by what it computes.

Target: P(target token | prompt) at the last position. For each layer l separately, that layer's
down-projection input m at the last position is scaled by alpha (baseline zero), the other layers computed
normally: IG(l, j) = m_j * sum_k w_k dP/dm_j (alpha_k m) = sum_k w_k dP/ds_j at s = alpha_k (m -> s * m).

Scaling m at the last position of layer l changes nothing at earlier positions (attention is causal) and
nothing below layer l. So the prompt runs once, keeping every layer's keys/values and the last token's
residual stream; then each (layer, alpha) replays only the last token through layers l..L-1 against that
cache, batched over alphas, target layers and examples (`lax.map` in chunks bounds the memory). The test
suite checks this equals the naive recomputation (full forward and backward of the whole prompt for every
layer and alpha).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.lm import LanguageModel, pad_rows, sown_values
from jaxneurons.models.decoder import Decoder, Intervention, Record

RULES = ("left", "trapezoid", "gauss_legendre")


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes alpha_k in [0, 1] and weights w_k of the path integral from the zero baseline."""
    if rule == "left":  # the Knowledge-Neurons recipe: alpha_k = k / n, k = 0..n-1
        return np.arange(steps) / steps, np.full(steps, 1.0 / steps)
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
        return alphas, weights
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    raise ValueError(f"unknown integration rule {rule!r}; choose from {RULES}")


@dataclasses.dataclass
class IGResult:
    """attributions [B, L, F] (layers not asked for are 0); target_prob [B] = P(x);
    zeroed_prob [B, L] = P with that layer's m zeroed at the last position, NaN for layers not asked
    (completeness: attributions[:, l].sum(-1) ~ target_prob - zeroed_prob[:, l]); neurons [B, L, F] = m."""

    attributions: np.ndarray
    target_prob: np.ndarray
    zeroed_prob: np.ndarray
    neurons: np.ndarray
    layers: tuple[int, ...]


def integrated_gradients(lm: LanguageModel, input_ids, target_ids, attention_mask=None, steps: int = 20,
                         layers=None, rule: str = "left", chunk_size: int | None = None,
                         memory_gb: float = 2.0) -> IGResult:
    """IG of every neuron of the chosen layers (all when None) toward target_ids [B] at the last token.

    chunk_size bounds memory: that many (layer, alpha) replays of all B rows run at once. None: as many
    as fit in about memory_gb of activations (the replay's logits, [chunk, B, vocab], dominate).
    """
    ids, mask = left_padded(np.asarray(input_ids), attention_mask)
    chunk_size = chunk_size or auto_chunk_size(lm.config, len(ids), memory_gb)
    layers = tuple(range(lm.config.num_layers)) if layers is None else tuple(int(l) for l in layers)
    if any(not 0 <= l < lm.config.num_layers for l in layers):
        raise ValueError(f"layers must lie in 0..{lm.config.num_layers - 1}, got {layers}")
    alphas, weights = quadrature(rule, steps)
    layer_idx = np.repeat(np.asarray(layers, np.int32), len(alphas))
    alpha = np.tile(alphas.astype(np.float32), len(layers))
    decoders = (Decoder(lm.config, lm.compute_dtype, lm.param_dtype, Record(("ffn_hidden",), "last", True), "last"),
                Decoder(lm.config, lm.compute_dtype, lm.param_dtype, Record(), "last"))
    grads, zeroed_asked, m, clean = _ig(decoders, lm.params, jnp.asarray(ids), jnp.asarray(mask),
                                        jnp.asarray(target_ids, jnp.int32), jnp.asarray(layer_idx),
                                        jnp.asarray(alpha), jnp.asarray(layers, jnp.int32), chunk_size)
    per_layer = np.asarray(grads, np.float64).reshape(len(layers), len(alphas), *grads.shape[1:])
    attributions = np.zeros(m.shape, np.float32)  # [L, B, F]
    attributions[list(layers)] = np.einsum("lkbf,k->lbf", per_layer, weights)
    zeroed = np.full((len(ids), lm.config.num_layers), np.nan, np.float32)
    zeroed[:, list(layers)] = np.asarray(zeroed_asked).T
    return IGResult(np.moveaxis(attributions, 0, 1), np.asarray(clean), zeroed,
                    np.moveaxis(np.asarray(m, np.float32), 0, 1), layers)


def auto_chunk_size(config, rows: int, memory_gb: float = 2.0) -> int:
    """(layer, alpha) replays per chunk so that their float32 buffers stay within about memory_gb:
    per replay and row, logits and their softmax and gradient (3 x vocab) plus the per-layer activations
    kept for the backward pass."""
    per_item = rows * 4 * (3 * config.vocab_size + config.num_layers * (4 * config.intermediate_size
                                                                          + 8 * config.hidden_size))
    return max(1, int(memory_gb * 2**30 // per_item))


def left_padded(ids: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
    """The same rows, left-padded: every prompt's last token then sits at the last index."""
    ids = ids[None] if ids.ndim == 1 else ids
    mask = np.ones_like(ids) if mask is None else np.asarray(mask).reshape(ids.shape)
    return pad_rows([row[m.astype(bool)] for row, m in zip(ids, mask)], 0, "left", length=ids.shape[1])


@functools.partial(jax.jit, static_argnames=("decoders", "chunk_size"))
def _ig(decoders, params, ids, mask, targets, layer_idx, alpha, layers, chunk_size):
    full, replay = decoders
    logits, state = full.apply({"params": params}, ids, mask, mutable=["intermediates"])
    cache = sown_values(state)
    clean = _prob(logits, targets)
    num_layers, batch, width = cache["ffn_hidden"].shape
    base = {"prefix_k": cache["keys"][:, :, :-1], "prefix_v": cache["values"][:, :, :-1],
            "mid": cache["mid"], "out": cache["out"]}
    where = jnp.ones((batch, 1), bool)

    def prob_at(scale_bf, layer):
        stage = jnp.sign(jnp.arange(num_layers) - layer)
        scale = jnp.ones((num_layers, batch, width), jnp.float32).at[layer].set(scale_bf)
        change = Intervention(scale, jnp.zeros_like(scale), where)
        out = replay.apply({"params": params}, ids[:, -1:], mask, None, change, None, {**base, "stage": stage})
        p = _prob(out, targets)
        return p.sum(), p

    grad_fn = jax.grad(prob_at, has_aux=True)

    def one(item):
        layer, a = item
        return grad_fn(jnp.full((batch, width), a, jnp.float32), layer)[0]

    grads = jax.lax.map(one, (layer_idx, alpha), batch_size=chunk_size)
    zeroed = jax.lax.map(lambda layer: prob_at(jnp.zeros((batch, width), jnp.float32), layer)[1],
                         layers, batch_size=chunk_size)
    return grads, zeroed, cache["ffn_hidden"], clean


def _prob(logits_bv, targets_b):
    return jnp.take_along_axis(jax.nn.softmax(logits_bv.astype(jnp.float32), -1), targets_b[:, None], 1)[:, 0]
