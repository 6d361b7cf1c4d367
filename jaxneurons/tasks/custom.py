"""Any parallel data as :class:`ParallelExample` items: from Python lists, per-language files, or ``datasets``.

>>> examples = make_examples(prompts={"en": ["The capital of France is"], "de": ["Die Hauptstadt von Frankreich ist"]},
...                          answers={"en": [" Paris"], "de": [" Paris"]})
>>> examples = examples_from_files({"en": "en.tsv", "de": "de.tsv"}, prompt="question", answer="answer")
>>> examples = examples_from_dataset(ds, prompt="premise_{lang}", options="choices", gold="label", languages=["en", "de"])

Open-answer data gives ``answers`` (scored greedy: every answer token must be the argmax); multiple-choice data
gives ``options`` and ``gold`` (scored by the options' log-likelihood, the answer is ``options[gold]``). Texts are
kept as written: an answer carries its leading space where the language puts one (" Paris"; "巴黎" after a zh
prompt). The i-th row of every language is the same item; the checks the built-in tasks make (parallel row
counts, empty fields, options/gold consistency, the same id in every language) raise a :class:`TaskDataError`
naming the file and line (or the argument and index), the language and the column, or with ``on_error="skip"``
drop the item and count it. The registered task ``files`` reads such files for the launcher
(``--task=files --data_files=en:en.tsv,de:de.tsv --columns=prompt=question``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxneurons.tasks.base import Issues, LoadResult, ParallelExample, Task, TaskDataError

READOUTS = ("prompt", "answer")
FIELDS = ("prompt", "answer", "options", "gold", "id")
TABLE_SUFFIXES = {".tsv": "\t", ".csv": ","}
JSONL_SUFFIXES = (".jsonl", ".ndjson")
OPTION_SEPARATOR = "+"  # --columns=options=choice1+choice2: one option a column


@dataclasses.dataclass(frozen=True)
class Columns:
    """Which column (file) or key (record) holds each field; options: one column holding a list, or several
    columns holding one option each. Open answers (``answer``) or options with ``gold``, never both."""

    prompt: str = "prompt"
    answer: str | None = None
    options: str | tuple[str, ...] | None = None
    gold: str | None = None
    id: str | None = None

    def __post_init__(self):
        if isinstance(self.options, list):
            object.__setattr__(self, "options", tuple(self.options))
        if self.answer is None and self.options is None:
            object.__setattr__(self, "answer", "answer")  # open answers in a column named "answer" by default
        check_mode(self.answer is not None, self.options is not None, self.gold is not None, "columns")

    @property
    def scoring(self) -> str:
        """"options" for multiple choice, "greedy" for open answers."""
        return "options" if self.options is not None else "greedy"

    def names(self) -> list[str]:
        """Every column the data must have."""
        options = (self.options,) if isinstance(self.options, str) else self.options or ()
        return [c for c in (self.prompt, self.answer, *options, self.gold, self.id) if c is not None]

    def for_language(self, lang: str) -> Columns:
        """The columns with ``{lang}`` filled in (one table holding every language: "premise_{lang}")."""
        fill = lambda c: c.replace("{lang}", lang) if isinstance(c, str) else c  # noqa: E731
        options = tuple(fill(c) for c in self.options) if isinstance(self.options, tuple) else fill(self.options)
        return Columns(fill(self.prompt), fill(self.answer), options, fill(self.gold), fill(self.id))

    def read(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """field -> the record's value (options as a tuple, whichever way they are stored)."""
        values = {"prompt": record[self.prompt]}
        if self.answer is not None:
            values["answer"] = record[self.answer]
        if isinstance(self.options, tuple):
            values["options"] = tuple(record[c] for c in self.options)
        elif self.options is not None:
            values["options"] = record[self.options]
        for field in ("gold", "id"):
            if getattr(self, field) is not None:
                values[field] = record[getattr(self, field)]
        return values

    def label(self, field: str) -> str:
        """The column a field comes from, for messages."""
        value = getattr(self, field)
        return OPTION_SEPARATOR.join(value) if isinstance(value, tuple) else value


def check_mode(has_answers: bool, has_options: bool, has_gold: bool, where: str) -> None:
    """Open answers, or options with gold: TaskDataError naming ``where`` (the arguments or flag) otherwise."""
    if has_answers and has_options:
        raise TaskDataError(f"{where}: give answers (open answers) or options with gold (multiple choice), not "
                            "both: with options the answer is options[gold]")
    if has_options != has_gold:
        raise TaskDataError(f"{where}: options and gold go together (gold: the index of the right option)")
    if not (has_answers or has_options):
        raise TaskDataError(f"{where}: give answers (open answers) or options with gold (multiple choice)")


