"""Read llama.cpp GGUF files offline, straight into the decoder's parameter paths.

``read_gguf(path)`` returns a :class:`GGUFCheckpoint` whose

* ``hf_config`` is a transformers ``config.json``-style dict built from the metadata (keys named by the
  ``gguf`` package's ``Keys``), read by ``from_hf_config`` like any other config;
* ``targets()`` streams ``(gguf_name, parameter path, layer, array)`` one tensor at a time, dequantized with
  the ``gguf`` package's numpy code, through one table keyed by the package's own tensor kinds
  (``gguf.MODEL_TENSOR``; names from ``gguf.TENSOR_NAMES``), with llama.cpp's conversion-time changes undone:

  - ``llama``: the rows of Q and K were permuted by ``convert_hf_to_gguf.py`` (``LlamaModel.permute``)
    for its rotary layout; the permutation is inverted here (Q with ``n_head``, K with ``n_head_kv``).
  - ``gemma3``: llama.cpp stores every RMSNorm weight as ``1 + w`` while transformers' Gemma3 stores ``w``
    (its norm multiplies by ``1 + w``); ``1`` is subtracted again. transformers' own GGUF loader lacks this.
  - ``gemma2``: the same ``1 + w`` norms (``convert_hf_to_gguf.Gemma2Model``), undone the same way.
  - ``bloom``: the fused QKV projection is stored as ``[all q; all k; all v]``: it is split as it is.
  - ``phi3`` (Phi-3 4k, Phi-4): stored as they are, fused: ``attn_qkv`` is ``[q; k; v]`` with grouped-query
    sizes and ``ffn_up`` holds ``[gate; up]``; both are split by rows. A file with longrope factor tensors
    (Phi-3 128k, Phi-3.5, Phi-4-mini) is refused, as its transformers config is.
  - ``command-r`` (Cohere: Command R, Aya) and ``cohere2`` (Command R7B, A): stored as they are (llama.cpp keeps
    Cohere's interleaved rotary layout, so Q and K are not permuted); Command R+'s q/k norms are [heads, head_dim].
  - mixtures of experts: Mixtral (arch ``llama`` with ``llama.expert_count``; Q and K permuted as llama's) and
    Qwen3-MoE (``qwen3moe``). Each layer's experts are one 3D tensor, ``ffn_{gate,up}_exps`` [E, F, D] and
    ``ffn_down_exps`` [E, D, F] (numpy order), laid out here as the expert-major kernels [D, E * F] / [E * F, D];
    the router ``ffn_gate_inp`` [E, D] is ``mlp/router/kernel`` transposed.

* ``tokenizer()`` is transformers' tokenizer built from the GGUF metadata (saved once, see ``gguf_tokenizer``).

``gguf`` is imported with this module, which ``jaxneurons.loading`` imports only when a GGUF file is read.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from typing import Any, Iterator

import gguf
import numpy as np
from gguf import Keys
from gguf import MODEL_TENSOR as T

from jaxneurons.models.config import UnsupportedConfigError

__all__ = ["GGUFCheckpoint", "read_gguf", "SUPPORTED_ARCHITECTURES", "TABLE"]

_GGUF_MAGIC = b"GGUF"
DEQUANTIZE_ROWS = 4096  # rows of a quantized tensor dequantized at once

# gguf tensor kind -> parameter path (without the leaf); one table for every architecture, since the decoder
# names a family's differences, not its tensors. The norm that feeds the MLP is mlp_norm: llama's FFN_NORM (after
# attention) and Gemma 3's FFN_PRE_NORM (both named "ffn_norm" in the file).
TABLE = {
    T.TOKEN_EMBD: "embed", T.TOKEN_EMBD_NORM: "embed_norm", T.OUTPUT_NORM: "final_norm", T.OUTPUT: "lm_head",
    T.ATTN_NORM: "layers/attn_norm", T.ATTN_Q: "layers/attn/q", T.ATTN_K: "layers/attn/k",
    T.ATTN_V: "layers/attn/v", T.ATTN_QKV: "layers/attn/qkv", T.ATTN_OUT: "layers/attn/o",
    T.ATTN_Q_NORM: "layers/attn/q_norm", T.ATTN_K_NORM: "layers/attn/k_norm",
    T.ATTN_POST_NORM: "layers/post_attn_norm", T.FFN_NORM: "layers/mlp_norm", T.FFN_PRE_NORM: "layers/mlp_norm",
    T.FFN_POST_NORM: "layers/post_mlp_norm", T.FFN_GATE: "layers/mlp/gate", T.FFN_UP: "layers/mlp/up",
    T.FFN_DOWN: "layers/mlp/down", T.FFN_GATE_INP: "layers/mlp/router", T.FFN_GATE_EXP: "layers/mlp/gate",
    T.FFN_UP_EXP: "layers/mlp/up", T.FFN_DOWN_EXP: "layers/mlp/down",
}
_NORMS = {T.TOKEN_EMBD_NORM, T.OUTPUT_NORM, T.ATTN_NORM, T.ATTN_Q_NORM, T.ATTN_K_NORM, T.ATTN_POST_NORM,
          T.FFN_NORM, T.FFN_PRE_NORM, T.FFN_POST_NORM}
# Tensors llama.cpp writes that have no parameter: skipped (with a warning).
_SKIPPED = {T.ROPE_FREQS: "llama.cpp's precomputed llama3-style RoPE frequency factors (rope_freqs.weight) have "
            "no parameter and were skipped; set hf_config['rope_scaling'] by hand (e.g. from the original "
            "model's config.json) if the model needs llama3 RoPE scaling."}
_UNQUANTIZED = {gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16,
                gguf.GGMLQuantizationType.F64}


def _leaf(kind, suffix: str) -> tuple[str, bool]:
    """(parameter leaf, whether the [out, in] GGUF matrix is transposed) of a kind's .weight / .bias."""
    if suffix == "bias":
        return "bias", False
    if kind in _NORMS:
        return "scale", False
    return ("embedding", False) if kind == T.TOKEN_EMBD else ("kernel", True)


