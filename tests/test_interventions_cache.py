"""The deactivation pass at the prompt's last token runs each condition from that token on, over the clean keys and
values of the prompt before it: its per-condition scores equal a full forward per condition (`_full_forwards`),
for options of several tokens and open answers of several tokens, prompts of different lengths, a dummy-filled
last batch, on a model with a sliding-window layer (window shorter than the prompts) and a global one."""

import dataclasses

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.analyses import ExamplesTask
from jaxneurons.pipeline import interventions as interventions_module
from jaxneurons.pipeline.interventions import InterventionsConfig, run_interventions
from tests.fixtures import tiny_lm

LANGS = ["en", "de"]
PROMPTS = {"en": ["the cat sat on the", "a dog ran to", "one two three four five six", "it is"],
           "de": ["die Katze sass auf der", "ein Hund lief", "eins zwei drei", "es ist es ist es ist"]}
CONFIG = InterventionsConfig(kinds=("all_shared", "random", "top_magnitude"), seeds=2, bootstrap=0, batch_size=3,
                             dose_fractions=(0.5,))
SUMMARIZE = interventions_module.summarize_interventions


@pytest.fixture(scope="module")
def lm():
    """The tiny llama with a sliding window of 4 tokens in layer 0 (layer 1 global), whose byte tokens outside
    printable ASCII and space have a zero (tied) embedding: they get logit 0, so its greedy answers are text
    that tokenizes back to the same tokens."""
    base = tiny_lm(seed=1)
    config = dataclasses.replace(base.config, sliding_window=4, local_layers=(True, False))
    space = base.tokenizer.convert_tokens_to_ids("\u0120")
    printable = np.array(base.tokenizer(" " + "".join(map(chr, range(33, 127))), add_special_tokens=False)
                         ["input_ids"])
    assert space in printable and printable.size == 95
    unused = np.setdiff1d(np.arange(256), printable)
    embedding = base.params["embed"]["embedding"].at[unused].set(0.0)
    params = {**base.params, "embed": {"embedding": embedding}}
    return dataclasses.replace(base, config=config, params=params, source="tiny-llama-sliding")


def _scores(lm, examples, monkeypatch, full: bool) -> tuple[dict, dict]:
    """(the pass's result, its per-example accumulators) with the cached path or a full forward per condition."""
    kept = {}

    def keep(acc, *args, **kwargs):
        kept.update({key: value.copy() for key, value in acc.items()})
        return SUMMARIZE(acc, *args, **kwargs)

    monkeypatch.setattr(interventions_module, "summarize_interventions", keep)
    result = run_interventions(lm, ExamplesTask(examples), examples, LANGS, None, CONFIG, progress=False,
                               _full_forwards=full)
    return result, kept


def _assert_same(lm, examples, monkeypatch, keys):
    cached, acc = _scores(lm, examples, monkeypatch, full=False)
    full, reference = _scores(lm, examples, monkeypatch, full=True)
    conditions = interventions_module.condition_names(CONFIG.kinds, CONFIG.seeds, CONFIG.dose_fractions)
    assert len(conditions) == 10
    for condition in conditions:
        for key in keys:
            got, want = acc[f"{condition}/{key}"], reference[f"{condition}/{key}"]
            if key == "greedy":
                np.testing.assert_array_equal(got, want, err_msg=condition)
            else:
                assert not np.isnan(want).all()
                np.testing.assert_allclose(got, want, atol=1e-4, rtol=0, err_msg=f"{condition} {key}")
        assert cached[condition.split("/")[0]] == full[condition.split("/")[0]]  # accuracy per language
    _assert_close(cached["sets"], full["sets"])  # accuracy, its change: equal; gold log-prob change: close
    return acc


def _assert_close(got, want, where="sets"):
    """Nested results equal, numbers within 1e-4 (ints, strings, None exactly)."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for key in want:
            _assert_close(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _assert_close(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-4), where
    else:
        assert got == want, where


def test_cached_option_scores_equal_full_forwards(lm, monkeypatch):
    """Options of 1 to 7 tokens (several scoring slots beside the gold one), the gold one varying."""
    options = [[" yes", " no", " maybe not"], [" x", " blue sky", " y"], [" a", " b", " c"], [" up", " down", " z"]]
    examples = jn.make_examples(PROMPTS, options=options, gold=[0, 1, 2, 1])
    acc = _assert_same(lm, examples, monkeypatch, ("option_logprobs", "gold_logprob", "greedy"))
    assert np.isfinite(acc["clean/option_logprobs"]).all()
    assert not np.allclose(acc["clean/option_logprobs"], acc["all_shared/option_logprobs"])  # deactivation is seen


def test_cached_open_answer_scores_equal_full_forwards(lm, monkeypatch):
    """Open answers of several tokens: the model's own greedy continuations, so clean is right and a
    deactivation can make it wrong."""
    answers = {lang: [t if t.strip() else " x" for t in lm.generate(PROMPTS[lang], max_new_tokens=3).texts]
               for lang in LANGS}
    examples = jn.make_examples(PROMPTS, answers=answers)
    acc = _assert_same(lm, examples, monkeypatch, ("gold_logprob", "greedy"))
    assert acc["clean/greedy"].all()
    assert not np.allclose(acc["clean/gold_logprob"], acc["all_shared/gold_logprob"])
