"""XNLI (Conneau et al. 2018): natural language inference, the paper's reasoning task."""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxneurons.tasks.base import (
    Issues,
    ParallelExample,
    TaskDataError,
    Task,
    check_row_counts,
    read_lines,
    read_tsv,
    require_file,
)

XNLI_TEMPLATE = (
    "Take the following as truth: {premise}\n"
    'Then the following statement: "{hypothesis}" is "true", "false", or "inconclusive"?'
)
NLI_OPTIONS = (" true", " false", " inconclusive")
NLI_LABELS = {"entailment": 0, "contradiction": 1, "neutral": 2}

Row = tuple[str, str, str]  # premise, hypothesis, label name
EXEMPLAR_SEED = 0
EXEMPLAR_MAX_CHARS = 120  # exemplars are drawn from items whose English premise + hypothesis is this short


def nli_prompt(premise: str, hypothesis: str) -> str:
    """The paper's XNLI prompt (English template, used for every language)."""
    return XNLI_TEMPLATE.format(premise=premise, hypothesis=hypothesis)


@dataclasses.dataclass(frozen=True)
class NLIFormat:
    """One way to render an NLI item: a template, three options, and how many solved exemplars precede it.

    options are in NLI_LABELS order (entailment, contradiction, neutral). With shots_per_label > 0 the
    prompt starts with 3 * shots_per_label exemplars (the template followed by the gold option), labels
    balanced, the same items in every language, so the read-out position (the prompt's last token) sees
    the exemplars and the whole item, and the options stay continuations of the prompt.
    """

    template: str
    options: tuple[str, str, str]
    shots_per_label: int = 0
    end_at_word: bool = False  # drop the hypothesis' closing punctuation, so the prompt ends in a word
    readout = "prompt"

    def prompt(self, premise: str, hypothesis: str, exemplars: Sequence[Row] = ()) -> str:
        """The prompt for one item, after the rendered exemplars (premise, hypothesis, label name)."""
        if self.end_at_word:
            hypothesis = _strip_closing_punctuation(hypothesis)
        shots = "".join(self.template.format(premise=p, hypothesis=h) + self.options[NLI_LABELS[label]] + "\n\n"
                        for p, h, label in exemplars)
        return shots + self.template.format(premise=premise, hypothesis=hypothesis)

    def render(self, lang: str, premise: str, hypothesis: str, exemplars: Sequence[Row] = ()):
        """(prompt, options) of one item in one language."""
        return self.prompt(premise, hypothesis, exemplars), self.options


def _strip_closing_punctuation(text: str) -> str:
    """text without its trailing punctuation and spaces ("Er schläft." -> "Er schläft"; "他睡了。" -> "他睡了")."""
    end = len(text)
    while end and (text[end - 1].isspace() or unicodedata.category(text[end - 1]).startswith("P")):
        end -= 1
    return text[:end] or text


# lm-evaluation-harness' XNLI words (lm_eval/tasks/xnli/utils.py): the question word and the entailment /
# contradiction / neutral connectives, per language. Arabic: the harness has "رقم" ("number") for "no"; "لا" here.
HARNESS_WORDS = {
    "en": ("right", "Yes", "No", "Also"), "de": ("richtig", "Ja", "Nein", "Auch"),
    "es": ("correcto", "Sí", "No", "Asi que"), "fr": ("correct", "Oui", "Non", "Aussi"),
    "ru": ("правильно", "Да", "Нет", "Так"), "th": ("ถูกต้อง", "ใช่", "ไม่", "ดังนั้น"),
    "tr": ("doğru", "Evet", "Hayır", "Böylece"), "vi": ("đúng", "Vâng", "Không", "Vì vậy"),
    "zh": ("正确", "是的", "不是的", "所以"), "ar": ("صحيح", "نعم", "لا", "لذا"), "bg": ("правилно", "да", "не", "така"),
    "el": ("σωστός", "Ναί", "όχι", "Έτσι"), "hi": ("सही", "हाँ", "नहीं", "इसलिए"),
    "sw": ("sahihi", "Ndiyo", "Hapana", "Hivyo"), "ur": ("صحیح", "جی ہاں", "نہیں", "اس لئے"),
}