@dataclasses.dataclass(frozen=True)
class Row:
    """One item in one language before its checks: field -> value, where it was read (``file:line``) and what
    each field is called there."""

    values: dict[str, Any]
    where: str
    names: Mapping[str, str]

    def at(self, field: str, lang: str) -> str:
        return f"{self.where}: {self.names[field]} (language {lang})"


def build_examples(rows: Mapping[str, Sequence[Row | None]], sources: Mapping[str, str], issues: Issues,
                   readout: str = "prompt", id_prefix: str = "custom") -> list[ParallelExample]:
    """Check parallel rows (language -> the i-th item's Row, None where already reported) and build the examples.

    sources: language -> what its rows came from (a file), for the row-count message. Each item is checked in
    every language: a bad field drops the whole item (reported to ``issues``).
    """
    if readout not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if not rows:
        raise TaskDataError("no languages given: pass one list or file per language")
    n = check_parallel(rows, sources, issues)
    examples, seen = [], {}
    for i in range(n):
        item = {lang: lang_rows[i] for lang, lang_rows in rows.items()}
        if any(row is None for row in item.values()):
            continue
        example_id = item_id(item, f"{id_prefix}-{i}", issues)
        if example_id is None:
            continue
        fields = {lang: checked_fields(row, lang, issues) for lang, row in item.items()}
        if any(f is None for f in fields.values()):
            continue
        if example_id in seen:
            first = next(iter(item.values()))
            issues.report("duplicate_id", f"{first.at('id', next(iter(item)))}: id {example_id!r} is also the id of "
                          f"item {seen[example_id]}; ids must be unique")
            continue
        seen[example_id] = i
        examples.append(example_of(example_id, fields, readout))
    return examples


def check_parallel(rows: Mapping[str, Sequence], sources: Mapping[str, str], issues: Issues) -> int:
    """The number of items every language has; differing counts are reported (the data is not parallel)."""
    counts = {lang: len(lang_rows) for lang, lang_rows in rows.items()}
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{sources[lang]} ({lang}): {c} rows" for lang, c in counts.items())
        issues.report("not_parallel", f"the languages have different numbers of rows ({detail}); the i-th row of "
                      "every language must be the same item", count=max(counts.values()) - min(counts.values()))
    return min(counts.values())


def checked_fields(row: Row, lang: str, issues: Issues) -> dict[str, Any] | None:
    """The row's fields, checked (texts non-empty, options distinct, gold an index into them); None if reported."""
    values, out = row.values, {}
    problem = None
    for field in ("prompt", "answer"):
        if field in values:
            text = values[field]
            if not isinstance(text, str) or not text.strip():
                problem = problem or f"{row.at(field, lang)} is {_describe(text)}; it needs a text"
            out[field] = text
    if "options" in values:
        out["options"], option_problem = checked_options(values["options"], values.get("gold"), row, lang)
        problem = problem or option_problem
        out["gold"] = values.get("gold")
    if problem:
        issues.report("bad_field", problem + "; fix it or remove the item from every language")
        return None
    if "options" in out:
        out["gold"] = _as_index(out["gold"])
        out["answer"] = out["options"][out["gold"]]
    return out


def checked_options(options, gold, row: Row, lang: str) -> tuple[tuple[str, ...], str | None]:
    """(options as a tuple, the problem with them or their gold index, None if none)."""
    if isinstance(options, str) or not isinstance(options, Sequence):
        return (), f"{row.at('options', lang)} is {_describe(options)}; it needs a list of option texts"
    options = tuple(options)
    if len(options) < 2:
        return options, f"{row.at('options', lang)} has {len(options)} option(s); multiple choice needs 2 or more"
    empty = [k for k, o in enumerate(options) if not isinstance(o, str) or not o.strip()]
    if empty:
        return options, f"{row.at('options', lang)}: option {empty[0]} is {_describe(options[empty[0]])}"
    if len(set(options)) < len(options):
        return options, f"{row.at('options', lang)} repeats an option ({list(options)}); each must differ"
    index = _as_index(gold)
    if index is None or not 0 <= index < len(options):
        return options, (f"{row.at('gold', lang)} is {gold!r}; it must be the index (0 to {len(options) - 1}) of "
                         "the right option")
    return options, None


