"""Task formulations (--prompt_format, --prompt_suffix), the accuracy block and the category-share intervals.

Each against a plain recomputation: prompts against the raw files, the accuracy block and the intervals
against NumPy loops; one real-model test that the default XNLI formulation is above chance.
"""

import collections
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from jaxneurons.analysis.bootstrap import resample_counts
from jaxneurons.analysis.statistics import (
    MAJORITY_WARNING,
    accuracy_detail,
    mark_uninformative,
    predicted_options,
    share_intervals,
    summarize,
)
from jaxneurons.tasks import TASKS, get_task
from jaxneurons.tasks.builtin import read_builtin
from jaxneurons.tasks.xnli import NLI_FORMATS, QA_TEMPLATE, XNLI_TEMPLATE, pick_exemplars

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("JAXNEURONS_DATA_DIR", REPO.parent / "shared" / "data"))
needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"dataset folder {DATA_DIR} missing")
LABEL_INDEX = {"entailment": 0, "contradiction": 1, "neutral": 2}


def tsv_rows(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t") for line in f]


def expected_fewshot_prompt(template, options, shots, premise, hypothesis):
    """The few-shot prompt written out by hand: each exemplar, its answer, a blank line; then the item."""
    text = ""
    for p, h, label in shots:
        text += template.format(premise=p, hypothesis=h) + options[LABEL_INDEX[label]] + "\n\n"
    return text + template.format(premise=premise, hypothesis=hypothesis)


# ---------------------------------------------------------------- formulations

@needs_data
@pytest.mark.parametrize("name", ["paper_fewshot", "qa_fewshot"])
def test_xnli_fewshot_prompts_are_parallel_and_use_dev_exemplars(name):
    langs = ["en", "de", "zh"]
    fmt = NLI_FORMATS[name]
    result = get_task("xnli").load(langs, split="test", num_examples=5, data_dir=DATA_DIR, prompt_format=name)
    dev = {lang: tsv_rows(DATA_DIR / "xnli" / f"dev-{lang}.tsv") for lang in langs}
    picked = pick_exemplars([tuple(r) for r in dev["en"]], fmt.shots_per_label)
    assert len(picked) == 3 * fmt.shots_per_label
    assert sorted(dev["en"][i][2] for i in picked) == sorted(LABEL_INDEX) * fmt.shots_per_label  # balanced
    template = QA_TEMPLATE if name.startswith("qa") else XNLI_TEMPLATE + "\nAnswer:"
    for i, ex in enumerate(result.examples):
        for lang in langs:
            premise, hypothesis = tsv_rows(DATA_DIR / "xnli" / f"test-{lang}.tsv")[i]
            shots = [tuple(dev[lang][j]) for j in picked]  # the same dev rows in every language
            assert ex.prompts[lang] == expected_fewshot_prompt(template, fmt.options, shots, premise, hypothesis)
            assert ex.answers[lang] == fmt.options[ex.gold[lang]]


@needs_data
def test_xnli_harness_is_lm_evaluation_harness_format_in_each_language():
    """'{premise}, {right}?' then ' {Yes|No|Also}, {hypothesis}' with each language's words, read at the answer."""
    words = {"en": ("right", "Yes", "No", "Also"), "de": ("richtig", "Ja", "Nein", "Auch"),
             "zh": ("正确", "是的", "不是的", "所以")}
    result = get_task("xnli").load(list(words), split="test", num_examples=4, data_dir=DATA_DIR)  # the default
    labels = (DATA_DIR / "xnli" / "test-labels.txt").read_text().splitlines()
    for i, ex in enumerate(result.examples):
        assert ex.readout == "answer"
        for lang, (question, yes, no, also) in words.items():
            premise, hypothesis = tsv_rows(DATA_DIR / "xnli" / f"test-{lang}.tsv")[i][:2]
            assert ex.prompts[lang] == f"{premise}, {question}?"
            assert ex.options[lang] == (f" {yes}, {hypothesis}", f" {no}, {hypothesis}", f" {also}, {hypothesis}")
            assert ex.answers[lang] == ex.options[lang][LABEL_INDEX[labels[i]]]


@needs_data
def test_xnli_dev_evaluation_leaves_out_the_exemplars():
    result = get_task("xnli").load(["en", "de"], split="dev", data_dir=DATA_DIR, prompt_format="paper_fewshot")
    picked = pick_exemplars([tuple(r) for r in tsv_rows(DATA_DIR / "xnli" / "dev-en.tsv")], 1)
    evaluated = {int(ex.id.rsplit("-", 1)[1]) for ex in result.examples}
    assert evaluated.isdisjoint(picked) and len(evaluated) == 2490 - len(picked)
    assert result.skipped == {"fewshot_exemplar": len(picked)}


@needs_data
def test_paper_format_is_the_papers_prompt():
    default = get_task("xnli").load(["en"], num_examples=3, data_dir=DATA_DIR, prompt_format="paper")
    premise, hypothesis = tsv_rows(DATA_DIR / "xnli" / "test-en.tsv")[2]
    assert default.examples[2].prompts["en"] == XNLI_TEMPLATE.format(premise=premise, hypothesis=hypothesis)
    assert default.examples[2].options["en"] == (" true", " false", " inconclusive")


@needs_data
def test_paper_cut_is_the_papers_prompt_up_to_the_hypothesis_last_word():
    """The prompt-ending experiment's format: the paper's text, cut after the hypothesis' last word (its closing
    punctuation dropped), so the last token belongs to the item's language."""
    langs = ["en", "de", "th", "zh"]
    result = get_task("xnli").load(langs, num_examples=20, data_dir=DATA_DIR, prompt_format="paper_cut")
    for i, ex in enumerate(result.examples):
        for lang in langs:
            premise, hypothesis = tsv_rows(DATA_DIR / "xnli" / f"test-{lang}.tsv")[i][:2]
            prompt = ex.prompts[lang]
            full = XNLI_TEMPLATE.format(premise=premise, hypothesis=hypothesis)
            assert full.startswith(prompt) and prompt.endswith(hypothesis.rstrip(" .!?。！？\"'”"))
            assert unicodedata.category(prompt[-1])[0] in "LNM", (lang, i, prompt[-20:])  # letter, digit or mark


def test_builtin_exemplars_are_not_evaluated_items_and_parallel():
    items, exemplars = read_builtin("nli.json"), read_builtin("nli.json", key="exemplars")
    langs = ["en", "de", "th", "zh"]
    assert {x["id"] for x in items}.isdisjoint(x["id"] for x in exemplars)
    texts = {x[lang][part] for x in items for lang in langs for part in ("premise", "hypothesis")}
    assert not texts & {x[lang][part] for x in exemplars for lang in langs for part in ("premise", "hypothesis")}
    result = get_task("builtin_nli").load(langs, prompt_format="qa_fewshot")
    assert len(result.examples) == len(items)
    shots = [x for label in LABEL_INDEX for x in exemplars if x["label"] == label][:3]
    for ex, item in zip(result.examples, items):
        for lang in langs:
            expected = expected_fewshot_prompt(
                QA_TEMPLATE, (" True", " False", " Neither"),
                [(x[lang]["premise"], x[lang]["hypothesis"], x["label"]) for x in shots],
                item[lang]["premise"], item[lang]["hypothesis"])
            assert ex.prompts[lang] == expected


@pytest.mark.parametrize("name", ["builtin_nli", "builtin_facts"])
def test_prompt_suffix_is_appended_to_every_language(name):
    langs = ["en", "de", "zh"]
    task = get_task(name)
    plain = task.load(langs).examples
    suffixed = task.load(langs, prompt_suffix="\nAnswer:").examples
    assert len(plain) == len(suffixed)
    for a, b in zip(plain, suffixed):
        assert b.prompts == {lang: a.prompts[lang] + "\nAnswer:" for lang in langs}
        assert (b.options, b.gold, b.answers) == (a.options, a.gold, a.answers)


def test_every_task_has_paper_and_unknown_formats_name_the_flag():
    for task in TASKS.values():
        assert "paper" in task.prompt_formats and task.default_format in task.prompt_formats
    with pytest.raises(ValueError, match=r"--prompt_format.*'nope'.*choices: harness, paper"):
        get_task("builtin_nli").load(["en"], prompt_format="nope")


# ---------------------------------------------------------------- the accuracy block

def plain_interval(values_e, counts_re):
    """Percentile interval of the mean, one resample at a time (the plain way)."""
    stats = [np.sum(c * values_e) / np.sum(c) for c in counts_re]
    return np.percentile(stats, [2.5, 97.5])


def test_accuracy_detail_against_numpy():
    rng = np.random.default_rng(3)
    e = 120
    predicted_en = np.stack([rng.integers(0, 3, e), np.where(rng.random(e) < 0.9, 1, 0)], axis=1)
    gold_e = rng.integers(0, 3, e)
    correct_en = predicted_en == gold_e[:, None]
    options = {"en": (" a", " b", " c"), "de": (" a", " b", " c")}
    detail = accuracy_detail(correct_en, predicted_en, np.full((e, 2), 3), ["en", "de"], options, 500, seed=7)
    counts_re = resample_counts(e, 500, 7)
    for n, lang in enumerate(["en", "de"]):
        d = detail[lang]
        assert d["value"] == pytest.approx(correct_en[:, n].mean()) and d["n"] == e
        np.testing.assert_allclose(d["ci95"], plain_interval(correct_en[:, n].astype(float), counts_re))
        assert d["chance"] == pytest.approx(1 / 3)
        top, count = collections.Counter(predicted_en[:, n].tolist()).most_common(1)[0]
        assert d["majority_rate"] == pytest.approx(count / e) and d["majority_answer"] == options[lang][top]
    assert detail["de"]["majority_rate"] > MAJORITY_WARNING and "takes" in detail["de"]["warning"]
    assert "not above chance" in detail["en"]["warning"]  # random answers


def test_accuracy_warning_quiet_when_above_chance_and_marks_correctness():
    e = 200
    gold_e = np.arange(e) % 3
    predicted_e = np.where(np.arange(e) % 5 == 0, (gold_e + 1) % 3, gold_e)  # 80 % correct, answers balanced
    correct = (predicted_e == gold_e)[:, None]
    detail = accuracy_detail(correct, predicted_e[:, None], np.full((e, 1), 3), ["en"], None, 300)
    assert detail["en"]["warning"] is None and detail["en"]["ci95"][0] > 1 / 3
    summary = {"by_correctness": {}}
    mark_uninformative(summary, detail)
    assert summary["by_correctness"]["informative"] is True and summary["accuracy_warnings"] == {}
    at_chance = accuracy_detail(np.arange(e)[:, None] % 3 == 0, np.arange(e)[:, None] % 3, np.full((e, 1), 3),
                                ["en"], None, 300)
    mark_uninformative(summary, at_chance)
    assert summary["by_correctness"]["informative"] is False and "uninformative" in summary["by_correctness"]["note"]


def test_open_answer_tasks_have_no_chance_level():
    correct = np.array([[True], [False], [False]])
    detail = accuracy_detail(correct, np.full((3, 1), -1), np.zeros((3, 1), int), ["en"], None, 100)
    assert detail["en"]["chance"] is None and detail["en"]["majority_rate"] is None and detail["en"]["warning"] is None


def test_predicted_options_skip_missing_options():
    scores = np.array([[[-1.0, -0.5, np.nan], [-2.0, -3.0, -1.0]]])
    np.testing.assert_array_equal(predicted_options(scores), [[1, 2]])


# ---------------------------------------------------------------- category-share intervals

def test_category_share_intervals_cover_the_value_and_shrink():
    rng = np.random.default_rng(0)

    def summary(e):
        counts = rng.multinomial(100, [0.2, 0.3, 0.1, 0.4], size=(e, 1, 4)).astype(np.int32)  # [E, K=1, L=4, 4]
        activated = rng.integers(0, 50, size=(e, 1, 2, 4)).astype(np.int32)
        return summarize(counts, activated, [0.0], ["en", "de"], 100, bootstrap=400, seed=1), counts

    small, counts = summary(20)
    percent_blc = counts[:, 0].astype(float)  # 100 neurons: counts are percent
    for c, name in enumerate(["all_shared", "partial_shared", "specific", "non_activated"]):
        lo_hi = np.asarray(small["per_layer_ci95"][name])
        values = np.asarray(small["per_layer"][name])
        assert np.all(lo_hi[:, 0] <= values) and np.all(values <= lo_hi[:, 1])
        lo, hi = small["mean_over_layers_ci95"][name]
        assert lo <= small["mean_over_layers"][name] <= hi
        # against a plain loop over resamples of the examples
        plain = plain_interval(percent_blc[:, :, c].mean(axis=1), resample_counts(20, 400, 1))
        np.testing.assert_allclose([lo, hi], plain)
    large, _ = summary(500)
    width = lambda s: np.diff(s["mean_over_layers_ci95"]["all_shared"])[0]
    assert width(large) < width(small) / 2
    assert share_intervals(percent_blc, 0) == {"per_layer_ci95": None, "mean_over_layers_ci95": None}


# ---------------------------------------------------------------- a real model

@pytest.fixture(scope="module")
def gemma(zoo_lm):
    return zoo_lm("gemma3-270m")


def test_gemma_on_the_papers_nli_prompt_is_flagged_uninformative(gemma, tmp_path):
    """The audit's finding, through the whole pipeline: with the paper's NLI prompt gemma3-270m answers ' true'
    to every built-in item (English, all 42), so its accuracy is chance, the warning fires and the
    correct-vs-incorrect comparison is marked uninformative."""
    from jaxneurons.pipeline import SharingConfig, run_sharing_analysis

    task = get_task("builtin_nli")
    examples = task.load(["en"], prompt_format="paper").examples
    sharing = run_sharing_analysis(gemma, task, examples, ["en"], tmp_path,
                                   SharingConfig(batch_size=8, thresholds=(0.0,), prompt_format="paper"),
                                   progress=False, figures=False)
    detail = sharing["accuracy_detail"]["en"]
    assert detail["n"] == 42 and detail["chance"] == pytest.approx(1 / 3)
    assert detail["majority_answer"] == " true" and detail["majority_rate"] == 1.0
    assert detail["value"] == pytest.approx(1 / 3) and detail["ci95"][0] < 1 / 3 < detail["ci95"][1]
    assert "not above chance" in detail["warning"] and "takes 100%" in detail["warning"]
    assert sharing["by_correctness"]["informative"] is False and sharing["prompt_format"] == "paper"


@needs_data
def test_gemma_is_above_chance_on_xnli_with_the_default_formulation(gemma, tmp_path):
    """The default XNLI formulation (harness) puts gemma3-270m above chance: on the first 60 English test items
    the 95% interval excludes 1/3 (measured on 150 items: en 0.487 [0.407, 0.567], de 0.420 [0.347, 0.493])."""
    from jaxneurons.pipeline import SharingConfig, run_sharing_analysis

    task = get_task("xnli")
    examples = task.load(["en"], split="test", num_examples=60, data_dir=DATA_DIR).examples
    sharing = run_sharing_analysis(gemma, task, examples, ["en"], tmp_path,
                                   SharingConfig(batch_size=8, thresholds=(0.0,), prompt_format=task.default_format),
                                   progress=False, figures=False)
    detail = sharing["accuracy_detail"]["en"]
    assert sharing["prompt_format"] == "harness" and detail["n"] == 60
    assert detail["ci95"][0] > 1 / 3 and detail["warning"] is None, detail