@dataclasses.dataclass(frozen=True)
class HarnessFormat:
    """lm-evaluation-harness' XNLI: prompt "{premise}, {right}?", options " {Yes|No|Also}, {hypothesis}" in the
    item's language, scored as whole continuations. The hypothesis is in the answer, so the neurons are read at
    the gold answer's last token (ParallelExample.readout = "answer"), where the model has read the whole item."""

    readout = "answer"
    shots_per_label = 0

    def render(self, lang: str, premise: str, hypothesis: str, exemplars: Sequence[Row] = ()):
        if lang not in HARNESS_WORDS:
            raise TaskDataError(f"--prompt_format=harness has no words for language {lang!r}; "
                                f"it has {', '.join(HARNESS_WORDS)}")
        question, *labels = HARNESS_WORDS[lang]
        return f"{premise}, {question}?", tuple(f" {word}, {hypothesis}" for word in labels)


QA_TEMPLATE = "{premise}\nQuestion: {hypothesis} True, False or Neither?\nAnswer:"
LABELED_TEMPLATE = "Premise: {premise}\nHypothesis: {hypothesis}"
# The paper's prompt cut after the hypothesis' last word: the same text, but the prompt ends in the item's
# language instead of the English question (the study's prompt-ending experiment, REPRODUCTION.md).
CUT_TEMPLATE = XNLI_TEMPLATE[:XNLI_TEMPLATE.index("{hypothesis}") + len("{hypothesis}")]
NLI_FORMATS: dict[str, NLIFormat | HarnessFormat] = {
    "harness": HarnessFormat(),
    "paper": NLIFormat(XNLI_TEMPLATE, NLI_OPTIONS),
    "paper_cut": NLIFormat(CUT_TEMPLATE, NLI_OPTIONS, end_at_word=True),
    "paper_fewshot": NLIFormat(XNLI_TEMPLATE + "\nAnswer:", NLI_OPTIONS, shots_per_label=1),
    "qa": NLIFormat(QA_TEMPLATE, (" True", " False", " Neither")),
    "qa_fewshot": NLIFormat(QA_TEMPLATE, (" True", " False", " Neither"), shots_per_label=1),
    "labeled_answer": NLIFormat(LABELED_TEMPLATE + "\nIs the hypothesis true, false, or inconclusive? Answer:",
                                NLI_OPTIONS),
    "cut_plain": NLIFormat("{premise}\n{hypothesis}", NLI_OPTIONS, end_at_word=True),
    "cut_labeled": NLIFormat(LABELED_TEMPLATE, NLI_OPTIONS, end_at_word=True),
}
# Formulations: templates that end the same way, for a template sweep (`--prompt_format=ends_english`): the
# same words in every language (the English question or cue), or the item's own last word in its language.
NLI_FORMULATIONS = {"ends_english": ("paper", "qa", "labeled_answer"),
                    "ends_in_language": ("paper_cut", "cut_plain", "cut_labeled")}
NLI_FORMAT_HELP = {
    "harness": "lm-evaluation-harness' '{premise}, right? Yes|No|Also, {hypothesis}' in the item's language, "
               "neurons read at the gold answer's end (the default: above chance on gemma3-270m)",
    "paper": "the paper's prompt, options ' true' / ' false' / ' inconclusive'",
    "paper_cut": "the paper's prompt cut after the hypothesis' last word (its closing punctuation dropped), so it "
                 "ends in the item's language (for the prompt-ending experiment: the options do not follow such "
                 "a prompt, the accuracy is not the task's)",
    "paper_fewshot": "3 solved exemplars (1 per label, from dev) in the paper's prompt + '\\nAnswer:', then the item",
    "qa": "'{premise}\\nQuestion: {hypothesis} True, False or Neither?\\nAnswer:' (GPT-3 style), zero-shot",
    "qa_fewshot": "the qa prompt after 3 solved exemplars (1 per label, from dev)",
    "labeled_answer": "'Premise: {premise}\\nHypothesis: {hypothesis}\\nIs the hypothesis true, false, or "
                      "inconclusive? Answer:', options ' true' / ' false' / ' inconclusive'",
    "cut_plain": "'{premise}\\n{hypothesis}', the hypothesis' closing punctuation dropped: ends in the item's "
                 "language (the options do not follow it: not the task's accuracy)",
    "cut_labeled": "'Premise: {premise}\\nHypothesis: {hypothesis}', closing punctuation dropped: ends in the "
                   "item's language (not the task's accuracy)",
}