def _as_index(value) -> int | None:
    """An int (or a string of digits, as a TSV holds it) as an int; None for anything else (bools, floats)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _describe(value) -> str:
    """How a bad value reads in a message: "empty", "missing" or its repr."""
    if value is None:
        return "missing"
    if isinstance(value, str) and not value.strip():
        return "empty"
    return f"{type(value).__name__} {value!r}"


def item_id(item: Mapping[str, Row], default: str, issues: Issues) -> str | None:
    """The item's id (its id field, the same in every language, or ``default``); None if reported."""
    raw = {lang: row.values["id"] for lang, row in item.items() if "id" in row.values}
    if not raw:
        return default
    empty = next((lang for lang, value in raw.items() if value is None or not str(value).strip()), None)
    if empty is not None:
        issues.report("bad_field", f"{item[empty].at('id', empty)} is {_describe(raw[empty])}; every item needs an "
                      "id: fix it or remove the item from every language")
        return None
    ids = {lang: str(value).strip() for lang, value in raw.items()}
    if len(set(ids.values())) > 1:
        where = "; ".join(f"{item[lang].at('id', lang)} = {value!r}" for lang, value in ids.items())
        issues.report("not_parallel", f"the same row has different ids ({where}): the files are not in the same "
                      "item order; sort them by id")
        return None
    return next(iter(ids.values()))


def example_of(example_id: str, fields: Mapping[str, dict], readout: str) -> ParallelExample:
    """The ParallelExample of one checked item (language -> its fields)."""
    multiple_choice = "options" in next(iter(fields.values()))
    return ParallelExample(
        id=example_id,
        prompts={lang: f["prompt"] for lang, f in fields.items()},
        options={lang: f["options"] for lang, f in fields.items()} if multiple_choice else None,
        gold={lang: f["gold"] if multiple_choice else 0 for lang, f in fields.items()},
        answers={lang: f["answer"] for lang, f in fields.items()},
        readout=readout,
    )


def warn_skipped(function: str, issues: Issues) -> None:
    """on_error="skip": say what was dropped (a list has no room for the counts)."""
    if issues.skipped:
        counts = ", ".join(f"{reason}: {n}" for reason, n in sorted(issues.skipped.items()))
        warnings.warn(f"{function}: skipped items ({counts})", stacklevel=3)


# ------------------------------------------------------------------------------------------------- Python lists

def make_examples(
    prompts: Mapping[str, Sequence[str]],
    answers: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    options: Mapping[str, Sequence[Sequence[str]]] | Sequence[Sequence[str]] | None = None,
    gold: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    ids: Sequence[str] | None = None,
    readout: str = "prompt",
    *,
    id_prefix: str = "custom",
    on_error: str = "raise",
) -> list[ParallelExample]:
    """Parallel examples from Python lists: item i is ``prompts[lang][i]`` in every language.

    Args:
      prompts: language -> the prompts, one per item, the same items in the same order in every language.
      answers: open answers (scored greedy): language -> one answer per item, with its leading space where the
        language puts one (" Paris"), or one list shared by every language.
      options: multiple choice: language -> one list of option texts per item, or one list shared by every
        language (e.g. English options " true" / " false" after prompts in every language).
      gold: with options: the index of the right option per item (one list for every language, or per language).
      ids: one id per item (default ``f"{id_prefix}-{i}"``); unique.
      readout: where the neurons are read: "prompt" (the prompt's last token) or "answer" (the gold answer's).
      on_error: "raise" a TaskDataError on a bad item, or "skip" it (in every language) with a warning.

    Raises TaskDataError (one line naming the argument, item, language and field) on lists of different lengths,
    an empty text, options without gold or a gold out of range, duplicate ids.
    """
    if not isinstance(prompts, Mapping) or not prompts:
        raise TaskDataError("make_examples: prompts must be a dict language -> list of prompts, e.g. "
                            "{'en': [...], 'de': [...]}")
    check_mode(answers is not None, options is not None, gold is not None, "make_examples")
    languages = list(prompts)
    given = {"prompts": prompts, "answers": answers, "options": options, "gold": gold, "ids": ids}
    per_lang = {name: _per_language(value, languages, name) for name, value in given.items() if value is not None}
    keys = {"prompts": "prompt", "answers": "answer", "options": "options", "gold": "gold", "ids": "id"}
    rows, sources = {}, {}
    for lang in languages:
        lengths = {name: len(values[lang]) for name, values in per_lang.items()}
        if len(set(lengths.values())) > 1:
            raise TaskDataError(f"make_examples: language {lang} has lists of different lengths "
                                f"({', '.join(f'{k}: {n}' for k, n in lengths.items())}); give one entry per item")
        names = {keys[name]: _argument(name, lang, given.get(name)) for name in per_lang}
        rows[lang] = [Row({keys[name]: values[lang][i] for name, values in per_lang.items()},
                          f"make_examples item {i}", names) for i in range(lengths["prompts"])]
        sources[lang] = f"prompts[{lang!r}]"
    issues = Issues(on_error)
    examples = build_examples(rows, sources, issues, readout, id_prefix)
    warn_skipped("make_examples", issues)
    return examples


