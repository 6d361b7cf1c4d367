"""Alignment objective: task loss + lambda * a differentiable neuron-sharing loss, from one forward pass.

Batch layout (numpy, built by `make_batch`): B parallel examples x N languages, each row the prompt followed by
the gold answer tokens (teacher forcing), padded on the right to T.

Task loss (cross-entropy of the gold answer after the prompt, averaged over every language of an example):

    L_task = 1/(B N) * sum_{b,n} [ -(1/K_bn) sum_{k < K_bn} log p(y_bnk | prompt_bn, y_bn<k) ]

(mean per-token negative log-likelihood of each row's answer, then mean over rows = examples x languages).

Sharing loss. z_{b,n,l,j} is the pre-activation of neuron j of layer l (gated MLPs: the gate projection, so
act = act_fn(z); non-gated: the up projection) at the prompt's last token of language n of example b: the
recorded quantity "pre_act", from the same forward pass. For silu and gelu, act > 0 iff z > 0, so
a_{b,n,l,j} = 1[z > 0] is the paper's "activated at tau = 0". With S_{b,l,j} = sum_n a_{b,n,l,j} (no gradient
through a, S):

    target_{b,l,j}   = 1[ S >= rho * N  and  S < N ]                (mostly shared, but not by every language)
    miss_{b,n,l,j}   = target_{b,l,j} * (1 - a_{b,n,l,j})            (a language that misses such a neuron)
    L_share = 1/(B N L F) * sum_{b,n,l,j} miss_{b,n,l,j} * relu(margin - z_{b,n,l,j})

i.e. the hinge averaged over every (layer, example, language, neuron) entry. It is exactly 0 when every
language agrees (every neuron is active in all languages or in fewer than rho*N of them) and > 0 otherwise
(each missing entry contributes at least margin/(LBNF)); its gradient pushes the missing languages' z up.
The hinge is on the pre-activation z rather than on act because silu(z) decreases in z for z < -1.28, so a
hinge on act could push z further down. Defaults: rho = 0.5, margin = 1.0.

    L = L_task + lambda * L_share
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models.decoder import Decoder, Record
from jaxneurons.models.output import forward

BATCH_KEYS = ("ids", "mask", "last", "pos", "tok", "tmask")


def make_batch(items: Sequence[dict], pad_id: int = 0, multiple: int = 16, answer_len: int | None = None) -> dict:
    """Stack tokenized items into arrays [B, N, ...].

    An item is {"prompts": [ids per language], "answers": [gold answer ids per language], ...}.
    Returns ids/mask [B, N, T], last [B, N] (index of the prompt's last token), pos/tok/tmask [B, N, K]
    (positions whose logits predict answer token k, the token, and whether it exists).
    """
    num_lang = len(items[0]["prompts"])
    rows = [list(p) + list(a) for it in items for p, a in zip(it["prompts"], it["answers"])]
    longest = max(len(r) for r in rows)
    length = -(-longest // multiple) * multiple
    k_max = answer_len or max(max(len(a), 1) for it in items for a in it["answers"])
    b = len(items)
    ids = np.full((b * num_lang, length), pad_id, np.int32)
    mask = np.zeros((b * num_lang, length), np.int32)
    last = np.zeros((b * num_lang,), np.int32)
    pos = np.zeros((b * num_lang, k_max), np.int32)
    tok = np.zeros((b * num_lang, k_max), np.int32)
    tmask = np.zeros((b * num_lang, k_max), bool)
    r = 0
    for it in items:
        if len(it["prompts"]) != num_lang:
            raise ValueError("every item must have the same number of languages")
        for p, a in zip(it["prompts"], it["answers"]):
            row = list(p) + list(a)
            ids[r, :len(row)], mask[r, :len(row)] = row, 1
            last[r] = len(p) - 1
            k = min(len(a), k_max)
            pos[r, :k] = np.arange(len(p) - 1, len(p) - 1 + k)
            tok[r, :k] = a[:k]
            tmask[r, :k] = True
            r += 1
    shape = lambda x: x.reshape((b, num_lang) + x.shape[1:])  # noqa: E731
    return {"ids": shape(ids), "mask": shape(mask), "last": shape(last), "pos": shape(pos), "tok": shape(tok),
            "tmask": shape(tmask)}


def forward_terms(decoder: Decoder, params, batch: dict):
    """One forward: (answer log-probs [B, N, K], pre-activation z [B, N, L, F], act [B, N, L, F]).

    decoder: `objective_decoder`'s, with logits at the answer positions and pre_act, act at the prompts' end."""
    b, n, t = batch["ids"].shape
    out = forward(decoder, params, batch["ids"].reshape(b * n, t), batch["mask"].reshape(b * n, t),
                  record_index=batch["last"].reshape(b * n), logit_positions=batch["pos"].reshape(b * n, -1))
    logprobs = jax.nn.log_softmax(out.logits.astype(jnp.float32), axis=-1)
    tok_lp = jnp.take_along_axis(logprobs, batch["tok"].reshape(b * n, -1)[..., None], axis=-1)[..., 0]
    z, act = (out.activations[name].astype(jnp.float32) for name in ("pre_act", "act"))  # [B*N, L, F]
    return tok_lp.reshape(b, n, -1), z.reshape(b, n, *z.shape[1:]), act.reshape(b, n, *act.shape[1:])


def objective_decoder(lm) -> Decoder:
    """The decoder `forward_terms` runs: pre_act and act at each prompt's last token, logits at positions."""
    return lm.decoder(Record(("pre_act", "act"), "last"), logits="positions")


def task_loss(tok_logprob_bnk, tmask_bnk) -> jax.Array:
    """Mean over rows of the mean per-token NLL of the gold answer."""
    tmask = tmask_bnk.astype(jnp.float32)
    per_row = -jnp.sum(tok_logprob_bnk * tmask, -1) / jnp.maximum(jnp.sum(tmask, -1), 1.0)
    return jnp.mean(per_row)


def sharing_loss(z_bnlf, rho: float = 0.5, margin: float = 1.0) -> jax.Array:
    """The hinge of the module docstring on pre-activations z [B, N, L, F]."""
    num_lang = z_bnlf.shape[1]
    active = jax.lax.stop_gradient((z_bnlf > 0).astype(jnp.float32))
    shared = jnp.sum(active, axis=1, keepdims=True)
    target = (shared >= rho * num_lang) & (shared < num_lang)
    miss = target.astype(jnp.float32) * (1.0 - active)
    return jnp.mean(miss * jax.nn.relu(margin - z_bnlf))


@functools.partial(jax.jit, static_argnames=("decoder",))
def alignment_loss(params, decoder: Decoder, batch: dict, lambda_sharing, rho=0.5, margin=1.0):
    """(L_task + lambda * L_share, {"task", "sharing", "all_shared_pct"}) on one batch."""
    tok_lp, z, _ = forward_terms(decoder, params, batch)
    lt = task_loss(tok_lp, batch["tmask"])
    ls = sharing_loss(z, rho, margin)
    all_shared = jnp.mean(jnp.all(z > 0, axis=1).astype(jnp.float32)) * 100.0
    return lt + lambda_sharing * ls, {"task": lt, "sharing": ls, "all_shared_pct": all_shared}
