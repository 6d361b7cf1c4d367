"""One configuration for every decoder family: each family's differences are stated once, here.

`from_hf_config` reads a transformers config (through `AutoConfig`, which also normalises the RoPE keys of
every transformers version) and refuses, by name, any attribute that differs from the config class's default
and that the port does not compute (Penzai's rule: fail loudly, never approximate).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "bloom", "gemma2", "phi3", "cohere", "cohere2",
            "mixtral", "qwen3_moe")


class UnsupportedConfigError(ValueError):
    """A checkpoint's config asks for something the port does not compute."""


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding of one layer kind; `scaling` is a sorted tuple of (key, value) pairs (hashable)."""

    theta: float = 10000.0
    rope_type: str = "default"  # default | linear | llama3
    scaling: tuple = ()
    partial_rotary_factor: float = 1.0  # rotary on the first int(head_dim * factor) dims of each head (Phi 3)

    def param(self, key: str) -> float:
        return dict(self.scaling)[key]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only LM. Hashable, so it can be a static argument of jitted functions."""

    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # FFN width: neurons per layer, or per expert in a mixture of experts
    num_layers: int
    num_heads: int
    num_kv_heads: int  # < num_heads: grouped-query attention
    head_dim: int
    norm: str = "rms"  # rms: w * x/rms | rms_offset: (1 + w) * x/rms (Gemma) | layer: LayerNorm with bias
    #                    | layer_nobias: LayerNorm without bias (Cohere)
    norm_eps: float = 1e-6
    activation: str = "silu"  # silu | gelu_tanh | gelu
    gated_mlp: bool = True  # act(gate(x)) * up(x); False: act(up(x)) (BLOOM)
    qkv_bias: bool = False
    out_bias: bool = False  # bias of the attention output projection
    mlp_bias: bool = False
    qk_norm: bool = False  # RMSNorm over head_dim on q and k (Qwen3, Gemma3)
    qk_norm_per_head: bool = False  # the q/k norms have one weight per head, [heads, head_dim] (Cohere)
    parallel_block: bool = False  # attention and MLP both read one norm of resid_pre, out = h + attn + mlp (Cohere)
    sandwich_norms: bool = False  # extra norms after attention and after the MLP (Gemma3)
    embedding_multiplier: float = 1.0  # Gemma: sqrt(hidden_size), cast to the compute dtype
    embedding_norm: bool = False  # LayerNorm right after the embedding (BLOOM)
    position: str = "rope"  # rope | alibi
    rope: RopeConfig = RopeConfig()
    rope_interleaved: bool = False  # rotate pairs (2i, 2i+1) (Cohere) instead of (i, i + d/2) (rotate-half)
    global_rope: bool = True  # False: full-attention layers have no positional embedding (Cohere 2)
    local_rope: RopeConfig | None = None  # rope of sliding-window layers when it differs (Gemma3)
    sliding_window: int | None = None  # a key j is visible from query i when i - j < sliding_window
    local_layers: tuple[bool, ...] = ()  # per layer: True = sliding-window layer; () = none
    attention_scale: float | None = None  # None: 1/sqrt(head_dim)
    final_logit_softcap: float | None = None
    attn_logit_softcap: float | None = None  # scores <- tanh(scores / cap) * cap before the mask (Gemma 2)
    logit_scale: float = 1.0  # multiplies the final logits (Cohere)
    tie_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: Any = None
    pad_token_id: int | None = None
    num_experts: int = 0  # > 0: a mixture-of-experts FFN of num_experts experts of intermediate_size each
    experts_per_token: int = 0  # the router's top-k
    norm_topk_prob: bool = True  # the k picked router probabilities renormalised to sum to 1 (Mixtral)

    @property
    def neurons_per_layer(self) -> int:
        """The "neurons" axis F of a layer: the FFN width, or every expert's, expert-major (e * F + f)."""
        return self.intermediate_size * max(self.num_experts, 1)

    @property
    def scale(self) -> float:
        return self.attention_scale if self.attention_scale is not None else self.head_dim**-0.5

    def is_local(self) -> tuple[bool, ...]:
        return self.local_layers or (self.sliding_window is not None,) * self.num_layers


