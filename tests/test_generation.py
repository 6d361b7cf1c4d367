"""`generate`: greedy output equal to transformers' `generate` token for token on every family (tiny random
configs, prompts of different lengths, decoding past the sliding windows), also with neurons zeroed by a
forward hook; sampling reproducible by seed; stops; bad input refused before anything compiles."""

import copy

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.lm import pad_rows
from tests.fixtures import tiny_lm

torch = pytest.importorskip("torch")
hf_reference = pytest.importorskip("tests.hf_reference")

LENGTHS = (7, 3, 12)
NEW = 9  # more than the variants' sliding window of 4 tokens
OFF = {0: [1, 5, 7], 2: [0, 3]}  # neurons zeroed (layer: indices), within every variant's 40 neurons
OFF_MOE = {0: [1, 14, 29, 40, 47], 1: [3, 20, 35], 2: [0, 13, 30, 44]}  # of every expert of the MoE variants (4 x 12)


def _rows(seed=0):
    rng = np.random.default_rng(seed)
    return [list(rng.integers(1, 97, size=n)) for n in LENGTHS]


def _hf_generate(model, rows, new, hook=None, pad_id=0):
    """transformers' greedy generate on the left-padded rows (KV cache on), with an optional hook on every
    layer's down-projection input; the new tokens [B, new]."""
    ids, mask = pad_rows(rows, pad_id, "left")
    handles = [down.register_forward_pre_hook(hook) for _, down in hf_reference._mlp_modules(model)] if hook else []
    try:
        with torch.no_grad():
            out = model.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                                 max_new_tokens=new, do_sample=False, pad_token_id=pad_id, eos_token_id=None)
    finally:
        for h in handles:
            h.remove()
    return out[:, ids.shape[1]:].numpy()


def _zeroing_hook(model, neurons, generated_only=False, last_only=False):
    """A forward pre-hook zeroing the neurons of `neurons` ({layer: indices}) in the down-projection input (at
    decoding steps only, or at the prompt's last position only)."""
    layer_of = {id(down): i for i, (_, down) in enumerate(hf_reference._mlp_modules(model))}

    def hook(module, inputs):
        x = inputs[0]
        index = neurons.get(layer_of[id(module)])
        if index is None or (generated_only and x.shape[1] > 1):
            return None
        x = x.clone()
        if last_only:
            if x.shape[1] > 1:  # the prefill: its last position is the prompt's last token (left padding)
                x[:, -1, index] = 0.0
            return (x,)
        x[..., index] = 0.0
        return (x,)

    return hook


@pytest.fixture(scope="module", params=sorted(hf_reference.VARIANTS))
def pair(request, tmp_path_factory):
    return request.param, *hf_reference.saved_pair(request.param, tmp_path_factory.mktemp(request.param))


def test_greedy_equals_transformers(pair):
    name, model, lm = pair
    rows = _rows()
    ids, mask = pad_rows(rows, 0, "right")  # our side takes any padding; it left-pads itself
    ours = lm.generate(ids, attention_mask=mask, max_new_tokens=NEW, batch_size=4)
    np.testing.assert_array_equal(ours.token_ids, _hf_generate(model, rows, NEW), err_msg=name)
    np.testing.assert_array_equal(ours.lengths, [NEW] * len(rows))


def test_zeroed_neurons_equal_a_pytorch_hook(pair):
    """In a mixture of experts (neurons e * F + f, here of several experts) the PyTorch side zeroes the experts'
    down-projection columns instead, which is the same as zeroing those inputs at every token."""
    name, model, lm = pair
    rows = _rows(1)
    ids, mask = pad_rows(rows, 0, "left")
    off = OFF_MOE if lm.config.num_experts else OFF
    ours = lm.generate(ids, attention_mask=mask, max_new_tokens=NEW, intervention=jn.Intervention.zero(lm, off))
    if lm.config.num_experts:
        zeroed = copy.deepcopy(model)
        hf_reference.zero_experts_neurons(zeroed, off)
        theirs = _hf_generate(zeroed, rows, NEW)
    else:
        theirs = _hf_generate(model, rows, NEW, _zeroing_hook(model, OFF))
    np.testing.assert_array_equal(ours.token_ids, theirs, err_msg=name)
    assert not np.array_equal(theirs, _hf_generate(model, rows, NEW)), \
        "the zeroed neurons change nothing: the test would not see a wrong intervention"


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return hf_reference.saved_pair("llama_gqa_tied", tmp_path_factory.mktemp("llama"))


