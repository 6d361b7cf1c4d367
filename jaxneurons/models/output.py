"""The model boundary: `forward` runs a `Decoder` (the only `.apply` in the project) and returns an `Output`;
`param_shapes` is the only `.init`.

Axis legend of every public array (activations, neuron readouts, interventions, attributions):
  B batch (rows), T tokens, L layers (recorded ones only, in order), F FFN neurons (of every expert, expert-major,
  in a mixture of experts: `ModelConfig.neurons_per_layer`), E experts, D hidden size,
  H attention heads, S key tokens, V vocabulary, J tokens read per row (logit_index), Q sequences packed in a
  row, K thresholds (the pipeline's statistics).
Batch first, then the token axis when there is one, then layers, then the quantity's own axes:
  activations at one token per row (Record.at "last" or "max"): [B, L, F] or [B, L, D];
  at every token (Record.at "every"), or at Q packed sequences' recorded tokens: [B, T, L, F] or [B, Q, L, F];
  attn_pattern: [B, T, L, H, S] at every query token, [B, L, H, S] at one; router_weights (mixtures of E experts):
  [B, T, L, E] or [B, L, E].
`Replay` and `KVCache` are the exceptions, layer-first, because the layer scan consumes them.
"""

from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models.config import ModelConfig
from jaxneurons.models.decoder import Decoder, Intervention, KVCache, Patch, Replay

@flax.struct.dataclass
class Output:
    """logits: float32 [B, T, V], [B, V] (logits="last"), [B, J, V] ("indexed" at logit_index), the final-normed
    hidden states [B, J, D] ("hidden", for a caller that unembeds them itself) or None ("none");
    activations: {name: array} in the public layout (module docstring), for an FFN quantity under
    `Record(top_k=k)` a (values, indices) pair with k in place of F; replay: the cache a last-token
    replay needs, when the record asked for it; cache: every token's keys and values (`Record(kv=True)`), in
    slots 0..T-1 of a `KVCache` (mask: the forward's mask, length T)."""

    logits: jax.Array | None
    activations: dict[str, jax.Array]
    replay: Replay | None = None
    cache: KVCache | None = None


@functools.partial(jax.jit, static_argnames=("decoder",))
def forward(decoder: Decoder, params, input_ids, mask, *, record_index=None, intervention: Intervention | None = None,
            patches: tuple[Patch, ...] = (), logit_index=None, replay: Replay | None = None,
            cache: KVCache | None = None) -> Output:
    """One jitted forward of `decoder` with `params` (see `Decoder.__call__` for the arguments)."""
    logits, state = decoder.apply({"params": params}, input_ids, mask, record_index=record_index,
                                  intervention=intervention, patches=patches, logit_index=logit_index,
                                  replay=replay, cache=cache, mutable=["intermediates"])
    sown = _sown(state)  # {name: [L, B, ...]}
    per_token = decoder.record.at == "every" or (record_index is not None and np.ndim(record_index) == 2)
    layers = decoder.record.layers
    if layers is not None and not all(decoder.first_layer <= l < decoder.config.num_layers for l in layers):
        raise ValueError(f"recorded layers {layers} outside {decoder.first_layer}..{decoder.config.num_layers - 1}")
    activations = {}
    for name in decoder.record.names:  # a Record(top_k=...) FFN quantity is a (values, indices) pair
        picked = sown[name] if layers is None else jax.tree.map(
            lambda v: v[np.asarray(layers) - decoder.first_layer], sown[name])
        activations[name] = jax.tree.map(lambda v: jnp.moveaxis(v, 0, 2 if per_token else 1), picked)
    kv = None
    if decoder.record.kv:
        kv = KVCache(sown["keys"], sown["values"], jnp.asarray(mask, jnp.int32), jnp.asarray(mask.shape[1], jnp.int32))
    return Output(logits, activations, _replay(sown) if decoder.record.replay else None, kv)


def _sown(state) -> dict:
    """{name: [L, ...]} of everything the layers sowed (each sow is a one-element tuple)."""
    layers = state.get("intermediates", {}).get("layers", {})
    found = {}
    for scope in (layers, layers.get("attn", {}), layers.get("mlp", {})):
        found.update({name: value[0] for name, value in scope.items() if isinstance(value, tuple)})
    return found


def _replay(sown: dict) -> Replay:
    """The cache of a full forward at each row's last token, for replays of that token (stage 0 everywhere)."""
    return Replay(inputs=sown["inputs"], mid=sown["mid"], out=sown["out"], prefix_k=sown["keys"][:, :, :-1],
                  prefix_v=sown["values"][:, :, :-1], stage=jnp.zeros(sown["inputs"].shape[0], jnp.int32),
                  post_mlp_inv_rms=sown.get("post_mlp_inv_rms"))


def param_shapes(config: ModelConfig) -> dict:
    """The decoder's parameter tree as `jax.ShapeDtypeStruct`s (float32), computed without allocating it."""
    ids = jnp.zeros((1, 1), jnp.int32)
    return jax.eval_shape(lambda: Decoder(config).init(jax.random.key(0), ids, ids))["params"]
