"""Random weights for both sides, built on the device in the target dtype, the same values on both sides.

The transformers model is initialised where it will run (`torch.device`), in the benchmark's dtype, from a
fixed seed; its tensors then go to JAX through DLPack (a device-to-device copy, transposed where the layouts
differ, by the checkpoint loader's own name table). Nothing is written to disk or held on the host, so the
7B shape builds in seconds on a GPU, offline, without the gguf package.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import torch
import transformers

from jaxneurons.lm import LanguageModel, as_dtype
from jaxneurons.loading import convert
from jaxneurons.models.config import from_hf_config

SHAPES = {
    "tiny": dict(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True),
    "llama2_7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32),
}


def build(shape: str, dtype: str, device: str):
    """(transformers LlamaForCausalLM with frozen parameters, jaxneurons LanguageModel), same weights."""
    config = transformers.LlamaConfig(**SHAPES[shape], max_position_embeddings=4096)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = transformers.LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    model.requires_grad_(False)
    ours = from_hf_config(config.to_dict())
    return model, LanguageModel(ours, jax_params(model, ours), None, as_dtype(dtype), f"random {shape}")


def without_eos(lm: LanguageModel) -> LanguageModel:
    """The same model with no EOS token (a random model emits the config's EOS by chance): `generate` then
    makes exactly max_new_tokens per row, as transformers' generate with eos_token_id=None."""
    return dataclasses.replace(lm, config=dataclasses.replace(lm.config, eos_token_id=None))


def jax_params(model, config) -> dict:
    """The decoder's parameter tree from the transformers model's tensors, copied device to device."""
    shapes = convert.expected_shapes(config)
    flat, per_layer = {}, {}
    for name, tensor in model.state_dict().items():
        if config.tie_embeddings and name == "lm_head.weight":
            continue
        for path, layer, value in convert._targets(config, name, tensor.detach()):
            array = jnp.array(jax.dlpack.from_dlpack(value.contiguous()), copy=True)
            if layer is None:
                flat[path] = array
            else:
                per_layer.setdefault(path, {})[layer] = array
    for path, arrays in per_layer.items():
        flat[path] = jnp.stack([arrays[l] for l in range(config.num_layers)])
        del arrays
    wrong = {p: (flat.get(p, jnp.zeros(0)).shape, s.shape) for p, s in shapes.items()
             if p not in flat or flat[p].shape != s.shape}
    if wrong or set(flat) != set(shapes):
        raise ValueError(f"parameters that do not fit the decoder (got, wanted): {wrong}; "
                         f"unexpected: {sorted(set(flat) - set(shapes))}")
    return convert._unflatten(flat)
