"""The chunked unembedding scores equal the scores of the full logits, computed in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.models.output import forward
from jaxneurons.pipeline import scoring


def tiny(tie: bool, softcap: float | None):
    config = jn.ModelConfig(family="llama", vocab_size=300, hidden_size=32, intermediate_size=24, num_layers=2,
                            num_heads=4, num_kv_heads=2, head_dim=8, tie_embeddings=tie,
                            final_logit_softcap=softcap)
    ids = jnp.ones((1, 4), jnp.int32)
    params = jn.Decoder(config).init(jax.random.key(1), ids, ids)["params"]
    params = jax.tree.map(lambda x: x * 10 if x.ndim == 2 else x, params)  # logits that differ by token
    return config, params


def numpy_scores(logits_rjv, targets_rj, mask_rk, first_rs):
    logits = np.asarray(logits_rjv, np.float64)
    logprobs = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    target = np.take_along_axis(logprobs, targets_rj[..., None], -1)[..., 0]
    logprob = np.where(mask_rk, target, 0).sum(-1)
    greedy = np.all((logits.argmax(-1) == targets_rj) | ~mask_rk, -1)
    first = np.take_along_axis(logprobs[:, 0], first_rs, -1)
    return logprob, greedy, first, logits[:, 0].argmax(-1)[:, None] == first_rs


@pytest.mark.parametrize("tie,softcap", [(True, None), (False, 30.0)])
def test_hidden_scores_equal_the_full_logits(tie, softcap, monkeypatch):
    config, params = tiny(tie, softcap)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, config.vocab_size, (3, 12)).astype(np.int32)
    mask = np.ones_like(ids)
    index = np.array([[4, 5, 6, 7], [2, 3, 3, 3], [9, 10, 11, 11]], np.int32)
    targets = rng.integers(0, config.vocab_size, index.shape).astype(np.int32)
    full = np.asarray(forward(jn.Decoder(config, logits="every"), params, ids, mask).logits)
    targets[1, 0] = full[1, index[1, 0]].argmax()  # row 1's one-token continuation is the greedy one
    target_mask = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]], bool)
    first = rng.integers(0, config.vocab_size, (3, 2)).astype(np.int32)
    logits = forward(jn.Decoder(config, logits="indexed"), params, ids, mask, logit_index=index).logits
    hidden = forward(jn.Decoder(config, logits="hidden"), params, ids, mask, logit_index=index).logits
    monkeypatch.setattr(scoring, "LOGITS_CHUNK_BYTES", 4 * config.vocab_size * 5)  # chunks of 5 of 12 tokens
    got = scoring.hidden_scores(config, params, hidden, targets, target_mask, first)
    want = numpy_scores(logits, targets, target_mask, first)
    np.testing.assert_allclose(got["logprob"], want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["greedy"], want[1])
    np.testing.assert_allclose(got["first_logprob"], want[2], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got["first_greedy"], want[3])
    assert want[1].any() and not want[1].all()  # the greedy check is exercised both ways
    old = scoring.continuation_scores(logits, targets, target_mask)
    np.testing.assert_allclose(got["logprob"], old[0], rtol=1e-6, atol=1e-6)
