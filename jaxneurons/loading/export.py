"""Export a LanguageModel as a Hugging Face checkpoint: config.json + model.safetensors (+ tokenizer files).

The weight names come from the same table that loads them (`convert.TABLES`), read backwards: a parameter
path is matched against each row's path template, and the row's HF-name regex is filled with the matched
pieces. So a name can only be written the way it is read, and `transformers.AutoModelForCausalLM`,
TransformerLens or nnsight open the result as they open any checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil

import jax
import numpy as np

from jaxneurons.loading.convert import FUSED, FUSED_ROWS, TABLES, expert_block
from jaxneurons.models.config import ModelConfig, RopeConfig, UnsupportedConfigError

_HF_ACTIVATIONS = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh", "gelu": "gelu"}
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM", "qwen2": "Qwen2ForCausalLM",
                  "qwen3": "Qwen3ForCausalLM", "gemma3": "Gemma3ForCausalLM", "bloom": "BloomForCausalLM",
                  "phi3": "Phi3ForCausalLM", "cohere": "CohereForCausalLM", "cohere2": "Cohere2ForCausalLM",
                  "mixtral": "MixtralForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM", "gemma2": "Gemma2ForCausalLM"}
_MODEL_TYPES = {"gemma3": "gemma3_text"}
_GEMMA = ("gemma3", "gemma2")  # (1 + w) norms, sandwich norms, sqrt(hidden) embedding multiplier, soft caps


def export_hf(lm, directory: str, dtype: str | None = None, overwrite: bool = False) -> str:
    """Write `directory` (config.json, model.safetensors, tokenizer files when the model has a tokenizer) so that
    `transformers.AutoModelForCausalLM.from_pretrained(directory)` computes the same logits.

    dtype: "float32" / "bfloat16" for the stored tensors (default: the model's weight dtype).
    overwrite: replace an earlier export in `directory` (its files are removed first); without it a non-empty
    folder is refused (FileExistsError), and a non-empty folder that holds no export always is.
    Raises UnsupportedConfigError (before writing anything) when transformers cannot represent the config.
    """
    from safetensors.numpy import save_file

    hf_config = to_hf_config(lm.config)
    tensors = hf_tensors(lm.config, jax.device_get(lm.params))
    if dtype is not None:
        import ml_dtypes  # noqa: F401 - registers bfloat16 with numpy

        tensors = {k: v.astype(dtype) for k, v in tensors.items()}
    hf_config["torch_dtype"] = str(next(iter(tensors.values())).dtype)
    prepare_directory(directory, overwrite)
    save_file(tensors, os.path.join(directory, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
    if lm.tokenizer is not None and hasattr(lm.tokenizer, "save_pretrained"):
        lm.tokenizer.save_pretrained(directory)
    return directory


EXPORT_FILES = ("config.json", "model.safetensors")  # what every export holds


def prepare_directory(directory: str, overwrite: bool) -> None:
    """Make `directory` an empty folder for an export: new, empty, or (with overwrite) an earlier export emptied;
    FileExistsError otherwise, before anything is written."""
    os.makedirs(directory, exist_ok=True)
    entries = sorted(os.listdir(directory))
    if not entries:
        return
    is_export = all(os.path.isfile(os.path.join(directory, name)) for name in EXPORT_FILES)
    if not overwrite:
        listed = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        replace = ", or pass overwrite=True to replace this earlier export" if is_export else ""
        raise FileExistsError(f"{directory} is not empty ({listed}): export into a new or empty folder{replace}")
    if not is_export:
        raise FileExistsError(f"{directory} holds files but no export ({', '.join(EXPORT_FILES)} missing): "
                              "overwrite=True replaces only an earlier export; choose another folder")
    for name in entries:
        target = os.path.join(directory, name)
        shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)


def hf_tensors(config: ModelConfig, params) -> dict[str, np.ndarray]:
    """{HF tensor name: array in PyTorch's layout} for every parameter (per layer for stacked ones)."""
    flat = {"/".join(k.key for k in path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    prefix = "transformer." if config.family == "bloom" else "model."
    out: dict[str, np.ndarray] = {}
    if config.family == "bloom":
        flat, fused = _fuse_bloom_qkv(config, flat)
        out.update({prefix + name: value for name, value in fused.items()})
    if config.family == "phi3":
        flat, fused = _fuse_rows(config, flat)
        out.update({prefix + name: value for name, value in fused.items()})
    for path, value in flat.items():
        for index, name, transposed in _hf_names(config, path):
            piece = value if index is None else value[index]
            full = name if name == "lm_head.weight" else prefix + name
            out[full] = piece.T if transposed else piece
    return {name: np.ascontiguousarray(value) for name, value in out.items()}  # safetensors ignores strides


def _hf_names(config: ModelConfig, path: str):
    """(index into the parameter or None, HF name, stored transposed?) of each HF tensor one parameter path
    holds: the whole parameter, each layer of a stacked one, or each (layer, expert) block of expert kernels."""
    for pattern, template, transform in TABLES[config.family]:
        if transform in FUSED or transform in FUSED_ROWS:
            continue
        pieces = _match_template(template, path, transform)
        if pieces is None:
            continue
        if not template.startswith("layers/"):
            yield None, _fill(pattern, pieces), transform == "T"
        elif transform == "E":
            for layer in range(config.num_layers):
                for expert in range(config.num_experts):
                    index = (layer, *expert_block(config, path, expert))
                    yield index, _fill(pattern, [str(layer), str(expert)] + pieces), True
        else:
            for layer in range(config.num_layers):
                yield layer, _fill(pattern, [str(layer)] + pieces), transform == "T"
        return
    raise UnsupportedConfigError(f"parameter {path!r} has no Hugging Face name in the {config.family} table.")


def _match_template(template: str, path: str, transform: str | None) -> list[str] | None:
    """The pieces ({1}, {2} ... or {0}) that make `template` equal `path`, or None."""
    if transform == "norm":
        path = re.sub(r"/scale$", "/weight", path)
    regex = re.sub(r"\\\{\d\\\}", r"([^/]+)", re.escape(template))
    match = re.fullmatch(regex, path)
    return list(match.groups()) if match else None


def _fill(pattern: str, values: list[str]) -> str:
    """Put values into the capture groups of an HF-name regex, in order, and unescape the rest."""
    parts = re.split(r"\([^)]*\)", pattern)
    if len(parts) != len(values) + 1:
        raise ValueError(f"{pattern!r} has {len(parts) - 1} groups, {len(values)} values given")
    name = parts[0] + "".join(v + p for v, p in zip(values, parts[1:]))
    return name.replace("\\.", ".")


def _fuse_bloom_qkv(config: ModelConfig, flat: dict) -> tuple[dict, dict]:
    """BLOOM's query_key_value interleaves heads ([head, (q, k, v), head_dim] rows); the inverse of the loader's split."""
    heads, dim = config.num_heads, config.head_dim
    rest = {p: v for p, v in flat.items() if not re.fullmatch(r"layers/attn/[qkv]/(kernel|bias)", p)}
    fused = {}
    for layer in range(config.num_layers):
        for leaf, hf_leaf in (("kernel", "weight"), ("bias", "bias")):
            parts = [flat[f"layers/attn/{x}/{leaf}"][layer] for x in "qkv"]
            rows = [p.T if leaf == "kernel" else p for p in parts]  # [heads * dim, ...]
            stacked = np.stack([r.reshape(heads, dim, *r.shape[1:]) for r in rows], axis=1)
            fused[f"h.{layer}.self_attention.query_key_value.{hf_leaf}"] = stacked.reshape(3 * heads * dim,
                                                                                          *rows[0].shape[1:])
    return rest, fused


def _fuse_rows(config: ModelConfig, flat: dict) -> tuple[dict, dict]:
    """Phi 3's qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up] rows): the inverse of the loader's split."""
    fused, used = {}, set()
    for pattern, template, transform in TABLES[config.family]:
        if transform not in FUSED_ROWS:
            continue
        paths = [f"{template}/{part}/kernel" for part in FUSED_ROWS[transform]]
        used.update(paths)
        for layer in range(config.num_layers):
            fused[_fill(pattern, [str(layer)])] = np.concatenate([flat[p][layer].T for p in paths], axis=0)
    return {p: v for p, v in flat.items() if p not in used}, fused


def to_hf_config(config: ModelConfig) -> dict:
    """The transformers config.json of a ModelConfig; raises UnsupportedConfigError for what the family's
    transformers class cannot represent (the inverse of `from_hf_config`)."""
    family = config.family
    if family == "bloom":
        return _bloom_config(config)
    if family in ("cohere", "cohere2"):
        return _cohere_config(config)
    _check_llama_like(config)
    hf = {
        "architectures": [_ARCHITECTURES[family]], "model_type": _MODEL_TYPES.get(family, family),
        "vocab_size": config.vocab_size, "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size, "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads, "num_key_value_heads": config.num_kv_heads,
        "head_dim": config.head_dim, "rms_norm_eps": config.norm_eps,
        "tie_word_embeddings": config.tie_embeddings, "max_position_embeddings": 131072,
        **_token_ids(config),
    }
    activation = "hidden_activation" if family in _GEMMA else "hidden_act"
    hf[activation] = _HF_ACTIVATIONS[config.activation]
    if family not in ("qwen2", "phi3"):
        hf["attention_bias"] = config.qkv_bias
    if family == "llama":
        hf["mlp_bias"] = config.mlp_bias
    if family in ("mistral", "phi3", "mixtral"):
        hf["sliding_window"] = config.sliding_window
    if family == "gemma2":
        hf.update(_gemma2_fields(config))
    if family == "qwen2":
        hf.update(_qwen2_windows(config))
    if config.num_experts:
        hf.update(num_local_experts=config.num_experts, num_experts_per_tok=config.experts_per_token)
    if family == "qwen3_moe":
        hf.update(moe_intermediate_size=config.intermediate_size, norm_topk_prob=config.norm_topk_prob)
    if family == "mixtral":
        del hf["attention_bias"]
    if family == "gemma3":
        hf.update(_gemma3_fields(config))
    else:
        hf["rope_parameters"] = _rope_json(config.rope)
    return hf


def _check_llama_like(config: ModelConfig) -> None:
    family = config.family
    expected = {  # what each transformers class computes and has no attribute to change
        "norm": "rms_offset" if family in _GEMMA else "rms", "gated_mlp": True, "position": "rope",
        "embedding_norm": False, "qk_norm": family in ("qwen3", "gemma3", "qwen3_moe"),
        "sandwich_norms": family in _GEMMA,
        "embedding_multiplier": math.sqrt(config.hidden_size) if family in _GEMMA else 1.0,
        "out_bias": {"qwen2": False}.get(family, config.qkv_bias),
        "qkv_bias": True if family == "qwen2" else config.qkv_bias,
        "mlp_bias": config.mlp_bias if family == "llama" else False,
        "attention_scale": config.attention_scale if family in _GEMMA else None,
        "final_logit_softcap": config.final_logit_softcap if family in _GEMMA else None,
        "attn_logit_softcap": config.attn_logit_softcap if family == "gemma2" else None,
        "sliding_window": config.sliding_window if family in ("mistral", "qwen2", "phi3", "mixtral") + _GEMMA else None,
        "local_layers": () if family in ("mistral", "phi3", "mixtral") else config.local_layers,  # every layer slides
        "local_rope": config.local_rope if family == "gemma3" else None,
        **_NOT_LLAMA_LIKE, "partial": config.rope.partial_rotary_factor if family == "phi3" else 1.0,
        "num_experts": config.num_experts if family in ("mixtral", "qwen3_moe") else 0,
        "norm_topk_prob": config.norm_topk_prob if family == "qwen3_moe" else True,
    }
    if family == "mixtral":
        expected["qkv_bias"] = expected["out_bias"] = False
    if family in ("mixtral", "qwen3_moe") and not 0 < config.experts_per_token <= config.num_experts:
        raise UnsupportedConfigError(f"{family} needs 0 < experts_per_token <= num_experts, got "
                                     f"{config.experts_per_token} of {config.num_experts}")
    wrong = {k: _field(config, k) for k, v in expected.items() if _field(config, k) != v}
    if wrong:
        raise UnsupportedConfigError(f"transformers' {_ARCHITECTURES[family]} cannot represent these ModelConfig "
                                     "fields: " + ", ".join(f"{k}={v!r}" for k, v in wrong.items()))
    if config.activation not in _HF_ACTIVATIONS:
        raise UnsupportedConfigError(f"no transformers name for activation={config.activation!r}")


# ModelConfig fields that only the cohere families change (and the rotary fraction, which only phi3 changes)
_NOT_LLAMA_LIKE = {"parallel_block": False, "logit_scale": 1.0, "rope_interleaved": False, "global_rope": True,
                   "qk_norm_per_head": False}


def _field(config: ModelConfig, key: str):
    return config.rope.partial_rotary_factor if key == "partial" else getattr(config, key)


def _cohere_config(config: ModelConfig) -> dict:
    """CohereForCausalLM / Cohere2ForCausalLM's config.json (Cohere 2 derives head_dim from the sizes)."""
    family, cohere2 = config.family, config.family == "cohere2"
    expected = {"norm": "layer_nobias", "gated_mlp": True, "position": "rope", "embedding_norm": False,
                "embedding_multiplier": 1.0, "sandwich_norms": False, "parallel_block": True,
                "rope_interleaved": True, "global_rope": not cohere2, "out_bias": config.qkv_bias, "mlp_bias": False,
                "qk_norm": False if cohere2 else config.qk_norm, "qk_norm_per_head": config.qk_norm,
                "attention_scale": None, "final_logit_softcap": None, "attn_logit_softcap": None, "local_rope": None,
                "sliding_window": config.sliding_window if cohere2 else None,
                "local_layers": config.local_layers if cohere2 else (),
                "head_dim": config.hidden_size // config.num_heads, "partial": 1.0}
    wrong = {k: _field(config, k) for k, v in expected.items() if _field(config, k) != v}
    if wrong or config.activation not in _HF_ACTIVATIONS:
        wrong = wrong or {"activation": config.activation}
        raise UnsupportedConfigError(f"transformers' {_ARCHITECTURES[family]} cannot represent these ModelConfig "
                                     "fields: " + ", ".join(f"{k}={v!r}" for k, v in wrong.items()))
    hf = {"architectures": [_ARCHITECTURES[family]], "model_type": family, "vocab_size": config.vocab_size,
          "hidden_size": config.hidden_size, "intermediate_size": config.intermediate_size,
          "num_hidden_layers": config.num_layers, "num_attention_heads": config.num_heads,
          "num_key_value_heads": config.num_kv_heads, "hidden_act": _HF_ACTIVATIONS[config.activation],
          "layer_norm_eps": config.norm_eps, "attention_bias": config.qkv_bias, "logit_scale": config.logit_scale,
          "tie_word_embeddings": config.tie_embeddings, "max_position_embeddings": 131072,
          "rope_parameters": _rope_json(config.rope), **_token_ids(config)}
    if cohere2:
        hf.update(sliding_window=config.sliding_window,
                  layer_types=["sliding_attention" if local else "full_attention" for local in config.is_local()])
    else:
        hf["use_qk_norm"] = config.qk_norm
    return hf


def _gemma3_fields(config: ModelConfig) -> dict:
    kinds = ["sliding_attention" if local else "full_attention" for local in config.is_local()]
    return {"query_pre_attn_scalar": _integral(config.scale ** -2), "sliding_window": config.sliding_window,
            "layer_types": kinds, "final_logit_softcapping": config.final_logit_softcap,
            "attn_logit_softcapping": None,
            "rope_parameters": {"full_attention": _rope_json(config.rope),
                                "sliding_attention": _rope_json(config.local_rope or config.rope)}}


def _gemma2_fields(config: ModelConfig) -> dict:
    kinds = ["sliding_attention" if local else "full_attention" for local in config.is_local()]
    return {"query_pre_attn_scalar": _integral(config.scale ** -2), "sliding_window": config.sliding_window,
            "layer_types": kinds, "final_logit_softcapping": config.final_logit_softcap,
            "attn_logit_softcapping": config.attn_logit_softcap}


def _qwen2_windows(config: ModelConfig) -> dict:
    """use_sliding_window and the sliding layers (layer_types; max_window_layers: the full layers before the
    first sliding one, for readers that derive the layer kinds from it)."""
    if config.sliding_window is None:
        return {}
    local = config.is_local()
    return {"use_sliding_window": True, "sliding_window": config.sliding_window,
            "max_window_layers": local.index(True) if any(local) else config.num_layers,
            "layer_types": ["sliding_attention" if x else "full_attention" for x in local]}


def _integral(x: float):
    """x as an int when it is one (transformers' Gemma3 config types query_pre_attn_scalar as int)."""
    return int(round(x)) if abs(x - round(x)) < 1e-6 * max(1.0, abs(x)) else x


def _rope_json(rope: RopeConfig) -> dict:
    partial = {"partial_rotary_factor": rope.partial_rotary_factor} if rope.partial_rotary_factor != 1.0 else {}
    return {"rope_type": rope.rope_type, "rope_theta": rope.theta, **dict(rope.scaling), **partial}


def _bloom_config(config: ModelConfig) -> dict:
    expected = {"norm": "layer", "activation": "gelu_tanh", "gated_mlp": False, "qkv_bias": True,
                "out_bias": True, "mlp_bias": True, "embedding_norm": True, "position": "alibi",
                "intermediate_size": 4 * config.hidden_size, "num_kv_heads": config.num_heads,
                "head_dim": config.hidden_size // config.num_heads}
    wrong = {k: getattr(config, k) for k, v in expected.items() if getattr(config, k) != v}
    if wrong:
        raise UnsupportedConfigError("transformers' BloomForCausalLM cannot represent these ModelConfig fields: "
                                     + ", ".join(f"{k}={v!r}" for k, v in wrong.items()))
    return {"architectures": ["BloomForCausalLM"], "model_type": "bloom", "vocab_size": config.vocab_size,
            "hidden_size": config.hidden_size, "n_layer": config.num_layers, "n_head": config.num_heads,
            "layer_norm_epsilon": config.norm_eps, "tie_word_embeddings": config.tie_embeddings,
            **_token_ids(config)}


def _token_ids(config: ModelConfig) -> dict:
    eos = list(config.eos_token_id) if isinstance(config.eos_token_id, tuple) else config.eos_token_id
    return {"bos_token_id": config.bos_token_id, "eos_token_id": eos, "pad_token_id": config.pad_token_id}