# --------------------------------------------------------------------------------------------- metadata


class _Meta:
    """Typed access to the metadata of a ``gguf.GGUFReader``; keys are ``gguf.Keys`` templates."""

    def __init__(self, reader, path: str):
        self.reader, self.path, self.arch = reader, path, None
        self.arch = self.get(Keys.General.ARCHITECTURE)
        self.tensor_shapes = {t.name: tuple(int(x) for x in reversed(t.shape)) for t in reader.tensors}

    def get(self, key: str, default: Any = None) -> Any:
        field = self.reader.fields.get(key.format(arch=self.arch))
        if field is None:
            return default
        value = field.contents()
        if isinstance(value, float):  # GGUF stores float32: the shortest decimal that round-trips
            return float(str(np.float32(value)))
        if isinstance(value, list) and value and isinstance(value[0], float):
            return [float(str(np.float32(v))) for v in value]
        return value

    def require(self, key: str) -> Any:
        value = self.get(key)
        if value is None:
            raise ValueError(f"GGUF file {self.path} lacks the metadata key '{key.format(arch=self.arch)}', which "
                             "is needed to build the model's config; the file may be incomplete or written by an "
                             "old converter.")
        return value

    def uniform(self, key: str, default: Any = None) -> int:
        """A key that may be a per-layer array; the decoder needs one value for all layers."""
        value = self.get(key, default) if default is not None else self.require(key)
        if isinstance(value, list):
            if len(set(value)) != 1:
                raise ValueError(f"GGUF file {self.path}: '{key.format(arch=self.arch)}' varies per layer "
                                 f"({value}); jaxneurons supports uniform layers only.")
            value = value[0]
        return int(value)


def _vocab_size(meta: _Meta) -> int:
    shape = meta.tensor_shapes.get("token_embd.weight")  # the embedding decides what the model needs
    if shape is not None:
        return int(shape[0])
    value = meta.get(Keys.LLM.VOCAB_SIZE)
    if value is None and Keys.Tokenizer.LIST in meta.reader.fields:
        value = len(meta.reader.fields[Keys.Tokenizer.LIST].data)
    if value is None:
        raise ValueError(f"GGUF file {meta.path}: cannot determine the vocabulary size.")
    return int(value)


