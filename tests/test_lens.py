"""The logit lens and a neuron's vocabulary equal the same readings computed in PyTorch on transformers' own
hidden states, final norm module and lm_head (tiny random models: plain Llama, Gemma 3 with its offset RMSNorm
and a final soft cap, BLOOM's LayerNorm); the figure plots what the lens holds."""

import dataclasses

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons import lens as lens_module

hf_reference = pytest.importorskip("tests.hf_reference")
torch = hf_reference.torch

VARIANTS = ["llama_mha_untied", "gemma3_sliding", "bloom_alibi_6heads"]
TOP_K = 5
TOKENS = [3, 17, 60]


@pytest.fixture(scope="module", params=VARIANTS)
def pair(request, tmp_path_factory):
    model = hf_reference.make_model(request.param)
    if request.param.startswith("gemma3"):
        model.config.final_logit_softcapping = 2.0  # small enough to bend these logits
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(directory)
    return model, jn.load_model(str(directory), dtype="float32")


def _inputs(lm):
    ids = np.random.default_rng(0).integers(1, lm.config.vocab_size, (2, 6)).astype(np.int32)
    mask = np.ones_like(ids)
    mask[1, 4:] = 0  # the second row is two tokens shorter (right padding)
    return ids, mask


def _torch_parts(model):
    """(final norm module, lm_head, final soft cap) of a transformers causal LM."""
    base = model.transformer if hasattr(model, "transformer") else model.model
    norm = base.ln_f if hasattr(base, "ln_f") else base.norm
    return norm, model.lm_head, getattr(model.config, "final_logit_softcapping", None)


def _reference_probs(model, ids, mask):
    """(lens probabilities [B, T, L, V] from transformers' hidden states, the model's own softmax [B, T, V])."""
    ids_t, mask_t = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
    kwargs = {} if hasattr(model, "transformer") else {"position_ids": (mask_t.cumsum(-1) - 1).clamp(min=0)}
    norm, head, cap = _torch_parts(model)
    with torch.no_grad():
        out = model(input_ids=ids_t, attention_mask=mask_t, output_hidden_states=True, **kwargs)
        # hidden_states: the embeddings, then each layer's output; the last one already went through the norm
        normed = [norm(h) for h in out.hidden_states[1:-1]] + [out.hidden_states[-1]]
        logits = torch.stack([head(h) for h in normed], 2) * getattr(model.config, "logit_scale", 1.0)  # Cohere
        if cap:
            assert logits.abs().max() > cap  # so the cap bends these logits
            logits = torch.tanh(logits / cap) * cap
        return torch.softmax(logits, -1).numpy(), torch.softmax(out.logits, -1).numpy()


def _check_top(top_ids, top_probs, ref_probs):
    """The top-k probabilities equal the reference's k largest, and the ids do wherever no tie blurs them."""
    ref_sorted = -np.sort(-ref_probs, axis=-1)[..., :top_ids.shape[-1]]
    np.testing.assert_allclose(top_probs, ref_sorted, atol=1e-4, rtol=0)
    np.testing.assert_allclose(np.take_along_axis(ref_probs, top_ids, -1), top_probs, atol=1e-4, rtol=0)
    gaps = np.abs(np.diff(-np.sort(-ref_probs, axis=-1)[..., :top_ids.shape[-1] + 1], axis=-1))  # [..., k]
    before = np.concatenate([np.full_like(gaps[..., :1], np.inf), gaps[..., :-1]], axis=-1)
    distinct = (before > 1e-5) & (gaps > 1e-5)  # apart from both neighbours in the order
    ref_ids = np.argsort(-ref_probs, axis=-1, kind="stable")[..., :top_ids.shape[-1]]
    assert distinct.mean() > 0.9
    np.testing.assert_array_equal(top_ids[distinct], ref_ids[distinct])


def test_logit_lens_equals_transformers_hidden_states_through_its_norm_and_head(pair):
    model, lm = pair
    ids, mask = _inputs(lm)
    lens = jn.logit_lens(lm, ids, top_k=TOP_K, tokens=TOKENS, mask=mask)
    ref, model_probs = _reference_probs(model, ids, mask)
    num_layers = lm.config.num_layers
    assert lens.top_ids.shape == (2, 6, num_layers, TOP_K) and lens.token_probs.shape == (2, 6, num_layers, 3)
    assert lens.layers == tuple(range(num_layers)) and lens.str_tokens is None
    real = mask.astype(bool)  # padding positions are computed, but transformers masks them differently
    _check_top(lens.top_ids[real], lens.top_probs[real], ref[real])
    np.testing.assert_allclose(lens.token_probs[real], ref[real][..., TOKENS], atol=1e-4, rtol=0)
    # the last layer is the model's own output distribution (soft cap included)
    np.testing.assert_allclose(ref[real][:, -1], model_probs[real], atol=1e-5, rtol=0)
    np.testing.assert_allclose(lens.token_probs[real][:, -1], model_probs[real][..., TOKENS], atol=1e-4, rtol=0)
    own = np.asarray(jax_softmax(lm.logits(ids, mask)))
    np.testing.assert_allclose(lens.top_probs[real][:, -1],
                               np.take_along_axis(own[real], lens.top_ids[real][:, -1], -1), atol=1e-5, rtol=0)
    assert np.abs(ref[real][:, 0] - model_probs[real]).max() > 1e-3  # the first layer does predict otherwise


