"""Transformers tensor names -> the decoder's parameter tree: one explicit table per family (MaxText style).

Tensors arrive one at a time (from safetensors shards or a GGUF file) and are written, cast to the requested
dtype, into preallocated per-layer stacks, so a checkpoint is never held twice in memory.
"""

from __future__ import annotations

import re
from typing import Iterable, Iterator

import jax
import numpy as np

from jaxneurons.models.config import ModelConfig

# (regex over the HF name with the "model." / "transformer." prefix removed, parameter path, transform)
_LLAMA = [
    (r"embed_tokens\.weight", "embed/embedding", None),
    (r"layers\.(\d+)\.input_layernorm\.weight", "layers/attn_norm/scale", None),
    (r"layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight", "layers/attn/{1}/kernel", "T"),
    (r"layers\.(\d+)\.self_attn\.([qkvo])_proj\.bias", "layers/attn/{1}/bias", None),
    (r"layers\.(\d+)\.self_attn\.([qk])_norm\.weight", "layers/attn/{1}_norm/scale", None),
    (r"layers\.(\d+)\.post_attention_layernorm\.weight", "layers/mlp_norm/scale", None),
    (r"layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight", "layers/mlp/{1}/kernel", "T"),
    (r"layers\.(\d+)\.mlp\.(gate|up|down)_proj\.bias", "layers/mlp/{1}/bias", None),
    (r"norm\.weight", "final_norm/scale", None),
    (r"lm_head\.weight", "lm_head/kernel", "T"),
]
_GEMMA3 = [
    (r"layers\.(\d+)\.post_attention_layernorm\.weight", "layers/post_attn_norm/scale", None),
    (r"layers\.(\d+)\.pre_feedforward_layernorm\.weight", "layers/mlp_norm/scale", None),
    (r"layers\.(\d+)\.post_feedforward_layernorm\.weight", "layers/post_mlp_norm/scale", None),
] + [row for row in _LLAMA if "post_attention_layernorm" not in row[0]]
_BLOOM = [
    (r"word_embeddings\.weight", "embed/embedding", None),
    (r"word_embeddings_layernorm\.(weight|bias)", "embed_norm/{0}", "norm"),
    (r"h\.(\d+)\.input_layernorm\.(weight|bias)", "layers/attn_norm/{1}", "norm"),
    (r"h\.(\d+)\.self_attention\.query_key_value\.(weight|bias)", "layers/attn", "qkv"),
    (r"h\.(\d+)\.self_attention\.dense\.weight", "layers/attn/o/kernel", "T"),
    (r"h\.(\d+)\.self_attention\.dense\.bias", "layers/attn/o/bias", None),
    (r"h\.(\d+)\.post_attention_layernorm\.(weight|bias)", "layers/mlp_norm/{1}", "norm"),
    (r"h\.(\d+)\.mlp\.dense_h_to_4h\.weight", "layers/mlp/up/kernel", "T"),
    (r"h\.(\d+)\.mlp\.dense_h_to_4h\.bias", "layers/mlp/up/bias", None),
    (r"h\.(\d+)\.mlp\.dense_4h_to_h\.weight", "layers/mlp/down/kernel", "T"),
    (r"h\.(\d+)\.mlp\.dense_4h_to_h\.bias", "layers/mlp/down/bias", None),
    (r"ln_f\.(weight|bias)", "final_norm/{0}", "norm"),
    (r"lm_head\.weight", "lm_head/kernel", "T"),
]
_PHI3 = [  # fused [q; k; v] and [gate; up] rows, split on load (`_split_rows`), fused back by export
    (r"layers\.(\d+)\.self_attn\.qkv_proj\.weight", "layers/attn", "qkv_rows"),
    (r"layers\.(\d+)\.mlp\.gate_up_proj\.weight", "layers/mlp", "gate_up_rows"),
] + _LLAMA
_COHERE = [row for row in _LLAMA if "post_attention_layernorm" not in row[0]]  # one norm per (parallel) layer