def pick_exemplars(rows: Sequence[Row | None], per_label: int, seed: int = EXEMPLAR_SEED) -> list[int]:
    """Row indices of per_label short exemplars of each label, labels interleaved (e, c, n, e, c, n, ...).

    rows: the English rows of the exemplar split, so the choice does not depend on the languages of a run
    (rows are parallel: the same indices are the same items in every language). Seeded.
    """
    by_label: dict[str, list[int]] = {label: [] for label in NLI_LABELS}
    for i, row in enumerate(rows):
        if row is not None and row[2] in NLI_LABELS and len(row[0]) + len(row[1]) <= EXEMPLAR_MAX_CHARS:
            by_label[row[2]].append(i)
    rng = np.random.default_rng(seed)
    picked = {}
    for label, candidates in by_label.items():
        if len(candidates) < per_label:
            raise TaskDataError(f"only {len(candidates)} short {label!r} rows for {per_label} few-shot exemplars")
        picked[label] = [int(i) for i in rng.choice(candidates, per_label, replace=False)]
    return [picked[label][k] for k in range(per_label) for label in NLI_LABELS]


def build_nli_examples(
    rows_by_lang: dict[str, list[Row | None]], id_prefix: str, issues: Issues, where: str,
    prompt_format: str = "paper", exemplar_rows: dict[str, list[Row]] | None = None, exclude: Sequence[int] = (),
) -> list[ParallelExample]:
    """Turn parallel rows (premise, hypothesis, label) into examples; rows with a None are skipped.

    ``where`` names the source (files) in error messages; labels are checked against NLI_LABELS.
    prompt_format: a name in NLI_FORMATS; exemplar_rows: language -> the exemplars (rows) that precede
    each prompt (for a format with shots); exclude: row indices not to evaluate (the exemplars' own rows).
    """
    fmt = NLI_FORMATS[prompt_format]
    exemplar_rows = exemplar_rows or {}
    langs = list(rows_by_lang)
    n = min(len(rows) for rows in rows_by_lang.values())
    examples = []
    for i in range(n):
        if i in exclude:
            continue
        rows = {lang: rows_by_lang[lang][i] for lang in langs}
        if any(row is None for row in rows.values()):
            continue  # already reported as malformed
        bad = {lang: row[2] for lang, row in rows.items() if row[2] not in NLI_LABELS}
        if bad:
            issues.report("unknown_label", f"{where}, row {i + 1}: unknown label(s) {bad}; expected one of {list(NLI_LABELS)}")
            continue
        rendered = {lang: fmt.render(lang, row[0], row[1], exemplar_rows.get(lang, ())) for lang, row in rows.items()}
        gold = {lang: NLI_LABELS[row[2]] for lang, row in rows.items()}
        examples.append(ParallelExample(
            id=f"{id_prefix}-{i}", prompts={lang: r[0] for lang, r in rendered.items()},
            options={lang: r[1] for lang, r in rendered.items()}, gold=gold,
            answers={lang: r[1][gold[lang]] for lang, r in rendered.items()}, readout=fmt.readout))
    return examples