@pytest.mark.parametrize("pair", ["cohere_parallel_qk_norm"], indirect=True)
def test_logit_lens_applies_cohere_logit_scale(pair):
    """Cohere: one LayerNorm without bias, logits times logit_scale (0.5 here), tied embeddings."""
    test_logit_lens_equals_transformers_hidden_states_through_its_norm_and_head(pair)


def jax_softmax(logits):
    import jax

    return jax.nn.softmax(logits, axis=-1)


@pytest.mark.parametrize("pair", ["llama_mha_untied"], indirect=True)  # family-independent: one compile set
def test_layers_subset_last_token_and_chunks_agree(pair, monkeypatch):
    _, lm = pair
    ids, mask = _inputs(lm)
    every = jn.logit_lens(lm, ids, top_k=TOP_K, tokens=TOKENS, mask=mask)
    some = jn.logit_lens(lm, ids, layers=[-1, 0], top_k=TOP_K, tokens=TOKENS, mask=mask)
    assert some.layers == (lm.config.num_layers - 1, 0)
    np.testing.assert_array_equal(some.top_ids, every.top_ids[:, :, list(some.layers)])
    np.testing.assert_allclose(some.token_probs, every.token_probs[:, :, list(some.layers)], atol=1e-6)
    last = jn.logit_lens(lm, ids, top_k=TOP_K, tokens=TOKENS, mask=mask, at="last")
    assert last.top_ids.shape == (2, lm.config.num_layers, TOP_K)
    rows, index = np.arange(2), mask.sum(1) - 1
    np.testing.assert_array_equal(last.top_ids, every.top_ids[rows, index])
    np.testing.assert_allclose(last.top_probs, every.last().top_probs, atol=1e-6)
    picked = every.probs_of([3, 60])  # row 0: token 3 (column 0), row 1: token 60 (column 2)
    np.testing.assert_array_equal(picked, np.stack([every.token_probs[0, ..., 0], every.token_probs[1, ..., 2]]))
    monkeypatch.setattr(lens_module, "_chunk_rows", lambda vocab: 7)  # 7 does not divide the 36 points
    chunked = jn.logit_lens(lm, ids, top_k=TOP_K, tokens=TOKENS, mask=mask)
    np.testing.assert_array_equal(chunked.top_ids, every.top_ids)
    np.testing.assert_allclose(chunked.token_probs, every.token_probs, atol=1e-6)
    with pytest.raises(ValueError):  # results are read-only
        every.top_probs[0, 0, 0, 0] = 1.0


def _word_tokenizer(vocab_size):
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, vocab_size)}}
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return hf_reference.transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]",
                                                             pad_token="[UNK]")


@pytest.mark.parametrize("pair", ["llama_mha_untied"], indirect=True)
def test_texts_give_string_tokens_mask_and_top_token_texts(pair):
    lm = dataclasses.replace(pair[1], tokenizer=_word_tokenizer(pair[1].config.vocab_size))
    lens = jn.logit_lens(lm, ["w5 w7 w9", "w2 w3"], top_k=3, tokens=[lm.token_id("w9")])
    ids, mask = lm.encode(["w5 w7 w9", "w2 w3"])
    np.testing.assert_array_equal(lens.mask, [[1, 1, 1], [1, 1, 0]])
    assert lens.str_tokens[0] == ["w5", "w7", "w9"] and lens.str_tokens[1][:2] == ["w2", "w3"]
    same = jn.logit_lens(lm, ids, top_k=3, tokens=[9], mask=mask)
    np.testing.assert_array_equal(lens.top_ids, same.top_ids)
    assert lens.top_strs.shape == lens.top_ids.shape
    assert lens.top_strs[0, 1, 2, 0] == lm.str_tokens([lens.top_ids[0, 1, 2, 0]])[0]
    assert lens.last().top_strs.shape == (2, 3, 3)
    with pytest.raises(ValueError, match="tokens must be token ids"):
        jn.logit_lens(lm, ["w1"], tokens=["w9"])
    with pytest.raises(ValueError, match="layers"):
        jn.logit_lens(lm, ["w1"], layers=[3])
    with pytest.raises(ValueError, match="at="):
        jn.logit_lens(lm, ["w1"], at="all")
    with pytest.raises(ValueError, match="mask= goes with token ids"):
        jn.logit_lens(lm, ["w1"], mask=[[1]])
    with pytest.raises(ValueError, match="not among the lens's tokens"):
        lens.probs_of(4)
    shown = jn.neuron_tokens(lm, 0, 1, k=2)
    assert shown.promoted == lm.str_tokens(shown.promoted_ids) and "promotes" in shown._repr_html_()


