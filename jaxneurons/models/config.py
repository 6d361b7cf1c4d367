"""One configuration for every decoder family: each family's differences are stated once, here.

`from_hf_config` reads a transformers `config.json` dict and refuses, by name, any attribute that would make
the port compute a different model than the original (Penzai's rule: fail loudly, never approximate).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma3", "bloom")


class UnsupportedConfigError(ValueError):
    """A checkpoint's config asks for something the port does not compute."""


@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding of one layer kind; `scaling` is a sorted tuple of (key, value) pairs (hashable)."""

    theta: float = 10000.0
    rope_type: str = "default"  # default | linear | llama3
    scaling: tuple = ()

    def param(self, key: str) -> float:
        return dict(self.scaling)[key]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only LM. Hashable, so it can be a static argument of jitted functions."""

    family: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int  # neurons per layer: the FFN's "neurons" axis
    num_layers: int
    num_heads: int
    num_kv_heads: int  # < num_heads: grouped-query attention
    head_dim: int
    norm: str = "rms"  # rms: w * x/rms | rms_offset: (1 + w) * x/rms (Gemma) | layer: LayerNorm with bias
    norm_eps: float = 1e-6
    activation: str = "silu"  # silu | gelu_tanh | gelu
    gated_mlp: bool = True  # act(gate(x)) * up(x); False: act(up(x)) (BLOOM)
    qkv_bias: bool = False
    out_bias: bool = False  # bias of the attention output projection
    mlp_bias: bool = False
    qk_norm: bool = False  # RMSNorm over head_dim on q and k (Qwen3, Gemma3)
    sandwich_norms: bool = False  # extra norms after attention and after the MLP (Gemma3)
    embedding_multiplier: float = 1.0  # Gemma: sqrt(hidden_size), cast to the compute dtype
    embedding_norm: bool = False  # LayerNorm right after the embedding (BLOOM)
    position: str = "rope"  # rope | alibi
    rope: RopeConfig = RopeConfig()
    local_rope: RopeConfig | None = None  # rope of sliding-window layers when it differs (Gemma3)
    sliding_window: int | None = None  # a key j is visible from query i when i - j < sliding_window
    local_layers: tuple[bool, ...] = ()  # per layer: True = sliding-window layer; () = none
    attention_scale: float | None = None  # None: 1/sqrt(head_dim)
    final_logit_softcap: float | None = None
    tie_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: Any = None
    pad_token_id: int | None = None

    @property
    def neurons_per_layer(self) -> int:
        return self.intermediate_size

    @property
    def scale(self) -> float:
        return self.attention_scale if self.attention_scale is not None else self.head_dim**-0.5

    def is_local(self) -> tuple[bool, ...]:
        return self.local_layers or (self.sliding_window is not None,) * self.num_layers


# Keys of a config.json that never change what the model computes at inference.
_INERT_KEYS = {
    "architectures", "auto_map", "transformers_version", "torch_dtype", "dtype", "use_cache", "initializer_range",
    "attention_dropout", "hidden_dropout", "dropout", "embd_pdrop", "resid_pdrop", "_name_or_path", "model_type",
    "output_hidden_states", "output_attentions", "return_dict", "chunk_size_feed_forward", "is_encoder_decoder",
    "id2label", "label2id", "problem_type", "tokenizer_class", "max_position_embeddings", "pretraining_tp",
    "initializer_factor", "use_return_dict", "quantization_config", "max_window_layers", "generation_config",
    "bos_token_id", "eos_token_id", "pad_token_id", "name_or_path", "unk_token_id", "sep_token_id",
    "cache_implementation", "_attn_implementation_autoset", "_sliding_window_pattern", "sliding_window_pattern",
    "task_specific_params", "prefix", "seq_length", "tie_word_embeddings", "slow_but_exact", "attn_pdrop",
    "use_bidirectional_attention", "offset_alibi", "skip_bias_add", "skip_bias_add_qkv", "masked_softmax_fusion",
    "n_inner", "head_dim", "rope_theta", "rope_scaling", "rope_parameters", "rope_local_base_freq", "layer_types",
    "sliding_window", "use_sliding_window", "finetuning_task", "mlp_only_layers", "keys_to_ignore_at_inference",
}

