"""Any parallel data: jn.make_examples from lists, jn.examples_from_files (TSV/CSV/JSONL), jn.examples_from_dataset,
the registered task 'files' and the launcher's --task=files --data_files --columns; every check names the file,
line (or argument and item), language and field in one line."""

import json

import pytest

import jaxneurons as jn
from jaxneurons.pipeline.batching import tokenize_examples
from jaxneurons.tasks import FilesTask, ParallelExample, TaskDataError, get_task
from jaxneurons.tasks.custom import parse_columns, parse_data_files

PROMPTS = {"en": ["The capital of France is", "Two plus two is"], "zh": ["法国的首都是", "二加二等于"]}
ANSWERS = {"en": [" Paris", " four"], "zh": ["巴黎", "四"]}
NLI = {"en": ["It rains. The street is wet?", "It is sunny. It snows?"],
       "de": ["Es regnet. Die Straße ist nass?", "Es ist sonnig. Es schneit?"]}
OPTIONS = {"en": [(" yes", " no"), (" yes", " no")], "de": [(" ja", " nein"), (" ja", " nein")]}


def write_tsv(path, header, rows):
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")
    return str(path)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def open_answer_files(tmp_path, suffix=".tsv"):
    """{lang: file} holding PROMPTS / ANSWERS, columns question and answer (answers keep their leading space)."""
    files = {}
    for lang in PROMPTS:
        rows = list(zip(PROMPTS[lang], ANSWERS[lang]))
        if suffix == ".tsv":
            files[lang] = write_tsv(tmp_path / f"{lang}.tsv", ["question", "answer"], rows)
        else:
            files[lang] = write_jsonl(tmp_path / f"{lang}.jsonl", [{"question": q, "answer": a} for q, a in rows])
    return files


