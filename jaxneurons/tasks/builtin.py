"""The project's own small parallel sets (``builtin/*.json``): NLI and simple world facts."""

from __future__ import annotations

import json
from pathlib import Path

from jaxneurons.tasks.base import Issues, ParallelExample, Task, TaskDataError
from jaxneurons.tasks.xnli import NLI_FORMAT_HELP, NLI_FORMATS, NLI_FORMULATIONS, NLI_LABELS

BUILTIN_DIR = Path(__file__).parent / "builtin"
BUILTIN_LANGUAGES = ("en", "de", "es", "fr", "ru", "th", "tr", "vi", "zh")


def read_builtin(filename: str, directory: Path | None = None, key: str = "items") -> list[dict]:
    """The items (or, key="exemplars", the few-shot exemplars) of a built-in JSON file: a list of objects
    with "id" and per-language fields."""
    path = (directory or BUILTIN_DIR) / filename
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise TaskDataError(f"missing built-in file {path}; reinstall jaxneurons with its package data") from e
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from e
    if key not in data:
        raise TaskDataError(f"built-in file {path} has no {key!r} list")
    return data[key]


class BuiltinNLI(Task):
    """The project's own NLI set (``builtin/nli.json``), 9 languages, scored like XNLI.

    Prompts and options are XNLI's, in the same formats (``--prompt_format``; "paper": the paper's English
    template, options " true" / " false" / " inconclusive" for entailment / contradiction / neutral).
    Few-shot formats take their exemplars from the file's own "exemplars" list (written for this, never
    an evaluated item), the same items in every language. Scoring "options". Needs no data_dir.
    Only split "test". Ids: ``builtin_nli-{id}``.
    """

    name = "builtin_nli"
    languages = BUILTIN_LANGUAGES
    splits = ("test",)
    scoring = "options"
    needs_data_dir = False
    directory: Path | None = None  # tests may point this elsewhere
    prompt_formats = NLI_FORMAT_HELP
    formulations = NLI_FORMULATIONS
    default_format = "harness"

    def _load_local(self, languages, split, num_examples, root, issues: Issues, prompt_format="paper"):
        fmt, examples = NLI_FORMATS[prompt_format], []
        exemplars = self._exemplars(languages, fmt.shots_per_label)
        for item in read_builtin("nli.json", self.directory):
            texts = {lang: item.get(lang) for lang in languages}
            if item.get("label") not in NLI_LABELS or any(
                    not (t and t.get("premise") and t.get("hypothesis")) for t in texts.values()):
                issues.report("malformed_item", f"builtin nli.json item {item.get('id')!r}: needs a label in "
                              f"{list(NLI_LABELS)} and premise/hypothesis in {languages}")
                continue
            gold = NLI_LABELS[item["label"]]
            rendered = {lang: fmt.render(lang, t["premise"], t["hypothesis"], exemplars[lang])
                        for lang, t in texts.items()}
            examples.append(ParallelExample(
                id=f"builtin_nli-{item['id']}", prompts={lang: r[0] for lang, r in rendered.items()},
                options={lang: r[1] for lang, r in rendered.items()}, gold={lang: gold for lang in languages},
                answers={lang: r[1][gold] for lang, r in rendered.items()}, readout=fmt.readout))
        return examples

    def _exemplars(self, languages, per_label: int) -> dict[str, list[tuple[str, str, str]]]:
        """language -> the first per_label exemplars of each label, as (premise, hypothesis, label), e, c, n order."""
        if not per_label:
            return {lang: [] for lang in languages}
        items = read_builtin("nli.json", self.directory, key="exemplars")
        by_label = {label: [x for x in items if x.get("label") == label][:per_label] for label in NLI_LABELS}
        if any(len(chosen) < per_label for chosen in by_label.values()):
            raise TaskDataError(f"builtin nli.json: fewer than {per_label} exemplars per label in its 'exemplars'")
        picked = [by_label[label][k] for k in range(per_label) for label in NLI_LABELS]
        return {lang: [(x[lang]["premise"], x[lang]["hypothesis"], x["label"]) for x in picked] for lang in languages}


class BuiltinFacts(Task):
    """The project's own world-facts set (``builtin/facts.json``), 9 languages.

    Each item has, per language, a ``prompt`` that ends right before a short answer and the
    ``answer`` with its leading space where the language writes one (en "The capital of France is"
    -> " Paris"; zh "法国的首都是" -> "巴黎"). Scoring "greedy": every answer token must be the argmax
    (teacher forced). Needs no data_dir. Only split "test". Ids: ``builtin_facts-{id}``.
    """

    name = "builtin_facts"
    languages = BUILTIN_LANGUAGES
    splits = ("test",)
    scoring = "greedy"
    needs_data_dir = False
    directory: Path | None = None

    def _load_local(self, languages, split, num_examples, root, issues: Issues, prompt_format="paper"):
        examples = []
        for item in read_builtin("facts.json", self.directory):
            texts = {lang: item.get(lang) for lang in languages}
            if any(not (t and t.get("prompt") and t.get("answer", "").strip()) for t in texts.values()):
                issues.report("malformed_item", f"builtin facts.json item {item.get('id')!r}: needs prompt and "
                              f"answer in {languages}")
                continue
            examples.append(ParallelExample(
                id=f"builtin_facts-{item['id']}",
                prompts={lang: t["prompt"] for lang, t in texts.items()},
                options=None,
                gold={lang: 0 for lang in languages},
                answers={lang: t["answer"] for lang, t in texts.items()},
            ))
        return examples
