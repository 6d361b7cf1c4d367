"""Alignment objective: task loss + lambda * a differentiable neuron-sharing loss, from one forward pass.

Batch layout (numpy, built by `make_batch`): the sharing pipeline's forward arrays (`batching.Inputs`: ids_rt,
mask_rt, record_index_r, logit_index_rj, targets_rj, target_mask_rj) over R = B x N rows, example-major:
B parallel examples x N languages, each row a `TokenizedRow`'s prompt followed by its gold continuation
(teacher forcing), padded on the right, built by the pipeline's own builder (`batching.gold_inputs`).

Task loss (cross-entropy of the gold answer after the prompt, averaged over every language of an example):

    L_task = 1/(B N) * sum_{b,n} [ -(1/K_bn) sum_{k < K_bn} log p(y_bnk | prompt_bn, y_bn<k) ]

(mean per-token negative log-likelihood of each row's answer, then mean over rows = examples x languages; the
summed log-likelihood is the pipeline's `scoring.continuation_scores`, the one that scores answers).

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
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models.decoder import Decoder, Record
from jaxneurons.pipeline.batching import TokenizedRow, gold_inputs
from jaxneurons.pipeline.scoring import continuation_scores
from jaxneurons.pipeline.step import forward_rows


def make_batch(rows: Sequence[Sequence[TokenizedRow]], pad_id: int, answer_len: int | None = None
               ) -> dict[str, np.ndarray]:
    """The `Inputs` arrays of B examples x N languages (rows [B][N]), prompt + gold continuation per row.

    answer_len: the continuation length the targets are padded to (default: the bucket of the batch's longest);
    the training passes the longest of its data, so every batch of a length bucket has one shape.
    Returns `batching.gold_inputs(...).arrays()`: ids_rt, mask_rt [R, T], record_index_r [R] (the prompt's
    last token), logit_index_rj, targets_rj, target_mask_rj [R, J], with R = B * N, example-major.
    """
    num_lang = len(rows[0])
    if any(len(example) != num_lang for example in rows):
        raise ValueError("every example must have a row in each of the same languages")
    if any(row.readout_extra for example in rows for row in example):
        raise ValueError("the alignment objective reads the neurons at the prompt's last token: the rows read "
                         "them in the answer (choose a prompt-end --prompt_format, e.g. paper)")
    return gold_inputs([row for example in rows for row in example], pad_id, answer_len).arrays()


def forward_terms(decoder: Decoder, params, batch: dict, num_languages: int):
    """One forward: (answer log-prob [R], answer tokens [R], pre-activation z [B, N, L, F], act [B, N, L, F]).

    decoder: `objective_decoder`'s; batch: `make_batch`'s arrays, run by the pipeline's `forward_rows` and
    scored by its `continuation_scores` (summed log-prob of each row's gold continuation)."""
    logits, activations = forward_rows(decoder, params, batch)
    logprob_r, _ = continuation_scores(logits, batch["targets_rj"], batch["target_mask_rj"])
    tokens_r = jnp.sum(batch["target_mask_rj"], axis=-1)
    z, act = (activations[name].astype(jnp.float32) for name in ("pre_act", "act"))  # [R, L, F]
    shape = (-1, num_languages) + z.shape[1:]
    return logprob_r, tokens_r, z.reshape(shape), act.reshape(shape)


def objective_decoder(lm) -> Decoder:
    """The decoder `forward_terms` runs: pre_act and act at each prompt's last token, logits at positions."""
    return lm.decoder(Record(("pre_act", "act"), "last"), logits="indexed")


def task_loss(logprob_r, tokens_r) -> jax.Array:
    """Mean over rows of the mean per-token NLL of the gold answer (summed log-prob [R] over its tokens [R])."""
    return jnp.mean(-logprob_r / jnp.maximum(tokens_r.astype(jnp.float32), 1.0))


def sharing_loss(z_bnlf, rho: float = 0.5, margin: float = 1.0) -> jax.Array:
    """The hinge of the module docstring on pre-activations z [B, N, L, F]."""
    num_lang = z_bnlf.shape[1]
    active = jax.lax.stop_gradient((z_bnlf > 0).astype(jnp.float32))
    shared = jnp.sum(active, axis=1, keepdims=True)
    target = (shared >= rho * num_lang) & (shared < num_lang)
    miss = target.astype(jnp.float32) * (1.0 - active)
    return jnp.mean(miss * jax.nn.relu(margin - z_bnlf))


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def alignment_loss(params, decoder: Decoder, batch: dict, lambda_sharing, rho=0.5, margin=1.0, *,
                   num_languages: int):
    """(L_task + lambda * L_share, {"task", "sharing", "all_shared_pct"}) on one batch of N languages."""
    logprob_r, tokens_r, z, _ = forward_terms(decoder, params, batch, num_languages)
    lt = task_loss(logprob_r, tokens_r)
    ls = sharing_loss(z, rho, margin)
    all_shared = jnp.mean(jnp.all(z > 0, axis=1).astype(jnp.float32)) * 100.0
    return lt + lambda_sharing * ls, {"task": lt, "sharing": ls, "all_shared_pct": all_shared}
