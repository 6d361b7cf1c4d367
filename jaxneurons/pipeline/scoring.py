"""Answer scoring: log-likelihood of continuations (on the device) and accuracy per language (on the host)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models.decoder import unembed, unembedding
from jaxneurons.pipeline.batching import Batch


LOGITS_CHUNK_BYTES = 2**26  # token_scores: float32 logits computed at once (64 MiB; log-softmax holds about 3 such)


def token_log_probs(logits_pv: jax.Array, tokens_pc: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(log-prob [P, C] of C tokens at each of P tokens read, whether each is the argmax [P, C]) from their
    logits [P, V]."""
    logits_pv = logits_pv.astype(jnp.float32)
    shifted = logits_pv - jnp.max(logits_pv, axis=-1, keepdims=True)  # log_softmax, term for term
    log_norm = jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))
    logprob_pc = jnp.take_along_axis(shifted, tokens_pc, axis=-1) - log_norm
    return logprob_pc, jnp.argmax(logits_pv, axis=-1)[:, None] == tokens_pc


def token_scores(config, params, hidden_rjd: jax.Array, tokens_rjc: jax.Array, dtype=jnp.float32
                 ) -> tuple[jax.Array, jax.Array]:
    """`token_log_probs` of tokens [R, J, C] at final hidden states [R, J, D] (a Decoder's logits="hidden"),
    without the [R, J, V] logits: the unembedding runs over chunks of tokens that hold LOGITS_CHUNK_BYTES
    (a 262,144-token vocabulary would otherwise take 1 MiB per token). Returns ([R, J, C], [R, J, C])."""
    weight = unembedding(config, params)
    rows, j, width = hidden_rjd.shape
    chunk = max(1, LOGITS_CHUNK_BYTES // (4 * config.vocab_size))

    def one(item):
        h_d, tokens_c = item
        return token_log_probs(unembed(config, h_d[None], weight, dtype), tokens_c[None])

    flat = (hidden_rjd.reshape(rows * j, width), tokens_rjc.reshape(rows * j, -1))
    logprob, is_argmax = jax.lax.map(lambda x: jax.tree.map(lambda a: a[0], one(x)), flat, batch_size=chunk)
    return logprob.reshape(tokens_rjc.shape), is_argmax.reshape(tokens_rjc.shape)


def continuation_scores(logits_rjv: jax.Array, targets_rj: jax.Array, target_mask_rj: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
    """(summed log-prob of each row's continuation [R], whether every token is the argmax [R]).

    logits_rjv are the logits at the tokens that predict the continuation's tokens; masked ones
    (past the continuation's end) count for nothing. A row with no continuation scores (0, True).
    """
    rows, j, vocab = logits_rjv.shape
    logprob, is_argmax = token_log_probs(logits_rjv.reshape(rows * j, vocab), targets_rj.reshape(-1, 1))
    return sum_continuation(logprob.reshape(rows, j), is_argmax.reshape(rows, j), target_mask_rj)


def sum_continuation(target_logprob_rj: jax.Array, is_argmax_rj: jax.Array, target_mask_rj: jax.Array
                     ) -> tuple[jax.Array, jax.Array]:
    """(summed log-prob [R], all-argmax [R]) of each row's continuation from its per-token scores [R, J]."""
    logprob_r = jnp.sum(jnp.where(target_mask_rj, target_logprob_rj, 0.0), axis=-1)
    return logprob_r, jnp.all(is_argmax_rj | ~target_mask_rj, axis=-1)


def first_token_scores(logits_rjv: jax.Array, first_tokens_rs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-prob [R, S] and is-argmax [R, S] of each slot's first token, from the logits at the prompt's end."""
    return token_log_probs(logits_rjv[:, 0], first_tokens_rs)


def hidden_scores(config, params, hidden_rjd: jax.Array, targets_rj: jax.Array, target_mask_rj: jax.Array,
                  first_tokens_rs: jax.Array, dtype=jnp.float32) -> dict[str, jax.Array]:
    """`continuation_scores` and `first_token_scores` from final hidden states [R, J, D] in one chunked
    unembedding: {logprob [R], greedy [R], first_logprob [R, S], first_greedy [R, S]}. Position 0 of each
    row (the prompt's last token) also scores the first tokens of every slot."""
    slots = first_tokens_rs.shape[1]
    first = jnp.zeros(targets_rj.shape + (slots,), targets_rj.dtype).at[:, 0].set(first_tokens_rs)
    logprob, is_argmax = token_scores(config, params, hidden_rjd,
                                      jnp.concatenate([targets_rj[..., None], first], axis=-1), dtype)
    out = dict(zip(("logprob", "greedy"), sum_continuation(logprob[..., 0], is_argmax[..., 0], target_mask_rj)))
    out["first_logprob"], out["first_greedy"] = logprob[:, 0, 1:], is_argmax[:, 0, 1:]
    return out


def judge(task, option_logprobs_eno: np.ndarray, greedy_match_en: np.ndarray, examples: Sequence,
          languages: Sequence[str]) -> np.ndarray:
    """correct [E, N] from the model's scores, by `task.is_correct` (options: argmax; greedy: exact match)."""
    correct_en = np.zeros(greedy_match_en.shape, dtype=bool)
    for e, ex in enumerate(examples):
        for n, lang in enumerate(languages):
            if task.scoring == "options":
                scores = option_logprobs_eno[e, n, :len(ex.options[lang])]
                correct_en[e, n] = task.is_correct(scores, None, ex.gold[lang])
            else:
                correct_en[e, n] = task.is_correct(None, bool(greedy_match_en[e, n]), ex.gold[lang])
    return correct_en


def accuracy_per_language(correct_en: np.ndarray, languages: Sequence[str]) -> dict[str, float]:
    """language -> fraction of examples answered correctly."""
    return {lang: float(np.mean(correct_en[:, n])) for n, lang in enumerate(languages)}


def slot_scores(batch: Batch, stats: dict, full: dict, neuron_position: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(log-prob [R], greedy [R]) of every slot: from its own forward, or from its single first token."""
    if neuron_position == "last":
        full = {0: (stats["logprob"], stats["greedy"]), **full}
    return [full.get(s, (stats["first_logprob"][:, s], stats["first_greedy"][:, s]))
            for s in range(batch.option_index_sr.shape[0])]


def record_scores(batch: Batch, scores: list, num_languages: int, option_logprobs_eno: np.ndarray,
                  greedy_match_en: np.ndarray, gold_logprob_en: np.ndarray | None = None) -> None:
    """Write each slot's (log-prob [R], greedy [R]) into per-example arrays (dummy examples dropped)."""
    valid_b = batch.valid_b
    e_v = batch.example_index_b[valid_b]
    for s, (logprob_r, greedy_r) in enumerate(scores):
        logprob_vn = np.asarray(logprob_r).reshape(-1, num_languages)[valid_b]
        option_vn = batch.option_index_sr[s].reshape(-1, num_languages)[valid_b]
        v, n = np.nonzero(option_vn >= 0)
        option_logprobs_eno[e_v[v], n, option_vn[v, n]] = logprob_vn[v, n]
        if s == 0:  # slot 0 is the gold answer
            if gold_logprob_en is not None:
                gold_logprob_en[e_v] = logprob_vn
            greedy_match_en[e_v] = np.asarray(greedy_r).reshape(-1, num_languages)[valid_b]