def test_neuron_tokens_equal_down_proj_row_times_norm_scale_times_lm_head(pair):
    model, lm = pair
    layer, neuron, k = 1, 7, 6
    shown = jn.neuron_tokens(lm, layer, neuron, k=k)
    _, lm_head = _torch_parts(model)[:2]
    base = model.transformer if hasattr(model, "transformer") else model.model
    layers = base.h if hasattr(base, "h") else base.layers
    mlp = layers[layer].mlp
    down = (mlp.dense_4h_to_h if hasattr(mlp, "dense_4h_to_h") else mlp.down_proj).weight.detach().numpy()  # [D, F]
    direction = down[:, neuron].astype(np.float64)
    norm = _torch_parts(model)[0]
    scale = norm.weight.detach().numpy().astype(np.float64)
    if hasattr(base, "ln_f") or "Cohere" in type(model).__name__:  # LayerNorm: the direction is centred, scaled
        direction = direction - direction.mean()
    elif "Gemma" in type(model).__name__:  # Gemma's RMSNorm multiplies by 1 + w
        scale = 1.0 + scale
    values = (direction * scale) @ lm_head.weight.detach().numpy().astype(np.float64).T  # [V]
    values = values * getattr(model.config, "logit_scale", 1.0)  # Cohere
    order = np.argsort(-values)
    np.testing.assert_array_equal(shown.promoted_ids, order[:k])
    np.testing.assert_array_equal(shown.suppressed_ids, order[::-1][:k])
    np.testing.assert_allclose(shown.promoted_values, values[order[:k]], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(shown.suppressed_values, values[order[::-1][:k]], atol=1e-5, rtol=1e-5)
    assert shown.promoted is None and shown.suppressed_values[0] < 0 < shown.promoted_values[0]
    with pytest.raises(ValueError, match="outside"):
        jn.neuron_tokens(lm, lm.config.num_layers, 0)


def _synthetic_lens(input_ids, top_ids, token_probs, tokens):
    b, l, k = top_ids.shape
    return jn.LogitLens(top_ids=np.asarray(top_ids), top_probs=np.full((b, l, k), 1.0 / k),
                        token_probs=np.asarray(token_probs), tokens=tuple(tokens), layers=tuple(range(l)),
                        at="last", input_ids=np.asarray(input_ids), mask=np.ones_like(input_ids))


@pytest.mark.parametrize("pair", ["cohere_parallel_qk_norm"], indirect=True)
def test_neuron_tokens_of_cohere(pair):
    """Cohere's final LayerNorm has no bias and its logits are scaled: centred direction, times logit_scale."""
    test_neuron_tokens_equal_down_proj_row_times_norm_scale_times_lm_head(pair)


def test_figure_plots_answer_probability_and_language_shares():
    # English prompts use tokens {1, 2, 3} and answer 10; German prompts {1, 4, 5} and answer 20; 1 is shared
    en = _synthetic_lens([[1, 2, 3]], top_ids=np.array([[[2, 10], [3, 1]]]), token_probs=[[[0.1, 0.0],
                                                                                          [0.7, 0.0]]],
                         tokens=[10, 20])
    de = _synthetic_lens([[1, 4, 5]], top_ids=np.array([[[2, 3], [20, 1]]]), token_probs=[[[0.05, 0.2],
                                                                                          [0.3, 0.6]]],
                         tokens=[10, 20])
    fig = jn.plot_logit_lens({"en": en, "de": de}, {"en": [10], "de": 20})
    probs_ax, share_ax = fig.axes
    lines = {line.get_label(): line for line in probs_ax.lines}
    np.testing.assert_allclose(lines["en"].get_ydata(), [0.1, 0.7])
    np.testing.assert_allclose(lines["de"].get_ydata(), [0.2, 0.6])
    shares = {line.get_label(): line.get_ydata() for line in share_ax.lines}
    assert set(shares) == {"de", "de: en"}  # English has no second-panel line of its own
    # German layer 0: top {2, 3}, both English only -> 0 German, 1 English; layer 1: {20, 1}: 20 German, 1 both
    np.testing.assert_allclose(shares["de"], [0.0, 0.5])
    np.testing.assert_allclose(shares["de: en"], [1.0, 0.0])
    # explicit vocabularies replace the prompt-derived ones
    fig = jn.plot_logit_lens({"en": en, "de": de}, {"en": 10, "de": 20}, vocab={"en": [3], "de": [2, 20]})
    shares = {line.get_label(): line.get_ydata() for line in fig.axes[1].lines}
    np.testing.assert_allclose(shares["de"], [0.5, 0.5])
    np.testing.assert_allclose(shares["de: en"], [0.5, 0.0])
    with pytest.raises(ValueError, match="no lens for English"):
        jn.plot_logit_lens({"de": de}, {"de": 20})
    with pytest.raises(ValueError, match="answers has no entry"):
        jn.plot_logit_lens({"en": en, "de": de}, {"en": 10})