_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh",
                "gelu_fast": "gelu_tanh", "gelu": "gelu"}


def _reject_unknown(hf: dict, handled: set[str], family: str) -> None:
    unknown = sorted(k for k in hf if k not in handled and k not in _INERT_KEYS)
    if unknown:
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support these configuration attributes: "
            + ", ".join(f"{k}={hf[k]!r}" for k in unknown)
            + ". Remove them from config.json only if they do not change the model's computation.")


def _require(hf: dict, key: str, supported: Any, family: str) -> None:
    value = hf.get(key, supported)
    if value != supported:
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support the configuration attribute {key}={value!r} "
            f"(only {supported!r}).")


def _activation(hf: dict, key: str, family: str) -> str:
    name = hf.get(key, "silu")
    if name not in _ACTIVATIONS:
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support the configuration attribute {key}={name!r}; "
            f"supported: {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


def _rope(params: dict | None, default_theta: float, family: str) -> RopeConfig:
    params = dict(params or {})
    theta = float(params.pop("rope_theta", default_theta))
    rope_type = params.pop("rope_type", params.pop("type", "default"))
    if rope_type not in ("default", "linear", "llama3"):
        raise UnsupportedConfigError(
            f"jaxneurons' {family} port does not support rope_type={rope_type!r} "
            "(supported: default, linear, llama3).")
    if params.pop("partial_rotary_factor", 1.0) != 1.0:
        raise UnsupportedConfigError(f"jaxneurons' {family} port does not support partial_rotary_factor != 1.")
    if rope_type == "default":
        params = {}
    return RopeConfig(theta=theta, rope_type=rope_type, scaling=tuple(sorted(params.items())))


def _rope_params(hf: dict, kind: str | None = None) -> dict | None:
    """transformers 5 `rope_parameters` (per layer kind for Gemma3), or the 4.x `rope_theta` + `rope_scaling`."""
    if "rope_parameters" in hf and hf["rope_parameters"] is not None:
        params = hf["rope_parameters"]
        if kind is not None and kind in params:
            return params[kind]
        return params if "rope_theta" in params or "rope_type" in params else None
    params = dict(hf.get("rope_scaling") or {})
    if "rope_theta" in hf:
        params["rope_theta"] = hf["rope_theta"]
    return params


def _common(hf: dict, family: str) -> dict:
    heads = hf["num_attention_heads"]
    return dict(
        family=family, vocab_size=hf["vocab_size"], hidden_size=hf["hidden_size"],
        intermediate_size=hf["intermediate_size"], num_layers=hf["num_hidden_layers"], num_heads=heads,
        num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads,
        norm_eps=hf.get("rms_norm_eps", 1e-6), tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        bos_token_id=hf.get("bos_token_id"), eos_token_id=_hashable(hf.get("eos_token_id")),
        pad_token_id=hf.get("pad_token_id"))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


_LLAMA_KEYS = {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
               "num_key_value_heads", "hidden_act", "rms_norm_eps", "attention_bias", "mlp_bias"}


def _llama_like(hf: dict, family: str) -> ModelConfig:
    extra = {"qwen2": set(), "qwen3": set(), "mistral": set(), "llama": set()}[family]
    _reject_unknown(hf, _LLAMA_KEYS | extra, family)
    if family in ("qwen2", "qwen3"):
        _require(hf, "use_sliding_window", False, family)
    for kind in hf.get("layer_types") or ():
        if kind != "full_attention" and family != "mistral":
            raise UnsupportedConfigError(f"jaxneurons' {family} port does not support layer_types={kind!r}.")
    sliding = hf.get("sliding_window") if family == "mistral" else None
    bias = bool(hf.get("attention_bias", family == "qwen2"))
    return ModelConfig(
        **_common(hf, family), activation=_activation(hf, "hidden_act", family),
        qkv_bias=bias, out_bias=bias and family != "qwen2",
        mlp_bias=bool(hf.get("mlp_bias", False)), qk_norm=family == "qwen3",
        rope=_rope(_rope_params(hf), 10000.0, family), sliding_window=sliding)