# Mixtures of experts, as transformers saves them (one tensor per expert; "E": stored transposed, as expert
# {1}'s block of the layer's stacked kernel, see `expert_block`; export writes these), then as transformers 5
# holds them in memory (3D tensors of all experts: gate_up_proj [E, 2F, D], down_proj [E, D, F]).
_ROUTER = (r"layers\.(\d+)\.mlp\.gate\.weight", "layers/mlp/router/kernel", "T")
_FUSED_EXPERTS = [
    (r"layers\.(\d+)\.mlp\.experts\.gate_up_proj", "layers/mlp", "gate_up"),
    (r"layers\.(\d+)\.mlp\.experts\.down_proj", "layers/mlp/down/kernel", "down_experts"),
]
_MIXTRAL = [row for row in _LLAMA if "/mlp/" not in row[1]] + [
    (r"layers\.(\d+)\.block_sparse_moe\.gate\.weight", "layers/mlp/router/kernel", "T"),
    (r"layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.w1\.weight", "layers/mlp/gate/kernel", "E"),
    (r"layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.w3\.weight", "layers/mlp/up/kernel", "E"),
    (r"layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.w2\.weight", "layers/mlp/down/kernel", "E"),
    _ROUTER,
] + _FUSED_EXPERTS
_QWEN3_MOE = [row for row in _LLAMA if "/mlp/" not in row[1]] + [
    _ROUTER,  # before the expert row, whose template layers/mlp/{2}/kernel export would match first
    (r"layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight", "layers/mlp/{2}/kernel", "E"),
] + _FUSED_EXPERTS
FUSED = ("qkv", "gate_up", "down_experts")  # transforms that split or regroup tensors (not written back)
TABLES = {"llama": _LLAMA, "mistral": _LLAMA, "qwen2": _LLAMA, "qwen3": _LLAMA, "gemma3": _GEMMA3, "bloom": _BLOOM,
          "phi3": _PHI3, "cohere": _COHERE, "cohere2": _COHERE, "mixtral": _MIXTRAL, "qwen3_moe": _QWEN3_MOE,
          "gemma2": _GEMMA3}  # Gemma 2 names its four norms per layer as Gemma 3 does (and has no q/k norms)
_PREFIXES = ("model.language_model.", "language_model.model.", "model.", "transformer.")


class CheckpointError(ValueError):
    """A checkpoint's tensors do not fit the model its config describes."""