# Attributes that may differ from a config class's defaults without changing what the model computes.
_INERT = {"architectures", "dtype", "torch_dtype", "transformers_version", "_name_or_path", "use_cache",
          "initializer_range", "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
          "tie_word_embeddings", "attention_dropout", "hidden_dropout", "pretraining_tp", "slow_but_exact",
          "quantization_config", "max_window_layers", "layer_types", "sliding_window", "_sliding_window_pattern",
          "rope_parameters", "head_dim",  # these five are read (or checked) by the families that use them
          "cache_implementation"}  # generation's KV-cache kind (Gemma 2's config.json: "hybrid")
_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
                "gelu_fast": "gelu_tanh", "gelu": "gelu"}
_LLAMA_KEYS = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "hidden_act", "rms_norm_eps", "attention_bias", "mlp_bias", "use_sliding_window"}
_GEMMA3_KEYS = _LLAMA_KEYS | {"hidden_activation", "query_pre_attn_scalar", "final_logit_softcapping",
                              "attn_logit_softcapping", "use_bidirectional_attention"}
_BLOOM_KEYS = {"vocab_size", "hidden_size", "n_layer", "n_head", "layer_norm_epsilon",
               "apply_residual_connection_post_layernorm"}
_SIZES = [("vocab_size",), ("hidden_size",), ("intermediate_size",), ("num_hidden_layers",), ("num_attention_heads",)]
_BLOOM_SIZES = [("vocab_size",), ("hidden_size", "n_embed"), ("n_layer", "num_hidden_layers"),
                ("n_head", "num_attention_heads")]
_MOE_KEYS = {"num_local_experts", "num_experts", "num_experts_per_tok", "norm_topk_prob", "moe_intermediate_size",
             "output_router_logits", "router_aux_loss_coef", "router_jitter_noise"}  # the last three: training only
_FAMILIES = {"llama": "llama", "mistral": "mistral", "qwen2": "qwen2", "qwen3": "qwen3", "gemma3_text": "gemma3",
             "gemma3": "gemma3", "bloom": "bloom", "gemma2": "gemma2", "phi3": "phi3", "cohere": "cohere",
             "cohere2": "cohere2", "mixtral": "mixtral", "qwen3_moe": "qwen3_moe"}
_PHI3_KEYS = _LLAMA_KEYS | {"resid_pdrop", "embd_pdrop",  # dropouts: inert at eval
                            "original_max_position_embeddings",  # read by longrope only, which is refused
                            "auto_map"}  # Microsoft's remote-code classes, which transformers' own Phi3 replaces
_COHERE_KEYS = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "hidden_act", "layer_norm_eps", "attention_bias", "logit_scale", "use_qk_norm",
                "model_max_length"}  # the last: a context-length hint (Command R), inert
# Cohere's own config.json keys, which transformers ignores: accepted at the value transformers hard-codes
_COHERE_FIXED = {"use_parallel_block": True, "rotary_pct": 1.0, "position_embedding_type": "rope_gptj",
                 "use_gated_activation": True, "use_parallel_embedding": False}
_COHERE_KEYS |= set(_COHERE_FIXED) | {"use_embedding_sharing"}


