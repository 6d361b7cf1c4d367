"""Tiny random transformers (PyTorch) models of every family, and what forward hooks read from them."""

from __future__ import annotations

import numpy as np

torch = __import__("pytest").importorskip("torch")
import transformers  # noqa: E402

COMMON = dict(vocab_size=97, hidden_size=32, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
              max_position_embeddings=128)

# name -> (config class, model class, config kwargs); each variant pins one difference between families.
VARIANTS = {
    "llama_mha_untied": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=4)),
    "llama_gqa_tied": ("LlamaConfig", "LlamaForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "llama3_rope_scaling_bias": ("LlamaConfig", "LlamaForCausalLM", dict(
        num_key_value_heads=1, attention_bias=True, mlp_bias=True, rope_parameters=dict(
            rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
            original_max_position_embeddings=16))),
    "mistral_sliding": ("MistralConfig", "MistralForCausalLM", dict(num_key_value_heads=2, sliding_window=4)),
    "qwen2_bias_tied": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=2, tie_word_embeddings=True)),
    "qwen2_bias_untied": ("Qwen2Config", "Qwen2ForCausalLM", dict(num_key_value_heads=4)),
    "qwen3_qk_norm": ("Qwen3Config", "Qwen3ForCausalLM", dict(num_key_value_heads=2, head_dim=16)),
    "gemma3_sliding": ("Gemma3TextConfig", "Gemma3ForCausalLM", dict(
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24, sliding_window=4,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0}})),
    "bloom_alibi_6heads": ("BloomConfig", "BloomForCausalLM", dict(n_head=6, hidden_size=36, n_layer=3)),
    "gemma2_softcap_sliding": ("Gemma2Config", "Gemma2ForCausalLM", dict(  # caps small enough to bend the scores
        num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=4, sliding_window=4, attn_logit_softcapping=1.5,
        final_logit_softcapping=2.0)),  # layer_types: transformers' default, sliding, full, sliding
    "qwen2_sliding": ("Qwen2Config", "Qwen2ForCausalLM", dict(  # layers 1 and 2 slide, layer 0 does not
        num_key_value_heads=2, use_sliding_window=True, sliding_window=4, max_window_layers=1)),
    "phi3_fused_partial_sliding": ("Phi3Config", "Phi3ForCausalLM", dict(
        num_key_value_heads=2, sliding_window=4, pad_token_id=0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5})),
    "cohere_parallel_qk_norm": ("CohereConfig", "CohereForCausalLM", dict(
        num_key_value_heads=2, use_qk_norm=True, attention_bias=True, logit_scale=0.5)),
    "cohere2_sliding_nope": ("Cohere2Config", "Cohere2ForCausalLM", dict(
        num_key_value_heads=2, sliding_window=4, logit_scale=0.5, tie_word_embeddings=False,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"])),
    "mixtral_moe": ("MixtralConfig", "MixtralForCausalLM", dict(
        num_key_value_heads=2, intermediate_size=12, num_local_experts=4, num_experts_per_tok=2)),
    "qwen3_moe_unnormalised": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", dict(
        num_key_value_heads=2, head_dim=16, moe_intermediate_size=12, num_experts=4, num_experts_per_tok=2)),
}


def make_model(variant: str, seed: int = 0, **overrides):
    """A random float32 model whose weights are large enough for logits to differ by token (overrides: config
    attributes changed from the variant's)."""
    config_name, model_name, kwargs = VARIANTS[variant]
    kwargs = {**kwargs, **overrides}
    common = dict(COMMON)
    if config_name == "BloomConfig":
        common = dict(vocab_size=97)
    config = getattr(transformers, config_name)(**{**common, **kwargs})
    config._attn_implementation = "eager"
    config._experts_implementation = "eager"  # mixtures of experts: transformers' loop over experts
    torch.manual_seed(seed)
    model = getattr(transformers, model_name)(config).eval().float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p)) if not config_name.startswith("Gemma") \
                    else p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    return model


