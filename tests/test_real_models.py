"""The two real GGUF zoo models: same next token as transformers' own GGUF loading, logits close.

The token ids are not compared here: both sides' tokenizers are transformers' GGUF tokenizer, and
test_gguf_reader checks the cached copy of it against a fresh build."""

import os

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.lm import pad_rows
from jaxneurons.loading import zoo

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = ["The capital of France is", "Die Hauptstadt von Deutschland ist", "La capitale de l'Italie est",
           "中国的首都是"]


TIE = 1e-4  # two logits this close are a float32 tie: either token is a correct greedy choice


@pytest.fixture(scope="module", params=["smollm2-135m", "gemma3-270m"])
def pair(request, zoo_lm):
    """(our model, transformers' own GGUF loading of the same file) per zoo model."""
    lm = zoo_lm(request.param)
    directory, basename = os.path.split(zoo.resolve_zoo(request.param))
    ref = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=basename,
                                                            dtype=torch.float32).eval()
    return lm, ref


def test_zoo_model_matches_transformers_gguf(pair):
    lm, ref = pair
    for prompt in PROMPTS:
        ids = lm.tokenizer(prompt)["input_ids"]
        ours = np.asarray(lm.logits(np.array([ids])))[0, -1]
        with torch.no_grad():
            theirs = ref(torch.tensor([ids])).logits[0, -1].numpy()
        assert ours.argmax() == theirs.argmax(), prompt
        np.testing.assert_allclose(ours, theirs, atol=2e-3 * np.abs(theirs).max(), err_msg=prompt)


def _stop_ids(lm) -> list[int]:
    """The model's EOS ids (config and tokenizer), given to transformers' generate as ours stops at them."""
    return sorted({int(i) for i in np.atleast_1d(lm.config.eos_token_id)} | {lm.tokenizer.eos_token_id})


def test_zoo_generation_matches_transformers(pair):
    """Greedy generation of prompts of different lengths in four scripts, batched and left-padded on both sides,
    with transformers' KV cache: the same tokens, except after a step where transformers' two best logits tie
    within TIE (then the rest of that row may differ, and is not compared)."""
    lm, ref = pair
    new = 12
    ours = lm.generate(PROMPTS, max_new_tokens=new)
    rows = [lm.tokenizer(p)["input_ids"] for p in PROMPTS]
    ids, mask = pad_rows(rows, lm.pad_id, "left")
    stop = _stop_ids(lm)
    with torch.no_grad():
        out = ref.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask), do_sample=False,
                           max_new_tokens=new, pad_token_id=lm.pad_id, eos_token_id=stop,
                           output_scores=True, return_dict_in_generate=True)
    theirs = out.sequences[:, ids.shape[1]:].numpy()
    for r, prompt in enumerate(PROMPTS):
        for j in range(theirs.shape[1]):
            if ours.token_ids[r, j] == theirs[r, j]:
                continue
            scores = out.scores[j][r].numpy()
            gap = scores[theirs[r, j]] - scores[ours.token_ids[r, j]]
            assert gap < TIE, f"{prompt!r}: token {j} differs ({ours.token_ids[r, j]} vs {theirs[r, j]}, gap {gap})"
            break
    assert ours.texts[0].strip(), "the zoo model generated nothing for an English prompt"


def test_zoo_generation_under_zeroed_neurons_matches_a_hook(pair):
    """Neurons zeroed in every layer: the same tokens as transformers' generate with a forward pre-hook on
    down_proj."""
    lm, ref = pair
    neurons = {layer: list(range(0, lm.config.intermediate_size, 7)) for layer in range(lm.config.num_layers)}
    ours = lm.generate(PROMPTS[:2], max_new_tokens=8, intervention=jn.Intervention.zero(lm, neurons), stop=[])
    rows = [lm.tokenizer(p)["input_ids"] for p in PROMPTS[:2]]
    ids, mask = pad_rows(rows, lm.pad_id, "left")
    index = torch.tensor(neurons[0])

    def hook(module, inputs):
        x = inputs[0].clone()
        x[..., index] = 0.0
        return (x,)

    handles = [layer.mlp.down_proj.register_forward_pre_hook(hook) for layer in ref.model.layers]
    stop = _stop_ids(lm)
    try:
        with torch.no_grad():
            theirs = ref.generate(torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                                  do_sample=False, max_new_tokens=8, pad_token_id=lm.pad_id, eos_token_id=stop)
    finally:
        for h in handles:
            h.remove()
    np.testing.assert_array_equal(ours.token_ids, theirs[:, ids.shape[1]:].numpy())
