"""MzsRE (multilingual zsRE from ReMaKE): cross-lingual knowledge editing with an in-context edit."""

from __future__ import annotations

import json
from pathlib import Path

from jaxneurons.tasks.base import Issues, ParallelExample, Task, TaskDataError, require_file

FILE_CODES = {"cs": "cz", "nl": "du"}  # the data's codes for Czech and Dutch
EDIT_TEMPLATE = "New fact: {edit_question} {edit_answer}\nQuestion: {question}\nAnswer:"
SIDE_FIELDS = ("src", "alt")


def edit_prompt(edit_question: str, edit_answer: str, question: str) -> str:
    """The in-context editing prompt: the edit as a question and its new answer, then the question."""
    return EDIT_TEMPLATE.format(edit_question=edit_question, edit_answer=edit_answer, question=question)


class MzsRE(Task):
    """MzsRE knowledge editing with the edit given in context; ``direction`` "en2all" or "all2en".

    en2all (edit in English, question in language XX)::

        New fact: {en src} {en alt}
        Question: {XX src}
        Answer:                                  -> answer " {XX alt}"

    all2en (edit in XX, question in English): ``New fact: {XX src} {XX alt}\\nQuestion: {en src}\\nAnswer:``
    -> answer " {en alt}". For English both sides are English. The answer starts with a space in every
    language because the prompt ends with the English "Answer:". Scoring "greedy": every answer token
    must be the argmax (teacher forced). Files: ``mzsre/mzsre_test_duplicate_enXX.json`` (cs -> ``encz``,
    nl -> ``endu``); English comes from the chosen languages' files (``ende`` when only en is chosen)
    and must be identical across them (it is in the release: 743 items each). Only split "test".
    Ids: ``mzsre-{index}`` (same for both directions).
    """

    languages = ("en", "de", "es", "fr", "ru", "th", "tr", "vi", "zh", "pt", "cs", "nl")
    splits = ("test",)
    scoring = "greedy"

    def __init__(self, direction: str):
        if direction not in ("en2all", "all2en"):
            raise ValueError(f"direction must be 'en2all' or 'all2en', got {direction!r}")
        self.direction = direction
        self.name = f"mzsre_{direction}"

    def _load_local(self, languages, split, num_examples, root: Path, issues: Issues, prompt_format="paper"):
        others = [lang for lang in languages if lang != "en"]
        sides = {lang: read_mzsre_file(root / "mzsre", lang) for lang in (others or ["de"])}
        english = _check_english(sides, issues)
        n = min(len(items) for items in sides.values())
        examples = []
        for i in range(n):
            if i in english.bad:
                continue
            texts = {lang: (english.items[i] if lang == "en" else sides[lang][i][lang]) for lang in languages}
            if any(not _valid_side(t) for t in texts.values()):
                issues.report("malformed_item", f"mzsre item {i}: a side lacks non-empty string fields {SIDE_FIELDS} "
                              f"in {[str(_path(root / 'mzsre', l)) for l in others]}")
                continue
            examples.append(self._example(i, texts, english.items[i]))
        return examples

    def _example(self, index: int, texts: dict[str, dict], en: dict) -> ParallelExample:
        prompts, answers = {}, {}
        for lang, side in texts.items():
            if self.direction == "en2all":
                prompts[lang] = edit_prompt(en["src"].strip(), en["alt"].strip(), side["src"].strip())
                answers[lang] = " " + side["alt"].strip()
            else:
                prompts[lang] = edit_prompt(side["src"].strip(), side["alt"].strip(), en["src"].strip())
                answers[lang] = " " + en["alt"].strip()
        return ParallelExample(id=f"mzsre-{index}", prompts=prompts, options=None,
                               gold={lang: 0 for lang in texts}, answers=answers)


def _path(folder: Path, lang: str) -> Path:
    return folder / f"mzsre_test_duplicate_en{FILE_CODES.get(lang, lang)}.json"


def read_mzsre_file(folder: Path, lang: str) -> list[dict]:
    """Read one ``mzsre_test_duplicate_enXX.json``: a list of {"en": {...}, "XX": {...}} items.

    The language key inside is the project code (``lang``) for convenience: cz/du are renamed.
    """
    path = require_file(_path(folder, lang), f"MzsRE file for {lang!r}; copy it from the ReMaKE release")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise TaskDataError(f"{path}:{e.lineno}: invalid JSON ({e.msg}); restore the file from the release") from e
    code = FILE_CODES.get(lang, lang)
    if not isinstance(data, list):
        raise TaskDataError(f"{path}: expected a JSON list of items, got {type(data).__name__}")
    items = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "en" not in item or code not in item:
            raise TaskDataError(f"{path}: item {i} must be an object with keys 'en' and {code!r}")
        items.append({"en": item["en"], lang: item[code]})
    return items


class _English:
    def __init__(self, items, bad):
        self.items, self.bad = items, bad


def _valid_side(side) -> bool:
    return isinstance(side, dict) and all(isinstance(side.get(k), str) and side[k].strip() for k in SIDE_FIELDS)


def _check_english(sides: dict[str, list[dict]], issues: Issues) -> _English:
    """The English side of the first file; items whose English differs in another file are not parallel."""
    ref_lang = next(iter(sides))
    reference = [item["en"] for item in sides[ref_lang]]
    bad = set()
    for lang, items in sides.items():
        if len(items) != len(reference):
            issues.report("not_parallel", f"MzsRE files for {ref_lang!r} and {lang!r} have {len(reference)} and "
                          f"{len(items)} items; they must list the same items in the same order",
                          count=abs(len(items) - len(reference)))
        for i, (a, b) in enumerate(zip(reference, items)):
            if not _valid_side(a) or not _valid_side(b["en"]) or (a["src"], a["alt"]) != (b["en"]["src"], b["en"]["alt"]):
                if i not in bad:
                    issues.report("not_parallel", f"mzsre item {i}: English side differs between the {ref_lang!r} "
                                  f"and {lang!r} files (or is malformed); the files must be parallel")
                bad.add(i)
    return _English(reference, bad)
