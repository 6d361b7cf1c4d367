"""XNLI (Conneau et al. 2018): natural language inference, the paper's reasoning task."""

from __future__ import annotations

from pathlib import Path

from jaxneurons.tasks.base import (
    Issues,
    ParallelExample,
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


def nli_prompt(premise: str, hypothesis: str) -> str:
    """The paper's XNLI prompt (English template, used for every language)."""
    return XNLI_TEMPLATE.format(premise=premise, hypothesis=hypothesis)


def build_nli_examples(
    rows_by_lang: dict[str, list[Row | None]], id_prefix: str, issues: Issues, where: str
) -> list[ParallelExample]:
    """Turn parallel rows (premise, hypothesis, label) into examples; rows with a None are skipped.

    ``where`` names the source (files) in error messages; labels are checked against NLI_LABELS.
    """
    langs = list(rows_by_lang)
    n = min(len(rows) for rows in rows_by_lang.values())
    examples = []
    for i in range(n):
        rows = {lang: rows_by_lang[lang][i] for lang in langs}
        if any(row is None for row in rows.values()):
            continue  # already reported as malformed
        bad = {lang: row[2] for lang, row in rows.items() if row[2] not in NLI_LABELS}
        if bad:
            issues.report("unknown_label", f"{where}, row {i + 1}: unknown label(s) {bad}; expected one of {list(NLI_LABELS)}")
            continue
        examples.append(
            ParallelExample(
                id=f"{id_prefix}-{i}",
                prompts={lang: nli_prompt(row[0], row[1]) for lang, row in rows.items()},
                options={lang: NLI_OPTIONS for lang in langs},
                gold={lang: NLI_LABELS[row[2]] for lang, row in rows.items()},
                answers={lang: NLI_OPTIONS[NLI_LABELS[row[2]]] for lang, row in rows.items()},
            )
        )
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

    def _load_local(self, languages, split, num_examples, root: Path, issues: Issues):
        folder = root / "xnli"
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
        where = ", ".join(str(p) for p in files.values())
        return build_nli_examples(rows, f"xnli-{split}", issues, where)

    def _load_hub(self, languages, split, num_examples, issues):
        from jaxneurons.tasks.hub import load_xnli_rows

        rows = {lang: load_xnli_rows(lang, split) for lang in languages}
        check_row_counts(rows, {lang: f"{self.hub_id}:{lang}" for lang in languages}, issues)
        return build_nli_examples(rows, f"xnli-{split}", issues, f"hub {self.hub_id}")


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