def from_hf_config(hf) -> ModelConfig:
    """ModelConfig of a transformers config (a config.json dict or a PretrainedConfig); raises
    UnsupportedConfigError naming what the port cannot compute."""
    config = _transformers_config(hf)
    family = _FAMILIES[config.model_type]
    handled = {"bloom": _BLOOM_KEYS, "gemma3": _GEMMA3_KEYS, "gemma2": _GEMMA3_KEYS, "phi3": _PHI3_KEYS,
               "cohere": _COHERE_KEYS, "cohere2": _COHERE_KEYS, "mixtral": _LLAMA_KEYS | _MOE_KEYS,
               "qwen3_moe": _LLAMA_KEYS | _MOE_KEYS}
    _reject_changed(config, handled.get(family, _LLAMA_KEYS), family)
    if family == "bloom":
        return _bloom(config)
    if family == "gemma2":
        return _gemma2(config)
    if family in ("phi3", "cohere", "cohere2"):
        return _phi3(config) if family == "phi3" else _cohere(config, family)
    if family in ("mixtral", "qwen3_moe"):
        return _moe(config, family)
    return _gemma3(config) if family == "gemma3" else _llama_like(config, family)


def _transformers_config(hf):
    """The transformers config object (the text config of a multimodal Gemma 3)."""
    import transformers

    if isinstance(hf, dict):
        model_type = hf.get("model_type")
        if model_type not in _FAMILIES:
            raise UnsupportedConfigError(
                f"model_type={model_type!r} is not supported; jaxneurons ports: llama (incl. SmolLM2), mistral, "
                "qwen2, qwen3, gemma3 (text), bloom, gemma2, phi3, cohere (Command R, Aya), cohere2 (Command R7B, "
                "A), mixtral, qwen3_moe.")
        sizes = _BLOOM_SIZES if model_type == "bloom" else _SIZES
        missing = [names[0] for names in sizes if not any(hf.get(n) is not None for n in names)]
        if missing:  # AutoConfig would fill in the class default: a different model
            raise KeyError(missing[0])
        hf = transformers.AutoConfig.for_model(**hf)
    return hf.get_text_config() if hf.model_type == "gemma3" else hf


def _reject_changed(config, handled: set[str], family: str) -> None:
    """Refuse every attribute that differs from the class default and is neither computed nor inert."""
    defaults = type(config)().to_dict()
    changed = {k: v for k, v in config.to_dict().items() if k not in defaults or defaults[k] != v}
    unknown = sorted(k for k in changed if k not in handled and k not in _INERT)
    if unknown:
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support these configuration attributes: "
            + ", ".join(f"{k}={changed[k]!r}" for k in unknown)
            + ". Remove them from config.json only if they do not change the model's computation.")


def _require(config, key: str, supported: Any, family: str) -> None:
    value = getattr(config, key, supported)
    if value != supported:
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support the configuration attribute {key}={value!r} "
            f"(only {supported!r}).")


def _activation(name: str, key: str, family: str) -> str:
    if name not in _ACTIVATIONS:
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support the configuration attribute {key}={name!r}; "
            f"supported: {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


def _rope(params: dict | None, family: str, partial: bool = False) -> RopeConfig:
    params = dict(params or {})
    theta = float(params.pop("rope_theta", 10000.0))
    rope_type = params.pop("rope_type", params.pop("type", "default"))
    if rope_type == "longrope":
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support rope_type='longrope' (Phi-3 128k, Phi-3.5, Phi-4-mini): "
            "transformers switches it to its long factors when the longest sequence of the batch passes "
            "original_max_position_embeddings, so a row's activations would depend on the rows batched with it.")
    if rope_type not in ("default", "linear", "llama3"):
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support rope_type={rope_type!r} "
            "(supported: default, linear, llama3).")
    fraction = float(params.pop("partial_rotary_factor", 1.0))
    if fraction != 1.0 and not partial:
        raise UnsupportedConfigError(f"jaxneurons' {family} port does not support partial_rotary_factor != 1.")
    if rope_type == "default":
        params = {}
    return RopeConfig(theta=theta, rope_type=rope_type, scaling=tuple(sorted(params.items())),
                      partial_rotary_factor=fraction)


def _common(config, family: str) -> dict:
    heads = config.num_attention_heads
    return dict(
        family=family, vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_layers=config.num_hidden_layers, num_heads=heads,
        num_kv_heads=config.num_key_value_heads or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        norm_eps=getattr(config, "rms_norm_eps", None) or config.layer_norm_eps,  # Cohere: layer_norm_eps
        tie_embeddings=bool(config.tie_word_embeddings), **_token_ids(config))


