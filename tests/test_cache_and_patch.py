"""Activations by name (run_with_cache) and activation patching match transformers' PyTorch models on tiny
random configs: hidden states, attention probabilities, gate pre-activations, and hooks that patch."""

import numpy as np
import pytest

import jaxneurons as jn

hf_reference = pytest.importorskip("tests.hf_reference")
torch = hf_reference.torch
jax = pytest.importorskip("jax")

VARIANTS = ["llama_gqa_tied", "gemma3_sliding", "bloom_alibi_6heads",  # plain, sandwich norms, ALiBi + biases
            "cohere_parallel_qk_norm"]  # parallel block: resid_mid is not what the MLP reads
LAYER, TOKEN = 1, 2


def _pair(variant, tmp_path_factory):
    model = hf_reference.make_model(variant)
    directory = tmp_path_factory.mktemp(variant)
    model.save_pretrained(directory)
    return model, jn.load_model(str(directory), dtype="float32")


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request, tmp_path_factory):
    return _pair(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):  # the checks that need no second family (each family costs a compilation)
    return _pair(VARIANTS[0], tmp_path_factory)


def _ids(lm, seed=0, rows=2, length=6):
    return np.random.default_rng(seed).integers(1, lm.config.vocab_size, (rows, length)).astype(np.int32)


def _layers(model):
    base = model.transformer if hasattr(model, "transformer") else model.model
    return base.h if hasattr(base, "h") else base.layers


def _gate(model, layer):
    mlp = _layers(model)[layer].mlp
    return mlp.dense_h_to_4h if hasattr(mlp, "dense_h_to_4h") else mlp.gate_proj


def _down(model, layer):
    mlp = _layers(model)[layer].mlp
    return mlp.dense_4h_to_h if hasattr(mlp, "dense_4h_to_h") else mlp.down_proj


