"""Open answers scored on what the model generates (not teacher-forced): greedy generation from each row's prompt
under a deactivation, then two matches against the gold answer.

- first token: the first generated token is the gold answer's first token (as the task tokenizes it);
- prefix: the generated text, normalised, starts with the gold answer, normalised. Normalisation: Unicode NFKC,
  case folded, leading and trailing whitespace stripped, runs of whitespace made one space; the generation is
  long enough for the longest gold answer (its token count + 2) and is not cut at a stop.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np

from jaxneurons.generation import generate
from jaxneurons.lm import pad_rows
from jaxneurons.models.decoder import Intervention

EXTRA_TOKENS = 2  # generated beyond the longest gold answer, so a tokenization that differs by a token can match
SCORING = ("greedy generation (the longest gold answer's tokens + 2) under each set; prefix match: the generation, "
           "normalised (NFKC, case folded, whitespace collapsed and stripped), starts with the normalised gold "
           "answer; first token: the first generated token is the gold answer's first")


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()


def answer_matches(texts: Sequence[str], first_ids: Sequence[int], golds: Sequence[str],
                   gold_first_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(first-token match [R], prefix match [R]) of generated texts and their first token ids against the gold
    answers and their first token ids."""
    first = np.asarray(first_ids) == np.asarray(gold_first_ids)
    prefix = np.asarray([normalize(t).startswith(normalize(g)) for t, g in zip(texts, golds)], bool)
    return first, prefix


def generated_matches(lm, prompts: Sequence[Sequence[int]], golds: Sequence[str], gold_ids: Sequence[Sequence[int]],
                      scale_rlf: np.ndarray | None, every_token: bool, mesh=None) -> tuple[np.ndarray, np.ndarray]:
    """Greedy generation from the prompt token ids (one row each) with m scaled by scale_rlf ([R, L, F], None:
    clean) at the prompt's last token (or at every token), scored by `answer_matches`."""
    ids, mask = pad_rows(prompts, lm.pad_id)
    intervention = None
    if scale_rlf is not None:
        scale = np.asarray(scale_rlf, np.float32)
        intervention = Intervention(scale, np.zeros_like(scale), np.ones((1, 1), bool))
    out = generate(lm, ids, attention_mask=mask, max_new_tokens=max(len(g) for g in gold_ids) + EXTRA_TOKENS,
                   intervention=intervention, positions="all" if every_token else "last_prompt",
                   batch_size=len(prompts), mesh=mesh, stop=[])
    return answer_matches(out.texts, out.token_ids[:, 0], golds, [g[0] for g in gold_ids])
