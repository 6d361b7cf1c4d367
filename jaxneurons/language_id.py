"""The language of generated text: py3langid's naive-Bayes model over byte n-grams (142 languages, ISO 639-1
codes as the tasks use them), which ships inside its wheel, so it works offline.

>>> identify(["Die Frau liest ein Buch.", "ok"])
[Guess(language='de', confidence=0.95), Guess(language='unknown', confidence=0.0)]
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

UNKNOWN = "unknown"
MIN_LETTERS = 5  # texts with fewer letters (CJK characters count as letters) are "unknown": too short to tell
ALIASES = {"yue": "zh", "wuu": "zh"}  # varieties the tasks' codes do not separate


class Guess(NamedTuple):
    language: str  # a task language code, another ISO code, or "unknown"
    confidence: float  # the model's normalised probability of that language (0 for "unknown")


@functools.lru_cache(maxsize=1)
def _identifier():
    from py3langid import langid

    return langid.LanguageIdentifier.from_model_file(langid.MODEL_FILE, norm_probs=True)


def identify(texts: Sequence[str] | str) -> list[Guess]:
    """The most likely language of each text, with its probability; "unknown" for empty or short text."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    guesses = []
    for text in texts:
        if sum(c.isalpha() for c in text) < MIN_LETTERS:
            guesses.append(Guess(UNKNOWN, 0.0))
            continue
        language, probability = _identifier().classify(text)
        guesses.append(Guess(ALIASES.get(language, language), float(probability)))
    return guesses
