"""Mixtures of experts (Mixtral, Qwen3-MoE): the neurons of a layer are its experts' FFN neurons, expert-major,
and a neuron of an expert the router did not pick for a token is 0 there. Parity with transformers is in the
shared per-family tests (`hf_reference.VARIANTS`); here what is particular to experts."""

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.models.config import UnsupportedConfigError, from_hf_config
from jaxneurons.tasks import get_task
from tests.fixtures import LANGS, tiny_lm

EXPERTS, PER_EXPERT, PICKED = 4, 6, 2


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(seed=1, moe=True)


def test_unrouted_neurons_are_zero_and_the_weights_are_the_routers(lm):
    ids, mask = lm.encode(["The cat sat", "Le chat"])
    out = lm.forward(ids, mask, record=jn.Record(("router_weights", "pre_act", "act", "ffn_hidden"), "every"))
    weights = np.asarray(out.activations["router_weights"])  # [B, T, L, E]
    assert weights.shape == (*ids.shape, 2, EXPERTS)
    real = np.asarray(mask, bool)
    np.testing.assert_array_equal((weights[real] > 0).sum(-1), PICKED)
    np.testing.assert_allclose(weights[real].sum(-1), 1.0, atol=1e-6)
    unrouted = np.repeat(weights == 0, PER_EXPERT, axis=-1)  # [B, T, L, E * F]
    for name in ("pre_act", "act", "ffn_hidden"):
        values = np.asarray(out.activations[name])
        assert values.shape == (*ids.shape, 2, EXPERTS * PER_EXPERT)
        assert (values[unrouted] == 0).all() and (values[~unrouted & real[..., None, None]] != 0).mean() > 0.9, name


def test_sharing_categories_cover_every_expert_neuron(lm):
    """jn.sharing on a mixture of experts: categories over all E * F neurons of each layer, and at most the
    picked experts' k * F neurons activated (> 0) per language at the last token."""
    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=2, prompt_format="paper").examples
    result = jn.sharing(lm, examples, task=task, progress=False, batch_size=2, thresholds=(0.0,), bootstrap=10)
    counts, activated = result.arrays["category_counts"], result.arrays["activated"]  # [X, K, L, 4], [X, K, N, L]
    assert counts.shape[2:] == (2, 4) and (counts.sum(-1) == EXPERTS * PER_EXPERT).all()
    assert activated.max() <= PICKED * PER_EXPERT and activated.max() > 0


def test_zeroing_an_expert_equals_removing_it_from_the_output(lm):
    """m folds in the router weight: zeroing every neuron of a layer's experts removes that layer's MLP output."""
    ids, mask = lm.encode(["The cat sat"])
    everything = {layer: range(EXPERTS * PER_EXPERT) for layer in range(2)}
    out = lm.forward(ids, mask, record=jn.Record(("mlp_out",), "every"),
                     intervention=jn.Intervention.zero(lm, everything))
    np.testing.assert_array_equal(np.asarray(out.activations["mlp_out"]), 0.0)


def test_dense_layers_and_router_patches_are_refused():
    base = dict(model_type="qwen3_moe", vocab_size=50, hidden_size=16, intermediate_size=8, num_hidden_layers=2,
                num_attention_heads=2, num_experts=4, moe_intermediate_size=4, num_experts_per_tok=2)
    assert from_hf_config(base).neurons_per_layer == 16
    for bad in (dict(mlp_only_layers=[1]), dict(decoder_sparse_step=2)):
        with pytest.raises(UnsupportedConfigError, match=next(iter(bad))):
            from_hf_config({**base, **bad})
    with pytest.raises(ValueError, match="cannot patch 'router_weights'"):
        jn.Patch.at("router_weights", np.ones(4), 0, 0, 0)


def test_a_dense_model_records_one_expert_of_weight_one():
    dense = tiny_lm()
    ids, mask = dense.encode(["The cat"])
    out = dense.forward(ids, mask, record=jn.Record(("router_weights",), "last"))
    np.testing.assert_array_equal(np.asarray(out.activations["router_weights"]), np.ones((1, 2, 1)))


@pytest.mark.parametrize("variant", ["mixtral_moe", "qwen3_moe_unnormalised"])
def test_in_memory_3d_expert_tensors_load_as_the_saved_per_expert_ones(variant, tmp_path):
    """transformers 5 holds experts as gate_up_proj [E, 2F, D] / down_proj [E, D, F] but saves one tensor per
    expert: both name sets give the same parameters."""
    import jax

    from jaxneurons.loading.convert import build_params, hf_targets

    hf_reference = pytest.importorskip("tests.hf_reference")
    model = hf_reference.make_model(variant)
    model.save_pretrained(tmp_path)
    saved = jn.load_model(str(tmp_path), dtype="float32")
    tensors = ((name, value.detach().numpy()) for name, value in model.state_dict().items())
    in_memory = build_params(saved.config, hf_targets(saved.config, tensors), np.float32, "state_dict")
    assert jax.tree.structure(in_memory) == jax.tree.structure(saved.params)
    jax.tree.map(np.testing.assert_array_equal, in_memory, jax.device_get(saved.params))
