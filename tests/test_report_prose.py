"""report.md's reading says only what its numbers support: where a category sits over the layers, partial-shared
neurons only where they can exist, the non-activated overlap in plain words, and a warning for an accuracy that
says nothing about the task (at or below chance, or an open answer never right)."""

import re

import numpy as np

from jaxneurons.analysis.report import accuracy_warnings, write_report
from jaxneurons.analysis.sharing import CATEGORIES


def _summary(all_shared, partial=None, languages=("en", "de", "zh"), overlap_non_activated=None, **extra) -> dict:
    """A sharing summary with the given per-layer all-shared %, the rest split so each layer sums to 100."""
    all_shared = [float(v) for v in all_shared]
    partial = [0.0] * len(all_shared) if partial is None else [float(v) for v in partial]
    specific = [10.0] * len(all_shared)
    non_activated = [100.0 - a - p - s for a, p, s in zip(all_shared, partial, specific)]
    per_layer = dict(zip(CATEGORIES, (all_shared, partial, specific, non_activated)))
    summary = {"per_layer": per_layer, "mean_over_layers": {k: float(np.mean(v)) for k, v in per_layer.items()},
               "languages": list(languages), **extra}
    if overlap_non_activated is not None:
        summary["overlap"] = {name: [overlap_non_activated if name == "non_activated" else 0.0] * len(all_shared)
                              for name in CATEGORIES}
    return summary


def _reading(tmp_path, summary) -> str:
    text = open(write_report(tmp_path, summary, {}), encoding="utf-8").read()
    return text.split("## Reading\n\n", 1)[1].split("\n", 1)[0]


def test_concentration_and_peak_never_contradict(tmp_path):
    # upper half larger on average, but the single largest layer is layer 0: say both, not "concentrated"
    reading = _reading(tmp_path, _summary([30, 1, 20, 20, 20, 20]))
    assert "concentrated in the upper half" not in reading
    assert "more frequent in the upper half of the layers on average" in reading
    assert "largest share is at layer 0 (30.0 %), in the lower half" in reading
    reading = _reading(tmp_path, _summary([1, 2, 3, 9]))
    assert "All-shared neurons are concentrated in the upper half of the layers" in reading
    assert "peaking at layer 3 (9.0 %)" in reading
    reading = _reading(tmp_path, _summary([5.0, 5.2, 5.1, 5.0]))
    assert "spread evenly over the layers" in reading and "neurons are concentrated" not in reading


def test_partial_shared_is_read_only_where_it_can_exist(tmp_path):
    two = _reading(tmp_path, _summary([1, 2, 3, 9], languages=("en", "de")))
    assert "Partial-shared" not in two and "partial-shared neurons lean" not in two
    three = _reading(tmp_path, _summary([1, 2, 3, 9], partial=[8, 6, 2, 1]))
    assert "Partial-shared neurons are concentrated in the lower half" in three
    none = _reading(tmp_path, _summary([1, 2, 3, 9], partial=[0, 0, 0, 0]))
    assert "Partial-shared" not in none


def test_overlap_sentence_reads_as_plain_words(tmp_path):
    # non-activated in a typical example: 100 - 10 - 0 - 10 = 80 %; 40 % stay non-activated throughout: half of them
    reading = _reading(tmp_path, _summary([10, 10], overlap_non_activated=40.0))
    assert ("A typical example leaves 80.0 % of the neurons non-activated, and 40.0 % of the neurons stay "
            "non-activated for every example: 50.0 % of a typical example's non-activated neurons never activate, "
            "more than the paper's 'fewer than 10 %'.") in reading
    assert "i.e." not in reading
    reading = _reading(tmp_path, _summary([10, 10], overlap_non_activated=4.0))
    assert "5.0 % of a typical example's non-activated neurons never activate, consistent with the paper's" in reading


def test_an_open_answer_never_right_is_warned(tmp_path):
    detail = {lang: {"value": 0.0, "ci95": [0.0, 0.0], "n": 20, "chance": None, "majority_answer": None,
                     "majority_rate": None, "warning": None} for lang in ("en", "de", "zh")}
    detail["en"]["value"] = 0.25
    summary = _summary([1, 2, 3, 9], accuracy={k: d["value"] for k, d in detail.items()}, accuracy_detail=detail)
    assert accuracy_warnings(summary) == {"de": "no example answered correctly (accuracy 0)",
                                          "zh": "no example answered correctly (accuracy 0)"}
    text = open(write_report(tmp_path, summary, {}), encoding="utf-8").read()
    assert "**Warning:** the accuracy in de, zh says nothing about the task" in text
    assert re.search(r"\| de \| 0\.000 \|.*\| no example answered correctly \(accuracy 0\) \|", text)
    assert "The accuracy in de, zh is uninformative" in _reading(tmp_path, summary)


def test_accuracy_at_or_below_chance_is_warned():
    detail = {"en": {"value": 0.5, "ci95": None, "n": 10, "chance": 0.5, "majority_answer": 0, "majority_rate": 0.5,
                     "warning": None},
              "de": {"value": 0.7, "ci95": None, "n": 10, "chance": 0.5, "majority_answer": 0, "majority_rate": 0.5,
                     "warning": None}}
    assert accuracy_warnings({"accuracy_detail": detail}) == {"en": "accuracy 0.500 is at or below chance (0.500)"}
    assert accuracy_warnings({"accuracy": {"en": 0.0, "de": 0.4}}) == {"en": "no example answered correctly "
                                                                              "(accuracy 0)"}
    assert accuracy_warnings({}) == {}