def _special_ids(meta: _Meta) -> dict:
    keys = {"bos_token_id": Keys.Tokenizer.BOS_ID, "eos_token_id": Keys.Tokenizer.EOS_ID,
            "pad_token_id": Keys.Tokenizer.PAD_ID}
    return {hf: int(meta.get(key)) for hf, key in keys.items() if meta.get(key) is not None}


def _decoder_config(meta: _Meta, model_type: str, default_theta: float) -> dict:
    experts = int(meta.get(Keys.LLM.EXPERT_COUNT) or 0)
    if experts and model_type not in ("llama", "qwen3_moe"):
        key = Keys.LLM.EXPERT_COUNT.format(arch=meta.arch)
        raise UnsupportedConfigError(f"GGUF file {meta.path}: mixtures of experts ({key}={experts}) are read for "
                                     "Mixtral (llama) and Qwen3-MoE (qwen3moe) only.")
    hidden = int(meta.require(Keys.LLM.EMBEDDING_LENGTH))
    heads = meta.uniform(Keys.Attention.HEAD_COUNT)
    head_dim = meta.get(Keys.Attention.KEY_LENGTH)
    if head_dim is None and meta.arch == "llama":
        head_dim = meta.get(Keys.Rope.DIMENSION_COUNT)
    cfg = {"model_type": model_type, "hidden_size": hidden, "num_attention_heads": heads,
           "intermediate_size": meta.uniform(Keys.LLM.FEED_FORWARD_LENGTH),
           "num_hidden_layers": int(meta.require(Keys.LLM.BLOCK_COUNT)),
           "num_key_value_heads": meta.uniform(Keys.Attention.HEAD_COUNT_KV, heads),
           "head_dim": int(head_dim or hidden // heads), "vocab_size": _vocab_size(meta),
           "rms_norm_eps": float(meta.require(Keys.Attention.LAYERNORM_EPS if model_type in ("cohere", "cohere2")
                                              else Keys.Attention.LAYERNORM_RMS_EPS)),
           "rope_theta": float(meta.get(Keys.Rope.FREQ_BASE, default_theta)),
           "max_position_embeddings": int(meta.require(Keys.LLM.CONTEXT_LENGTH)),
           "tie_word_embeddings": "output.weight" not in meta.tensor_shapes, **_special_ids(meta)}
    kind = meta.get(Keys.Rope.SCALING_TYPE)
    if kind not in (None, "none"):
        scaling = {"rope_type": kind, "factor": meta.get(Keys.Rope.SCALING_FACTOR),
                   "original_max_position_embeddings": meta.get(Keys.Rope.SCALING_ORIG_CTX_LEN)}
        cfg["rope_scaling"] = {k: v for k, v in scaling.items() if v is not None}
    if model_type in ("qwen3", "qwen3_moe") or (model_type == "llama" and not experts):  # Mixtral has none
        cfg["attention_bias"] = "blk.0.attn_q.bias" in meta.tensor_shapes
    if model_type == "llama" and not experts:
        cfg["mlp_bias"] = "blk.0.ffn_up.bias" in meta.tensor_shapes
    return {**cfg, **_moe_config(meta, cfg, experts)} if experts else cfg


# MoE metadata llama.cpp may write that changes the routing, at the value Mixtral / Qwen3-MoE compute with
_MOE_FIXED = {Keys.LLM.EXPERT_SHARED_COUNT: 0, Keys.LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH: 0,
              Keys.LLM.LEADING_DENSE_BLOCK_COUNT: 0, Keys.LLM.EXPERT_WEIGHTS_SCALE: 1.0,
              Keys.LLM.EXPERT_GATING_FUNC: int(gguf.ExpertGatingFuncType.SOFTMAX)}


def _moe_config(meta: _Meta, cfg: dict, experts: int) -> dict:
    """Mixtral (arch llama) or Qwen3-MoE (qwen3moe): every layer a mixture of softmax-routed experts, no shared
    expert. Qwen3-MoE's per-expert width is expert_feed_forward_length; llama.cpp falls back to
    feed_forward_length / expert_used_count and always renormalises the top-k weights (norm_topk_prob, which
    its converter does not store); an expert_weights_norm key, where present, is honoured."""
    for key, default in _MOE_FIXED.items():
        value = meta.get(key, default)
        if (value[0] if isinstance(value, list) else value) != default:
            raise UnsupportedConfigError(f"GGUF file {meta.path}: '{key.format(arch=meta.arch)}'={value} is not "
                                         f"ported (jaxneurons' mixtures of experts compute with {default}).")
    dense = sorted({n.split(".")[1] for n in meta.tensor_shapes
                    if n.startswith("blk.") and n.split(".")[2] in ("ffn_up", "ffn_gate", "ffn_down")})
    if dense:
        raise UnsupportedConfigError(f"GGUF file {meta.path}: dense FFN layers {dense} in a mixture of experts "
                                     "(Qwen3-MoE's mlp_only_layers / decoder_sparse_step) are not ported.")
    used = int(meta.require(Keys.LLM.EXPERT_USED_COUNT))
    if cfg["model_type"] == "llama":
        return {"model_type": "mixtral", "num_local_experts": experts, "num_experts_per_tok": used}
    width = meta.get(Keys.LLM.EXPERT_FEED_FORWARD_LENGTH) or cfg["intermediate_size"] // used
    return {"num_experts": experts, "num_experts_per_tok": used, "moe_intermediate_size": int(width),
            "norm_topk_prob": bool(meta.get(Keys.LLM.EXPERT_WEIGHTS_NORM, True))}


def _gemma3_config(meta: _Meta) -> dict:
    cfg = _decoder_config(meta, "gemma3_text", 1_000_000.0)
    # llama.cpp (src/llama-model.cpp, LLM_ARCH_GEMMA3) hard-codes what the GGUF may not store: sliding-window
    # pattern 6 (5 local layers, then 1 global), local RoPE base 10000, attention scale 1/sqrt(head_dim) except
    # the 62-layer 27B model: 1/sqrt(hidden/heads).
    pattern = meta.get(Keys.Attention.SLIDING_WINDOW_PATTERN, 6)
    flags = pattern if isinstance(pattern, list) else [(i + 1) % int(pattern) != 0
                                                      for i in range(cfg["num_hidden_layers"])]
    wide = cfg["num_hidden_layers"] == 62
    return {**cfg, "layer_types": ["sliding_attention" if f else "full_attention" for f in flags],
            "sliding_window": int(meta.get(Keys.Attention.SLIDING_WINDOW, 4096)),
            "rope_local_base_freq": float(meta.get(Keys.Rope.FREQ_BASE_SWA, 10000.0)),
            "query_pre_attn_scalar": cfg["hidden_size"] // cfg["num_attention_heads"] if wide else cfg["head_dim"],
            "final_logit_softcapping": meta.get(Keys.LLM.FINAL_LOGIT_SOFTCAPPING),
            "attn_logit_softcapping": meta.get(Keys.LLM.ATTN_LOGIT_SOFTCAPPING),
            "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False}


def _gemma2_config(meta: _Meta) -> dict:
    cfg = _decoder_config(meta, "gemma2", 10000.0)
    # llama.cpp (LLM_ARCH_GEMMA2) hard-codes the sliding-window pattern 2 (even layers local), the soft caps'
    # defaults 50 and 30, and the attention scale 1/sqrt(head_dim) except the 46-layer 27B: 1/sqrt(hidden/heads).
    wide = cfg["num_hidden_layers"] == 46
    return {**cfg, "layer_types": ["sliding_attention" if i % 2 == 0 else "full_attention"
                                   for i in range(cfg["num_hidden_layers"])],
            "sliding_window": int(meta.get(Keys.Attention.SLIDING_WINDOW, 4096)),
            "query_pre_attn_scalar": cfg["hidden_size"] // cfg["num_attention_heads"] if wide else cfg["head_dim"],
            "attn_logit_softcapping": float(meta.get(Keys.LLM.ATTN_LOGIT_SOFTCAPPING, 50.0)),
            "final_logit_softcapping": float(meta.get(Keys.LLM.FINAL_LOGIT_SOFTCAPPING, 30.0)),
            "hidden_activation": "gelu_pytorch_tanh", "attention_bias": False}
def _cohere_config(meta: _Meta, model_type: str) -> dict:
    """Command R ("command-r") and Command R7B / A ("cohere2"); llama.cpp (src/llama-model.cpp, LLM_ARCH_COHERE2)
    hard-codes cohere2's sliding-window pattern 4 (3 local layers, then 1 global) and ties the embeddings."""
    cfg = _decoder_config(meta, model_type, 500000.0 if model_type == "cohere" else 10000.0)
    cfg["layer_norm_eps"] = cfg.pop("rms_norm_eps")
    cfg.update(logit_scale=float(meta.require(Keys.LLM.LOGIT_SCALE)), attention_bias=False)
    rotary = meta.get(Keys.Rope.DIMENSION_COUNT, cfg["head_dim"])
    if rotary != cfg["head_dim"]:  # a partial rotary, refused by name by from_hf_config
        cfg["rotary_pct"] = rotary / cfg["head_dim"]
    if model_type == "cohere":
        return {**cfg, "use_qk_norm": "blk.0.attn_q_norm.weight" in meta.tensor_shapes}
    pattern = meta.get(Keys.Attention.SLIDING_WINDOW_PATTERN, 4)
    flags = pattern if isinstance(pattern, list) else [(i + 1) % int(pattern) != 0
                                                      for i in range(cfg["num_hidden_layers"])]
    return {**cfg, "sliding_window": int(meta.require(Keys.Attention.SLIDING_WINDOW)),
            "layer_types": ["sliding_attention" if f else "full_attention" for f in flags]}


def _phi3_config(meta: _Meta) -> dict:
    """Phi-3 / Phi-4: the rotary dimension count gives partial_rotary_factor; llama.cpp writes sliding window 0
    for none (Phi-4)."""
    if "rope_factors_long.weight" in meta.tensor_shapes:
        raise ValueError(f"GGUF file {meta.path} holds longrope factors (Phi-3 128k, Phi-3.5, Phi-4-mini), which "
                         "jaxneurons' phi3 port does not support (transformers picks them per batch).")
    cfg = _decoder_config(meta, "phi3", 10000.0)
    rotary = int(meta.get(Keys.Rope.DIMENSION_COUNT, cfg["head_dim"]))
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": cfg.pop("rope_theta"),
                              "partial_rotary_factor": rotary / cfg["head_dim"]}
    return {**cfg, "sliding_window": int(meta.get(Keys.Attention.SLIDING_WINDOW, 0)) or None}


def _bloom_config(meta: _Meta) -> dict:
    return {"model_type": "bloom", "hidden_size": int(meta.require(Keys.LLM.EMBEDDING_LENGTH)),
            "n_layer": int(meta.require(Keys.LLM.BLOCK_COUNT)), "n_head": meta.uniform(Keys.Attention.HEAD_COUNT),
            "layer_norm_epsilon": float(meta.require(Keys.Attention.LAYERNORM_EPS)),
            "vocab_size": _vocab_size(meta), "tie_word_embeddings": True, **_special_ids(meta)}


_CONFIGS = {"llama": lambda m: _decoder_config(m, "llama", 10000.0),
            "qwen2": lambda m: _decoder_config(m, "qwen2", 1_000_000.0),
            "qwen3": lambda m: _decoder_config(m, "qwen3", 1_000_000.0),
            "qwen3moe": lambda m: _decoder_config(m, "qwen3_moe", 1_000_000.0),
            "gemma3": _gemma3_config, "bloom": _bloom_config, "gemma2": _gemma2_config, "phi3": _phi3_config,
            "command-r": lambda m: _cohere_config(m, "cohere"), "cohere2": lambda m: _cohere_config(m, "cohere2")}
SUPPORTED_ARCHITECTURES = tuple(sorted(_CONFIGS))


# ------------------------------------------------------------------- llama.cpp's conversion, undone


def unpermute_llama_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Invert ``convert_hf_to_gguf.LlamaModel.permute`` (HF's rotate-half rows [n_head, 2, d/2] were laid out
    as llama.cpp's interleaved [n_head, d/2, 2]). Works for weights and biases."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"cannot un-permute a tensor with {rows} rows for {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_llama_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's forward permutation (HF -> GGUF); for tests and writers."""
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ------------------------------------------------------------------------------------------- public


@dataclasses.dataclass
class GGUFCheckpoint:
    """A GGUF file: its config and its tensors by parameter path. Build it with :func:`read_gguf`."""

    path: str
    architecture: str  # gguf general.architecture, e.g. "llama", "gemma3"
    hf_config: dict  # transformers config.json-style dict
    # the file's tensors (memory-mapped); its metadata is dropped once read (Gemma 3's vocabulary: about 0.6 GB)
    _tensors: list = dataclasses.field(default_factory=list, repr=False, compare=False)
    _kinds: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)  # name -> (kind, layer)
    _tokenizer: Any = dataclasses.field(default=None, repr=False, compare=False)

    def targets(self, dtype=np.float32) -> Iterator[tuple[str, str, int | None, np.ndarray]]:
        """Yield (gguf name, parameter path, layer or None, array) one tensor at a time, in file order.

        Arrays are fresh (never views of the memory-mapped file), in the decoder's layout, cast to dtype last
        (the conversion arithmetic runs in float32). BLOOM's fused QKV yields its q, k and v parts.
        """
        for t in self._tensors:
            if t.name not in self._kinds:
                continue
            kind, layer = self._kinds[t.name]
            w = self._undo_conversion(kind, _dequantize(t).reshape(tuple(int(x) for x in reversed(t.shape))))
            leaf, transposed = _leaf(kind, t.name.rsplit(".", 1)[1])
            for part, piece in self._parts(kind, w):
                path = f"{TABLE[kind].rsplit('/', 1)[0]}/{part}" if part else TABLE[kind]
                yield t.name, f"{path}/{leaf}", layer, (piece.T if transposed else piece).astype(dtype, copy=False)

    def _parts(self, kind, w: np.ndarray):
        """(part, rows) of a fused tensor: BLOOM's [q; k; v] in thirds, Phi-3's with grouped-query sizes, and
        Phi-3's ffn_up [gate; up]; (None, w) for the others."""
        phi3 = self.architecture == "phi3"
        if kind == T.ATTN_QKV and not phi3:
            return zip("qkv", np.split(w, 3))
        if kind == T.ATTN_QKV:
            c = self.hf_config
            q, kv = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
            return zip("qkv", np.split(w, [q, q + kv]))
        if kind == T.FFN_UP and phi3:
            return zip(("gate", "up"), np.split(w, 2))
        return [(None, w)]

    def _undo_conversion(self, kind, w: np.ndarray) -> np.ndarray:
        if self.architecture == "llama" and kind in (T.ATTN_Q, T.ATTN_K):
            heads = self.hf_config["num_attention_heads" if kind == T.ATTN_Q else "num_key_value_heads"]
            return unpermute_llama_qk(w, heads)
        if self.architecture in ("gemma3", "gemma2") and kind in _NORMS:
            return w - np.float32(1.0)
        if kind in (T.FFN_GATE_EXP, T.FFN_UP_EXP):  # [E, F, D] -> [E * F, D], an [out, in] matrix
            return w.reshape(-1, w.shape[-1])
        if kind == T.FFN_DOWN_EXP:  # [E, D, F] -> [D, E * F]
            return w.transpose(1, 0, 2).reshape(w.shape[1], -1)
        return w

    def tokenizer(self):
        """transformers' tokenizer rebuilt from the GGUF metadata (cached on disk and on this object)."""
        if self._tokenizer is None:
            from jaxneurons.loading.gguf_tokenizer import gguf_tokenizer

            self._tokenizer = gguf_tokenizer(self.path)
        return self._tokenizer


def _dequantize(tensor, rows: int = DEQUANTIZE_ROWS) -> np.ndarray:
    """A fresh float32 copy of a GGUF tensor, dequantized `rows` rows at a time into one array: the quantizer's
    float temporaries (two or three of the output's size) stay a chunk's size (Gemma 3's Q8_0 embedding:
    672 MB out, about 1.3 GB of temporaries when dequantized whole). A 3D tensor (a layer's experts) is taken
    as its rows of the last axis."""
    data, kind = tensor.data, tensor.tensor_type
    if kind in _UNQUANTIZED:
        return np.array(gguf.quants.dequantize(data, kind), np.float32, copy=True)
    flat = data.reshape(-1, data.shape[-1])
    out = np.empty(gguf.quants.quant_shape_from_byte_shape(flat.shape, kind), np.float32)
    for start in range(0, flat.shape[0], rows):
        out[start:start + rows] = gguf.quants.dequantize(flat[start:start + rows], kind)
    return out.reshape(*data.shape[:-1], out.shape[-1])


def read_gguf(path) -> GGUFCheckpoint:
    """Open a GGUF file (metadata only; tensors are streamed later by ``targets()``). The last file read is
    kept: a launcher reads the config before the weights, and parsing the metadata of Gemma 3's 262k-token
    vocabulary takes about 25 s."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if not os.path.exists(path):
        raise FileNotFoundError(f"GGUF file not found: {path}. Check the path, or use "
                                "jaxneurons.loading.zoo.resolve_zoo(name) to locate a packaged model.")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory; pass the path of a single .gguf file inside it.")
    stat = os.stat(path)
    return _read(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1)
def _read(path: str, size: int, mtime_ns: int) -> GGUFCheckpoint:
    """read_gguf of an existing file; size and mtime make a changed file a new entry."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != _GGUF_MAGIC:
        raise ValueError(f"{path} is not a GGUF file (it starts with {magic!r}, not b'GGUF'). Pass a llama.cpp "
                         ".gguf model file; for Hugging Face safetensors checkpoints pass their directory.")
    try:
        reader = gguf.GGUFReader(path, "r")
    except Exception as e:
        raise ValueError(f"Could not parse GGUF file {path}: {type(e).__name__}: {e}. The file may be truncated "
                         "or corrupt; re-download or re-assemble it.") from e
    meta = _Meta(reader, path)
    if meta.arch is None:
        raise ValueError(f"GGUF file {path} has no 'general.architecture' metadata key; cannot interpret it.")
    if meta.arch not in _CONFIGS:
        raise ValueError(f"GGUF file {path} has architecture {meta.arch!r}, which jaxneurons' GGUF reader does not "
                         f"support (supported: {', '.join(SUPPORTED_ARCHITECTURES)}). Use the model's Hugging Face "
                         "safetensors checkpoint instead.")
    hf_config = _CONFIGS[meta.arch](meta)
    return GGUFCheckpoint(path, meta.arch, hf_config, list(reader.tensors), _tensor_kinds(meta, hf_config))


def _tensor_kinds(meta: _Meta, hf_config: dict) -> dict:
    """{gguf tensor name: (kind, layer)} for every tensor of the file, by the gguf package's own names."""
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == meta.arch)
    layers = hf_config.get("num_hidden_layers", hf_config.get("n_layer"))
    names = {}
    for kind in gguf.MODEL_TENSORS[arch]:
        template = gguf.TENSOR_NAMES[kind]
        for layer in range(layers) if "{bid}" in template else [None]:
            stem = template.format(bid=layer)
            names.update({f"{stem}.weight": (kind, layer), f"{stem}.bias": (kind, layer)})
    kinds, unknown = {}, []
    for t in meta.reader.tensors:
        kind, layer = names.get(t.name, (None, None))
        if kind in _SKIPPED:
            warnings.warn(f"{meta.path}: {_SKIPPED[kind]}", stacklevel=3)
        elif kind in TABLE:
            kinds[t.name] = (kind, layer)
        else:
            unknown.append(t.name)
    if unknown:
        raise ValueError(f"GGUF file {meta.path} (architecture {meta.arch!r}) has tensors the decoder has no place "
                         f"for: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}.")
    return kinds
