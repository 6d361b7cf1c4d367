"""The PyTorch baselines, from what users run today to the strongest we could write, on a transformers Llama.

Categorisation (the last token's act(gate) > 0, across the N parallel rows of each example):
  paper  : one prompt at a time, forward hooks, NumPy (the released notebooks' way, minus their bugs);
  batched: left-padded batches of whole examples (batch_size x N rows), inference mode, SDPA, the hooks
           keep only the last position's act > 0 (a new bool tensor: no view of the full activation stays
           alive), categories on the device;
  sorted : the same with all rows sorted by length before batching, so each batch pads little; every row's
           activity is added to its example's count of active rows, from which the categories follow.
Integrated gradients (P(target) at the last position; left Riemann over `steps` alphas; zero baseline):
  naive  : Knowledge Neurons made lean: per layer, the alphas as one batch, the whole prompt forward and
           backward, but logits at the last position only and every parameter frozen;
  replay : the same last-token replay as jaxneurons: the prompt runs once (keys/values and the last token's
           residuals kept), then per layer l the alphas replay only the last token through layers l..L-1.
Generation under a deactivation (greedy, a fixed set of neurons zeroed in every layer):
  generate: transformers' `generate` (KV cache, SDPA, inference mode), prompts sorted by length and left-padded
           in batches, EOS off so every row gets max_new_tokens, a forward pre-hook on every layer's down_proj
           zeroing the neurons in place.
The model's parameters must be frozen (`model.requires_grad_(False)`) before calling the IG functions.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb


def categories_np(acts_nlf):
    """[L, 4] counts of all-shared, partial-shared, specific, non-activated from [N, L, F] activations."""
    return categories_from_active_count((acts_nlf > 0).sum(0), acts_nlf.shape[0])


def categories_from_active_count(s, n):
    """Counts per layer [.., L, 4] from the number s [.., L, F] of rows (of n) where a neuron is active."""
    stack = torch.stack if isinstance(s, torch.Tensor) else np.stack
    return stack([(s == n), (s >= 2) & (s <= n - 1), s == 1, s == 0], -1).sum(-2)


def _act_hooks(model, keep):
    return [layer.mlp.act_fn.register_forward_hook(keep) for layer in model.model.layers]


@torch.inference_mode()
def paper_loop(model, rows, device):
    """[E, L, 4] category counts, one prompt at a time."""
    out = []
    for example in rows:
        acts = []
        for prompt in example:
            seen = []
            handles = _act_hooks(model, lambda m, i, o: seen.append(o[0, -1].float().cpu().numpy()))
            model.model(torch.tensor([prompt], device=device))
            for h in handles:
                h.remove()
            acts.append(np.stack(seen))
        out.append(categories_np(np.stack(acts)))
    return np.stack(out)


@torch.inference_mode()
def _active_last(model, prompts, device):
    """[R, L, F] bool: act(gate) > 0 at each left-padded row's last token (one forward, hooks)."""
    ids, mask = _left_padded(prompts, device)
    seen = []
    handles = _act_hooks(model, lambda m, i, o: seen.append(o[:, -1] > 0))
    model.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    for h in handles:
        h.remove()
    return torch.stack(seen, 1)


def _left_padded(prompts, device, pad_id=0):
    """(ids, attention mask) [R, longest] on the device, each row's tokens at the right end."""
    length = max(map(len, prompts))
    ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, length - len(p):], mask[i, length - len(p):] = torch.tensor(p), 1
    return ids.to(device), mask.to(device)


def batched(model, rows, batch_size, device):
    """[E, L, 4] category counts, batches of whole examples; and the share of real tokens."""
    n = len(rows[0])
    out, real, padded = [], 0, 0
    for start in range(0, len(rows), batch_size):
        flat = [p for example in rows[start:start + batch_size] for p in example]
        active = _active_last(model, flat, device).reshape(-1, n, *_active_shape(model))
        out.append(categories_from_active_count(active.sum(1), n).cpu().numpy())
        real, padded = real + sum(map(len, flat)), padded + len(flat) * max(map(len, flat))
    return np.concatenate(out), real / padded


