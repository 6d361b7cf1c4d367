"""Answer scoring: log-likelihood of continuations (on the device) and accuracy per language (on the host)."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def continuation_scores(logits_rkv: jax.Array, targets_rk: jax.Array, target_mask_rk: jax.Array
                        ) -> tuple[jax.Array, jax.Array]:
    """(summed log-prob of each row's continuation [R], whether every token is the argmax [R]).

    logits_rkv are the logits at the positions that predict the continuation's tokens; masked positions
    (past the continuation's end) count for nothing. A row with no continuation scores (0, True).
    """
    logprobs_rkv = jax.nn.log_softmax(logits_rkv.astype(jnp.float32), axis=-1)
    target_logprob_rk = jnp.take_along_axis(logprobs_rkv, targets_rk[..., None], axis=-1)[..., 0]
    logprob_r = jnp.sum(jnp.where(target_mask_rk, target_logprob_rk, 0.0), axis=-1)
    is_argmax_rk = jnp.argmax(logits_rkv, axis=-1) == targets_rk
    greedy_r = jnp.all(is_argmax_rk | ~target_mask_rk, axis=-1)
    return logprob_r, greedy_r


def first_token_scores(logits_rkv: jax.Array, first_tokens_rs: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-prob [R, S] and is-argmax [R, S] of each slot's first token, from the logits at the prompt's end."""
    logprobs_rv = jax.nn.log_softmax(logits_rkv[:, 0].astype(jnp.float32), axis=-1)
    logprob_rs = jnp.take_along_axis(logprobs_rv, first_tokens_rs, axis=-1)
    return logprob_rs, jnp.argmax(logits_rkv[:, 0], axis=-1)[:, None] == first_tokens_rs


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
