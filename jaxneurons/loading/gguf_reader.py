"""Read llama.cpp GGUF files into Hugging Face form, offline.

``read_gguf(path)`` returns a :class:`GGUFCheckpoint` whose

* ``hf_config`` is a transformers ``config.json``-style dict (``model_type``, ``hidden_size``, ...),
* ``tensors()`` streams ``(hf_name, np.ndarray)`` pairs one at a time, with transformers' parameter
  names and layouts (``nn.Linear`` weights are ``[out_features, in_features]``), dequantized with
  the ``gguf`` package's numpy dequantization, and with llama.cpp's conversion-time changes undone:

  - ``llama``: the rows of Q and K were permuted by ``convert_hf_to_gguf.py`` (``LlamaModel.permute``)
    for its rotary layout; the permutation is inverted here (Q with ``n_head``, K with ``n_head_kv``).
  - ``gemma3``: llama.cpp stores every RMSNorm weight as ``1 + w`` while transformers' Gemma3
    stores ``w`` (its norm multiplies by ``1 + w``); ``1`` is subtracted again.
  - ``bloom``: the fused QKV projection was regrouped from per-head ``[q, k, v]`` blocks to
    ``[all q; all k; all v]``; the per-head interleaving is restored.

* ``tokenizer()`` is transformers' tokenizer built from the GGUF metadata.

This module deliberately imports nothing else from ``jaxneurons``; ``gguf`` and ``transformers``
are imported lazily.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import warnings
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["GGUFCheckpoint", "read_gguf", "SUPPORTED_ARCHITECTURES"]

_GGUF_MAGIC = b"GGUF"


# --------------------------------------------------------------------------------------------
# Name tables: GGUF tensor name (without the ``.weight``/``.bias`` suffix) -> HF name (ditto).
# --------------------------------------------------------------------------------------------

_LLAMA_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_QWEN3_BLOCK = {**_LLAMA_BLOCK, "attn_q_norm": "self_attn.q_norm", "attn_k_norm": "self_attn.k_norm"}
_GEMMA3_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "post_ffw_norm": "post_feedforward_layernorm",
}
_DECODER_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
_DECODER_BLOCK_PREFIX = "model.layers.{i}."

_BLOOM_BLOCK = {
    "attn_norm": "input_layernorm",
    "attn_qkv": "self_attention.query_key_value",
    "attn_output": "self_attention.dense",
    "ffn_norm": "post_attention_layernorm",
    "ffn_up": "mlp.dense_h_to_4h",
    "ffn_down": "mlp.dense_4h_to_h",
}
_BLOOM_GLOBAL = {
    "token_embd": "transformer.word_embeddings",
    "token_embd_norm": "transformer.word_embeddings_layernorm",
    "output_norm": "transformer.ln_f",
    "output": "lm_head",
}

# Tensors llama.cpp writes that have no transformers parameter: skipped (with a warning).
_SKIPPED_TENSORS = {
    "rope_freqs.weight": "llama.cpp's precomputed llama3-style RoPE frequency factors (rope_freqs.weight) "
    "have no transformers parameter and were skipped; set hf_config['rope_scaling'] by hand "
    "(e.g. from the original model's config.json) if the model needs llama3 RoPE scaling.",
}


@dataclasses.dataclass(frozen=True)
class _ArchSpec:
    model_type: str
    hf_class: str
    block: dict
    global_names: dict
    block_prefix: str
    config_fn: Callable[["_Meta"], dict]


# --------------------------------------------------------------------------------------------
# Metadata helpers
# --------------------------------------------------------------------------------------------


def _clean_f32(value: float) -> float:
    """GGUF stores floats as float32: report the shortest decimal that round-trips (1e-05, not 9.99e-06)."""
    return float(str(np.float32(value)))


class _Meta:
    """Typed access to the metadata of a ``gguf.GGUFReader``."""

    def __init__(self, reader, path: str):
        self.reader = reader
        self.path = path
        self.arch = self.get("general.architecture")
        self.tensor_shapes = {t.name: tuple(int(x) for x in reversed(t.shape)) for t in reader.tensors}

    def has(self, key: str) -> bool:
        return key in self.reader.fields

    def get(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key)
        if field is None:
            return default
        value = field.contents()
        if isinstance(value, float):
            value = _clean_f32(value)
        elif isinstance(value, list) and value and isinstance(value[0], float):
            value = [_clean_f32(v) for v in value]
        return value

    def arch_key(self, name: str, default: Any = None) -> Any:
        return self.get(f"{self.arch}.{name}", default)

    def require(self, name: str) -> Any:
        value = self.arch_key(name)
        if value is None:
            raise ValueError(
                f"GGUF file {self.path} lacks the metadata key '{self.arch}.{name}', which is needed to "
                f"build a transformers config; the file may be incomplete or written by an old converter."
            )
        return value

    def array_len(self, key: str) -> int | None:
        field = self.reader.fields.get(key)
        return None if field is None else len(field.data)


def _uniform(meta: _Meta, value, name: str) -> int:
    """Some GGUF keys may be per-layer arrays; transformers configs want one number."""
    if isinstance(value, list):
        if len(set(value)) != 1:
            raise ValueError(
                f"GGUF file {meta.path}: '{meta.arch}.{name}' varies per layer ({value}); "
                f"jaxneurons only supports uniform layers for architecture {meta.arch!r}."
            )
        return int(value[0])
    return int(value)


def _rope_scaling(meta: _Meta) -> dict | None:
    kind = meta.arch_key("rope.scaling.type")
    if kind in (None, "none"):
        return None
    factor = meta.arch_key("rope.scaling.factor")
    scaling: dict[str, Any] = {"rope_type": kind}
    if factor is not None:
        scaling["factor"] = float(factor)
    original = meta.arch_key("rope.scaling.original_context_length")
    if original is not None:
        scaling["original_max_position_embeddings"] = int(original)
    return scaling


def _vocab_size(meta: _Meta) -> int:
    # The embedding matrix decides what the model needs; fall back on the metadata.
    shape = meta.tensor_shapes.get("token_embd.weight")
    if shape is not None:
        return int(shape[0])
    value = meta.arch_key("vocab_size")
    if value is not None:
        return int(value)
    n = meta.array_len("tokenizer.ggml.tokens")
    if n is None:
        raise ValueError(f"GGUF file {meta.path}: cannot determine the vocabulary size.")
    return n


def _special_ids(meta: _Meta) -> dict:
    out = {}
    for gguf_key, hf_key in (
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ):
        value = meta.get(gguf_key)
        if value is not None:
            out[hf_key] = int(value)
    return out


def _decoder_common(meta: _Meta, spec_model_type: str, hf_class: str, default_theta: float) -> dict:
    hidden = int(meta.require("embedding_length"))
    heads = _uniform(meta, meta.require("attention.head_count"), "attention.head_count")
    kv_heads = _uniform(meta, meta.arch_key("attention.head_count_kv", heads), "attention.head_count_kv")
    head_dim = meta.arch_key("attention.key_length")
    if head_dim is None and meta.arch == "llama":
        head_dim = meta.arch_key("rope.dimension_count")
    if head_dim is None:
        head_dim = hidden // heads
    cfg = {
        "model_type": spec_model_type,
        "architectures": [hf_class],
        "hidden_size": hidden,
        "intermediate_size": _uniform(meta, meta.require("feed_forward_length"), "feed_forward_length"),
        "num_hidden_layers": int(meta.require("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": int(head_dim),
        "vocab_size": _vocab_size(meta),
        "rms_norm_eps": float(meta.require("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(meta.arch_key("rope.freq_base", default_theta)),
        "max_position_embeddings": int(meta.require("context_length")),
        "tie_word_embeddings": "output.weight" not in meta.tensor_shapes,
    }
    scaling = _rope_scaling(meta)
    if scaling is not None:
        cfg["rope_scaling"] = scaling
    cfg.update(_special_ids(meta))
    return cfg


def _llama_config(meta: _Meta) -> dict:
    cfg = _decoder_common(meta, "llama", "LlamaForCausalLM", 10000.0)
    cfg["hidden_act"] = "silu"
    cfg["attention_bias"] = "blk.0.attn_q.bias" in meta.tensor_shapes
    cfg["mlp_bias"] = "blk.0.ffn_up.bias" in meta.tensor_shapes
    return cfg


def _qwen2_config(meta: _Meta) -> dict:
    cfg = _decoder_common(meta, "qwen2", "Qwen2ForCausalLM", 1000000.0)
    cfg["hidden_act"] = "silu"
    return cfg


def _qwen3_config(meta: _Meta) -> dict:
    cfg = _decoder_common(meta, "qwen3", "Qwen3ForCausalLM", 1000000.0)
    cfg["hidden_act"] = "silu"
    cfg["attention_bias"] = "blk.0.attn_q.bias" in meta.tensor_shapes
    return cfg


def _gemma3_config(meta: _Meta) -> dict:
    cfg = _decoder_common(meta, "gemma3_text", "Gemma3ForCausalLM", 1000000.0)
    n_layers = cfg["num_hidden_layers"]
    # llama.cpp (src/llama-model.cpp, LLM_ARCH_GEMMA3) hard-codes what the GGUF does not store:
    #   sliding-window pattern 6 (5 local layers, then 1 global), local RoPE base 10000,
    #   attention scale 1/sqrt(head_dim), except the 62-layer 27B model: 1/sqrt(hidden/heads).
    pattern = meta.arch_key("attention.sliding_window_pattern")
    if isinstance(pattern, list):  # newer converters: one bool per layer, True = sliding
        layer_types = ["sliding_attention" if p else "full_attention" for p in pattern]
        pattern_int = None
    else:
        pattern_int = int(pattern) if pattern is not None else 6
        layer_types = [
            "sliding_attention" if (i + 1) % pattern_int else "full_attention" for i in range(n_layers)
        ]
    if pattern_int is not None:
        cfg["sliding_window_pattern"] = pattern_int
    cfg["layer_types"] = layer_types
    cfg["sliding_window"] = int(meta.arch_key("attention.sliding_window", 4096))
    cfg["rope_local_base_freq"] = float(meta.arch_key("rope.freq_base_swa", 10000.0))
    if n_layers == 62:
        cfg["query_pre_attn_scalar"] = cfg["hidden_size"] // cfg["num_attention_heads"]
    else:
        cfg["query_pre_attn_scalar"] = cfg["head_dim"]
    cfg["final_logit_softcapping"] = meta.arch_key("final_logit_softcapping")
    cfg["attn_logit_softcapping"] = meta.arch_key("attn_logit_softcapping")
    cfg["hidden_activation"] = "gelu_pytorch_tanh"
    cfg["attention_bias"] = False
    if "rope_scaling" not in cfg:
        cfg["rope_scaling"] = None
    return cfg


def _bloom_config(meta: _Meta) -> dict:
    cfg = {
        "model_type": "bloom",
        "architectures": ["BloomForCausalLM"],
        "hidden_size": int(meta.require("embedding_length")),
        "n_layer": int(meta.require("block_count")),
        "n_head": _uniform(meta, meta.require("attention.head_count"), "attention.head_count"),
        "layer_norm_epsilon": float(meta.require("attention.layer_norm_epsilon")),
        "vocab_size": _vocab_size(meta),
        # BLOOM always ties its output projection to the embedding.
        "tie_word_embeddings": True,
    }
    cfg.update(_special_ids(meta))
    return cfg


_ARCHS = {
    "llama": _ArchSpec("llama", "LlamaForCausalLM", _LLAMA_BLOCK, _DECODER_GLOBAL, _DECODER_BLOCK_PREFIX, _llama_config),
    "qwen2": _ArchSpec("qwen2", "Qwen2ForCausalLM", _LLAMA_BLOCK, _DECODER_GLOBAL, _DECODER_BLOCK_PREFIX, _qwen2_config),
    "qwen3": _ArchSpec("qwen3", "Qwen3ForCausalLM", _QWEN3_BLOCK, _DECODER_GLOBAL, _DECODER_BLOCK_PREFIX, _qwen3_config),
    "gemma3": _ArchSpec(
        "gemma3_text", "Gemma3ForCausalLM", _GEMMA3_BLOCK, _DECODER_GLOBAL, _DECODER_BLOCK_PREFIX, _gemma3_config
    ),
    "bloom": _ArchSpec("bloom", "BloomForCausalLM", _BLOOM_BLOCK, _BLOOM_GLOBAL, "transformer.h.{i}.", _bloom_config),
}
SUPPORTED_ARCHITECTURES = tuple(sorted(_ARCHS))

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(.+)\.(weight|bias)$")
_GLOBAL_RE = re.compile(r"^(.+)\.(weight|bias)$")


def _hf_name(spec: _ArchSpec, gguf_name: str) -> str | None:
    m = _BLOCK_RE.match(gguf_name)
    if m:
        i, stem, suffix = m.groups()
        hf = spec.block.get(stem)
        return None if hf is None else f"{spec.block_prefix.format(i=i)}{hf}.{suffix}"
    m = _GLOBAL_RE.match(gguf_name)
    if m:
        stem, suffix = m.groups()
        hf = spec.global_names.get(stem)
        return None if hf is None else f"{hf}.{suffix}"
    return None


# --------------------------------------------------------------------------------------------
# Inverse transforms of llama.cpp's conversion
# --------------------------------------------------------------------------------------------


def unpermute_llama_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Invert ``convert_hf_to_gguf.LlamaModel.permute``.

    llama.cpp: ``w.reshape(n_head, 2, rows // n_head // 2, *rest).swapaxes(1, 2).reshape(w.shape)``,
    i.e. HF's rotate-half layout [n_head, 2, d/2] -> llama.cpp's interleaved [n_head, d/2, 2]. The
    inverse views the GGUF rows as [n_head, d/2, 2] and swaps back. Works for weights and biases.
    """
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"cannot un-permute a tensor with {rows} rows for {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_llama_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's forward permutation (HF -> GGUF); provided for tests and writers."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _bloom_unfuse_qkv(w: np.ndarray, n_head: int, hidden: int) -> np.ndarray:
    """llama.cpp regroups BLOOM's per-head [q, k, v] rows into [all q; all k; all v]; undo it."""
    q, k, v = np.split(w, 3, axis=0)
    head_dim = hidden // n_head
    parts = [x.reshape(n_head, head_dim, *w.shape[1:]) for x in (q, k, v)]
    return np.stack(parts, axis=1).reshape(w.shape)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class GGUFCheckpoint:
    """A GGUF file seen as a Hugging Face checkpoint. Build it with :func:`read_gguf`."""

    path: str
    architecture: str  # gguf general.architecture, e.g. "llama", "gemma3"
    hf_config: dict  # transformers config.json-style dict
    _reader: Any = dataclasses.field(default=None, repr=False, compare=False)
    _names: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # gguf -> hf
    _tokenizer: Any = dataclasses.field(default=None, repr=False, compare=False)

    # -- tensors ------------------------------------------------------------------------------

    def tensor_specs(self) -> dict[str, tuple[tuple[int, ...], str]]:
        """``{hf_name: (hf_shape, ggml_type_name)}`` without reading any tensor data."""
        out = {}
        for t in self._reader.tensors:
            hf = self._names.get(t.name)
            if hf is not None:
                out[hf] = (tuple(int(x) for x in reversed(t.shape)), t.tensor_type.name)
        return out

    def tensors(self, dtype=np.float32) -> Iterator[tuple[str, np.ndarray]]:
        """Yield ``(hf_name, array)`` one tensor at a time, in file order.

        Arrays are freshly allocated (never views of the memory-mapped file), in HF layout, and
        cast to ``dtype`` last (all conversion arithmetic happens in float32).
        """
        from gguf import GGMLQuantizationType, quants

        dtype = np.dtype(dtype)
        cfg = self.hf_config
        unquantized = {
            GGMLQuantizationType.F32,
            GGMLQuantizationType.F16,
            GGMLQuantizationType.BF16,
            GGMLQuantizationType.F64,
        }
        for t in self._reader.tensors:
            hf = self._names.get(t.name)
            if hf is None:
                continue
            w = quants.dequantize(t.data, t.tensor_type)
            if t.tensor_type in unquantized:
                w = np.array(w, dtype=np.float32, copy=True)  # detach from the memmap
            else:
                w = np.asarray(w, dtype=np.float32)
            expected = tuple(int(x) for x in reversed(t.shape))
            if w.shape != expected:
                w = w.reshape(expected)
            w = self._undo_conversion(t.name, w, cfg)
            yield hf, w.astype(dtype, copy=False)

    def _undo_conversion(self, gguf_name: str, w: np.ndarray, cfg: dict) -> np.ndarray:
        arch = self.architecture
        if arch == "llama":
            if ".attn_q." in gguf_name:
                return unpermute_llama_qk(w, cfg["num_attention_heads"])
            if ".attn_k." in gguf_name:
                return unpermute_llama_qk(w, cfg["num_key_value_heads"])
        elif arch == "gemma3":
            if gguf_name.endswith("norm.weight"):
                return w - np.float32(1.0)
        elif arch == "bloom":
            if ".attn_qkv." in gguf_name:
                return _bloom_unfuse_qkv(w, cfg["n_head"], cfg["hidden_size"])
        return w

    # -- tokenizer ----------------------------------------------------------------------------

    def tokenizer(self):
        """transformers' tokenizer rebuilt from the GGUF metadata (cached on this object)."""
        if self._tokenizer is None:
            try:
                from transformers import AutoTokenizer
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "GGUFCheckpoint.tokenizer() needs the `transformers` package (pip install transformers)."
                ) from e
            if importlib.util.find_spec("torch") is None:
                raise ImportError(
                    f"{self.path}: transformers builds GGUF tokenizers only when PyTorch is installed "
                    "(its GGUF reader imports torch): pip install torch (the CPU build is enough).")
            directory, basename = os.path.split(os.path.abspath(self.path))
            self._tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=basename)
        return self._tokenizer