def length_sorted(model, rows, batch_size, device):
    """[E, L, 4] category counts from all rows sorted by length, batch_size x N rows per batch; and the
    share of real tokens. Counts are the same as `batched`: only the grouping of rows changes."""
    n = len(rows[0])
    flat = [(len(p), e, p) for e, example in enumerate(rows) for p in example]
    flat.sort(key=lambda item: item[0])
    count = torch.zeros((len(rows), *_active_shape(model)), dtype=torch.int32, device=device)
    real, padded, rows_per_batch = 0, 0, batch_size * n
    for start in range(0, len(flat), rows_per_batch):
        chunk = flat[start:start + rows_per_batch]
        active = _active_last(model, [p for _, _, p in chunk], device)
        count.index_add_(0, torch.tensor([e for _, e, _ in chunk], device=device), active.int())
        real, padded = real + sum(c[0] for c in chunk), padded + len(chunk) * chunk[-1][0]
    return categories_from_active_count(count, n).cpu().numpy(), real / padded


def _active_shape(model):
    return len(model.model.layers), model.config.intermediate_size


@torch.inference_mode()
def generate_zeroed(model, prompts, neurons, new_tokens, batch_size, device, pad_id=0):
    """[R, new_tokens] greedy tokens of transformers' generate, in the prompts' order: prompts sorted by length,
    left-padded batches of batch_size, no EOS stop, neurons ({layer: indices}) zeroed by forward pre-hooks."""
    index = {layer: torch.as_tensor(np.asarray(i), dtype=torch.long, device=device) for layer, i in neurons.items()}

    def zeroing(layer):
        def hook(module, inputs):
            inputs[0].index_fill_(-1, index[layer], 0)  # a temporary (act(gate) * up): nothing else reads it
        return hook

    handles = [model.model.layers[l].mlp.down_proj.register_forward_pre_hook(zeroing(l)) for l in index]
    order = np.argsort([len(p) for p in prompts], kind="stable")
    out = np.zeros((len(prompts), new_tokens), np.int64)
    try:
        for start in range(0, len(prompts), batch_size):
            picked = order[start:start + batch_size]
            ids, mask = _left_padded([prompts[i] for i in picked], device, pad_id)
            tokens = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, do_sample=False,
                                    use_cache=True, pad_token_id=pad_id, eos_token_id=None)
            if tokens.shape[1] != ids.shape[1] + new_tokens:
                raise RuntimeError(f"transformers generated {tokens.shape[1] - ids.shape[1]} tokens, not {new_tokens}")
            out[picked] = tokens[:, ids.shape[1]:].cpu().numpy()
    finally:
        for h in handles:
            h.remove()
    return out


def _clean_pass(model, ids, layers, cache=False):
    """The prompt [1, T] once: {"m": {layer: m at the last token}} for `layers`; with `cache`, also per
    layer the residual after attention at the last token ("mid") and the keys/values of positions 0..T-2
    ("prefix": [1, kv_heads, T-1, head_dim] each, rope applied)."""
    kept = {"m": {}, "k": {}, "v": {}, "mid": {}}

    def grab(kind, layer, last=True):
        def hook(module, inputs, output=None):
            x = inputs[0] if output is None else output
            kept[kind][layer] = x[0, -1].clone() if last else x[:, :-1].clone()
        return hook

    handles = []
    for l, block in enumerate(model.model.layers):
        if l in layers:
            handles.append(block.mlp.down_proj.register_forward_pre_hook(grab("m", l)))
        if cache:
            handles.append(block.post_attention_layernorm.register_forward_pre_hook(grab("mid", l)))
            handles.append(block.self_attn.k_proj.register_forward_hook(grab("k", l, last=False)))
            handles.append(block.self_attn.v_proj.register_forward_hook(grab("v", l, last=False)))
    with torch.no_grad():
        model.model(ids)
    for h in handles:
        h.remove()
    if cache:
        prefix = ids.shape[1] - 1
        d = model.model.layers[0].self_attn.head_dim
        cos, sin = model.model.rotary_emb(kept["mid"][0][None, None], torch.arange(prefix, device=ids.device)[None])
        heads = {kind: {l: x.view(1, prefix, -1, d).transpose(1, 2) for l, x in kept[kind].items()}
                 for kind in ("k", "v")}
        kept["prefix"] = {l: (apply_rotary_pos_emb(heads["k"][l], heads["k"][l], cos, sin)[0], heads["v"][l])
                          for l in heads["k"]}
    return kept


