"""The two real GGUF zoo models: same next token as transformers' own GGUF loading, logits close.

The token ids are not compared here: both sides' tokenizers are transformers' GGUF tokenizer, and
test_gguf_reader checks the cached copy of it against a fresh build."""

import os

import numpy as np
import pytest

from jaxneurons.loading import zoo

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = ["The capital of France is", "Die Hauptstadt von Deutschland ist", "La capitale de l'Italie est",
           "中国的首都是"]


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_zoo_model_matches_transformers_gguf(name, zoo_lm):
    lm = zoo_lm(name)
    directory, basename = os.path.split(zoo.resolve_zoo(name))
    ref = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=basename,
                                                            dtype=torch.float32).eval()
    for prompt in PROMPTS:
        ids = lm.tokenizer(prompt)["input_ids"]
        ours = np.asarray(lm.logits(np.array([ids])))[0, -1]
        with torch.no_grad():
            theirs = ref(torch.tensor([ids])).logits[0, -1].numpy()
        assert ours.argmax() == theirs.argmax(), prompt
        np.testing.assert_allclose(ours, theirs, atol=2e-3 * np.abs(theirs).max(), err_msg=prompt)