def _per_language(value, languages: list[str], name: str) -> dict[str, list]:
    """language -> list: a mapping must name exactly the prompts' languages; a list is shared by all."""
    if isinstance(value, str):
        raise TaskDataError(f"make_examples: {name} is one string; give a list with one entry per item")
    if not isinstance(value, Mapping):
        return {lang: list(value) for lang in languages}
    missing, extra = [lang for lang in languages if lang not in value], [lang for lang in value if lang not in languages]
    if missing or extra:
        raise TaskDataError(f"make_examples: {name} has languages {list(value)}, prompts {languages}: give {name} "
                            "for the prompts' languages exactly")
    for lang in languages:
        if isinstance(value[lang], str):
            raise TaskDataError(f"make_examples: {name}[{lang!r}] is one string; give a list with one entry per item")
    return {lang: list(value[lang]) for lang in languages}


def _argument(name: str, lang: str, value) -> str:
    """How an argument's entry of a language reads in a message: prompts['de'] or gold (shared)."""
    return f"{name}[{lang!r}]" if isinstance(value, Mapping) else name


# ------------------------------------------------------------------------------------------------------- files

def examples_from_files(
    files: Mapping[str, str | os.PathLike],
    prompt: str = "prompt",
    answer: str | None = None,
    options: str | Sequence[str] | None = None,
    gold: str | None = None,
    id: str | None = None,  # noqa: A002 - the column's name
    readout: str = "prompt",
    on_error: str = "raise",
) -> list[ParallelExample]:
    """Parallel examples from one file per language, row i of every file the same item.

    Args:
      files: language -> a .tsv or .csv file (first line: the column names) or a .jsonl file (one object a line).
      prompt, answer, gold, id: the column (JSONL: key) of each field. ``answer`` defaults to "answer" unless
        ``options`` are given. ``id``: a column that must hold the same id in every language's row (checks the
        files are in the same order).
      options: one column holding a list of options (JSONL), or several columns holding one option each.
      readout: "prompt" or "answer", as in :func:`make_examples`.
      on_error: "raise" a TaskDataError naming the file, line, language and column of a bad row, or "skip" the
        item (in every language) with a warning that counts what was skipped.
    """
    issues = Issues(on_error)
    columns = Columns(prompt, answer, options, gold, id)
    rows = {lang: read_rows(Path(path), lang, columns, issues) for lang, path in files.items()}
    examples = build_examples(rows, {lang: str(path) for lang, path in files.items()}, issues, readout)
    warn_skipped("examples_from_files", issues)
    return examples


def read_rows(path: Path, lang: str, columns: Columns, issues: Issues) -> list[Row | None]:
    """The rows of one language's file (None for a malformed line, so rows stay aligned with other languages)."""
    if not path.is_file():
        raise TaskDataError(f"missing data file {path} (language {lang}): check the path")
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return _jsonl_rows(path, lang, columns, issues)
    if suffix in TABLE_SUFFIXES:
        return _table_rows(path, lang, columns, TABLE_SUFFIXES[suffix], issues)
    raise TaskDataError(f"{path} (language {lang}): unknown file type {suffix!r}; use .tsv, .csv or .jsonl")


def _names(columns: Columns, kind: str) -> dict[str, str]:
    """field -> how it reads in a message: "column 'premise'"."""
    return {field: f"{kind} {columns.label(field)!r}" for field in FIELDS if getattr(columns, field) is not None}