def error_of(call) -> str:
    with pytest.raises(TaskDataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------------ make_examples

def test_make_examples_open_answers():
    examples = jn.make_examples(prompts=PROMPTS, answers=ANSWERS)
    assert examples == [ParallelExample(id=f"custom-{i}", prompts={lang: PROMPTS[lang][i] for lang in PROMPTS},
                                        options=None, gold={"en": 0, "zh": 0},
                                        answers={lang: ANSWERS[lang][i] for lang in PROMPTS}) for i in range(2)]
    shared = jn.make_examples(prompts=PROMPTS, answers=[" A", " B"], ids=["q1", "q2"], readout="answer")
    assert [ex.id for ex in shared] == ["q1", "q2"] and shared[1].answers == {"en": " B", "zh": " B"}
    assert shared[0].readout == "answer"


def test_make_examples_options_answer_is_the_gold_option():
    examples = jn.make_examples(prompts=NLI, options=OPTIONS, gold=[0, 1])
    assert examples[1].options == {"en": (" yes", " no"), "de": (" ja", " nein")}
    assert examples[1].gold == {"en": 1, "de": 1} and examples[1].answers == {"en": " no", "de": " nein"}
    shared = jn.make_examples(prompts=NLI, options=[(" true", " false")] * 2, gold={"en": [1, 0], "de": [1, 0]})
    assert shared[0].answers == {"en": " false", "de": " false"}
    # The pipeline takes them as they are.
    from tests.fixtures import byte_tokenizer

    rows = tokenize_examples(byte_tokenizer(), examples, ["en", "de"], "options")
    assert len(rows) == 2 and all(len(r) == 2 for r in rows)


@pytest.mark.parametrize("kwargs, expected", [
    (dict(prompts={"en": ["a", " "], "zh": ["b", "c"]}, answers=[" x", " y"]),
     "make_examples item 1: prompts['en'] (language en) is empty"),
    (dict(prompts={"en": ["a", "b"], "zh": ["c"]}, answers={"en": [" x", " y"], "zh": [" z"]}),
     "different numbers of rows (prompts['en'] (en): 2 rows, prompts['zh'] (zh): 1 rows)"),
    (dict(prompts={"en": ["a", "b"]}, answers={"en": [" x"]}), "language en has lists of different lengths"),
    (dict(prompts={"en": ["a"]}, answers={"en": [""]}), "item 0: answers['en'] (language en) is empty"),
    (dict(prompts={"en": ["a"]}, answers={"de": [" x"]}), "answers has languages ['de'], prompts ['en']"),
    (dict(prompts={"en": ["a"]}, options=[(" x", " y")], gold=[2]), "item 0: gold (language en) is 2; it must be "
                                                                    "the index (0 to 1)"),
    (dict(prompts={"en": ["a"]}, options=[(" x",)], gold=[0]), "options (language en) has 1 option(s)"),
    (dict(prompts={"en": ["a"]}, options=[(" x", "")], gold=[0]), "options (language en): option 1 is empty"),
    (dict(prompts={"en": ["a"]}, options=[(" x", " x")], gold=[0]), "repeats an option"),
    (dict(prompts={"en": ["a"]}, options=[(" x", " y")], gold=[True]), "gold (language en) is True"),
    (dict(prompts={"en": ["a"]}, options=[(" x", " y")]), "options and gold go together"),
    (dict(prompts={"en": ["a"]}, answers=[" x"], options=[(" x", " y")], gold=[0]), "not both"),
    (dict(prompts={"en": ["a"]}), "give answers (open answers) or options with gold"),
    (dict(prompts={"en": ["a", "b"]}, answers=[" x", " y"], ids=["q", "q"]), "id 'q' is also the id of item 0"),
    (dict(prompts={"en": "a"}, answers=[" x"]), "prompts['en'] is one string"),
    (dict(prompts=["a"], answers=[" x"]), "prompts must be a dict language -> list"),
])
def test_make_examples_errors_name_argument_item_and_language(kwargs, expected):
    assert expected in error_of(lambda: jn.make_examples(**kwargs))


def test_make_examples_skip_drops_the_item_in_every_language():
    with pytest.warns(UserWarning, match=r"skipped items \(bad_field: 1\)"):
        examples = jn.make_examples(prompts={"en": ["a", "", "c"], "zh": ["d", "e", "f"]}, answers=[" x", " y", " z"],
                                    on_error="skip")
    assert [ex.id for ex in examples] == ["custom-0", "custom-2"]


# ------------------------------------------------------------------------------------------------------- files

@pytest.mark.parametrize("suffix", [".tsv", ".jsonl"])
def test_files_equal_the_same_lists(tmp_path, suffix):
    files = open_answer_files(tmp_path, suffix)
    assert jn.examples_from_files(files, prompt="question") == jn.make_examples(prompts=PROMPTS, answers=ANSWERS)


def test_files_with_options_in_columns_or_a_list_and_an_id_column(tmp_path):
    header = ["id", "text", "yes", "no", "label"]
    files = {lang: write_tsv(tmp_path / f"{lang}.tsv", header, [[f"q{i}", NLI[lang][i], *OPTIONS[lang][i], str(i)]
                                                                 for i in range(2)]) for lang in NLI}
    from_columns = jn.examples_from_files(files, prompt="text", options=["yes", "no"], gold="label", id="id")
    assert from_columns == jn.make_examples(prompts=NLI, options=OPTIONS, gold=[0, 1], ids=["q0", "q1"])
    files = {lang: write_jsonl(tmp_path / f"{lang}.jsonl", [{"p": NLI[lang][i], "o": list(OPTIONS[lang][i]), "g": i}
                                                            for i in range(2)]) for lang in NLI}
    assert jn.examples_from_files(files, prompt="p", options="o", gold="g") == jn.make_examples(
        prompts=NLI, options=OPTIONS, gold=[0, 1])


def test_tsv_keeps_quotes_and_csv_reads_quoted_cells(tmp_path):
    tsv = write_tsv(tmp_path / "en.tsv", ["prompt", "answer"], [['He said "hi" and', ' "bye"']])
    assert jn.examples_from_files({"en": tsv})[0].answers["en"] == ' "bye"'
    csv_file = tmp_path / "en.csv"
    csv_file.write_text('prompt,answer\n"One, two,"," three"\n', encoding="utf-8")
    example = jn.examples_from_files({"en": str(csv_file)})[0]
    assert (example.prompts["en"], example.answers["en"]) == ("One, two,", " three")


def test_file_errors_name_file_line_language_and_column(tmp_path):
    files = open_answer_files(tmp_path)
    zh = tmp_path / "zh.tsv"
    cases = {
        "question\tanswer\n法国的首都是\t巴黎\n\t四\n": f"{zh}:3: column 'question' (language zh) is empty",
        "question\tanswer\n法国的首都是\t巴黎\n二加二等于\t四\textra\n": f"{zh}:3: 3 cells, the header has 2 (language zh)",
        "question\tanswer\n法国的首都是\t巴黎\n": f"different numbers of rows ({files['en']} (en): 2 rows, {zh} (zh): 1",
        "prompt\tanswer\n法国的首都是\t巴黎\n二加二等于\t四\n": f"{zh}:1 (language zh): no column(s) ['question'] in the "
                                                     "header ['prompt', 'answer']",
        "": f"{zh}:1 (language zh): empty file",
    }
    for text, expected in cases.items():
        zh.write_text(text, encoding="utf-8")
        assert expected in error_of(lambda: jn.examples_from_files(files, prompt="question")), text
    bad_json = write_jsonl(tmp_path / "de.jsonl", [{"question": "a", "answer": " b"}])
    with open(bad_json, "a", encoding="utf-8") as f:
        f.write('{"question": "c"}\n{broken\n')
    message = error_of(lambda: jn.examples_from_files({"de": bad_json}, prompt="question"))
    assert f"{bad_json}:2: no field(s) ['answer'] (language de)" in message
    (tmp_path / "x.txt").write_text("a")
    assert f"{tmp_path / 'x.txt'} (language en): unknown file type '.txt'" in error_of(
        lambda: jn.examples_from_files({"en": str(tmp_path / "x.txt")}))
    assert "missing data file" in error_of(lambda: jn.examples_from_files({"en": str(tmp_path / "none.tsv")}))


def test_file_errors_of_options_gold_and_ids(tmp_path):
    en = write_tsv(tmp_path / "en.tsv", ["id", "p", "a", "b", "g"], [["1", "x", " y", " z", "0"], ["2", "x", " y", " z", "1"]])
    de = write_tsv(tmp_path / "de.tsv", ["id", "p", "a", "b", "g"], [["1", "x", " y", " z", "0"], ["3", "x", " y", " z", "5"]])
    files = {"en": en, "de": de}
    message = error_of(lambda: jn.examples_from_files(files, prompt="p", options=["a", "b"], gold="g"))
    assert f"{de}:3: column 'g' (language de) is '5'; it must be the index (0 to 1)" in message
    message = error_of(lambda: jn.examples_from_files(files, prompt="p", options=["a", "b"], gold="g", id="id"))
    assert f"{en}:3: column 'id' (language en) = '2'; {de}:3: column 'id' (language de) = '3'" in message
    message = error_of(lambda: jn.examples_from_files(files, prompt="p", options="a", gold="g"))
    assert "options='a' is one column, but a .tsv cell holds one text" in message
    with pytest.warns(UserWarning, match="not_parallel: 1"):
        kept = jn.examples_from_files(files, prompt="p", options=["a", "b"], gold="g", id="id", on_error="skip")
    assert [ex.id for ex in kept] == ["1"]


# ---------------------------------------------------------------------------------------------------- datasets

def test_dataset_per_language_and_one_table_with_lang_columns():
    Dataset = pytest.importorskip("datasets").Dataset  # the optional extra "hub" (in "test" too)

    per_language = {lang: Dataset.from_dict({"question": PROMPTS[lang], "answer": ANSWERS[lang]}) for lang in PROMPTS}
    expected = jn.make_examples(prompts=PROMPTS, answers=ANSWERS)
    assert jn.examples_from_dataset(per_language, prompt="question") == expected
    wide = Dataset.from_dict({f"{field}_{lang}": values[lang] for field, values in
                              (("q", PROMPTS), ("a", ANSWERS)) for lang in PROMPTS})
    assert jn.examples_from_dataset(wide, prompt="q_{lang}", answer="a_{lang}", languages=["en", "zh"]) == expected
    choices = Dataset.from_dict({"text": NLI["en"], "choices": [list(o) for o in OPTIONS["en"]], "label": [0, 1]})
    assert jn.examples_from_dataset({"en": choices}, prompt="text", options="choices", gold="label") == \
        jn.make_examples(prompts={"en": NLI["en"]}, options={"en": OPTIONS["en"]}, gold=[0, 1])


def test_dataset_errors_name_language_row_and_column():
    datasets = pytest.importorskip("datasets")
    Dataset, DatasetDict = datasets.Dataset, datasets.DatasetDict

    table = Dataset.from_dict({"question": ["a", ""], "answer": [" x", " y"]})
    assert "dataset 'de' row 1: column 'question' (language de) is empty" in error_of(
        lambda: jn.examples_from_dataset({"de": table}, prompt="question"))
    assert "dataset 'de' (language de): no column(s) ['prompt']; it has ['question', 'answer']" in error_of(
        lambda: jn.examples_from_dataset({"de": table}))
    assert "pass one split, e.g. dataset['test']" in error_of(
        lambda: jn.examples_from_dataset(DatasetDict({"test": table}), prompt="question"))
    assert "needs languages=[...] and column names with {lang}" in error_of(
        lambda: jn.examples_from_dataset(table, prompt="question"))


# ------------------------------------------------------------------------------------ the task and the launcher

def test_the_files_task_loads_like_any_task(tmp_path):
    task = get_task("files")
    assert isinstance(task, FilesTask)
    files = open_answer_files(tmp_path)
    loaded = task.load(["zh", "en"], num_examples=1, prompt_suffix=" =", data_files=files,
                       columns={"prompt": "question"})
    assert task.scoring == "greedy" and loaded.skipped == {}
    assert [ex.prompts for ex in loaded.examples] == [{"zh": "法国的首都是 =", "en": "The capital of France is ="}]
    nli = {lang: write_tsv(tmp_path / f"nli-{lang}.tsv", ["p", "y", "n", "g"],
                           [[NLI[lang][i], *OPTIONS[lang][i], str(i)] for i in range(2)]) for lang in NLI}
    loaded = task.load(["en", "de"], data_files=nli, columns=parse_columns(["prompt=p", "options=y+n", "gold=g"]))
    assert task.scoring == "options" and [ex.gold["de"] for ex in loaded.examples] == [0, 1]
    assert "--data_files has no file for language(s) ['fr']" in error_of(
        lambda: task.load(["en", "fr"], data_files=files, columns={"prompt": "question"}))
    assert "pass --data_files=" in error_of(lambda: task.load(["en"]))


def test_flag_values_parse_or_name_the_flag():
    assert parse_data_files(["en:data/en.tsv", "de: d/de.jsonl"]) == {"en": "data/en.tsv", "de": "d/de.jsonl"}
    assert parse_columns(["prompt=premise", "options=a+b+c", "gold=label"]) == {
        "prompt": "premise", "options": ("a", "b", "c"), "gold": "label"}
    for bad in (["en"], ["en:"], ["en:a", "en:b"]):
        with pytest.raises(ValueError, match="--data_files"):
            parse_data_files(bad)
    for bad in (["prompt"], ["question=q"], ["answer="]):
        with pytest.raises(ValueError, match="--columns: .* is not field=column"):
            parse_columns(bad)


def test_analyze_reads_files_by_flags(tmp_path):
    from tests.test_launcher_checks import MODEL_LOADED, run_cases
    from jaxneurons.loading.export import export_hf
    from tests.fixtures import tiny_lm

    model = export_hf(tiny_lm(), str(tmp_path / "model"))
    files = open_answer_files(tmp_path)
    bad = write_tsv(tmp_path / "bad.tsv", ["question", "answer"], [["a", " b"], ["", " d"]])
    base = [f"--model={model}", f"--output_dir={tmp_path / 'out'}", "--languages=en,zh"]
    data_files = f"--data_files=en:{files['en']},zh:{files['zh']}"
    lines = run_cases("analyze", base, [
        ["--task=files", data_files, "--columns=prompt=question"],
        ["--task=files", f"--data_files=en:{files['en']},zh:{bad}", "--columns=prompt=question"],
        ["--task=files", data_files, "--columns=question=q"],
        ["--task=builtin_nli", data_files],
        ["--task=files", f"--data_files=en:{files['en']}", "--columns=prompt=question"],
    ])
    assert lines[0] == MODEL_LOADED  # data read and checked (and its lengths against the context) before the load
    assert f"{bad}:3: column 'question' (language zh) is empty" in lines[1] and "--on_error=skip" in lines[1]
    assert "--columns: 'question=q' is not field=column" in lines[2]
    assert "--data_files and --columns are read by --task=files only, not --task=builtin_nli" in lines[3]
    assert "--data_files has no file for language(s) ['zh']" in lines[4]
    assert all("\n" not in line.strip() and "Traceback" not in line for line in lines)
