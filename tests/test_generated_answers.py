"""Claim (ii) on generated answers: the deactivation pass's generated scores against a direct computation (the
example's all-shared neurons zeroed at every token, `lm.generate`, the stated normalisation); the prompt's-last-
token position itself is pinned against a PyTorch hook in test_generation."""

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.analyses import ExamplesTask
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.generated_answers import answer_matches, normalize
from jaxneurons.pipeline.interventions import InterventionsConfig, run_interventions
from tests.fixtures import direct_acts, tiny_lm

LANGS = ["en", "de"]
PROMPTS = {"en": ["the cat sat on", "a dog ran to", "one two", "it is"],
           "de": ["die Katze sass", "ein Hund lief", "eins zwei", "es ist"]}


def test_normalisation_and_matches():
    assert normalize("  Paris\u00a0 IS\n") == "paris is"
    assert normalize("ＰＡＲＩＳ") == "paris"  # NFKC folds full-width letters
    first, prefix = answer_matches([" Paris, France", "Lyon", " par"], [5, 6, 7], [" paris", " Lyon", " Paris"],
                                   [5, 9, 7])
    np.testing.assert_array_equal(first, [True, False, True])
    np.testing.assert_array_equal(prefix, [True, True, False])


def test_generated_scores_equal_a_direct_computation():
    lm = tiny_lm()
    clean = {lang: lm.generate(PROMPTS[lang], max_new_tokens=2) for lang in LANGS}
    answers = {lang: [t if t.strip() else " x" for t in clean[lang].texts] for lang in LANGS}
    examples = jn.make_examples(PROMPTS, answers=answers)
    config = InterventionsConfig(kinds=("all_shared",), seeds=1, bootstrap=20, batch_size=2, generated=True,
                                 every_token=True)
    result = run_interventions(lm, ExamplesTask(examples), examples, LANGS, None, config, progress=False)
    width = max(len(lm.tokenizer(a, add_special_tokens=False)["input_ids"]) for lang in LANGS for a in answers[lang])
    for name in ("clean", "all_shared"):
        expected = {lang: [] for lang in LANGS}
        for ex in examples:
            shared = (direct_acts(lm, ex, LANGS) > 0).all(0)  # [L, F]: active in every language
            neurons = {layer: np.flatnonzero(shared[layer]) for layer in range(lm.config.num_layers)}
            off = jn.Intervention.zero(lm, neurons) if name == "all_shared" else None
            for lang in LANGS:
                out = lm.generate([ex.prompts[lang]], max_new_tokens=width + 2, intervention=off)
                expected[lang].append(normalize(out.texts[0]).startswith(normalize(ex.answers[lang])))
        got = result["sets"][name]["generated"]["prefix_match"]
        for lang in LANGS:
            assert got[lang]["value"] == pytest.approx(100 * np.mean(expected[lang])), (name, lang)
    assert result["sets"]["clean"]["generated"]["prefix_match"]["mean"]["value"] == 100.0
    assert result["sets"]["all_shared"]["generated"]["prefix_match"]["mean"]["value"] < 100.0  # the test can see it
    assert "normalised" in result["meta"]["generated"]


def test_generated_needs_open_answers():
    lm = tiny_lm()
    examples = jn.make_examples(PROMPTS, options={lang: [[" yes", " no"]] * 4 for lang in LANGS},
                                gold={lang: [0] * 4 for lang in LANGS})
    with pytest.raises(PipelineInputError, match="open-answer tasks"):
        run_interventions(lm, ExamplesTask(examples), examples, LANGS, None, InterventionsConfig(generated=True),
                          progress=False)