def _table_rows(path: Path, lang: str, columns: Columns, delimiter: str, issues: Issues) -> list[Row | None]:
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL  # TSV cells hold quotes as text
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, quoting=quoting)
        header = next(reader, None)
        if header is None:
            raise TaskDataError(f"{path}:1 (language {lang}): empty file; the first line names the columns")
        missing = [c for c in columns.names() if c not in header]
        if missing:
            raise TaskDataError(f"{path}:1 (language {lang}): no column(s) {missing} in the header {header}; name "
                                "the right columns or fix the header")
        if isinstance(columns.options, str):
            raise TaskDataError(f"{path} (language {lang}): options={columns.options!r} is one column, but a "
                                f"{path.suffix} cell holds one text: give one column per option")
        names, rows = _names(columns, "column"), []
        for cells in reader:
            line = reader.line_num
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                issues.report("malformed_line", f"{path}:{line}: {len(cells)} cells, the header has {len(header)} "
                              f"(language {lang}); fix or remove the line")
                rows.append(None)
                continue
            rows.append(Row(columns.read(dict(zip(header, cells))), f"{path}:{line}", names))
    return rows


def _jsonl_rows(path: Path, lang: str, columns: Columns, issues: Issues) -> list[Row | None]:
    names, rows = _names(columns, "field"), []
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                issues.report("malformed_line", f"{path}:{line}: invalid JSON ({e.msg}, language {lang}); fix or "
                              "remove the line")
                rows.append(None)
                continue
            missing = [c for c in columns.names() if not isinstance(record, dict) or c not in record]
            if missing:
                issues.report("malformed_line", f"{path}:{line}: no field(s) {missing} (language {lang}); fix or "
                              "remove the line")
                rows.append(None)
                continue
            rows.append(Row(columns.read(record), f"{path}:{line}", names))
    return rows


# ---------------------------------------------------------------------------------------------------- datasets

def examples_from_dataset(
    dataset,
    prompt: str = "prompt",
    answer: str | None = None,
    options: str | Sequence[str] | None = None,
    gold: str | None = None,
    id: str | None = None,  # noqa: A002 - the column's name
    languages: Sequence[str] | None = None,
    readout: str = "prompt",
    on_error: str = "raise",
) -> list[ParallelExample]:
    """Parallel examples from a Hugging Face ``datasets.Dataset`` (or any table that iterates as dicts).

    Two layouts:
      * ``{lang: Dataset}``: one dataset per language with the same columns (e.g. XNLI's per-language configs);
      * one Dataset holding every language, its column names templated by ``{lang}`` (``prompt="question_{lang}"``)
        with ``languages`` given.
    The columns are as in :func:`examples_from_files` (``options``: a column of lists, or one column per option;
    ClassLabel gold columns hold ints). Errors name the dataset's language, row and column.
    """
    issues = Issues(on_error)
    columns = Columns(prompt, answer, options, gold, id)
    tables = _tables_by_language(dataset, columns, languages)
    rows, sources = {}, {}
    for lang, (table, lang_columns, name) in tables.items():
        missing = [c for c in lang_columns.names() if c not in table.column_names]
        if missing:
            raise TaskDataError(f"{name} (language {lang}): no column(s) {missing}; it has {table.column_names}")
        names = _names(lang_columns, "column")
        rows[lang] = [Row(lang_columns.read(record), f"{name} row {i}", names) for i, record in enumerate(table)]
        sources[lang] = name
    examples = build_examples(rows, sources, issues, readout)
    warn_skipped("examples_from_dataset", issues)
    return examples


def _tables_by_language(dataset, columns: Columns, languages: Sequence[str] | None) -> dict[str, tuple]:
    """language -> (its table, its columns, its name in messages)."""
    if type(dataset).__name__ == "DatasetDict":
        raise TaskDataError(f"examples_from_dataset: got a DatasetDict of splits {list(dataset)}; pass one split, "
                            "e.g. dataset['test']")
    if isinstance(dataset, Mapping):
        if languages is not None and list(languages) != list(dataset):
            raise TaskDataError(f"examples_from_dataset: languages={list(languages)} but the datasets are for "
                                f"{list(dataset)}; drop languages= or select the datasets")
        return {lang: (table, columns, f"dataset {lang!r}") for lang, table in dataset.items()}
    templated = [c for c in columns.names() if "{lang}" in c]
    if not languages or not templated:
        raise TaskDataError("examples_from_dataset: one dataset for every language needs languages=[...] and "
                            "column names with {lang} (prompt='premise_{lang}'); or pass {lang: dataset}")
    return {lang: (dataset, columns.for_language(lang), "dataset") for lang in languages}


