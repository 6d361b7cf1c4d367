"""The decoder shared by every family (Linen): layers under `nn.scan`, every recorded quantity through `sow`.

What each layer can record (by name, see `NAMES`; `jaxneurons.models.output` states the public layout):
  resid_pre  : the residual stream entering the layer;
  attn_out   : what attention adds to it (after Gemma 3's post-attention norm), resid_mid = resid_pre + attn_out;
  resid_mid  : the residual stream between attention and MLP;
  pre_act    : the gate pre-activation z = W_gate x (gated MLPs), W_in x + b for BLOOM; act = act_fn(z);
  act        : the activation-function output, act(gate(x)) for gated MLPs, GELU(W_in x + b) for BLOOM;
  ffn_hidden : the down-projection input m, act(gate(x)) * up(x) (equal to `act` for BLOOM), after any
               `Intervention`;
  mlp_out    : what the MLP adds to the residual stream (after Gemma 3's post-feedforward norm);
  resid_post : the residual stream leaving the layer, resid_mid + mlp_out;
  In a parallel block (Cohere: `ModelConfig.parallel_block`) attention and MLP both read one norm of
  resid_pre, and resid_mid = resid_pre + attn_out is what the layer outputs before the MLP's share is added:
  the MLP does not read it (patching resid_mid changes resid_post, not the MLP), and a replay's target layer
  restarts from it with the MLP reading the cached layer input.
  router_weights : the weight [E] of each expert in the layer's output: the router's top-k probabilities
               (renormalised when the model does), 0 for the experts it did not pick; [1] of 1 for a dense FFN;
  attn_pattern : the attention probabilities [H, S] of each query token over the key tokens.
The FFN hidden axis (pre_act, act, ffn_hidden) is the "neurons" axis this project studies; in a mixture of
experts it holds every expert's neurons, expert-major (neuron e * F + f), and a neuron of an expert the router
did not pick for a token is 0 there (see `MLP`). Each name is read
at each row's last real token, at every token, or as the max over real tokens ("activated at any token"):
`Record.at` is "last", "every" or "max".
An `Intervention` scales or shifts m at chosen tokens; a `Patch` replaces any recorded quantity (except
the pattern and the router weights) at chosen (layer, row, token) points. Both are ordinary array arguments,
so `jax.grad` flows through them; without them the decoder runs exactly as before.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models import layers as L
from jaxneurons.models.config import ModelConfig

NAMES = ("resid_pre", "attn_out", "resid_mid", "pre_act", "act", "ffn_hidden", "mlp_out", "resid_post",
         "router_weights", "attn_pattern")
PATCHABLE = tuple(name for name in NAMES if name not in ("router_weights", "attn_pattern"))
FFN_NAMES = ("pre_act", "act", "ffn_hidden")  # the quantities with one value per FFN neuron (last axis F)
LOGITS = ("every", "last", "indexed", "hidden", "none")  # which logits a Decoder returns (see Decoder.logits)
RENAMED = {"all": "every", "positions": "indexed"}  # one release: the old names, refused with the new ones
RECORD_AT = ("last", "every", "max")  # where a Record reads: the last real token, every token, max over tokens


@dataclasses.dataclass(frozen=True)
class Record:
    """Which quantities the model records (`NAMES`), where, and in which layers; nothing nobody asked for.

    layers: a subset of layer indices (None: all); replay: also what a last-token replay needs (`Replay`);
    kv: also every token's keys and values in every layer (`KVCache`: a generation's prefill, or its new token).
    top_k: record each FFN quantity (`FFN_NAMES`) as (values, indices) of its k largest neurons per row,
    position and layer instead of all F (`jax.lax.top_k` order, largest first; all F when k > F); the other
    names are recorded whole.
    """

    names: tuple[str, ...] = ()
    at: str = "last"  # last | every | max (RECORD_AT)
    layers: tuple[int, ...] | None = None
    replay: bool = False
    top_k: int | None = None
    kv: bool = False

    def __post_init__(self):
        object.__setattr__(self, "names", tuple(self.names))
        for name in self.names:
            if name not in NAMES:
                raise ValueError(f"unknown recorded quantity {name!r}; choose from {NAMES}")
        if self.at not in RECORD_AT:
            hint = f" ({self.at!r} is now {RENAMED[self.at]!r})" if self.at in RENAMED else ""
            raise ValueError(f"unknown Record.at {self.at!r}{hint}; choose from {RECORD_AT}")
        if self.layers is not None:
            object.__setattr__(self, "layers", tuple(int(l) for l in self.layers))
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise ValueError(f"Record.top_k must be a positive int or None, got {self.top_k!r}")


@flax.struct.dataclass
class Intervention:
    """m <- m * scale + shift at the tokens `where`; scale, shift: [B, L, F]; where: [B, T] bool.

    scale = 1, shift = 0 keeps a neuron; scale = 0 deactivates it; scale = 0, shift = v replaces it by v.
    """

    scale: jax.Array
    shift: jax.Array
    where: jax.Array

    @classmethod
    def identity(cls, config: ModelConfig, where_bt: jax.Array, dtype=jnp.float32) -> "Intervention":
        shape = (where_bt.shape[0], config.num_layers, config.neurons_per_layer)
        return cls(jnp.ones(shape, dtype), jnp.zeros(shape, dtype), where_bt.astype(bool))

    @classmethod
    def on(cls, model, neurons, *, scale=1.0, shift=0.0) -> "Intervention":
        """m <- m * scale + shift at the given neurons, in every row at every token (`where` is [1, 1]).

        model: a LanguageModel or ModelConfig; neurons: {layer: [neuron indices]}, or a list of such maps, one
        per row (scale and shift are then [rows, L, F]); scale, shift: a number, or {layer: values} aligned with
        that layer's indices (e.g. a steering vector over all F neurons: {layer: range(F)} with its values).
        """
        config = getattr(model, "config", model)
        rows = [neurons] if isinstance(neurons, dict) else list(neurons)
        shape = (len(rows), config.num_layers, config.neurons_per_layer)
        scale_rlf, shift_rlf = np.ones(shape, np.float32), np.zeros(shape, np.float32)
        for r, row in enumerate(rows):
            for layer, index in _neuron_sets(config, row).items():
                scale_rlf[r, layer, index] = _values_at(scale, layer, len(index), "scale")
                shift_rlf[r, layer, index] = _values_at(shift, layer, len(index), "shift")
        return cls(jnp.asarray(scale_rlf), jnp.asarray(shift_rlf), jnp.ones((1, 1), bool))

    @classmethod
    def zero(cls, model, neurons) -> "Intervention":
        """The given neurons ({layer: [indices]}, or one map per row) deactivated: m = 0 at every token."""
        return cls.on(model, neurons, scale=0.0)

    @classmethod
    def multiply(cls, model, neurons, factor) -> "Intervention":
        """The given neurons scaled by factor (a number, or {layer: values}) at every token."""
        return cls.on(model, neurons, scale=factor)

    @classmethod
    def add(cls, model, neurons, value) -> "Intervention":
        """value (a number, or {layer: values}) added to the given neurons at every token."""
        return cls.on(model, neurons, shift=value)

    @classmethod
    def set(cls, model, neurons, value) -> "Intervention":
        """The given neurons replaced by value (a number, or {layer: values}) at every token."""
        return cls.on(model, neurons, scale=0.0, shift=value)


def _neuron_sets(config: ModelConfig, neurons: dict) -> dict[int, np.ndarray]:
    """{layer: int indices} of a {layer: [neuron indices]} map, each layer and neuron checked against config."""
    checked = {}
    for layer, index in neurons.items():
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < config.num_layers:
            raise ValueError(f"intervention layer {layer!r} is not a layer of this model (0..{config.num_layers - 1})")
        index = np.asarray(list(index) if not isinstance(index, np.ndarray) else index).astype(np.int64).reshape(-1)
        bad = index[(index < 0) | (index >= config.neurons_per_layer)]
        if bad.size:
            raise ValueError(f"intervention neuron {int(bad[0])} in layer {layer} is out of range: this model has "
                             f"{config.neurons_per_layer} neurons per layer (0..{config.neurons_per_layer - 1})")
        checked[int(layer)] = index
    return checked


def _values_at(value, layer: int, count: int, name: str) -> np.ndarray | float:
    """A number, or the values of `layer` in a {layer: values} map (as many as that layer's indices)."""
    if not isinstance(value, dict):
        return float(value)
    if layer not in value:
        raise ValueError(f"intervention {name}: no values for layer {layer} (give a number, or values for every "
                         "layer of the neuron map)")
    values = np.asarray(value[layer], np.float32).reshape(-1)
    if values.size not in (1, count):
        raise ValueError(f"intervention {name}: layer {layer} has {count} neurons but {values.size} values")
    return values


@flax.struct.dataclass
class Patch:
    """Replace quantity `name` by values[p] at layer[p], row[p], token[p] for each of P points (activation
    patching); values: [P, D] (D: hidden size, or the FFN width for pre_act/act/ffn_hidden). At most one
    point per (layer, row, token). Differentiable in `values`."""

    values: jax.Array
    layer: jax.Array
    row: jax.Array
    token: jax.Array
    name: str = flax.struct.field(pytree_node=False, default="resid_pre")

    @classmethod
    def at(cls, name: str, values_pd, layer, row, token) -> "Patch":
        """A patch with integer layer/row/token broadcast to the P points of values_pd ([D]: one point)."""
        if name not in PATCHABLE:
            raise ValueError(f"cannot patch {name!r}; choose from {PATCHABLE}")
        values = jnp.asarray(values_pd)
        values = values[None] if values.ndim == 1 else values
        index = [jnp.broadcast_to(jnp.asarray(i, jnp.int32), values.shape[:1]) for i in (layer, row, token)]
        return cls(values, *index, name=name)


@flax.struct.dataclass
class Replay:
    """What re-running only the last token of left-padded prompts needs (see attribution.ig), per layer
    replayed (first_layer..L-1 of the decoder, L' of them), cached from a full forward:

    inputs, mid, out: [L', B, H], the last token's residual stream entering each layer, after its attention,
    and after the layer; the replay starts from inputs[0].
    prefix_k, prefix_v: [L', B, T-1, kv_heads, head_dim], keys/values of the earlier tokens.
    stage: [L'], sign(layer - target layer): < 0 keeps the cached output, 0 (the target) restarts from the
    cached mid, > 0 recomputes the layer.
    post_mlp_inv_rms: [L', B, 1], the clean 1/RMS factor of the post-feedforward norm, held at its clean value
    in the target layer (None: computed from the input, as in an ordinary forward).
    Layer-first, unlike public outputs: it is what the layer scan consumes.
    """

    inputs: jax.Array
    mid: jax.Array
    out: jax.Array
    prefix_k: jax.Array
    prefix_v: jax.Array
    stage: jax.Array
    post_mlp_inv_rms: jax.Array | None = None

    def from_layer(self, start: int) -> "Replay":
        """The same cache for layers start..L-1 (a decoder with first_layer=start)."""
        return jax.tree.map(lambda x: x[start:], self)


@flax.struct.dataclass
class KVCache:
    """Every layer's keys and values at `slots` token positions, for decoding new tokens after them.

    keys, values: [L, B, S, kv_heads, head_dim]; mask: [B, S], 1 where a slot holds a real token; length: how
    many slots are in use (the next token's slot). A left-padded prompt fills slots 0..T-1 (its padding with
    mask 0), and each generated token the next slot. Masked slots may sit anywhere (a right-padded prompt's
    tail): a new token's position, and its sliding window, count real tokens, not slots.
    Layer-first, like `Replay`: the layer scan consumes it.
    """

    keys: jax.Array
    values: jax.Array
    mask: jax.Array
    length: jax.Array

    def grow(self, slots: int) -> "KVCache":
        """The same cache with `slots` more empty slots."""
        pad = [(0, 0)] * 2 + [(0, slots)] + [(0, 0)] * 2
        return KVCache(jnp.pad(self.keys, pad), jnp.pad(self.values, pad), jnp.pad(self.mask, ((0, 0), (0, slots))),
                       self.length)

    def append(self, new: "KVCache") -> "KVCache":
        """The cache with one more token (new: the keys and values of a one-token step) in slot `length`."""
        put = functools.partial(jax.lax.dynamic_update_slice_in_dim, start_index=self.length, axis=2)
        mask = jax.lax.dynamic_update_slice_in_dim(self.mask, jnp.ones_like(self.mask[:, :1]), self.length, axis=1)
        return KVCache(put(self.keys, new.keys.astype(self.keys.dtype)),
                       put(self.values, new.values.astype(self.values.dtype)), mask, self.length + 1)


class Norm(nn.Module):
    kind: str
    eps: float
    param_dtype: Any
    per_head: bool = False  # one weight per head: scale [heads, head_dim] for x [..., heads, head_dim] (Cohere)

    @nn.compact
    def __call__(self, x, inv_rms=None):
        """inv_rms: a given 1/RMS factor instead of the input's own (RMS kinds only)."""
        init = nn.initializers.zeros if self.kind == "rms_offset" else nn.initializers.ones
        scale = self.param("scale", init, x.shape[-2:] if self.per_head else x.shape[-1:], self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (x.shape[-1],), self.param_dtype) \
            if self.kind == "layer" else None
        return L.normalize(self.kind, x, scale, bias, self.eps, inv_rms)


def _dense(features, bias, dtype, param_dtype, name):
    return nn.Dense(features, use_bias=bias, dtype=dtype, param_dtype=param_dtype, name=name,
                    kernel_init=nn.initializers.normal(0.02), precision=jax.lax.Precision.HIGHEST)


class Attention(nn.Module):
    config: ModelConfig
    dtype: Any
    param_dtype: Any

    record: Record = Record()

    @nn.compact
    def __call__(self, x_bth, ctx, is_local, prefix_kv=None):
        c = self.config
        b, t, _ = x_bth.shape
        q = _dense(c.num_heads * c.head_dim, c.qkv_bias, self.dtype, self.param_dtype, "q")(x_bth)
        k = _dense(c.num_kv_heads * c.head_dim, c.qkv_bias, self.dtype, self.param_dtype, "k")(x_bth)
        v = _dense(c.num_kv_heads * c.head_dim, c.qkv_bias, self.dtype, self.param_dtype, "v")(x_bth)
        q = q.reshape(b, t, c.num_heads, c.head_dim)
        k = k.reshape(b, t, c.num_kv_heads, c.head_dim)
        v = v.reshape(b, t, c.num_kv_heads, c.head_dim)
        if c.qk_norm:
            q = Norm(c.norm, c.norm_eps, self.param_dtype, c.qk_norm_per_head, name="q_norm")(q)
            k = Norm(c.norm, c.norm_eps, self.param_dtype, c.qk_norm_per_head, name="k_norm")(k)
        if c.position == "rope":
            cos, sin = _select(is_local, ctx["rope_local"], ctx["rope"])
            q, k = L.apply_rope(q, cos, sin, c.rope_interleaved), L.apply_rope(k, cos, sin, c.rope_interleaved)
        if self.record.replay or self.record.kv:
            self.sow("intermediates", "keys", k)
            self.sow("intermediates", "values", v)
        mask = _select(is_local, ctx["mask_local"], ctx["mask"])
        if prefix_kv is None and "attn_pattern" in self.record.names:  # the probabilities are read
            out, probs_bths = attend(c, q, k, v, mask, ctx.get("alibi"))
            self.sow("intermediates", "attn_pattern", _read_at(probs_bths, ctx, self.record.at))
        elif prefix_kv is None:
            out = attend_unrecorded(c, q, k, v, mask, ctx.get("alibi"))
        else:  # new tokens attending over the cached keys/values of the earlier ones (a replay, or decoding)
            out = attend_after_prefix(c, q, k, v, prefix_kv[0].astype(k.dtype), prefix_kv[1].astype(v.dtype), mask,
                                      ctx.get("alibi"))
        return _dense(c.hidden_size, c.out_bias, self.dtype, self.param_dtype, "o")(out.reshape(b, t, -1))


def _select(flag, if_true, if_false):
    return jax.tree.map(lambda a, b: jnp.where(flag, a, b), if_true, if_false)


QUERY_BLOCK = 256  # queries per block of `attend_chunked` off GPU (SmolLM2-135M, 2,048 tokens: BUILD_NOTES)


def attend_unrecorded(c: ModelConfig, q_bthd, k_bskd, v_bskd, mask, alibi_bh1s=None):
    """Attention output [B, T, H, d] (or [B, T, kv, groups, d]) when nobody reads the probabilities: fused on GPU
    (without attention-logit soft-capping: jax.nn.dot_product_attention has no hook for it); elsewhere, where
    XLA's fused attention still forms every score (and more temporaries than `attend`), by query blocks for inputs
    longer than one block."""
    if jax.default_backend() == "gpu" and c.attn_logit_softcap is None:
        return attend_fused(c, q_bthd, k_bskd, v_bskd, mask, alibi_bh1s)
    if q_bthd.shape[1] > QUERY_BLOCK:
        return attend_chunked(c, q_bthd, k_bskd, v_bskd, mask, alibi_bh1s, QUERY_BLOCK)
    return attend(c, q_bthd, k_bskd, v_bskd, mask, alibi_bh1s)[0]


def attend_fused(c: ModelConfig, q_bthd, k_bskd, v_bskd, mask, alibi_bh1s=None):
    """`attend`'s output [B, T, H, d] through `jax.nn.dot_product_attention` (grouped-query heads natively, ALiBi
    as its bias [B, H, 1, S], the boolean mask as is: causal, padding, sliding window, packed rows). Scores and
    softmax in float32; masked scores are a large finite negative, so padding queries give no NaN, even under
    jax.grad. implementation=None: XLA in jax 0.10 (cuDNN is chosen explicitly, bfloat16/float16 only)."""
    with jax.default_matmul_precision("highest"):  # float32 products as exact as `attend`'s (not TF32 on GPU)
        return jax.nn.dot_product_attention(q_bthd, k_bskd, v_bskd, bias=alibi_bh1s, mask=mask[:, :, 0],
                                            scale=c.scale)


def attend_chunked(c: ModelConfig, q_bthd, k_bskd, v_bskd, mask, alibi_bh1s=None, block: int = QUERY_BLOCK):
    """`attend`'s output [B, T, kv, groups, d] one block of `block` queries after another (`lax.map`), each with
    its exact softmax over all keys: scores [B, H, block, S] at a time instead of [B, H, T, S]. Queries are
    padded to a multiple of `block` (the padding sees no key and is dropped)."""
    b, t = q_bthd.shape[:2]
    n = -(-t // block)
    q = jnp.pad(q_bthd, ((0, 0), (0, n * block - t), (0, 0), (0, 0)))
    mask = jnp.broadcast_to(mask, (b, 1, 1, t, k_bskd.shape[1]))
    mask = jnp.pad(mask, ((0, 0),) * 3 + ((0, n * block - t), (0, 0)))
    q_nbthd = q.reshape(b, n, block, *q.shape[2:]).swapaxes(0, 1)
    mask_n = jnp.moveaxis(mask.reshape(b, 1, 1, n, block, -1), 3, 0)
    out = jax.lax.map(lambda qm: attend(c, qm[0], k_bskd, v_bskd, qm[1], alibi_bh1s)[0], (q_nbthd, mask_n))
    return out.swapaxes(0, 1).reshape(b, n * block, *out.shape[3:])[:, :t]


def attend(c: ModelConfig, q_bthd, k_bskd, v_bskd, mask, alibi_bh1s=None):
    """Softmax attention with grouped-query heads, scores and softmax in float32: (output [B, T, kv, groups, d],
    probabilities [B, T, H, S], head h = kv head h // groups as in transformers' repeat_kv).

    Heads go first, and each key/value head's query group is one [groups * T, d] matrix, so both products are
    plain batched matmuls (on the CPU 1.6x faster than the equivalent five-axis einsum).
    """
    b, t, _, d = q_bthd.shape
    kv, groups = c.num_kv_heads, c.num_heads // c.num_kv_heads
    q = q_bthd.reshape(b, t, kv, groups, d).transpose(0, 2, 3, 1, 4).reshape(b, kv, groups * t, d)
    k, v = k_bskd.transpose(0, 2, 3, 1), v_bskd.transpose(0, 2, 1, 3)  # [b, kv, d, s], [b, kv, s, d]
    scores = jnp.matmul(q, k, preferred_element_type=jnp.float32, precision=jax.lax.Precision.HIGHEST)
    scores = scores.reshape(b, kv, groups, t, -1) * c.scale
    scores = L.softcap(scores, c.attn_logit_softcap)
    if alibi_bh1s is not None:
        scores = scores + alibi_bh1s.reshape(b, kv, groups, 1, -1)
    scores = jnp.where(mask, scores, L.NEG_INF)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype).reshape(b, kv, groups * t, -1)
    out = jnp.matmul(probs, v, precision=jax.lax.Precision.HIGHEST)  # [b, kv, groups * t, d]
    probs_bths = probs.reshape(b, kv * groups, t, -1).transpose(0, 2, 1, 3)  # unused (and not computed) unless recorded
    return out.reshape(b, kv, groups, t, d).transpose(0, 3, 1, 2, 4), probs_bths


def attend_after_prefix(c: ModelConfig, q_b1hd, k_b1kd, v_b1kd, prefix_k_bskd, prefix_v_bskd, mask,
                        alibi_bh1s=None):
    """`attend` for T new tokens (one, or several: mask [B, 1, 1, T, S + T] says which keys each sees) over
    cached keys/values and their own, without concatenating them: under `vmap` over integrated-gradients
    replays the cache then stays one shared array, where a concatenation would copy it, and keep it for the
    backward pass, once per replay."""
    b, t, _, d = q_b1hd.shape
    s = prefix_k_bskd.shape[1]
    q = q_b1hd.reshape(b, t, c.num_kv_heads, c.num_heads // c.num_kv_heads, d)
    product = functools.partial(jnp.einsum, preferred_element_type=jnp.float32, precision=jax.lax.Precision.HIGHEST)
    scores = jnp.concatenate([product("btkgd,bskd->bkgts", q, prefix_k_bskd),
                              product("btkgd,bskd->bkgts", q, k_b1kd)], axis=-1) * c.scale
    scores = L.softcap(scores, c.attn_logit_softcap)
    if alibi_bh1s is not None:
        scores = scores + alibi_bh1s.reshape(b, c.num_kv_heads, -1, 1, scores.shape[-1])
    probs = jax.nn.softmax(jnp.where(mask, scores, L.NEG_INF), axis=-1).astype(v_b1kd.dtype)
    cached = jnp.einsum("bkgts,bskd->btkgd", probs[..., :s], prefix_v_bskd, precision=jax.lax.Precision.HIGHEST)
    own = jnp.einsum("bkgts,bskd->btkgd", probs[..., s:], v_b1kd, precision=jax.lax.Precision.HIGHEST)
    return cached + own


class MLP(nn.Module):
    config: ModelConfig
    dtype: Any
    param_dtype: Any
    record: Record

    @nn.compact
    def __call__(self, x_bth, ctx, layer, scale_bf, shift_bf):
        """A mixture of experts computes every expert at every token, as one FFN of width E * F (expert-major
        gate, up and down kernels: E / k times the FLOPs of routed experts, and exact), masked by the routing:
        pre_act and act are 0 where the expert is not picked, and ffn_hidden m = w_e * act * up folds in the
        router weight w_e of the neuron's expert, so that the layer's output is exactly down(m)."""
        c = self.config
        see = functools.partial(_observe, self, ctx=ctx, layer=layer)
        width = c.neurons_per_layer
        picked = weight = None
        if c.num_experts:
            logits = _dense(c.num_experts, False, self.dtype, self.param_dtype, "router")(x_bth)
            picked, weight = (jnp.repeat(x, c.intermediate_size, axis=-1) for x in route(c, see, logits))
        elif "router_weights" in self.record.names:  # a dense FFN: one expert, always picked, of weight 1
            see("router_weights", jnp.ones((*x_bth.shape[:-1], 1), jnp.float32))
        up = _dense(width, c.mlp_bias, self.dtype, self.param_dtype, "up")(x_bth)
        if c.gated_mlp:
            pre = _dense(width, c.mlp_bias, self.dtype, self.param_dtype, "gate")(x_bth)
            pre = see("pre_act", pre if picked is None else jnp.where(picked, pre, 0))
            act = L.activation(c.activation, pre)
            hidden = see("act", act if picked is None else jnp.where(picked, act, 0)) * up
        else:
            hidden = see("act", L.activation(c.activation, see("pre_act", up)))
        if weight is not None:
            hidden = hidden * weight.astype(hidden.dtype)
        if scale_bf is not None:
            changed = hidden * scale_bf[:, None].astype(hidden.dtype) + shift_bf[:, None].astype(hidden.dtype)
            hidden = jnp.where(ctx["intervene"][..., None], changed, hidden)
        hidden = see("ffn_hidden", hidden)
        return _dense(c.hidden_size, c.mlp_bias, self.dtype, self.param_dtype, "down")(hidden)


def route(c: ModelConfig, see, logits_bte) -> tuple[jax.Array, jax.Array]:
    """(picked [B, T, E] bool, weight [B, T, E] float32) of router logits, as transformers computes them: a
    softmax in float32, its k largest probabilities (renormalised to sum to 1 when norm_topk_prob), 0 for the
    experts not picked. The weights are recorded as "router_weights"."""
    probs = jax.nn.softmax(logits_bte.astype(jnp.float32), axis=-1)
    top, index = jax.lax.top_k(probs, c.experts_per_token)
    if c.norm_topk_prob:
        top = top / top.sum(-1, keepdims=True)
    one_hot = jax.nn.one_hot(index, c.num_experts, dtype=jnp.float32)  # [B, T, k, E]
    weight = see("router_weights", (top[..., None] * one_hot).sum(-2))
    return one_hot.sum(-2) > 0, weight


def _observe(module: nn.Module, name: str, x_bt, ctx, layer):
    """x with the patches of `name` applied at this layer, recorded if the record asks for `name`."""
    for patch in ctx.get("patches", ()):
        if patch.name == name:
            hit = (patch.layer == layer)[:, None]
            current = x_bt[patch.row, patch.token]
            x_bt = x_bt.at[patch.row, patch.token].add(jnp.where(hit, patch.values.astype(x_bt.dtype) - current, 0))
    if name in module.record.names:
        recorded = _read_at(x_bt, ctx, module.record.at)
        if module.record.top_k is not None and name in FFN_NAMES:
            recorded = jax.lax.top_k(recorded, min(module.record.top_k, recorded.shape[-1]))  # (values, indices)
        module.sow("intermediates", name, recorded)
    return x_bt


def _read_at(x_bt, ctx, at):
    """x [B, T, ...] at each row's recorded token ("last"), at every token, or max over real tokens."""
    if at == "last":  # record_index [B], or [B, Q] for rows that pack Q sequences
        index = ctx["record_index"]
        flat = index.reshape(index.shape[0], -1, *([1] * (x_bt.ndim - 2)))
        picked = jnp.take_along_axis(x_bt, flat, axis=1)
        return picked.reshape(*index.shape, *x_bt.shape[2:])
    if at == "max":
        real = ctx["mask_bt"].reshape(*ctx["mask_bt"].shape, *([1] * (x_bt.ndim - 2)))
        return jnp.where(real, x_bt, -jnp.inf).max(axis=1)
    return x_bt


class Block(nn.Module):
    """One decoder layer: pre-norm attention and MLP with residuals (Gemma3 adds post-norms); with
    `parallel_block` both read the one pre-norm of the layer input (Cohere)."""

    config: ModelConfig
    dtype: Any
    param_dtype: Any
    record: Record

    @nn.compact
    def __call__(self, h, xs, ctx):
        c, norm = self.config, (lambda name: Norm(c.norm, c.norm_eps, self.param_dtype, name=name))
        replay: Replay | None = xs.get("replay")
        see = functools.partial(_observe, self, ctx=ctx, layer=xs.get("layer"))
        if self.record.replay:
            self.sow("intermediates", "inputs", _read_at(h, ctx, "last"))
        h = see("resid_pre", h)
        x = norm("attn_norm")(h)
        a = Attention(c, self.dtype, self.param_dtype, self.record, name="attn")(
            x, ctx, xs["is_local"], xs.get("prefix"))
        if c.sandwich_norms:
            a = norm("post_attn_norm")(a)
        h = h + see("attn_out", a)
        if replay is not None:  # last-token replay: the target layer restarts from its cached attention output
            h = jnp.where(replay.stage == 0, replay.mid.astype(h.dtype)[:, None], h)
        h = see("resid_mid", h)
        m = MLP(c, self.dtype, self.param_dtype, self.record, name="mlp")(
            x if c.parallel_block else norm("mlp_norm")(h), ctx, xs.get("layer"), xs.get("scale"), xs.get("shift"))
        if c.sandwich_norms:
            post = norm("post_mlp_norm")
            if self.record.replay:
                inv_rms = jax.lax.rsqrt(jnp.square(m.astype(jnp.float32)).mean(-1, keepdims=True) + c.norm_eps)
                self.sow("intermediates", "post_mlp_inv_rms", _read_at(inv_rms, ctx, "last"))
            if replay is not None and replay.post_mlp_inv_rms is not None:  # the target's scale held at clean
                m = jnp.where(replay.stage == 0, post(m, replay.post_mlp_inv_rms[:, None]), post(m))
            else:
                m = post(m)
        out = see("resid_post", h + see("mlp_out", m))
        if self.record.replay:
            self.sow("intermediates", "mid", _read_at(h, ctx, "last"))
            self.sow("intermediates", "out", _read_at(out, ctx, "last"))
        if replay is not None:  # layers below the target keep their cached output
            out = jnp.where(replay.stage < 0, replay.out.astype(out.dtype)[:, None], out)
        return out, None


class Head(nn.Module):
    """The unembedding kernel [D, V] of a model with untied embeddings (the parameter `lm_head/kernel`)."""

    vocab_size: int
    param_dtype: Any

    @nn.compact
    def __call__(self, h):
        return self.param("kernel", nn.initializers.normal(0.02), (h.shape[-1], self.vocab_size), self.param_dtype)


def unembedding(config: ModelConfig, params) -> jax.Array:
    """[D, V]: the matrix `unembed` multiplies final hidden states by (the embedding when tied)."""
    return params["embed"]["embedding"].T if config.tie_embeddings else params["lm_head"]["kernel"]


def unembed(config: ModelConfig, h, weight_dv, dtype=jnp.float32) -> jax.Array:
    """Float32 logits [..., V] of final-normed hidden states h [..., D] (Cohere's logit_scale and Gemma's final
    soft cap applied); a bfloat16 `dtype` multiplies in bfloat16 but accumulates and returns float32."""
    logits = jnp.matmul(h.astype(dtype), weight_dv.astype(dtype), precision=jax.lax.Precision.HIGHEST,
                        preferred_element_type=jnp.float32)
    if config.logit_scale != 1.0:
        logits = logits * config.logit_scale
    if config.final_logit_softcap:
        logits = jnp.tanh(logits / config.final_logit_softcap) * config.final_logit_softcap
    return logits


class Decoder(nn.Module):
    """Token ids -> logits (every token, the last real token, chosen tokens, or none) for any supported family."""

    config: ModelConfig
    dtype: Any = jnp.float32  # compute dtype of activations
    param_dtype: Any = jnp.float32
    record: Record = Record()
    logits: str = "every"  # every | last | indexed (at logit_index) | hidden (final-normed, at logit_index) | none
    first_layer: int = 0  # replays only: run layers first_layer..L-1, with params["layers"] sliced to them

    @nn.compact
    def __call__(self, input_ids_bt, mask_bt, *, record_index=None, intervention: Intervention | None = None,
                 patches: tuple[Patch, ...] = (), logit_index=None, replay: Replay | None = None,
                 cache: KVCache | None = None):
        """mask_bt: 1 for tokens, 0 for padding, or segment ids 1, 2, ... for rows that pack several sequences
        one after another (each attends only to itself, its positions restart at 0); then record_index is
        [B, Q], one recorded token per packed sequence, and Record.at "max" is not available.
        logit_index [B, J]: the tokens where logits="indexed" (or "hidden") reads.
        replay: re-run only the last token of left-padded prompts from a cache (see `Replay`), through layers
        first_layer..L-1, with input_ids_bt [B, 1] the last token and mask_bt the full [B, T] mask; the
        intervention's scale and shift then cover those layers only. Run it through
        `jaxneurons.models.output.forward`, which returns its recordings in the public layout.
        cache: decode new tokens (input_ids_bt [B, T'], mask_bt [B, T'] 1 for the real ones) against the keys
        and values of the earlier ones (`KVCache`): each attends over the cache's real slots and the real new
        tokens up to itself; the intervention's `where` is then [B, T'] (or [1, 1]), record_index and
        logit_index count new tokens. One new token a step generates; several run a prompt's last token and
        an answer after a cached prompt (the deactivation pass)."""
        c = self.config
        if self.logits not in LOGITS:
            hint = f" ({self.logits!r} is now {RENAMED[self.logits]!r})" if self.logits in RENAMED else ""
            raise ValueError(f"unknown Decoder.logits {self.logits!r}{hint}; choose from {LOGITS}")
        if self.first_layer and replay is None:
            raise ValueError("first_layer > 0 needs a replay (the residual stream entering that layer)")
        if patches and (replay is not None or cache is not None):
            raise ValueError("patches apply to full forwards, not to last-token replays or decoding steps")
        embed = nn.Embed(c.vocab_size, c.hidden_size, dtype=self.dtype, param_dtype=self.param_dtype,
                         embedding_init=nn.initializers.normal(0.02), name="embed")
        if replay is None:
            h = embed(input_ids_bt)
            if c.embedding_multiplier != 1.0:
                h = h * jnp.asarray(c.embedding_multiplier, self.param_dtype).astype(self.dtype)
            if c.embedding_norm:
                h = Norm(c.norm, c.norm_eps, self.param_dtype, name="embed_norm")(h)
        else:
            h = replay.inputs[0].astype(self.dtype)[:, None]
        if cache is None:
            ctx = self._context(mask_bt, record_index, intervention, input_ids_bt.shape[1])
        else:
            ctx = self._decode_context(cache, mask_bt, record_index, intervention)
        xs = {"is_local": jnp.asarray(c.is_local()[self.first_layer:])}
        if replay is not None:
            xs.update(replay=replay, prefix=(replay.prefix_k, replay.prefix_v))
        if cache is not None:
            xs["prefix"] = (cache.keys, cache.values)
        if intervention is not None:  # public [B, L, F], scanned over layers
            xs.update(scale=jnp.moveaxis(intervention.scale, 1, 0), shift=jnp.moveaxis(intervention.shift, 1, 0))
        if patches:
            ctx["patches"] = tuple(patches)
            xs["layer"] = jnp.arange(self.first_layer, c.num_layers)
        layers = nn.scan(Block, variable_axes={"params": 0, "intermediates": 0}, split_rngs={"params": True},
                         in_axes=(0, nn.broadcast), length=c.num_layers - self.first_layer)
        h, _ = layers(c, self.dtype, self.param_dtype, self.record, name="layers")(h, xs, ctx)
        if self.logits == "none":
            return None
        if self.logits == "last":
            h = jnp.take_along_axis(h, ctx["record_index"][:, None, None], axis=1)
        elif self.logits in ("indexed", "hidden"):  # only where the caller reads them: never [B, T, V] for long T
            h = jnp.take_along_axis(h, logit_index[..., None], axis=1)
        h = Norm(c.norm, c.norm_eps, self.param_dtype, name="final_norm")(h)
        if self.logits == "hidden":  # the caller unembeds (e.g. `pipeline.scoring.token_scores`, in chunks)
            return h
        weight = embed.embedding.T if c.tie_embeddings else Head(c.vocab_size, self.param_dtype, name="lm_head")(h)
        logits = unembed(c, h, weight, self.dtype)
        return logits[:, 0] if self.logits == "last" else logits

    def _context(self, mask_bt, record_index_b, intervention, query_len):
        """Masks and positions; queries are the last `query_len` tokens (all of them, or one when replaying)."""
        c = self.config
        positions = L.positions_from_mask(mask_bt)
        mask, mask_local = L.attention_masks(c, mask_bt, query_len)
        query_mask = mask_bt[:, -query_len:]
        ctx = {"mask": mask, "mask_local": mask_local, "mask_bt": query_mask.astype(bool),
               "record_index": L.last_token_index(query_mask) if record_index_b is None else record_index_b}
        return self._with_positions(ctx, positions, query_len, intervention)

    def _decode_context(self, cache: KVCache, new_bt, record_index_b, intervention):
        """Masks and positions of T' new tokens after the cache's slots (new_bt [B, T']: 1 for real ones): each
        sees the cache's real slots and the real new tokens up to itself, within the sliding window on local
        layers; positions, and so window distances, count the real tokens before a token, not slots."""
        c = self.config
        filled, new = cache.mask != 0, new_bt != 0
        b, t = new.shape
        causal = jnp.arange(t)[:, None] >= jnp.arange(t)[None, :]
        sees = jnp.concatenate([jnp.broadcast_to(filled[:, None], (b, t, filled.shape[1])),
                                causal[None] & new[:, None]], axis=-1)  # [B, T', S + T']
        positions = L.positions_from_mask(jnp.concatenate([filled, new], axis=1).astype(jnp.int32))
        mask = mask_local = sees[:, None, None]
        if c.sliding_window is not None:
            near = (positions[:, -t:, None] - positions[:, None, :]) < c.sliding_window
            mask_local = (sees & near)[:, None, None]
        ctx = {"mask": mask, "mask_local": mask_local, "mask_bt": new,
               "record_index": L.last_token_index(new) if record_index_b is None else record_index_b}
        return self._with_positions(ctx, positions, t, intervention)

    def _with_positions(self, ctx: dict, positions_bs, query_len: int, intervention) -> dict:
        """ctx with the queries' rotary tables (the last query_len of the key positions) or the keys' ALiBi
        bias, and the intervention's tokens."""
        c = self.config
        if c.position == "rope":
            queries = positions_bs[:, -query_len:]
            ctx["rope"] = L.rope_tables(c.rope, c.head_dim, queries, c.rope_interleaved) if c.global_rope \
                else L.no_rope_tables(c.head_dim, queries)
            ctx["rope_local"] = L.rope_tables(c.local_rope or c.rope, c.head_dim, queries, c.rope_interleaved)
        else:
            ctx["alibi"] = L.alibi_bias(c.num_heads, positions_bs)
        if intervention is not None:
            ctx["intervene"] = intervention.where
        return ctx