def test_generated_positions_only_and_per_row_sets(llama):
    model, lm = llama
    rows = _rows(2)
    ids, mask = pad_rows(rows, 0, "left")
    ours = lm.generate(ids, attention_mask=mask, max_new_tokens=NEW, intervention=jn.Intervention.zero(lm, OFF),
                       positions="generated")
    np.testing.assert_array_equal(ours.token_ids, _hf_generate(model, rows, NEW, _zeroing_hook(model, OFF, True)))
    # the prompt's last token only: the first new token is each row's argmax under the deactivated forward
    last = lm.generate(ids, attention_mask=mask, max_new_tokens=NEW, intervention=jn.Intervention.zero(lm, OFF),
                       positions="last_prompt")
    where = np.zeros(ids.shape, bool)
    where[:, -1] = True
    off = jn.Intervention(jn.Intervention.zero(lm, OFF).scale, jn.Intervention.zero(lm, OFF).shift, where)
    np.testing.assert_array_equal(last.token_ids[:, 0], np.asarray(lm.logits(ids, mask, intervention=off))[:, -1].argmax(-1))
    hook = _zeroing_hook(model, OFF, last_only=True)
    np.testing.assert_array_equal(last.token_ids, _hf_generate(model, rows, NEW, hook))
    # one neuron set per row: each row equals its own set applied to the whole batch
    sets = [OFF, {}, {1: [2, 4, 6]}]
    per_row = lm.generate(ids, attention_mask=mask, max_new_tokens=NEW, intervention=jn.Intervention.zero(lm, sets))
    for r, neurons in enumerate(sets):
        alone = lm.generate(ids, attention_mask=mask, max_new_tokens=NEW, intervention=jn.Intervention.zero(lm, neurons))
        np.testing.assert_array_equal(per_row.token_ids[r], alone.token_ids[r])


def test_intervention_constructors_match_their_definition():
    lm = tiny_lm()
    iv = jn.Intervention.on(lm, {1: [3, 5]}, scale={1: [2.0, 0.5]}, shift=1.5)
    scale, shift = np.asarray(iv.scale), np.asarray(iv.shift)
    assert scale.shape == shift.shape == (1, 2, 24)
    expected = np.ones((2, 24)); expected[1, 3], expected[1, 5] = 2.0, 0.5
    np.testing.assert_array_equal(scale[0], expected)
    assert shift[0, 1, 3] == shift[0, 1, 5] == 1.5 and np.count_nonzero(shift) == 2
    ids, mask = lm.encode(["ab", "a longer one"])
    hidden = np.asarray(lm.neurons(ids, mask, at="every", quantity="ffn_hidden"))
    changed = np.asarray(lm.neurons(ids, mask, at="every", quantity="ffn_hidden",
                                    intervention=jn.Intervention.set(lm, {0: [2]}, 7.0)))
    np.testing.assert_allclose(changed[:, :, 0, 2], 7.0)
    np.testing.assert_allclose(np.delete(changed[:, :, 0], 2, axis=-1), np.delete(hidden[:, :, 0], 2, axis=-1),
                               atol=1e-6)


def test_sampling_is_reproducible_and_a_tiny_nucleus_is_greedy():
    lm = tiny_lm()
    prompts = ["the cat", "a dog and", "x"]
    one = lm.generate(prompts, max_new_tokens=6, temperature=1.0, seed=3)
    again = lm.generate(prompts, max_new_tokens=6, temperature=1.0, seed=3)
    other = lm.generate(prompts, max_new_tokens=6, temperature=1.0, seed=4)
    np.testing.assert_array_equal(one.token_ids, again.token_ids)
    assert not np.array_equal(one.token_ids, other.token_ids)
    greedy = lm.generate(prompts, max_new_tokens=6)
    nucleus = lm.generate(prompts, max_new_tokens=6, temperature=1.0, top_p=1e-6, seed=5)
    np.testing.assert_array_equal(greedy.token_ids, nucleus.token_ids)
    assert greedy.texts == [lm.tokenizer.decode(t, skip_special_tokens=True) for t in greedy.token_ids]


def test_stops_pad_and_cut():
    lm = tiny_lm()
    greedy = lm.generate(["the cat", "x"], max_new_tokens=6)
    first = int(greedy.token_ids[0, 2])  # the third token of row 0 becomes a stop token
    stopped = lm.generate(["the cat", "x"], max_new_tokens=6, stop=[first])
    row = list(greedy.token_ids[0])
    n = row.index(first) + 1
    assert stopped.lengths[0] == n and stopped.stopped[0]
    np.testing.assert_array_equal(stopped.token_ids[0, :n], greedy.token_ids[0, :n])
    assert (stopped.token_ids[0, n:] == lm.pad_id).all()
    text = greedy.texts[1]
    if len(text) >= 2:
        cut = lm.generate(["the cat", "x"], max_new_tokens=6, stop=[text[1:3]])
        assert cut.texts[1] == text[:text.find(text[1:3])] and cut.stopped[1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=0), "max_new_tokens must be a positive int"),
    (dict(max_new_tokens=3, temperature=-1.0), "temperature"),
    (dict(max_new_tokens=3, top_p=0.0), "top_p"),
    (dict(max_new_tokens=3, positions="prompt"), "positions"),
    (dict(max_new_tokens=3, stop=[""]), "stop"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_lm().generate(["ab"], **kwargs)


def test_bad_interventions_and_long_prompts_are_refused(llama):
    _, lm = llama
    with pytest.raises(ValueError, match="neuron 40 in layer 0 is out of range"):
        jn.Intervention.zero(lm, {0: [40]})
    with pytest.raises(ValueError, match="layer 3 is not a layer"):
        jn.Intervention.zero(lm, {3: [0]})
    wrong = jn.Intervention.zero(lm, [{0: [1]}, {0: [2]}])  # two rows for three prompts
    with pytest.raises(ValueError, match="generate needs"):
        lm.generate(np.ones((3, 4), np.int32), max_new_tokens=2, intervention=wrong)
    with pytest.raises(ValueError, match="exceeds the model's context of 128"):
        lm.generate(np.ones((1, 125), np.int32), max_new_tokens=4)
