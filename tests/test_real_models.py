"""The two real GGUF zoo models: same next token as transformers' own GGUF loading, logits close, same ids."""

import os

import numpy as np
import pytest

import jaxneurons as jn

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

PROMPTS = ["The capital of France is", "Die Hauptstadt von Deutschland ist", "La capitale de l'Italie est",
           "中国的首都是"]


def _zoo_path(name):
    from jaxneurons.loading import zoo

    try:
        return zoo.resolve_zoo(name)
    except (ModuleNotFoundError, FileNotFoundError) as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("name", ["smollm2-135m", "gemma3-270m"])
def test_zoo_model_matches_transformers_gguf(name):
    path = _zoo_path(name)
    lm = jn.load_model(name)
    ref_tok = transformers.AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    ref = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path),
                                                            dtype=torch.float32).eval()
    for prompt in PROMPTS:
        ids = lm.tokenizer(prompt)["input_ids"]
        assert ids == ref_tok(prompt)["input_ids"], prompt
        ours = np.asarray(lm.logits(np.array([ids])))[0, -1]
        with torch.no_grad():
            theirs = ref(torch.tensor([ids])).logits[0, -1].numpy()
        assert ours.argmax() == theirs.argmax(), prompt
        np.testing.assert_allclose(ours, theirs, atol=2e-3 * np.abs(theirs).max(), err_msg=prompt)
