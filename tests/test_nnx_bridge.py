"""The NNX recipe of BUILD_NOTES ("Linen, not NNX"): the Linen `Decoder` wrapped with `flax.nnx.bridge.ToNNX`,
loaded with a jaxneurons params tree, gives `forward`'s logits and neurons, and hands its params back unchanged."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.models.output import forward
from tests.fixtures import tiny_lm

nnx = pytest.importorskip("flax.nnx")


def to_nnx(decoder: jn.Decoder, params: dict, ids, mask):
    """The recipe: an NNX module around `decoder` holding `params` (the abstract init allocates nothing)."""
    abstract = nnx.eval_shape(lambda: nnx.bridge.ToNNX(decoder).lazy_init(ids, mask, rngs=nnx.Rngs(0)))
    graphdef, state = nnx.split(abstract)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


@pytest.fixture(scope="module")
def batch():
    lm = tiny_lm()
    ids, mask = lm.encode(["Paris is the capital of", "ab", "Die Hauptstadt von Frankreich ist"])
    return lm, jnp.asarray(ids), jnp.asarray(mask)  # 3 rows, 2 layers: the [L, B] and [B, L] layouts differ


def test_nnx_module_gives_forwards_logits(batch):
    lm, ids, mask = batch
    decoder = jn.Decoder(lm.config)
    model = to_nnx(decoder, lm.params, ids, mask)
    logits = nnx.jit(lambda m, i, k: m(i, k))(model, ids, mask)
    np.testing.assert_allclose(np.asarray(logits), np.asarray(forward(decoder, lm.params, ids, mask).logits),
                               rtol=0, atol=1e-6)


def test_nnx_module_sows_forwards_neurons_layer_first(batch):
    if tuple(int(p) for p in flax.__version__.split(".")[:2]) < (0, 12):
        pytest.skip(f"flax {flax.__version__} keeps the sown tuple as a dict {{0: array}}; the recipe reads 0.12's")
    lm, ids, mask = batch
    decoder = jn.Decoder(lm.config, record=jn.Record(("act",), "last"))
    model = to_nnx(decoder, lm.params, ids, mask)
    model(ids, mask, mutable=["intermediates"])
    (act_lbf,) = nnx.to_pure_dict(nnx.state(model, nnx.Intermediate))["layers"]["mlp"]["act"]
    expected = forward(decoder, lm.params, ids, mask).activations["act"]  # [B, L, F]
    np.testing.assert_allclose(np.moveaxis(np.asarray(act_lbf), 0, 1), np.asarray(expected), rtol=0, atol=1e-6)


def test_nnx_params_go_back_to_jaxneurons_unchanged(batch):
    lm, ids, mask = batch
    model = to_nnx(jn.Decoder(lm.config), lm.params, ids, mask)
    back = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    assert jax.tree.structure(back) == jax.tree.structure(lm.params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(lm.params)))