def _gemma3(hf: dict) -> ModelConfig:
    family = "gemma3"
    _reject_unknown(hf, _LLAMA_KEYS | {"hidden_activation", "query_pre_attn_scalar", "final_logit_softcapping",
                                       "attn_logit_softcapping"}, family)
    _require(hf, "attn_logit_softcapping", None, family)
    _require(hf, "use_bidirectional_attention", False, family)
    n = hf["num_hidden_layers"]
    kinds = hf.get("layer_types") or [
        "full_attention" if (i + 1) % hf.get("sliding_window_pattern", hf.get("_sliding_window_pattern", 6)) == 0
        else "sliding_attention" for i in range(n)]
    global_rope = _rope(_rope_params(hf, "full_attention"), 1_000_000.0, family)
    local_params = _rope_params(hf, "sliding_attention") if "rope_parameters" in hf else {
        "rope_theta": hf.get("rope_local_base_freq", 10000.0)}
    return ModelConfig(
        **_common(hf, family), norm="rms_offset",
        activation=_activation(hf, "hidden_activation", family) if "hidden_activation" in hf
        else _activation(hf, "hidden_act", family),
        qkv_bias=bool(hf.get("attention_bias", False)), out_bias=bool(hf.get("attention_bias", False)),
        qk_norm=True, sandwich_norms=True, embedding_multiplier=math.sqrt(hf["hidden_size"]),
        rope=global_rope, local_rope=_rope(local_params, 10000.0, family),
        sliding_window=hf.get("sliding_window"), local_layers=tuple(k == "sliding_attention" for k in kinds),
        attention_scale=hf.get("query_pre_attn_scalar", hf.get("head_dim", 256)) ** -0.5,
        final_logit_softcap=hf.get("final_logit_softcapping"))


def _bloom(hf: dict) -> ModelConfig:
    family = "bloom"
    hidden = hf.get("hidden_size", hf.get("n_embed"))
    _reject_unknown(hf, {"vocab_size", "hidden_size", "n_embed", "n_layer", "num_hidden_layers", "n_head",
                         "num_attention_heads", "layer_norm_epsilon"}, family)
    _require(hf, "apply_residual_connection_post_layernorm", False, family)
    heads = hf.get("n_head", hf.get("num_attention_heads"))
    return ModelConfig(
        family=family, vocab_size=hf["vocab_size"], hidden_size=hidden, intermediate_size=4 * hidden,
        num_layers=hf.get("n_layer", hf.get("num_hidden_layers")), num_heads=heads, num_kv_heads=heads,
        head_dim=hidden // heads, norm="layer", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
        activation="gelu_tanh", gated_mlp=False, qkv_bias=True, out_bias=True, mlp_bias=True,
        embedding_norm=True, position="alibi", tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
        bos_token_id=hf.get("bos_token_id"), eos_token_id=hf.get("eos_token_id"),
        pad_token_id=hf.get("pad_token_id"))


_INERT_KEYS.add("apply_residual_connection_post_layernorm")


def from_hf_config(hf: dict) -> ModelConfig:
    """ModelConfig of a transformers config.json dict; raises UnsupportedConfigError naming what it cannot do."""
    model_type = hf.get("model_type")
    if model_type in ("llama", "mistral", "qwen2", "qwen3"):
        return _llama_like(hf, model_type)
    if model_type in ("gemma3_text", "gemma3"):
        if "text_config" in hf:
            return _gemma3({**hf["text_config"], "model_type": "gemma3_text"})
        return _gemma3(hf)
    if model_type == "bloom":
        return _bloom(hf)
    raise UnsupportedConfigError(
        f"model_type={model_type!r} is not supported; jaxneurons ports: llama (incl. SmolLM2), mistral, qwen2, "
        "qwen3, gemma3 (text), bloom.")