# ---------------------------------------------------------------------------------------------- the launcher

def parse_data_files(values: Iterable[str], flag: str = "--data_files") -> dict[str, str]:
    """["en:data/en.tsv", "de:data/de.tsv"] -> {"en": "data/en.tsv", "de": "data/de.tsv"}."""
    files = {}
    for value in values:
        lang, sep, path = value.partition(":")
        if not sep or not lang.strip() or not path.strip():
            raise ValueError(f"{flag}: {value!r} is not language:path (e.g. {flag}=en:data/en.tsv,de:data/de.tsv)")
        if lang.strip() in files:
            raise ValueError(f"{flag}: language {lang.strip()!r} has two files")
        files[lang.strip()] = path.strip()
    return files


def parse_columns(values: Iterable[str], flag: str = "--columns") -> dict[str, Any]:
    """["prompt=question", "options=a+b", "gold=label"] -> {"prompt": "question", "options": ("a", "b"), ...}."""
    columns: dict[str, Any] = {}
    for value in values:
        field, sep, column = (part.strip() for part in value.partition("="))
        if not sep or field not in FIELDS or not column:
            raise ValueError(f"{flag}: {value!r} is not field=column with a field in {', '.join(FIELDS)} (e.g. "
                             f"{flag}=prompt=premise,answer=label; options=a{OPTION_SEPARATOR}b for one column each)")
        if field == "options" and OPTION_SEPARATOR in column:
            column = tuple(c.strip() for c in column.split(OPTION_SEPARATOR))
        columns[field] = column
    return columns


class FilesTask(Task):
    """Any parallel data in one file per language (.tsv/.csv with a header line, or .jsonl): the launcher's
    ``--task=files --data_files=en:en.tsv,de:de.tsv --columns=prompt=question,answer=answer``.

    Prompts are used as the files hold them (``--prompt_suffix`` appends an answer cue). Open answers (the
    default: column "answer") are scored "greedy"; with ``options`` and ``gold`` columns, "options". The
    scoring is set by each ``load`` from its columns. Any language code is accepted; each needs a file. Ids:
    the id column, else ``files-{row}``. Checks and errors as :func:`examples_from_files`.
    """

    name = "files"
    languages = ()
    splits = ("test",)
    scoring = "greedy"
    needs_data_dir = False
    prompt_formats = {"paper": "the prompts as the files hold them"}

    def __init__(self):
        self.data_files: dict[str, str] = {}
        self.columns = Columns()

    def load(self, languages, split="test", num_examples=None, data_dir=None, source="local", on_error="raise",
             prompt_format=None, prompt_suffix="", *, data_files: Mapping[str, str] | None = None,
             columns: Mapping[str, Any] | None = None) -> LoadResult:
        """:meth:`Task.load` of ``data_files`` (language -> file) with ``columns`` (field -> column name, as
        :class:`Columns`); both required (``--data_files``, ``--columns``; columns default to prompt, answer)."""
        if not data_files:
            raise TaskDataError("task 'files' reads one file per language: pass --data_files=en:en.tsv,de:de.tsv "
                                "(data_files={'en': 'en.tsv', ...})")
        self.data_files = dict(data_files)
        self.columns = Columns(**dict(columns or {}))
        self.scoring = self.columns.scoring
        return super().load(languages, split, num_examples, data_dir, source, on_error, prompt_format, prompt_suffix)

    def check_languages(self, languages: Sequence[str]) -> list[str]:
        """Any language codes, at least one, none twice."""
        langs = [languages] if isinstance(languages, str) else list(languages)
        if not langs or len(set(langs)) != len(langs):
            raise ValueError(f"task {self.name!r}: give each language once (got {langs})")
        return langs

    def _load_local(self, languages, split, num_examples, root, issues: Issues, prompt_format="paper"):
        missing = [lang for lang in languages if lang not in self.data_files]
        if missing:
            raise TaskDataError(f"--data_files has no file for language(s) {missing}; it has "
                                f"{', '.join(self.data_files)}: add lang:path or drop them from --languages")
        rows = {lang: read_rows(Path(self.data_files[lang]), lang, self.columns, issues) for lang in languages}
        return build_examples(rows, {lang: self.data_files[lang] for lang in languages}, issues,
                              id_prefix=self.name)
