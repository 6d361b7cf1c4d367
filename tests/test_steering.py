"""Language steering: the specific sets, the generated conditions and their summary against direct computations;
resume; the language-ID scorer."""

import json

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.language_id import UNKNOWN, identify
from jaxneurons.pipeline.errors import PipelineInputError, ResumeMismatchError
from jaxneurons.pipeline.neuron_sets import read_sets
from jaxneurons.pipeline.steering import SteeringConfig, condition_sets, run_steering, specific_sets
from tests.fixtures import direct_acts, tiny_lm

LANGS = ["en", "de"]
PROMPTS = {"en": ["the cat sat on", "a dog ran to", "one two three", "it is a"],
           "de": ["die Katze sass auf", "ein Hund lief", "eins zwei drei", "es ist ein"]}
CONFIG = SteeringConfig(max_new_tokens=4, bootstrap=50, batch_size=4)


@pytest.fixture(scope="module")
def lm():
    return tiny_lm()


@pytest.fixture(scope="module")
def examples():
    return jn.make_examples(PROMPTS, answers={lang: ["x"] * 4 for lang in LANGS})


def test_specific_sets_are_the_most_often_specific_neurons(lm, examples):
    sets = specific_sets(lm, examples, LANGS, size=0.25)
    active = np.stack([direct_acts(lm, ex, LANGS) for ex in examples]) > 0  # [E, N, L, F]
    only = active & (active.sum(1, keepdims=True) == 1)
    for n, lang in enumerate(LANGS):
        for layer in range(lm.config.num_layers):
            counts = only[:, n, layer].sum(0)
            chosen = sets[lang][layer]
            assert len(chosen) <= 6 and all(counts[i] > 0 for i in chosen)
            others = np.setdiff1d(np.arange(24), chosen)
            if len(chosen):  # nothing left out counts more than what was chosen
                assert counts[others].max(initial=0) <= counts[chosen].min()


def test_conditions_generate_under_their_sets_and_the_summary_counts_them(lm, tmp_path):
    sets = {"en": {0: [1, 2, 3], 1: [4]}, "de": {1: [0, 5, 7]}}
    result = run_steering(lm, PROMPTS, sets, str(tmp_path), CONFIG, progress=False)
    rows = result["generations"]
    names = {r["condition"] for r in rows}
    assert names == {"clean", "off:en", "boost:en", "off:de", "boost:de"} | {
        f"{c}_{a}:{l}:s0" for c in ("random", "matched") for a in ("off", "boost") for l in LANGS}
    off = [r["text"] for r in rows if r["condition"] == "off:de" and r["prompt_language"] == "en"]
    direct = lm.generate(PROMPTS["en"], max_new_tokens=4, intervention=jn.Intervention.zero(lm, sets["de"]))
    assert off == direct.texts
    boost = [r["text"] for r in rows if r["condition"] == "boost:en" and r["prompt_language"] == "de"]
    assert boost == lm.generate(PROMPTS["de"], max_new_tokens=4,
                                intervention=jn.Intervention.multiply(lm, sets["en"], 2.0)).texts
    for lang in LANGS:  # off-target and shares recomputed from the rows
        for name, entry in result["per_language"][lang].items():
            found = [r["language"] for r in rows if r["prompt_language"] == lang and r["condition"] == name]
            off_target = np.mean([f not in (lang, UNKNOWN) for f in found]) * 100
            assert entry["off_target"]["value"] == pytest.approx(off_target)
            assert entry["shares"][UNKNOWN]["value"] == pytest.approx(np.mean([f == UNKNOWN for f in found]) * 100)
    matching = result["matching"]
    assert matching["random_off:en:s0"]["size"] == matching["random_off:en:s0"]["target_size"] == 4
    written = json.loads((tmp_path / "steering.json").read_text())
    assert written["per_language"] == json.loads(json.dumps(result["per_language"]))
    assert len((tmp_path / "generations.jsonl").read_text().splitlines()) == len(rows)
    assert (tmp_path / "figures" / "steering.png").exists() and "Language steering" in (tmp_path / "report.md").read_text()
    again = run_steering(lm, PROMPTS, sets, str(tmp_path), CONFIG, resume=True, progress=False)
    assert again["generations"] == rows
    with pytest.raises(ResumeMismatchError, match="differs in"):
        run_steering(lm, PROMPTS, sets, str(tmp_path), SteeringConfig(max_new_tokens=5, bootstrap=50), resume=True,
                     progress=False)


def test_controls_are_count_matched_per_layer(lm):
    sets = {"en": {0: [1, 2, 3], 1: [4, 9]}}
    abs_m = np.random.default_rng(0).random((2, 24))
    chosen = condition_sets(lm, sets, abs_m, SteeringConfig(seeds=2))
    target = chosen["off:en"][0]
    for name, (neurons, scale) in chosen.items():
        if name.startswith("matched"):  # |m|-matched: at most as many per layer (the draw stays in the set's range)
            assert (neurons.sum(-1) <= target.sum(-1)).all() and neurons.any(), name
        else:
            np.testing.assert_array_equal(neurons.sum(-1), target.sum(-1), err_msg=name)
        assert scale == (0.0 if "off" in name else 2.0)
        if name != "off:en" and name != "boost:en":
            assert not (neurons & target).any(), name
    assert not np.array_equal(chosen["random_off:en:s0"][0], chosen["random_off:en:s1"][0])


def test_read_sets_checks_the_file(lm, tmp_path):
    path = tmp_path / "sets.json"
    path.write_text(json.dumps({"en": {"0": [1, 2]}, "de": {"1": [30]}}))
    with pytest.raises(PipelineInputError, match="neuron 30 in layer 1 is out of range"):
        read_sets(str(path), LANGS, lm.config)
    with pytest.raises(PipelineInputError, match="no neuron set for fr"):
        read_sets(str(path), ["en", "fr"], lm.config)
    path.write_text(json.dumps({"en": {"0": [1, 2]}, "de": {"1": [3]}}))
    assert read_sets(str(path), LANGS, lm.config) == {"en": {0: [1, 2]}, "de": {1: [3]}}
    from jaxneurons.lape.select import save_lape_neurons

    save_lape_neurons(tmp_path / "lape_neurons.json", {"en": {0: [1, 2], 1: []}, "de": {1: [3]}}, model="tiny")
    assert read_sets(str(tmp_path / "lape_neurons.json"), LANGS, lm.config) == {"en": {0: [1, 2], 1: []},
                                                                              "de": {1: [3]}}


def test_language_id_names_the_language_and_refuses_short_text():
    guesses = identify(["Die Frau liest im Park ein Buch.", "La femme lit un livre dans le parc.", "这是一本很好的书",
                        "ok", ""])
    assert [g.language for g in guesses] == ["de", "fr", "zh", UNKNOWN, UNKNOWN]
    assert all(0.5 < g.confidence <= 1 for g in guesses[:3]) and guesses[3].confidence == 0.0