def read_gguf(path) -> GGUFCheckpoint:
    """Open a GGUF file (metadata only; tensors are streamed later by ``tensors()``)."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"GGUF file not found: {path}. Check the path, or use "
            f"jaxneurons.loading.zoo.resolve_zoo(name) to locate a packaged model."
        )
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; pass the path of a single .gguf file inside it.")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise ValueError(
            f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'). Pass a llama.cpp .gguf "
            f"model file; for Hugging Face safetensors checkpoints use the safetensors loader instead."
        )
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("Reading GGUF files needs the `gguf` package (pip install gguf).") from e
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as e:
        raise ValueError(
            f"Could not parse GGUF file {path}: {type(e).__name__}: {e}. The file may be truncated or "
            f"corrupt; re-download or re-assemble it."
        ) from e

    meta = _Meta(reader, path)
    arch = meta.arch
    if arch is None:
        raise ValueError(f"GGUF file {path} has no 'general.architecture' metadata key; cannot interpret it.")
    spec = _ARCHS.get(arch)
    if spec is None:
        raise ValueError(
            f"GGUF file {path} has architecture {arch!r}, which jaxneurons' GGUF reader does not support "
            f"(supported: {', '.join(SUPPORTED_ARCHITECTURES)}). Use the model's Hugging Face safetensors "
            f"checkpoint instead, or add a name table for {arch!r} to jaxneurons/loading/gguf_reader.py."
        )
    hf_config = spec.config_fn(meta)

    names: dict[str, str] = {}
    unknown = []
    for t in reader.tensors:
        if t.name in _SKIPPED_TENSORS:
            warnings.warn(f"{path}: {_SKIPPED_TENSORS[t.name]}", stacklevel=2)
            continue
        hf = _hf_name(spec, t.name)
        if hf is None:
            unknown.append(t.name)
        else:
            names[t.name] = hf
    if unknown:
        raise ValueError(
            f"GGUF file {path} (architecture {arch!r}) has tensors without a known Hugging Face name: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}. Extend the {arch!r} name table in "
            f"jaxneurons/loading/gguf_reader.py."
        )
    return GGUFCheckpoint(path=path, architecture=arch, hf_config=hf_config, _reader=reader, _names=names)
