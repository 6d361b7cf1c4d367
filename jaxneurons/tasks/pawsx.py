"""PAWS-X (Yang et al. 2019): paraphrase identification."""

from __future__ import annotations

from pathlib import Path

from jaxneurons.tasks.base import Issues, ParallelExample, Task, check_row_counts, read_tsv, require_file

PAWSX_TEMPLATE = (
    "Sentence 1: {sentence1}\n"
    "Sentence 2: {sentence2}\n"
    'Question: Do sentence 1 and sentence 2 mean the same thing, "yes" or "no"?\n'
    "Answer:"
)
PAWSX_OPTIONS = (" yes", " no")
PAWSX_LABELS = {"1": 0, "0": 1}  # 1 = paraphrase -> " yes"; 0 -> " no"
TEST_LABEL_LANGUAGES = ("de", "zh")

Row = tuple[str, str, str]  # sentence1, sentence2, label ("1" / "0")


def pawsx_prompt(sentence1: str, sentence2: str) -> str:
    """The PAWS-X prompt (English template, used for every language)."""
    return PAWSX_TEMPLATE.format(sentence1=sentence1, sentence2=sentence2)


class PAWSX(Task):
    """PAWS-X paraphrase identification, first N parallel pairs of dev or test.

    Prompt (this project's choice; English template and options in every language)::

        Sentence 1: {sentence1}
        Sentence 2: {sentence2}
        Question: Do sentence 1 and sentence 2 mean the same thing, "yes" or "no"?
        Answer:

    Options " yes" (label 1, paraphrase) / " no" (label 0). Scoring "options": argmax of the summed
    log-likelihood. Each language keeps its own label (they differ from English on a few dozen of
    2,000 rows), so ``gold`` may differ between languages of one example.
    dev: ``pawsx/dev-LL.tsv`` (sentence1, sentence2, label). test: sentences from
    ``pawsx/test-LL.tsv`` and labels from ``pawsx/test-labels/test-LL.tsv`` (id, sentence1,
    sentence2, label), which this data has only for de and zh: the test split therefore supports
    only de and zh (other languages raise TaskDataError; use split="dev" for them).
    Ids: ``pawsx-{split}-{row}``.
    """

    name = "pawsx"
    languages = ("en", "de", "es", "fr", "ja", "ko", "zh")
    splits = ("dev", "test")
    scoring = "options"
    hub_id = "google-research-datasets/paws-x"

    def _load_local(self, languages, split, num_examples, root: Path, issues: Issues, prompt_format="paper"):
        folder = root / "pawsx"
        files, rows = {}, {}
        for lang in languages:
            files[lang] = require_file(folder / f"{split}-{lang}.tsv", f"PAWS-X {split} file for {lang!r}")
            rows[lang] = self._read_language(folder, split, lang, issues)
        check_row_counts(rows, files, issues)
        return build_pawsx_examples(rows, f"pawsx-{split}", issues, ", ".join(map(str, files.values())))

    def _read_language(self, folder: Path, split: str, lang: str, issues: Issues) -> list[Row | None]:
        """Rows of one language; for test, joins the sentences with the per-language label file."""
        path = folder / f"{split}-{lang}.tsv"
        if split == "dev":
            return [tuple(r) if r else None for r in read_tsv(path, 3, issues)]
        label_path = require_file(
            folder / "test-labels" / f"test-{lang}.tsv",
            f"PAWS-X test labels for {lang!r}; this data has test labels only for "
            f"{', '.join(TEST_LABEL_LANGUAGES)}: use split='dev' or those languages",
        )
        sentences = read_tsv(path, 2, issues)
        labelled = read_tsv(label_path, 4, issues, skip_header=True)
        check_row_counts({lang: sentences, "labels": labelled}, {lang: path, "labels": label_path}, issues)
        rows: list[Row | None] = []
        for i, (sent, lab) in enumerate(zip(sentences, labelled)):
            if sent is None or lab is None:
                rows.append(None)
            elif lab[1:3] != sent:
                issues.report("not_parallel", f"{label_path}:{i + 2}: sentences differ from {path}:{i + 1}; "
                              "the label file must list the test rows in the same order")
                rows.append(None)
            else:
                rows.append((sent[0], sent[1], lab[3]))
        return rows

    def _load_hub(self, languages, split, num_examples, issues, prompt_format="paper"):
        from jaxneurons.tasks.hub import load_pawsx_rows

        rows = {lang: load_pawsx_rows(lang, split) for lang in languages}
        check_row_counts(rows, {lang: f"{self.hub_id}:{lang}" for lang in languages}, issues)
        return build_pawsx_examples(rows, f"pawsx-{split}", issues, f"hub {self.hub_id}")


def build_pawsx_examples(
    rows_by_lang: dict[str, list[Row | None]], id_prefix: str, issues: Issues, where: str
) -> list[ParallelExample]:
    """Turn parallel (sentence1, sentence2, label) rows into examples with per-language gold."""
    langs = list(rows_by_lang)
    n = min(len(rows) for rows in rows_by_lang.values())
    examples = []
    for i in range(n):
        rows = {lang: rows_by_lang[lang][i] for lang in langs}
        if any(row is None for row in rows.values()):
            continue  # already reported
        bad = {lang: row[2] for lang, row in rows.items() if row[2] not in PAWSX_LABELS}
        if bad:
            issues.report("unknown_label", f"{where}, row {i + 1}: unknown label(s) {bad}; expected 1 or 0")
            continue
        gold = {lang: PAWSX_LABELS[row[2]] for lang, row in rows.items()}
        examples.append(
            ParallelExample(
                id=f"{id_prefix}-{i}",
                prompts={lang: pawsx_prompt(row[0], row[1]) for lang, row in rows.items()},
                options={lang: PAWSX_OPTIONS for lang in langs},
                gold=gold,
                answers={lang: PAWSX_OPTIONS[g] for lang, g in gold.items()},
            )
        )
    return examples