def naive_ig(model, prompt, target, layers, steps, device):
    """[len(layers), F] IG: per layer, the alphas as one batch through the whole prompt, forward and backward."""
    ids = torch.tensor([prompt] * steps, device=device)
    alphas = (torch.arange(steps, device=device, dtype=torch.float32) / steps)[:, None]
    clean = _clean_pass(model, ids[:1], set(layers))["m"]
    out = []
    for layer in layers:
        scaled = (alphas * clean[layer].float()).to(clean[layer].dtype).requires_grad_(True)

        def replace(m, inputs):
            x = inputs[0].clone()
            x[:, -1] = scaled
            return (x,)

        handle = model.model.layers[layer].mlp.down_proj.register_forward_pre_hook(replace)
        hidden = model.model(ids).last_hidden_state[:, -1]
        handle.remove()
        prob = torch.softmax(model.lm_head(hidden).float(), -1)[:, target].sum()
        (grad,) = torch.autograd.grad(prob, scaled)
        out.append((clean[layer].float() * grad.float().mean(0)).cpu().numpy())
    return np.stack(out)


def replay_ig(model, prompt, target, layers, steps, device):
    """[len(layers), F] IG by last-token replay: the prompt once, then per layer l the alphas (a batch)
    through layers l..L-1 for the last token only, attending to the kept keys and values."""
    ids = torch.tensor([prompt], device=device)
    kept = _clean_pass(model, ids, set(layers), cache=True)
    position = torch.full((steps, 1), len(prompt) - 1, device=device)
    rope = model.model.rotary_emb(kept["mid"][0][None, None].expand(steps, 1, -1), position)
    alphas = (torch.arange(steps, device=device, dtype=torch.float32) / steps)[:, None]
    out = []
    for layer in layers:
        m = kept["m"][layer]
        scaled = (alphas * m.float()).to(m.dtype).requires_grad_(True)
        block = model.model.layers[layer]
        h = (kept["mid"][layer] + block.mlp.down_proj(scaled))[:, None]  # [S, 1, H]
        for upper in range(layer + 1, len(model.model.layers)):
            h = _replay_block(model, upper, h, kept, rope)
        prob = torch.softmax(model.lm_head(model.model.norm(h[:, 0])).float(), -1)[:, target].sum()
        (grad,) = torch.autograd.grad(prob, scaled)
        out.append((m.float() * grad.float().mean(0)).cpu().numpy())
    return np.stack(out)


def _replay_block(model, layer, h, kept, rope):
    """One decoder layer for the last token [S, 1, H], its attention over the prompt's kept keys/values."""
    block, steps = model.model.layers[layer], h.shape[0]
    attn, d = block.self_attn, block.self_attn.head_dim
    x = block.input_layernorm(h)
    q = attn.q_proj(x).view(steps, 1, -1, d).transpose(1, 2)
    k = attn.k_proj(x).view(steps, 1, -1, d).transpose(1, 2)
    v = attn.v_proj(x).view(steps, -1, 1, d)
    q, k = apply_rotary_pos_emb(q, k, *rope)
    a = _attend_after_prefix(q, k, v, *kept["prefix"][layer], attn.scaling)
    h = h + attn.o_proj(a.reshape(steps, 1, -1))
    return h + block.mlp(block.post_attention_layernorm(h))


def _attend_after_prefix(q, k, v, prefix_k, prefix_v, scale):
    """Attention of the last token (S alphas: q [S, heads, 1, d], k [S, kv, 1, d], v [S, kv, 1, d]) to the
    prompt's keys/values [1, kv, P, d] and its own, without copying the prefix once per alpha: the prefix
    scores are one batched product over the kv heads, the token's own score a dot product, one softmax."""
    steps, kv, d = q.shape[0], k.shape[1], q.shape[-1]
    q = q.reshape(steps, kv, -1, d)  # [S, kv, group, d]: head h reads kv head h // group
    scores = torch.cat([torch.einsum("skgd,kpd->skgp", q, prefix_k[0]),
                        (q * k.reshape(steps, kv, 1, d)).sum(-1, keepdim=True)], -1) * scale
    p = torch.softmax(scores.float(), -1).to(q.dtype)
    return torch.einsum("skgp,kpd->skgd", p[..., :-1], prefix_v[0]) + p[..., -1:] * v  # [S, kv, group, d]
