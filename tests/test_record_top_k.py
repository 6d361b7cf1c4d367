"""`Record(top_k=k)`: each FFN quantity comes back as (values, indices) of every row's k largest neurons, equal to
numpy's top-k of the full recording; other quantities and the logits are unchanged."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.models.output import forward
from tests.fixtures import tiny_lm

K = 5


@pytest.fixture(scope="module")
def batch():
    lm = tiny_lm()
    ids, mask = lm.encode(["Paris is the capital of", "ab", "Die Hauptstadt von Frankreich ist"])
    return lm, jnp.asarray(ids), jnp.asarray(mask)


def numpy_top_k(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(-x, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(x, order, axis=-1), order


@pytest.mark.parametrize("at, layers", [("last", None), ("every", (1,)), ("max", (0, 1))])
def test_top_k_equals_numpy_top_k_of_the_full_recording(batch, at, layers):
    lm, ids, mask = batch
    names = ("act", "ffn_hidden", "resid_post")
    full = forward(jn.Decoder(lm.config, record=jn.Record(names, at, layers)), lm.params, ids, mask)
    top = forward(jn.Decoder(lm.config, record=jn.Record(names, at, layers, top_k=K)), lm.params, ids, mask)
    for name in ("act", "ffn_hidden"):
        values, indices = top.activations[name]
        expected_values, expected_indices = numpy_top_k(np.asarray(full.activations[name]), K)
        assert values.shape == expected_values.shape and values.shape[-1] == K
        np.testing.assert_array_equal(np.asarray(values), expected_values)
        np.testing.assert_array_equal(np.asarray(indices), expected_indices)  # random floats: no ties
    np.testing.assert_array_equal(np.asarray(top.activations["resid_post"]),
                                  np.asarray(full.activations["resid_post"]))
    np.testing.assert_array_equal(np.asarray(top.logits), np.asarray(full.logits))


def test_top_k_larger_than_the_layer_keeps_every_neuron_sorted(batch):
    lm, ids, mask = batch
    out = forward(jn.Decoder(lm.config, record=jn.Record(("act",), top_k=1000)), lm.params, ids, mask)
    values, indices = out.activations["act"]
    assert values.shape[-1] == lm.config.intermediate_size
    assert np.all(np.diff(np.asarray(values), axis=-1) <= 0)
    assert np.array_equal(np.sort(np.asarray(indices), axis=-1),
                          np.broadcast_to(np.arange(lm.config.intermediate_size), indices.shape))


@pytest.mark.parametrize("top_k", [0, -1, 2.0, True])
def test_bad_top_k_is_refused_in_one_line(top_k):
    with pytest.raises(ValueError, match="Record.top_k must be a positive int"):
        jn.Record(("act",), top_k=top_k)
