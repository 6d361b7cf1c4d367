"""mParaRel (Fierro and Soegaard 2022): multilingual fact probing, the paper's knowledge task."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from jaxneurons.tasks.base import Issues, ParallelExample, Task, TaskDataError, read_jsonl

TUPLE_FIELDS = ("sub_uri", "obj_uri", "sub_label", "obj_label")
LANGUAGE_DIRS = {"zh": "zh-hans"}
TRAILING = " .。"
NO_SPACE_LANGUAGES = ("zh", "th", "ja")  # scripts written without spaces between words
# format -> (which usable pattern, 1-based; English cue appended to every language's prompt)
FORMATS = {"paper": (1, ""), "pattern2": (2, ""), "pattern3": (3, ""), "answer": (1, "\nAnswer:"),
           "answer_is": (1, "\nThe answer is"), "answer_object": (1, "\nObject:")}
FORMAT_HELP = {
    "paper": "the relation's first pattern with [Y] at the end, cut before [Y]: ends in the item's language",
    "pattern2": "the second such pattern (relations with fewer in some language are skipped)",
    "pattern3": "the third such pattern (relations with fewer in some language are skipped)",
    "answer": "the first pattern + '\\nAnswer:': every language's prompt ends in the same English word",
    "answer_is": "the first pattern + '\\nThe answer is'",
    "answer_object": "the first pattern + '\\nObject:'",
}


def final_y_prompt(pattern: str, subject: str) -> tuple[str, str] | None:
    """Fill [X] and cut the pattern just before a final [Y]; return (prompt, separator) or None.

    ``separator`` is the text between the prompt and [Y] that belongs to the answer: " " when the
    pattern has a space before [Y] (en "[X] is located in [Y]"), "" when it has none (zh "[X]位于[Y]").
    Patterns whose [Y] is not last (after stripping trailing spaces and "."/"。") give None.
    """
    core = pattern.rstrip(TRAILING)
    if not core.endswith("[Y]") or core.count("[Y]") != 1 or pattern.count("[X]") != 1:
        return None
    head = core[: -len("[Y]")]
    stripped = head.rstrip()
    separator = " " if stripped != head else ""
    if not stripped:
        return None
    return stripped.replace("[X]", subject), separator


class MParaRel(Task):
    """mParaRel fact probing: predict the object of a (subject, relation) in each language.

    Prompt: for each relation and language, the FIRST pattern in ``patterns/LL/Pnnn.jsonl`` whose
    [Y] is at the end (after stripping trailing "."/"。"), with [X] filled by ``sub_label`` and cut
    just before [Y]; e.g. en P17 "[X], located in [Y]" -> "Eibenstock, located in". Answer: the
    language's ``obj_label``, preceded by " " where the pattern has a space before [Y]; never a space in
    zh / th (scripts without word spaces; the prompt's trailing space is dropped). Scoring "greedy": every token of the answer must be the argmax (teacher forced).
    Items: the (sub_uri, obj_uri) pairs present in ``tuples/LL/Pnnn.jsonl`` of every chosen language,
    for relations with a usable pattern in every chosen language. Order: relations sorted by number,
    tuples within a relation sorted by (sub_uri, obj_uri); then interleaved round-robin over relations
    (first tuple of each relation, then the second, ...), so the first N examples span many relations.
    Skipped by design (counted in ``skipped``, never an error): "relation_without_final_Y_pattern",
    "relation_missing_files" (one count per relation), "tuple_not_in_all_languages"
    (tuples of the first chosen language absent in another). Language ``zh`` reads folder ``zh-hans``.
    Only split "test" (the whole reviewed set). Ids: ``mpararel-{relation}-{sub_uri}-{obj_uri}``.
    Formats (``FORMAT_HELP``): the k-th usable pattern instead of the first ("pattern2", "pattern3"; relations
    with fewer in some language are skipped, counted as "relation_without_kth_pattern"), or the first pattern
    followed by an English cue ("answer": "\nAnswer:", ...), so every language's prompt ends in the same words.
    """

    name = "mpararel"
    languages = ("en", "de", "es", "fr", "ru", "th", "tr", "vi", "zh", "cs", "nl", "pt")
    splits = ("test",)
    scoring = "greedy"
    prompt_formats = FORMAT_HELP
    formulations = {"ends_in_language": ("paper", "pattern2", "pattern3"),
                    "ends_english": ("answer", "answer_is", "answer_object")}

    def _load_local(self, languages, split, num_examples, root: Path, issues: Issues, prompt_format="paper"):
        folder = root / "mpararel"
        dirs = {lang: LANGUAGE_DIRS.get(lang, lang) for lang in languages}
        for lang, d in dirs.items():
            if not (folder / "patterns" / d).is_dir() or not (folder / "tuples" / d).is_dir():
                raise TaskDataError(f"missing mParaRel folders {folder}/patterns/{d} and/or {folder}/tuples/{d} "
                                    f"for language {lang!r}; copy them from the mParaRel release")
        per_relation = []
        for relation in _relations(folder, dirs):
            examples = self._relation_examples(folder, relation, dirs, issues, *FORMATS[prompt_format])
            if examples:
                per_relation.append(examples)
        return _round_robin(per_relation)

    def _relation_examples(self, folder: Path, relation: str, dirs: dict[str, str], issues: Issues,
                           pattern: int = 1, cue: str = ""):
        """The parallel examples of one relation with each language's `pattern`-th usable pattern and the cue
        appended (empty if some language lacks it)."""
        patterns, tuples = {}, {}
        for lang, d in dirs.items():
            pattern_file = folder / "patterns" / d / f"{relation}.jsonl"
            tuple_file = folder / "tuples" / d / f"{relation}.jsonl"
            if not pattern_file.is_file() or not tuple_file.is_file():
                issues.note("relation_missing_files")
                return []
            usable = [r["pattern"] for r in read_jsonl(pattern_file, issues, ("pattern",))
                      if r is not None and final_y_prompt(r["pattern"], "x") is not None]
            if not usable:
                issues.note("relation_without_final_Y_pattern")
                return []
            if len(usable) < pattern:
                issues.note("relation_without_kth_pattern")
                return []
            patterns[lang] = usable[pattern - 1]
            records = [r for r in read_jsonl(tuple_file, issues, TUPLE_FIELDS) if r is not None]
            tuples[lang] = {(r["sub_uri"], r["obj_uri"]): r for r in records}
        first = next(iter(tuples.values()))
        keys = sorted(set.intersection(*(set(t) for t in tuples.values())), key=_uri_key)
        issues.note("tuple_not_in_all_languages", len(first) - len(keys))
        return [self._example(relation, key, patterns, tuples, cue) for key in keys]

    @staticmethod
    def _example(relation, key, patterns, tuples, cue: str = "") -> ParallelExample:
        prompts, answers = {}, {}
        for lang, pattern in patterns.items():
            rec = tuples[lang][key]
            prompt, separator = final_y_prompt(pattern, rec["sub_label"].strip())
            prompts[lang] = prompt + cue
            separator = "" if lang in NO_SPACE_LANGUAGES else separator
            answers[lang] = separator + rec["obj_label"].strip()
        return ParallelExample(
            id=f"mpararel-{relation}-{key[0]}-{key[1]}",
            prompts=prompts,
            options=None,
            gold={lang: 0 for lang in patterns},
            answers=answers,
        )


def _relations(folder: Path, dirs: dict[str, str]) -> list[str]:
    """All relation ids found for the chosen languages, sorted by number (P17 < P101)."""
    names = set()
    for d in dirs.values():
        names |= {p.stem for p in (folder / "tuples" / d).glob("P*.jsonl")}
        names |= {p.stem for p in (folder / "patterns" / d).glob("P*.jsonl")}
    return sorted(names, key=_number)


def _number(uri: str) -> tuple[int, str]:
    digits = re.sub(r"\D", "", uri)
    return (int(digits) if digits else -1, uri)


def _uri_key(key: tuple[str, str]) -> tuple:
    return _number(key[0]), _number(key[1])


def _round_robin(groups: list[list[ParallelExample]]) -> list[ParallelExample]:
    """Interleave groups: first of each, then second of each, ..."""
    merged = itertools.zip_longest(*groups)
    return [ex for row in merged for ex in row if ex is not None]