def saved_pair(variant: str, directory):
    """(the random transformers model of `variant`, jaxneurons' float32 load of it saved into directory)."""
    import jaxneurons as jn

    model = make_model(variant)
    model.save_pretrained(directory)
    return model, jn.load_model(str(directory), dtype="float32")


def _layers(model):
    base = model.transformer if hasattr(model, "transformer") else model.model
    return base.h if hasattr(base, "h") else base.layers


def _mlp_modules(model):
    for layer in _layers(model):
        mlp = layer.mlp
        if hasattr(mlp, "gelu_impl"):  # BLOOM
            yield mlp.gelu_impl, mlp.dense_4h_to_h
        elif hasattr(mlp, "gate_up_proj"):  # Phi 3
            yield mlp.activation_fn, mlp.down_proj
        else:
            yield mlp.act_fn, mlp.down_proj


def is_moe(model) -> bool:
    return hasattr(_layers(model)[0].mlp, "experts")


def moe_neurons(moe, x):
    """act and ffn_hidden [B, T, E * F] of a transformers sparse-MoE block on its input x [B, T, D], written out
    in torch from its weights: the router's softmax, top-k (renormalised when the block does), and every
    expert's act(gate x) and w_e * act(gate x) * (up x), zero for the experts not picked (expert-major)."""
    router, experts = moe.gate, moe.experts
    probs = torch.softmax(x @ router.weight.T, dim=-1, dtype=torch.float32)
    top, index = torch.topk(probs, router.top_k, dim=-1)
    if getattr(router, "norm_topk_prob", True):  # Mixtral's router always renormalises
        top = top / top.sum(-1, keepdim=True)
    weight = torch.zeros_like(probs).scatter(-1, index, top)  # [B, T, E]
    acts, hidden = [], []
    for e in range(experts.num_experts):
        gate, up = (x @ experts.gate_up_proj[e].T).chunk(2, dim=-1)
        act = experts.act_fn(gate) * (weight[..., e:e + 1] > 0)
        acts.append(act)
        hidden.append(weight[..., e:e + 1] * act * up)
    return torch.cat(acts, -1), torch.cat(hidden, -1)


def zero_experts_neurons(model, neurons: dict) -> None:
    """Zero, in place, the down-projection columns of the MoE neurons {layer: [e * F + f]}: the same as zeroing
    those neurons' down-projection inputs at every token."""
    with torch.no_grad():
        for layer, index in neurons.items():
            down = _layers(model)[layer].mlp.experts.down_proj  # [E, D, F]
            for n in index:
                down[n // down.shape[-1], :, n % down.shape[-1]] = 0.0


def reference(model, ids: np.ndarray, mask: np.ndarray):
    """Logits [B, T, V] and, from forward hooks, act [B, T, L, F] and ffn_hidden [B, T, L, F] (for mixtures of
    experts, computed by `moe_neurons` from each MoE block's input)."""
    acts, hidden, handles = [], [], []
    if is_moe(model):
        def hook(module, inputs):
            act, m = moe_neurons(module, inputs[0].detach())
            acts.append(act)
            hidden.append(m)

        handles = [layer.mlp.register_forward_pre_hook(hook) for layer in _layers(model)]
    for act_module, down in [] if handles else _mlp_modules(model):
        handles.append(act_module.register_forward_hook(lambda m, i, o: acts.append(o.detach())))
        handles.append(down.register_forward_pre_hook(lambda m, i: hidden.append(i[0].detach())))
    ids_t, mask_t = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
    kwargs = {}
    if not hasattr(model, "transformer"):  # RoPE models: positions counted over real tokens
        kwargs["position_ids"] = (mask_t.cumsum(-1) - 1).clamp(min=0)
    try:
        with torch.no_grad():
            logits = model(input_ids=ids_t, attention_mask=mask_t, **kwargs).logits
    finally:
        for h in handles:
            h.remove()
    return logits.numpy(), torch.stack(acts, 2).numpy(), torch.stack(hidden, 2).numpy()