class XNLI(Task):
    """XNLI, first N parallel items of dev or test.

    Prompt (the paper's, English template and English options in every language)::

        Take the following as truth: {premise}
        Then the following statement: "{hypothesis}" is "true", "false", or "inconclusive"?

    Options " true" / " false" / " inconclusive" (entailment / contradiction / neutral).
    Scoring "options": argmax of the summed log-likelihood of each option continuation.
    Files: ``xnli/dev-LL.tsv`` (premise, hypothesis, label); ``xnli/test-LL.tsv`` (premise,
    hypothesis) with labels from ``xnli/test-labels.txt`` (one a line, shared by all languages).
    Ids: ``xnli-{split}-{row}`` (0-based row of the file).
    """

    name = "xnli"
    languages = ("en", "de", "es", "fr", "ru", "th", "tr", "vi", "zh", "ar", "bg", "el", "hi", "sw", "ur")
    splits = ("dev", "test")
    scoring = "options"
    hub_id = "facebook/xnli"

    prompt_formats = NLI_FORMAT_HELP
    formulations = NLI_FORMULATIONS
    default_format = "harness"

    def _load_local(self, languages, split, num_examples, root: Path, issues: Issues, prompt_format="paper"):
        folder = root / "xnli"
        rows, files = self._read_rows(folder, languages, split, issues)
        where = ", ".join(str(p) for p in files.values())
        exemplars, exclude = {}, ()
        if NLI_FORMATS[prompt_format].shots_per_label:  # exemplars from dev, never from the evaluated items
            dev = rows if split == "dev" else self._read_rows(folder, languages, "dev", Issues("skip"))[0]
            english = dev["en"] if "en" in dev else self._read_rows(folder, ["en"], "dev", Issues("skip"))[0]["en"]
            picked = pick_exemplars(english, NLI_FORMATS[prompt_format].shots_per_label)
            exemplars = {lang: [dev[lang][i] for i in picked] for lang in languages}
            if split == "dev":
                exclude = picked
                issues.note("fewshot_exemplar", len(picked))
        return build_nli_examples(rows, f"xnli-{split}", issues, where, prompt_format, exemplars, exclude)

    def _read_rows(self, folder: Path, languages, split: str, issues: Issues):
        """(language -> rows (premise, hypothesis, label) or None, the files read) of one split."""
        files = {lang: require_file(folder / f"{split}-{lang}.tsv", f"XNLI {split} file for {lang!r}; "
                                    f"copy it from the XNLI release into {folder}") for lang in languages}
        rows = {}
        if split == "dev":
            for lang, path in files.items():
                rows[lang] = [tuple(r) if r else None for r in read_tsv(path, 3, issues)]
            counts = dict(rows)
        else:
            labels = read_test_labels(folder / "test-labels.txt", issues)
            for lang, path in files.items():
                rows[lang] = [tuple(r) + (labels[i],) if r and i < len(labels) and labels[i] else None
                              for i, r in enumerate(read_tsv(path, 2, issues))]
            files["labels"] = folder / "test-labels.txt"
            counts = {**rows, "labels": labels}
        check_row_counts(counts, files, issues)
        return rows, files

    def _load_hub(self, languages, split, num_examples, issues, prompt_format="paper"):
        from jaxneurons.tasks.hub import load_xnli_rows

        rows = {lang: load_xnli_rows(lang, split) for lang in languages}
        check_row_counts(rows, {lang: f"{self.hub_id}:{lang}" for lang in languages}, issues)
        exemplars, exclude = {}, ()
        if NLI_FORMATS[prompt_format].shots_per_label:
            dev_split = "dev"
            dev = rows if split == dev_split else {lang: load_xnli_rows(lang, dev_split) for lang in languages}
            picked = pick_exemplars(dev.get("en") or load_xnli_rows("en", dev_split),
                                    NLI_FORMATS[prompt_format].shots_per_label)
            exemplars = {lang: [dev[lang][i] for i in picked] for lang in languages}
            if split == dev_split:
                exclude = picked
                issues.note("fewshot_exemplar", len(picked))
        return build_nli_examples(rows, f"xnli-{split}", issues, f"hub {self.hub_id}", prompt_format, exemplars,
                                  exclude)


def read_test_labels(path: Path, issues: Issues) -> list[str | None]:
    """Read ``test-labels.txt``; an unknown label is reported and kept as None."""
    require_file(path, "XNLI test labels, one label a line (entailment / neutral / contradiction)")
    labels: list[str | None] = []
    for number, line in read_lines(path):
        label = line.strip()
        if label not in NLI_LABELS:
            issues.report("unknown_label", f"{path}:{number}: unknown label {label!r}; expected one of {list(NLI_LABELS)}")
            labels.append(None)
        else:
            labels.append(label)
    return labels
