"""Tests for jaxneurons.tasks: loaders against the real data, built-in sets, errors."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jaxneurons.tasks import TASKS, TaskDataError, available_tasks, get_task
from jaxneurons.tasks.hub import HubUnavailableError

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("JAXNEURONS_DATA_DIR", REPO.parent / "shared" / "data"))
NINE = ["en", "de", "es", "fr", "ru", "th", "tr", "vi", "zh"]

needs_data = pytest.mark.skipif(not DATA_DIR.is_dir(), reason=f"dataset folder {DATA_DIR} missing")


def tsv_row(path, index):
    with open(path, encoding="utf-8") as f:
        return f.readlines()[index].rstrip("\n").split("\t")


def assert_parallel(result, languages):
    assert result.examples, "no examples"
    ids = [ex.id for ex in result.examples]
    assert len(set(ids)) == len(ids)
    for ex in result.examples:
        for field in (ex.prompts, ex.gold, ex.answers):
            assert list(field) == languages
        if ex.options is not None:
            assert list(ex.options) == languages
            for lang in languages:
                assert ex.answers[lang] == ex.options[lang][ex.gold[lang]]


# ----- real data -----

@needs_data
def test_xnli_test_prompt_matches_raw_file():
    langs = ["en", "de", "zh", "th"]
    result = get_task("xnli").load(langs, split="test", num_examples=20, data_dir=DATA_DIR, prompt_format="paper")
    assert len(result.examples) == 20 and result.skipped == {}
    assert_parallel(result, langs)
    premise, hypothesis = tsv_row(DATA_DIR / "xnli" / "test-de.tsv", 17)
    ex = result.examples[17]
    assert ex.id == "xnli-test-17"
    assert ex.prompts["de"] == (f"Take the following as truth: {premise}\nThen the following statement: "
                                f'"{hypothesis}" is "true", "false", or "inconclusive"?')
    label = (DATA_DIR / "xnli" / "test-labels.txt").read_text().splitlines()[17]
    expected = {"entailment": " true", "contradiction": " false", "neutral": " inconclusive"}[label]
    assert ex.answers == {lang: expected for lang in langs}
    assert ex.options["zh"] == (" true", " false", " inconclusive")


@needs_data
def test_xnli_dev_uses_tsv_labels():
    result = get_task("xnli").load(["en", "fr"], split="dev", num_examples=3, data_dir=DATA_DIR)
    labels = [tsv_row(DATA_DIR / "xnli" / "dev-en.tsv", i)[2] for i in range(3)]
    gold = {"entailment": 0, "contradiction": 1, "neutral": 2}
    assert [ex.gold["en"] for ex in result.examples] == [gold[x] for x in labels]


@needs_data
def test_data_dir_from_environment(monkeypatch):
    monkeypatch.setenv("JAXNEURONS_DATA_DIR", str(DATA_DIR))
    assert len(get_task("xnli").load(["en"], num_examples=2).examples) == 2
    monkeypatch.delenv("JAXNEURONS_DATA_DIR")
    with pytest.raises(TaskDataError, match="--data_dir.*JAXNEURONS_DATA_DIR"):
        get_task("xnli").load(["en"], num_examples=2)


@needs_data
def test_pawsx_dev_and_test_labels_per_language():
    langs = ["en", "de", "zh"]
    dev = get_task("pawsx").load(langs, split="dev", data_dir=DATA_DIR)
    assert len(dev.examples) == 2000
    assert_parallel(dev, langs)
    s1, s2, label = tsv_row(DATA_DIR / "pawsx" / "dev-de.tsv", 5)
    assert f"Sentence 1: {s1}\nSentence 2: {s2}\n" in dev.examples[5].prompts["de"]
    assert dev.examples[5].gold["de"] == (0 if label == "1" else 1)
    assert any(len(set(ex.gold.values())) > 1 for ex in dev.examples)  # languages keep their own labels
    test = get_task("pawsx").load(["de", "zh"], split="test", num_examples=10, data_dir=DATA_DIR)
    assert len(test.examples) == 10
    with pytest.raises(TaskDataError, match="test-en.tsv"):
        get_task("pawsx").load(["en", "de"], split="test", data_dir=DATA_DIR)


@needs_data
def test_xcopa_parallel_by_idx():
    langs = ["zh", "th", "tr", "vi"]
    result = get_task("xcopa").load(langs, split="val", num_examples=50, data_dir=DATA_DIR)
    assert len(result.examples) == 50
    assert_parallel(result, langs)
    raw = json.loads((DATA_DIR / "xcopa" / "data" / "zh" / "val.zh.jsonl").read_text(encoding="utf-8").splitlines()[3])
    ex = result.examples[3]
    assert ex.id == f"xcopa-val-{raw['idx']}"
    assert ex.prompts["zh"].startswith(f"Premise: {raw['premise']}\nQuestion: ")
    assert ex.options["zh"] == (" " + raw["choice1"], " " + raw["choice2"])
    assert ex.gold["zh"] == raw["label"]
    # one question type per item in every language
    assert all(len({p.split("\n")[1] for p in e.prompts.values()}) == 1 for e in result.examples)


@needs_data
def test_mpararel_parallel_tuples():
    langs = ["en", "de", "zh"]
    task = get_task("mpararel")
    result = task.load(langs, num_examples=30, data_dir=DATA_DIR)
    assert len(result.examples) == 30 and task.scoring == "greedy"
    assert_parallel(result, langs)
    assert result.skipped.get("tuple_not_in_all_languages", 0) > 0
    relations = {ex.id.split("-")[1] for ex in result.examples}
    assert len(relations) > 5  # round-robin over relations
    for ex in result.examples:
        assert ex.options is None and ex.answers["en"].startswith(" ")
        assert not ex.prompts["en"].endswith(" ")
        assert "[X]" not in ex.prompts["en"] and "[Y]" not in ex.prompts["zh"]
    # compare one example against the raw files
    ex = result.examples[0]
    relation, sub_uri, obj_uri = ex.id.split("-")[1:]
    tuples = [json.loads(line) for line in open(DATA_DIR / "mpararel" / "tuples" / "zh-hans" / f"{relation}.jsonl", encoding="utf-8")]
    rec = next(t for t in tuples if (t["sub_uri"], t["obj_uri"]) == (sub_uri, obj_uri))
    assert ex.prompts["zh"].startswith(rec["sub_label"]) or rec["sub_label"] in ex.prompts["zh"]
    assert ex.answers["zh"].strip() == rec["obj_label"]
    again = task.load(langs, num_examples=30, data_dir=DATA_DIR)
    assert [e.id for e in again.examples] == [e.id for e in result.examples]


@needs_data
@pytest.mark.parametrize("name", ["mzsre_en2all", "mzsre_all2en"])
def test_mzsre_prompts(name):
    langs = ["en", "de", "cs", "nl", "zh"]
    result = get_task(name).load(langs, num_examples=5, data_dir=DATA_DIR)
    assert len(result.examples) == 5
    assert_parallel(result, langs)
    raw = json.loads((DATA_DIR / "mzsre" / "mzsre_test_duplicate_encz.json").read_text(encoding="utf-8"))[2]
    ex = result.examples[2]
    if name == "mzsre_en2all":
        assert ex.prompts["cs"] == f"New fact: {raw['en']['src']} {raw['en']['alt']}\nQuestion: {raw['cz']['src']}\nAnswer:"
        assert ex.answers["cs"] == " " + raw["cz"]["alt"]
    else:
        assert ex.prompts["cs"] == f"New fact: {raw['cz']['src']} {raw['cz']['alt']}\nQuestion: {raw['en']['src']}\nAnswer:"
        assert ex.answers["cs"] == " " + raw["en"]["alt"]
    assert ex.prompts["en"] == f"New fact: {raw['en']['src']} {raw['en']['alt']}\nQuestion: {raw['en']['src']}\nAnswer:"


# ----- built-in sets -----

@pytest.mark.parametrize("name", ["builtin_nli", "builtin_facts"])
def test_builtin_sets_complete(name, monkeypatch):
    monkeypatch.delenv("JAXNEURONS_DATA_DIR", raising=False)
    result = get_task(name).load(NINE)
    assert len(result.examples) >= 40 and result.skipped == {}
    assert_parallel(result, NINE)
    for ex in result.examples:
        for lang in NINE:
            assert ex.prompts[lang].strip() and ex.answers[lang].strip()


def test_builtin_facts_spacing():
    ex = {e.id: e for e in get_task("builtin_facts").load(NINE).examples}["builtin_facts-capital-france"]
    assert ex.prompts["en"] == "The capital of France is" and ex.answers["en"] == " Paris"
    assert ex.prompts["zh"] == "法国的首都是" and ex.answers["zh"] == "巴黎"


# ----- errors on temporary files -----

def write_xnli(tmp_path, rows_by_lang, split="dev"):
    folder = tmp_path / "xnli"
    folder.mkdir(exist_ok=True)
    for lang, rows in rows_by_lang.items():
        (folder / f"{split}-{lang}.tsv").write_text("".join(r + "\n" for r in rows), encoding="utf-8")


GOOD = ["A man sleeps.\tA person sleeps.\tentailment", "It rains.\tThe sun shines.\tcontradiction"]


def test_malformed_line_names_file_and_line(tmp_path):
    write_xnli(tmp_path, {"en": GOOD + ["only one column"], "de": GOOD + ["Ein Satz.\tNoch einer.\tneutral"]})
    with pytest.raises(TaskDataError, match=r"dev-en\.tsv:3"):
        get_task("xnli").load(["en", "de"], split="dev", data_dir=tmp_path)
    result = get_task("xnli").load(["en", "de"], split="dev", data_dir=tmp_path, on_error="skip")
    assert len(result.examples) == 2 and result.skipped == {"malformed_line": 1}


def test_unknown_label_is_an_error(tmp_path):
    write_xnli(tmp_path, {"en": GOOD + ["a.\tb.\tmaybe"]})
    with pytest.raises(TaskDataError, match="unknown label"):
        get_task("xnli").load(["en"], split="dev", data_dir=tmp_path)
    assert get_task("xnli").load(["en"], split="dev", data_dir=tmp_path, on_error="skip").skipped == {"unknown_label": 1}


def test_missing_language_file(tmp_path):
    write_xnli(tmp_path, {"en": GOOD})
    with pytest.raises(TaskDataError, match=r"dev-de\.tsv"):
        get_task("xnli").load(["en", "de"], split="dev", data_dir=tmp_path)


def test_non_parallel_rows(tmp_path):
    write_xnli(tmp_path, {"en": GOOD, "de": GOOD[:1]})
    with pytest.raises(TaskDataError, match="not parallel"):
        get_task("xnli").load(["en", "de"], split="dev", data_dir=tmp_path)
    result = get_task("xnli").load(["en", "de"], split="dev", data_dir=tmp_path, on_error="skip")
    assert len(result.examples) == 1 and result.skipped == {"not_parallel": 1}


def test_xcopa_non_parallel_idx_and_bad_json(tmp_path):
    rec = {"premise": "p", "choice1": "a", "choice2": "b", "question": "cause", "label": 0}
    for lang, idxs in {"zh": [0, 1, 2], "th": [0, 2]}.items():
        folder = tmp_path / "xcopa" / "data" / lang
        folder.mkdir(parents=True)
        lines = [json.dumps({**rec, "idx": i}) for i in idxs] + (["{not json"] if lang == "zh" else [])
        (folder / f"val.{lang}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TaskDataError, match=r"val\.zh\.jsonl:4"):
        get_task("xcopa").load(["zh", "th"], split="val", data_dir=tmp_path)
    result = get_task("xcopa").load(["zh", "th"], split="val", data_dir=tmp_path, on_error="skip")
    assert [e.id for e in result.examples] == ["xcopa-val-0", "xcopa-val-2"]
    assert result.skipped == {"malformed_line": 1, "not_parallel": 1}


# ----- registry, languages, scoring, hub -----

def test_registry():
    assert set(available_tasks()) == set(TASKS) >= {
        "xnli", "pawsx", "xcopa", "mpararel", "mzsre_en2all", "mzsre_all2en", "builtin_nli", "builtin_facts"}
    for task in TASKS.values():
        assert task.scoring in ("options", "greedy") and task.__doc__
    with pytest.raises(ValueError, match="known tasks: .*xnli"):
        get_task("nope")


def test_unsupported_language_and_split():
    with pytest.raises(ValueError, match="supported: .*en"):
        get_task("builtin_nli").load(["en", "klingon"])
    with pytest.raises(ValueError, match="no split"):
        get_task("builtin_nli").load(["en"], split="train")


def test_is_correct():
    nli, facts = get_task("builtin_nli"), get_task("builtin_facts")
    assert nli.is_correct(np.array([-1.0, -3.0, -2.0]), None, 0)
    assert not nli.is_correct(np.array([-1.0, -3.0, -2.0]), None, 2)
    assert facts.is_correct(None, True, 0) and not facts.is_correct(None, False, 0)
    with pytest.raises(ValueError):
        nli.is_correct(None, True, 0)


def test_hub_errors_are_clear(tmp_path):
    with pytest.raises(HubUnavailableError, match="mpararel|no public"):
        get_task("mpararel").load(["en"], source="hub")
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(HubUnavailableError, match="pip install datasets"):
            get_task("xnli").load(["en"], source="hub")
    else:
        pytest.skip("datasets is installed; loading would hit the network")