def _token_ids(config) -> dict:
    eos = config.eos_token_id
    return dict(bos_token_id=config.bos_token_id, eos_token_id=tuple(eos) if isinstance(eos, list) else eos,
                pad_token_id=config.pad_token_id)


_LAYER_KINDS = ("full_attention", "sliding_attention")  # transformers' layer_types this port computes


def _llama_like(config, family: str) -> ModelConfig:
    if family != "qwen2":
        _require(config, "use_sliding_window", False, family)
    kinds = _LAYER_KINDS if family == "qwen2" else ("full_attention",)
    for kind in getattr(config, "layer_types", None) or ():
        if kind not in kinds and family != "mistral":  # MistralForCausalLM ignores layer_types: every layer slides
            raise UnsupportedConfigError(f"jaxneurons' {family} port does not support layer_types={kind!r}.")
    bias = bool(getattr(config, "attention_bias", family == "qwen2"))
    return ModelConfig(
        **_common(config, family), activation=_activation(config.hidden_act, "hidden_act", family),
        qkv_bias=bias, out_bias=bias and family != "qwen2", mlp_bias=bool(getattr(config, "mlp_bias", False)),
        qk_norm=family == "qwen3", rope=_rope(config.rope_parameters, family),
        **_windows(config, family))


def _windows(config, family: str) -> dict:
    """Sliding windows: Mistral's slide in every layer; Qwen2's in the layers its layer_types mark as sliding
    (transformers' default with use_sliding_window: layers max_window_layers..L-1), none without it."""
    if family == "mistral":
        return dict(sliding_window=config.sliding_window)
    if family != "qwen2":
        return {}
    local = tuple(kind == "sliding_attention" for kind in config.layer_types)
    if not any(local):
        return {}
    if config.sliding_window is None:  # transformers' sliding-window mask needs one too
        raise UnsupportedConfigError(f"jaxneurons' {family} port needs sliding_window for layer_types "
                                     "'sliding_attention' (set use_sliding_window=True and sliding_window).")
    return dict(sliding_window=config.sliding_window, local_layers=local)


def _moe(config, family: str) -> ModelConfig:
    """Mixtral (renormalised top-k, Mistral attention) or Qwen3-MoE (optional renormalisation, q/k norms): every
    layer a mixture of experts; the neurons of a layer are its experts' FFN neurons, expert-major."""
    # decoder_sparse_step and mlp_only_layers (Qwen3-MoE), which make some layers dense, are refused unless default
    base = _llama_like(config, "mistral" if family == "mixtral" else "qwen3")
    bias = {"qkv_bias": False, "out_bias": False} if family == "mixtral" else {}  # Mixtral has no attention_bias
    return dataclasses.replace(
        base, family=family, num_experts=config.num_local_experts, **bias, experts_per_token=config.num_experts_per_tok,
        intermediate_size=config.intermediate_size if family == "mixtral" else config.moe_intermediate_size,
        norm_topk_prob=True if family == "mixtral" else bool(config.norm_topk_prob))


def _gemma3(config) -> ModelConfig:
    family = "gemma3"
    _require(config, "attn_logit_softcapping", None, family)
    _require(config, "use_bidirectional_attention", False, family)
    rope = config.rope_parameters
    return ModelConfig(
        **_common(config, family), norm="rms_offset",
        activation=_activation(config.hidden_activation, "hidden_activation", family),
        qkv_bias=bool(config.attention_bias), out_bias=bool(config.attention_bias),
        qk_norm=True, sandwich_norms=True, embedding_multiplier=math.sqrt(config.hidden_size),
        rope=_rope(rope["full_attention"], family), local_rope=_rope(rope["sliding_attention"], family),
        sliding_window=config.sliding_window,
        local_layers=tuple(kind == "sliding_attention" for kind in config.layer_types),
        attention_scale=config.query_pre_attn_scalar ** -0.5, final_logit_softcap=config.final_logit_softcapping)


