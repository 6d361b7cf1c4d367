"""XCOPA (Ponti et al. 2020): causal commonsense reasoning, two choices."""

from __future__ import annotations

import collections
from pathlib import Path

from jaxneurons.tasks.base import Issues, ParallelExample, Task, read_jsonl, require_file

XCOPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}
XCOPA_TEMPLATE = "Premise: {premise}\nQuestion: {question}\nAnswer:"
XCOPA_FIELDS = ("premise", "choice1", "choice2", "question", "label", "idx")


def xcopa_prompt(premise: str, question: str) -> str:
    """The XCOPA prompt for a premise and question type ("cause" / "effect")."""
    return XCOPA_TEMPLATE.format(premise=premise, question=XCOPA_QUESTIONS[question])


class XCOPA(Task):
    """XCOPA, parallel by ``idx``, val or test (``split="dev"`` is accepted for val).

    Prompt (this project's choice; English frame in every language)::

        Premise: {premise}
        Question: What was the cause?            (or: What happened as a result?)
        Answer:

    Options: " {choice1}", " {choice2}" (the space follows the English "Answer:"). Scoring
    "options": argmax of the summed log-likelihood of each choice. Files:
    ``xcopa/data/LL/{val,test}.LL.jsonl``. Ids: ``xcopa-{split}-{idx}``, sorted by idx.
    The original data has no English; the machine-translated ``data-gmt`` copies are not used.
    The question type is a property of the item, but the files disagree on it for some idx (th test:
    250 of 500 differ from the other languages, tr 51, sw 37): the prompt uses, in every language,
    the majority question over all XCOPA languages in the data folder (over the chosen languages for
    the hub). Labels agree across languages.
    """

    name = "xcopa"
    languages = ("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh")
    splits = ("val", "test", "dev")
    scoring = "options"
    hub_id = "cambridgeltl/xcopa"

    def _load_local(self, languages, split, num_examples, root: Path, issues: Issues, prompt_format="paper"):
        split = "val" if split == "dev" else split
        records = {}
        for lang in languages:
            path = require_file(root / "xcopa" / "data" / lang / f"{split}.{lang}.jsonl", f"XCOPA {split} file for {lang!r}")
            records[lang] = (path, read_jsonl(path, issues, XCOPA_FIELDS))
        voters = sorted((root / "xcopa" / "data").glob(f"*/{split}.*.jsonl"))
        questions = majority_questions([read_jsonl(p, Issues("skip")) for p in voters])
        return build_xcopa_examples(records, split, issues, questions)

    def _load_hub(self, languages, split, num_examples, issues, prompt_format="paper"):
        from jaxneurons.tasks.hub import load_xcopa_records

        split = "val" if split == "dev" else split
        records = {lang: (f"hub {self.hub_id}:{lang}", load_xcopa_records(lang, split)) for lang in languages}
        questions = majority_questions([recs for _, recs in records.values()])
        return build_xcopa_examples(records, split, issues, questions)


def _index_by_idx(where, records: list[dict | None], issues: Issues) -> dict[int, dict]:
    """Map idx -> record, reporting bad question types / labels / duplicate idx."""
    by_idx: dict[int, dict] = {}
    for line, rec in enumerate(records, start=1):
        if rec is None:
            continue
        if rec["question"] not in XCOPA_QUESTIONS or rec["label"] not in (0, 1):
            issues.report("malformed_line", f"{where}:{line}: question must be cause/effect and label 0/1, "
                          f"got {rec['question']!r}, {rec['label']!r}")
        elif rec["idx"] in by_idx:
            issues.report("malformed_line", f"{where}:{line}: duplicate idx {rec['idx']}")
        else:
            by_idx[rec["idx"]] = rec
    return by_idx


def majority_questions(files: list[list[dict | None]]) -> dict[int, str]:
    """idx -> the question type ("cause"/"effect") most languages give (ties: the first file's)."""
    votes: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    for records in files:
        for rec in records:
            if rec and rec.get("question") in XCOPA_QUESTIONS and "idx" in rec:
                votes[rec["idx"]][rec["question"]] += 1
    return {idx: counter.most_common(1)[0][0] for idx, counter in votes.items()}


def build_xcopa_examples(
    records: dict[str, tuple], split: str, issues: Issues, questions: dict[int, str]
) -> list[ParallelExample]:
    """Join languages on idx (missing idx = not parallel); ``questions`` gives each idx's question."""
    by_lang = {lang: _index_by_idx(where, recs, issues) for lang, (where, recs) in records.items()}
    all_idx = set().union(*(set(d) for d in by_lang.values()))
    examples = []
    for idx in sorted(all_idx):
        missing = [lang for lang, d in by_lang.items() if idx not in d]
        if missing:
            issues.report("not_parallel", f"xcopa-{split}-{idx}: idx {idx} missing in {missing} "
                          f"({', '.join(str(records[m][0]) for m in missing)}); every language needs the same items")
            continue
        recs = {lang: d[idx] for lang, d in by_lang.items()}
        options = {lang: (" " + r["choice1"].strip(), " " + r["choice2"].strip()) for lang, r in recs.items()}
        examples.append(
            ParallelExample(
                id=f"xcopa-{split}-{idx}",
                prompts={lang: xcopa_prompt(r["premise"].strip(), questions.get(idx, r["question"]))
                         for lang, r in recs.items()},
                options=options,
                gold={lang: int(r["label"]) for lang, r in recs.items()},
                answers={lang: options[lang][int(r["label"])] for lang, r in recs.items()},
            )
        )
    return examples
