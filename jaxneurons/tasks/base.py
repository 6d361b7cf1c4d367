"""Data model, error policy and file helpers shared by all parallel tasks.

A task turns a public multilingual dataset into :class:`ParallelExample` items: the same item
rendered as a prompt in each chosen language, with the answer the model should give.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import json
import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

DATA_DIR_ENV = "JAXNEURONS_DATA_DIR"
SCORINGS = ("options", "greedy")
ON_ERROR = ("raise", "skip")
SOURCES = ("local", "hub")


class TaskDataError(ValueError):
    """A data file is missing, malformed or not parallel across the chosen languages."""


@dataclasses.dataclass(frozen=True)
class ParallelExample:
    """One item rendered in several languages.

    Attributes:
      id: stable id, e.g. ``"xnli-test-17"``.
      prompts: language -> full prompt text (what the model reads).
      options: language -> answer continuations scored by log-likelihood; ``None`` for open answers.
      gold: language -> index of the gold option (0 for open-answer tasks).
      answers: language -> gold continuation text, including the leading space where the
        language puts one (``" true"``; none after a zh/th/ja prompt that ends without a space).
      readout: where the neurons are read: "prompt" (the prompt's last token, the paper's) or "answer"
        (the gold answer's last token, for formulations whose answer carries part of the input).
    """

    id: str
    prompts: dict[str, str]
    options: dict[str, tuple[str, ...]] | None
    gold: dict[str, int]
    answers: dict[str, str]
    readout: str = "prompt"

    @property
    def languages(self) -> tuple[str, ...]:
        """The languages the example is rendered in, in load order."""
        return tuple(self.prompts)


@dataclasses.dataclass
class LoadResult:
    """What :meth:`Task.load` returns: the examples and the skipped items by reason."""

    examples: list[ParallelExample]
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)


class Issues:
    """Collects data problems: raises :class:`TaskDataError` or counts them, per ``on_error``."""

    def __init__(self, on_error: str = "raise"):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.on_error = on_error
        self.skipped: collections.Counter[str] = collections.Counter()

    def report(self, reason: str, message: str, count: int = 1) -> None:
        """Raise ``message`` (on_error="raise") or count ``count`` items under ``reason``."""
        if self.on_error == "raise":
            raise TaskDataError(message + ' (pass on_error="skip" to skip such items)')
        self.skipped[reason] += count

    def note(self, reason: str, count: int = 1) -> None:
        """Count items left out by design (never an error), e.g. tuples missing in a language."""
        if count:
            self.skipped[reason] += count


def resolve_data_dir(data_dir: str | os.PathLike | None, task_name: str) -> Path:
    """Return the data directory: ``data_dir``, else env ``JAXNEURONS_DATA_DIR``, else raise."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV)
    if not value:
        raise TaskDataError(
            f"task {task_name!r} reads dataset files but no data directory is set: "
            f"pass --data_dir (data_dir=...) or set the environment variable {DATA_DIR_ENV}"
        )
    path = Path(value).expanduser()
    if not path.is_dir():
        raise TaskDataError(f"data directory {path} does not exist (check --data_dir / {DATA_DIR_ENV})")
    return path


def require_file(path: Path, hint: str) -> Path:
    """Return ``path`` if it is a file, else raise a :class:`TaskDataError` with ``hint``."""
    if not path.is_file():
        raise TaskDataError(f"missing data file {path}: {hint}")
    return path


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` (1-based, newline stripped) of a UTF-8 text file."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            yield number, line.rstrip("\r\n")


def read_tsv(path: Path, columns: int, issues: Issues, skip_header: bool = False) -> list[list[str] | None]:
    """Read a tab-separated file with exactly ``columns`` non-empty fields per line.

    A malformed line is reported to ``issues`` and kept as ``None`` so that row numbers stay
    aligned with the other languages' files.
    """
    rows: list[list[str] | None] = []
    for number, line in read_lines(path):
        if skip_header and number == 1:
            continue
        fields = line.split("\t")
        if len(fields) != columns or any(not f.strip() for f in fields):
            issues.report(
                "malformed_line",
                f"{path}:{number}: expected {columns} non-empty tab-separated columns, "
                f"found {len(fields)}; fix or remove the line",
            )
            rows.append(None)
        else:
            rows.append([f.strip() for f in fields])
    return rows


def read_jsonl(path: Path, issues: Issues, required: Sequence[str] = ()) -> list[dict | None]:
    """Read a JSON-lines file; a bad line (invalid JSON or missing ``required`` keys) becomes None."""
    records: list[dict | None] = []
    for number, line in read_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            issues.report("malformed_line", f"{path}:{number}: invalid JSON ({e.msg}); fix or remove the line")
            records.append(None)
            continue
        missing = [k for k in required if not isinstance(record, dict) or k not in record]
        if missing:
            issues.report("malformed_line", f"{path}:{number}: missing field(s) {missing}; fix or remove the line")
            records.append(None)
            continue
        records.append(record)
    return records


def check_row_counts(rows_by_lang: dict[str, list], files: dict[str, Path], issues: Issues) -> int:
    """Return the number of rows shared by all languages; differing counts mean non-parallel files."""
    counts = {lang: len(rows) for lang, rows in rows_by_lang.items()}
    n = min(counts.values())
    if len(set(counts.values())) > 1:
        detail = ", ".join(f"{files[lang]}: {c} rows" for lang, c in counts.items())
        issues.report(
            "not_parallel",
            f"files are not parallel (different row counts: {detail}); the i-th row of every language "
            f"must be the same item: restore the files from the dataset release",
            count=max(counts.values()) - n,
        )
    return n


class Task(abc.ABC):
    """A parallel multilingual task: loads :class:`ParallelExample` items and judges answers.

    Subclasses set ``name``, ``languages``, ``splits``, ``scoring`` and implement ``_load_local``.
    """

    name: str = ""
    languages: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("test",)
    scoring: str = "options"
    needs_data_dir: bool = True
    hub_id: str | None = None
    prompt_formats: dict[str, str] = {"paper": "the prompt of the class docstring (the paper's where it has one)"}
    default_format: str = "paper"
    # formulation -> its prompt formats (templates that end alike), for a template sweep; {} when none
    formulations: dict[str, tuple[str, ...]] = {}

    def load(
        self,
        languages: Sequence[str],
        split: str = "test",
        num_examples: int | None = None,
        data_dir: str | os.PathLike | None = None,
        source: str = "local",
        on_error: str = "raise",
        prompt_format: str | None = None,
        prompt_suffix: str = "",
    ) -> LoadResult:
        """Load up to ``num_examples`` parallel examples in ``languages``.

        Args:
          languages: language codes, all in ``self.languages``.
          split: one of ``self.splits``.
          num_examples: keep the first N examples (after skipping bad items); None for all.
          data_dir: folder with the dataset files; defaults to env ``JAXNEURONS_DATA_DIR``.
          source: "local" (files in data_dir) or "hub" (Hugging Face hub via ``datasets``).
          on_error: "raise" a :class:`TaskDataError` on a bad item, or "skip" and count it.
          prompt_format: a name in ``self.prompt_formats`` (default ``self.default_format``).
          prompt_suffix: text appended to every language's prompt (e.g. "\nAnswer:").
        """
        langs = self.check_languages(languages)
        prompt_format = self.check_prompt_format(prompt_format)
        split = self.check_split(split)
        if num_examples is not None and num_examples < 0:
            raise ValueError(f"num_examples must be >= 0 or None, got {num_examples}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        issues = Issues(on_error)
        if source == "hub":
            examples = self._load_hub(langs, split, num_examples, issues, prompt_format=prompt_format)
        else:
            root = resolve_data_dir(data_dir, self.name) if self.needs_data_dir else None
            examples = self._load_local(langs, split, num_examples, root, issues, prompt_format=prompt_format)
        if num_examples is not None:
            examples = examples[:num_examples]
        if prompt_suffix:
            examples = [dataclasses.replace(ex, prompts={lang: p + prompt_suffix for lang, p in ex.prompts.items()})
                        for ex in examples]
        return LoadResult(examples=examples, skipped=dict(issues.skipped))

    def template_sweep(self, names: Sequence[str]) -> dict[str, str | None]:
        """{prompt format: its formulation (None if in none)} of names, each a format or a formulation (which
        stands for all its formats), in order without repeats; ValueError naming the choices."""
        formulation_of = {fmt: group for group, formats in self.formulations.items() for fmt in formats}
        sweep = {}
        for name in names:
            for fmt in self.formulations.get(name, (name,)):
                sweep[self.check_prompt_format(fmt)] = name if name in self.formulations else formulation_of.get(fmt)
        return sweep

    def check_prompt_format(self, name: str | None) -> str:
        """``name`` (default: the task's default format), or ValueError naming the flag and the choices."""
        name = self.default_format if name is None else name
        if name not in self.prompt_formats:
            groups = f"; template sweeps: {', '.join(self.formulations)}" if self.formulations else ""
            raise ValueError(f"--prompt_format: task {self.name!r} has no format {name!r}; "
                             f"choices: {', '.join(self.prompt_formats)}{groups}")
        return name

    @abc.abstractmethod
    def _load_local(
        self, languages: list[str], split: str, num_examples: int | None, root: Path | None, issues: Issues,
        prompt_format: str = "paper",
    ) -> list[ParallelExample]:
        """Build the examples from local files under ``root``, prompts in ``prompt_format``."""

    def _load_hub(
        self, languages: list[str], split: str, num_examples: int | None, issues: Issues,
        prompt_format: str = "paper",
    ) -> list[ParallelExample]:
        """Build the examples from the Hugging Face hub (tasks with a public copy override this)."""
        from jaxneurons.tasks.hub import HubUnavailableError

        raise HubUnavailableError(
            f"task {self.name!r}: no public Hugging Face hub copy of its dataset is known; "
            f"use source='local' with --data_dir"
        )

    def check_languages(self, languages: Sequence[str]) -> list[str]:
        """Return ``languages`` as a list, or raise ValueError naming the supported ones."""
        if isinstance(languages, str):
            languages = [languages]
        langs = list(languages)
        if not langs:
            raise ValueError(f"task {self.name!r}: no languages given; supported: {', '.join(self.languages)}")
        unknown = [lang for lang in langs if lang not in self.languages]
        if unknown:
            raise ValueError(
                f"task {self.name!r} does not support language(s) {unknown}; "
                f"supported: {', '.join(self.languages)}"
            )
        if len(set(langs)) != len(langs):
            raise ValueError(f"task {self.name!r}: duplicate languages in {langs}")
        return langs

    def check_split(self, split: str) -> str:
        """Return ``split`` or raise ValueError naming the supported splits."""
        if split not in self.splits:
            raise ValueError(f"task {self.name!r} has no split {split!r}; supported: {', '.join(self.splits)}")
        return split

    def is_correct(self, option_logprobs: np.ndarray | None, greedy_match: bool | None, gold: int) -> bool:
        """Judge one answer from the caller's model scores.

        scoring "options": ``option_logprobs[i]`` is the summed log-likelihood of option i; correct
        iff the argmax (first one on ties) is ``gold``. scoring "greedy": ``greedy_match`` says
        whether every gold-answer token was the argmax under teacher forcing; ``gold`` is unused.
        """
        if self.scoring == "greedy":
            if greedy_match is None:
                raise ValueError(f"task {self.name!r} scores by greedy match: pass greedy_match")
            return bool(greedy_match)
        if option_logprobs is None:
            raise ValueError(f"task {self.name!r} scores options: pass option_logprobs")
        scores = np.asarray(option_logprobs, dtype=np.float64)
        if scores.ndim != 1 or not 0 <= gold < scores.shape[0]:
            raise ValueError(f"option_logprobs must be 1-D with gold={gold} in range, got shape {scores.shape}")
        return int(np.argmax(scores)) == int(gold)

    def __repr__(self) -> str:
        return f"<Task {self.name} scoring={self.scoring} languages={','.join(self.languages)}>"