def _torch_run(model, ids, hooks=()):
    """transformers' output (hidden states and attentions) with (module, kind, hook) hooks registered."""
    handles = [getattr(module, f"register_forward_{kind}")(hook, **({"with_kwargs": True} if kind == "pre_hook"
                                                                    and module in _layers(model) else {}))
               for module, kind, hook in hooks]
    try:
        with torch.no_grad():
            return model(input_ids=torch.tensor(ids, dtype=torch.long), output_hidden_states=True,
                         output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()


def test_run_with_cache_matches_hidden_states_attentions_and_gate(pair):
    model, lm = pair
    ids = _ids(lm)
    gates = []
    ref = _torch_run(model, ids, [(_gate(model, l), "hook", lambda m, i, o: gates.append(o))
                                  for l in range(lm.config.num_layers)])
    logits, cache = lm.run_with_cache(ids, names=jn.NAMES)
    np.testing.assert_allclose(np.asarray(logits), ref.logits.numpy(), atol=1e-4, rtol=0)
    hidden = np.stack([h.numpy() for h in ref.hidden_states], 2)  # [B, T, L+1, D]; the last one is final-normed
    num_layers = lm.config.num_layers
    np.testing.assert_allclose(np.asarray(cache["resid_pre"]), hidden[:, :, :num_layers], atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(cache["resid_post"])[:, :, :-1], hidden[:, :, 1:num_layers],
                               atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.asarray(cache["resid_mid"]),
                               np.asarray(cache["resid_pre"] + cache["attn_out"]), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(cache["resid_post"]),
                               np.asarray(cache["resid_mid"] + cache["mlp_out"]), atol=1e-5, rtol=0)
    pattern = np.stack([a.numpy() for a in ref.attentions], 1).transpose(0, 3, 1, 2, 4)  # [B, T, L, H, S]
    np.testing.assert_allclose(np.asarray(cache["attn_pattern"]), pattern, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(cache["pre_act"]), np.stack([g.numpy() for g in gates], 2),
                               atol=1e-5, rtol=0)


def test_layer_subset_returns_only_those_layers(llama):
    _, lm = llama
    ids = _ids(lm)
    _, every = lm.run_with_cache(ids, names=("resid_post", "act"))
    _, some = lm.run_with_cache(ids, names=("resid_post", "act"), layers=(0, 2))
    for name in ("resid_post", "act"):
        assert some[name].shape[2] == 2
        np.testing.assert_array_equal(np.asarray(some[name]), np.asarray(every[name])[:, :, [0, 2]])
    last = lm.forward(ids, record=jn.Record(("act",), "last", layers=(2,)), logits="none").activations["act"]
    np.testing.assert_array_equal(np.asarray(last), np.asarray(every["act"])[:, -1, [2]])
    with pytest.raises(ValueError, match="outside"):  # JAX would clamp the index silently
        lm.run_with_cache(ids, names=("act",), layers=(lm.config.num_layers,))


def _replace_layer_input(token, value):
    def hook(module, args, kwargs):
        if args:
            hidden = args[0].clone()
            hidden[0, token] = value
            return (hidden,) + tuple(args[1:]), kwargs
        hidden = kwargs["hidden_states"].clone()
        hidden[0, token] = value
        return args, {**kwargs, "hidden_states": hidden}
    return hook


def _replace_down_input(token, value):
    def hook(module, args):
        hidden = args[0].clone()
        hidden[0, token] = value
        return (hidden,)
    return hook


def test_residual_patch_from_another_prompt_matches_pytorch_hooks(pair):
    _check_patch_against_hooks(*pair, "resid_pre")


def test_neuron_patch_from_another_prompt_matches_pytorch_hooks(llama):
    _check_patch_against_hooks(*llama, "ffn_hidden")


def _check_patch_against_hooks(model, lm, name):
    """Layer LAYER's `name` at token TOKEN of prompt A, patched into prompt B."""
    source, target = _ids(lm, seed=1, rows=1), _ids(lm, seed=2, rows=1)
    _, cache = lm.run_with_cache(source, names=(name,))
    value = np.asarray(cache[name])[0, TOKEN, LAYER]
    patched = lm.logits(target, patches=[jn.Patch.at(name, value, layer=LAYER, row=0, token=TOKEN)])
    if name == "resid_pre":
        module, kind, hook = _layers(model)[LAYER], "pre_hook", _replace_layer_input(TOKEN, torch.tensor(value))
    else:
        module, kind, hook = _down(model, LAYER), "pre_hook", _replace_down_input(TOKEN, torch.tensor(value))
    ref = _torch_run(model, target, [(module, kind, hook)]).logits.numpy()
    np.testing.assert_allclose(np.asarray(patched), ref, atol=1e-4, rtol=0)
    clean = np.asarray(lm.logits(target))
    assert np.abs(clean[0, TOKEN:] - ref[0, TOKEN:]).max() > 1e-3  # the patch changed what follows the token
    np.testing.assert_array_equal(clean[0, :TOKEN], np.asarray(patched)[0, :TOKEN])  # and nothing before it


def test_patch_is_differentiable_and_neutral_at_the_clean_value(llama):
    _, lm = llama
    ids = _ids(lm, rows=1)
    _, cache = lm.run_with_cache(ids, names=("resid_mid",))
    clean_value = cache["resid_mid"][0, TOKEN, LAYER]

    def logit(value):
        patch = jn.Patch.at("resid_mid", value, layer=LAYER, row=0, token=TOKEN)
        return lm.logits(ids, patches=[patch])[0, -1, 3]

    np.testing.assert_allclose(float(logit(clean_value)), float(lm.logits(ids)[0, -1, 3]), atol=1e-5)
    grad = np.asarray(jax.grad(logit)(clean_value))
    direction = np.random.default_rng(0).normal(size=grad.shape).astype(np.float32)
    eps = 1e-2
    numeric = (float(logit(clean_value + eps * direction)) - float(logit(clean_value - eps * direction))) / (2 * eps)
    assert abs(grad @ direction) > 1e-3
    np.testing.assert_allclose(grad @ direction, numeric, rtol=2e-2, atol=1e-4)


def test_token_helpers():
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"[UNK]": 0, "Paris": 1, "is": 2, "big": 3}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = hf_reference.transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    lm = jn.LanguageModel(jn.ModelConfig(family="llama", vocab_size=4, hidden_size=8, intermediate_size=8,
                                         num_layers=1, num_heads=2, num_kv_heads=2, head_dim=4), {}, tokenizer)
    assert lm.token_id("Paris") == 1
    with pytest.raises(ValueError, match="2 tokens"):
        lm.token_id("Paris big")
    assert lm.str_tokens([1, 2, 3]) == ["Paris", "is", "big"]
    assert lm.str_tokens(np.array([[3, 1]])) == [["big", "Paris"]]