def _gemma2(config) -> ModelConfig:
    family = "gemma2"
    if config.use_bidirectional_attention:
        raise UnsupportedConfigError(f"jaxneurons' {family} port does not support the configuration attribute "
                                     f"use_bidirectional_attention={config.use_bidirectional_attention!r}.")
    for kind in config.layer_types:
        if kind not in _LAYER_KINDS:
            raise UnsupportedConfigError(f"jaxneurons' {family} port does not support layer_types={kind!r}.")
    return ModelConfig(
        **_common(config, family), norm="rms_offset",
        activation=_activation(config.hidden_activation, "hidden_activation", family),
        qkv_bias=bool(config.attention_bias), out_bias=bool(config.attention_bias), sandwich_norms=True,
        embedding_multiplier=math.sqrt(config.hidden_size), rope=_rope(config.rope_parameters, family),
        sliding_window=config.sliding_window,
        local_layers=tuple(kind == "sliding_attention" for kind in config.layer_types),
        attention_scale=config.query_pre_attn_scalar ** -0.5, final_logit_softcap=config.final_logit_softcapping,
        attn_logit_softcap=config.attn_logit_softcapping)


def _bloom(config) -> ModelConfig:
    family = "bloom"
    _require(config, "apply_residual_connection_post_layernorm", False, family)
    hidden, heads = config.hidden_size, config.n_head
    return ModelConfig(
        family=family, vocab_size=config.vocab_size, hidden_size=hidden, intermediate_size=4 * hidden,
        num_layers=config.n_layer, num_heads=heads, num_kv_heads=heads, head_dim=hidden // heads, norm="layer",
        norm_eps=config.layer_norm_epsilon, activation="gelu_tanh", gated_mlp=False, qkv_bias=True,
        out_bias=True, mlp_bias=True, embedding_norm=True, position="alibi",
        tie_embeddings=bool(config.tie_word_embeddings), **_token_ids(config))


def _phi3(config) -> ModelConfig:
    """Phi-3 / Phi-4: llama's computation with fused qkv and gate_up weights (split by the loader), partial
    rotary, and one sliding window on every layer (like mistral) when sliding_window is set."""
    family = "phi3"
    return ModelConfig(
        **_common(config, family), activation=_activation(config.hidden_act, "hidden_act", family),
        rope=_rope(config.rope_parameters, family, partial=True), sliding_window=config.sliding_window)


def _cohere(config, family: str) -> ModelConfig:
    """Command R / Aya (cohere) and Command R7B / A (cohere2): attention and MLP in parallel from one bias-free
    LayerNorm, interleaved rotary, logits times logit_scale; cohere2 adds sliding-window layers, and only those
    have rotary (its full-attention layers have no positional embedding)."""
    cohere2 = family == "cohere2"
    for key, value in {**_COHERE_FIXED, "use_embedding_sharing": bool(config.tie_word_embeddings)}.items():
        _require(config, key, value, family)
    if cohere2:  # Cohere2 has no q/k norms (transformers' Cohere2 ignores use_qk_norm)
        _require(config, "use_qk_norm", False, family)
    bias = bool(config.attention_bias)
    kinds = tuple(kind == "sliding_attention" for kind in config.layer_types) if cohere2 else ()
    qk_norm = not cohere2 and bool(config.use_qk_norm)  # cohere: a LayerNorm per head over head_dim
    return ModelConfig(
        **_common(config, family), norm="layer_nobias",
        activation=_activation(config.hidden_act, "hidden_act", family), qkv_bias=bias, out_bias=bias,
        qk_norm=qk_norm, qk_norm_per_head=qk_norm, parallel_block=True,
        rope=_rope(config.rope_parameters, family), rope_interleaved=True, global_rope=not cohere2,
        sliding_window=config.sliding_window if cohere2 else None, local_layers=kinds,
        logit_scale=float(config.logit_scale))