def _strip(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _targets(config: ModelConfig, name: str, array: np.ndarray
             ) -> Iterator[tuple[str, int | tuple[int, int] | None, np.ndarray]]:
    """(parameter path, layer index, (layer, expert) or None, array in our layout) for one HF tensor."""
    for pattern, path, transform in TABLES[config.family]:
        match = re.fullmatch(pattern, _strip(name))
        if match is None:
            continue
        groups = match.groups()
        layer = int(groups[0]) if path.startswith("layers/") else None
        names = groups[1:] if layer is not None else groups
        if transform == "qkv":
            yield from _split_fused_qkv(config, path, layer, names[0], array)
            return
        if transform in FUSED_ROWS:
            yield from _split_rows(config, path, layer, transform, array)
            return
        if transform in ("gate_up", "down_experts"):
            yield from _regroup_experts(config, path, layer, array)
            return
        if transform == "E":
            yield path.format(None, None, *names[1:]), (layer, int(names[0])), array.T
            return
        path = path.format(None, *names) if layer is not None else path.format(*names)
        if transform == "norm":
            path = path.replace("/weight", "/scale")
        yield path, layer, array.T if transform == "T" else array
        return
    raise CheckpointError(f"tensor {name!r} has no place in the {config.family} port (unexpected tensor).")


def _regroup_experts(config, path, layer, array):
    """transformers' 3D expert tensors as expert-major kernels: gate_up_proj [E, 2F, D] (each expert's gate
    rows, then its up rows) -> gate and up [D, E * F]; down_proj [E, D, F] -> down [E * F, D]."""
    experts, f = config.num_experts, config.intermediate_size
    if path.endswith("down/kernel"):
        yield path, layer, array.transpose(0, 2, 1).reshape(experts * f, -1)
        return
    both = array.reshape(experts, 2, f, -1).transpose(1, 3, 0, 2)  # [2, D, E, F]
    for i, part in enumerate(("gate", "up")):
        yield f"{path}/{part}/kernel", layer, both[i].reshape(-1, experts * f)


FUSED_ROWS = {"qkv_rows": "qkv", "gate_up_rows": ("gate", "up")}  # Phi 3: the parts' rows one after another


def fused_sizes(config: ModelConfig, transform: str) -> list[int]:
    """Rows of each part of a row-fused Phi 3 matrix ([q; k; v] or [gate; up])."""
    if transform == "qkv_rows":
        return [config.num_heads * config.head_dim] + [config.num_kv_heads * config.head_dim] * 2
    return [config.intermediate_size] * 2


def _split_rows(config, path, layer, transform, array):
    """Phi 3's qkv_proj / gate_up_proj weights: the parts' [out, in] rows one after another."""
    ends = np.cumsum(fused_sizes(config, transform))[:-1]
    for part, rows in zip(FUSED_ROWS[transform], np.split(array, ends)):
        yield f"{path}/{part}/kernel", layer, rows.T


def _split_fused_qkv(config, path, layer, kind, array):
    """BLOOM's query_key_value interleaves heads: rows are [head, (q, k, v), head_dim]."""
    heads, dim = config.num_heads, config.head_dim
    per_head = array.reshape(heads, 3, dim, *array.shape[1:])
    for i, part in enumerate("qkv"):
        piece = per_head[:, i].reshape(heads * dim, *array.shape[1:])
        leaf = "kernel" if kind == "weight" else "bias"
        yield f"{path}/{part}/{leaf}", layer, piece.T if kind == "weight" else piece


def expected_shapes(config: ModelConfig) -> dict[str, jax.ShapeDtypeStruct]:
    """Flat {path: shape} of the decoder's parameters, computed without allocating them."""
    from jaxneurons.models.output import param_shapes

    tree = param_shapes(config)
    return {"/".join(k.key for k in path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def hf_targets(config: ModelConfig, tensors: Iterable[tuple[str, np.ndarray]]
               ) -> Iterator[tuple[str, str, int | None, np.ndarray]]:
    """(HF name, parameter path, layer or None, array in our layout) for a stream of HF-named tensors."""
    for name, array in tensors:
        if config.tie_embeddings and _strip(name) == "lm_head.weight":
            continue
        for path, layer, value in _targets(config, name, np.asarray(array)):
            yield name, path, layer, value


def expert_block(config: ModelConfig, path: str, expert: int) -> tuple:
    """Where expert `expert`'s matrix sits in one layer of the stacked kernel at `path`: its F columns of the
    gate/up kernels [D, E * F], its F rows of the down kernel [E * F, D] (expert-major neurons)."""
    block = slice(expert * config.intermediate_size, (expert + 1) * config.intermediate_size)
    return (block,) if path.endswith("down/kernel") else (slice(None), block)


def build_params(config: ModelConfig, targets: Iterable[tuple[str, str, int | tuple | None, np.ndarray]], dtype,
                 source: str) -> dict:
    """Stream (source tensor name, parameter path, layer index, (layer, expert) or None, array) into a nested
    parameter dict of numpy arrays in `dtype`, checking every shape against the config and that every parameter
    is filled."""
    shapes = expected_shapes(config)
    flat: dict[str, np.ndarray] = {}
    filled: dict[str, set] = {}
    for name, path, layer, value in targets:
        want = shapes.get(path)
        if want is None:
            raise CheckpointError(f"{source}: tensor {name!r} maps to {path!r}, which the config does not "
                                  "have (check the config attributes, e.g. biases or tied embeddings).")
        place, want = layer, tuple(want.shape)
        if isinstance(layer, tuple):  # one expert's block of one layer
            place = (layer[0], *expert_block(config, path, layer[1]))
            axis = len(place) - 1  # the neuron axis: 1 of down [L, E * F, D], 2 of gate/up [L, D, E * F]
            want = tuple(config.intermediate_size if i == axis else n for i, n in enumerate(want))
        got = value.shape if layer is None else (config.num_layers, *value.shape)
        if want != tuple(got):
            raise CheckpointError(f"{source}: tensor {name!r} gives {path!r} the shape {tuple(got)}, the config "
                                  f"implies {want}.")
        if layer is None:
            flat[path] = np.asarray(value, dtype)  # fresh arrays (GGUF, safetensors, pickles): no second copy
        else:
            flat.setdefault(path, np.empty(shapes[path].shape, dtype))[place] = value
        filled.setdefault(path, set()).add(layer)
    unfilled = {p: _unfilled(config, filled[p]) for p in flat if p.startswith("layers/")}
    missing = [p for p in shapes if p not in flat] + [f"{p} ({gap})" for p, gap in unfilled.items() if gap]
    if missing:
        raise CheckpointError(f"{source}: the checkpoint lacks these parameters: {', '.join(missing)}.")
    return _unflatten(flat)


def _unfilled(config: ModelConfig, filled: set) -> str:
    """The layers (or (layer, expert) blocks) of a stacked parameter that no tensor filled, or ""."""
    if any(isinstance(f, tuple) for f in filled):
        want = {(l, e) for l in range(config.num_layers) for e in range(config.num_experts)}
        return f"experts {sorted(want - filled)}" if filled != want else ""
    want = set(range(config.num_layers))
    return f"layers {sorted(want - filled)}" if filled != want else ""


def _unflatten(flat: dict[str, np.ndarray]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return tree
