"""Monolingual corpora for LAPE (Tang et al., ACL 2024): text per language, cut into rows of equal length.

A corpus is {language: [documents]} or {language: 1-D token ids}. As LAPE does (activation.py, ppl.py), each
language's documents are tokenized (each with the tokenizer's special tokens, e.g. a BOS), concatenated into
one stream and cut into rows of `max_length` tokens; the last partial row is dropped. Ids are cut the same way.

Sources: one text file per language (one document a line), a `datasets` dataset (a text column, one language
per split or config the caller picks), and, offline by default, the monolingual text of the shared XNLI files
(premises and hypotheses, deduplicated in order of first appearance).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from jaxneurons.tasks.base import Issues, TaskDataError, read_tsv, require_file, resolve_data_dir

XNLI_SPLITS = ("dev", "test")


def xnli_corpus(languages: Sequence[str], splits: Sequence[str] = ("test",), data_dir: str | None = None
                ) -> dict[str, list[str]]:
    """{language: documents}: the premises and hypotheses of XNLI's `splits`, deduplicated in order of first
    appearance (each premise comes with three hypotheses). LAPE identifies on "test" and the perplexity is
    measured on "dev" (other items) by default."""
    bad = [s for s in splits if s not in XNLI_SPLITS]
    if bad:
        raise TaskDataError(f"XNLI corpus splits {bad} unknown; choose from {XNLI_SPLITS}")
    folder = resolve_data_dir(data_dir, "xnli corpus") / "xnli"
    corpus = {}
    for lang in languages:
        seen: dict[str, None] = {}
        for split in splits:
            path = require_file(folder / f"{split}-{lang}.tsv", f"XNLI {split} file for {lang!r} (languages: ar bg "
                                "de el en es fr hi ru sw th tr ur vi zh)")
            for row in read_tsv(path, 3 if split == "dev" else 2, Issues("skip")):
                for text in (row or [])[:2]:
                    seen.setdefault(text.strip(), None)
        corpus[lang] = [t for t in seen if t]
    return corpus


def files_corpus(paths: Mapping[str, str | Path]) -> dict[str, list[str]]:
    """{language: documents} from one UTF-8 text file per language, one document a line (empty lines skipped)."""
    corpus = {}
    for lang, path in paths.items():
        path = require_file(Path(path), f"corpus file for {lang!r}: one document a line")
        corpus[lang] = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return corpus


def dataset_corpus(datasets_by_lang: Mapping[str, object], text_column: str = "text") -> dict[str, list[str]]:
    """{language: documents} from a `datasets.Dataset` (or any sequence of dicts) per language."""
    corpus = {}
    for lang, dataset in datasets_by_lang.items():
        names = getattr(dataset, "column_names", None)
        if names is not None and text_column not in names:
            raise TaskDataError(f"dataset for {lang!r} has no column {text_column!r} (columns: {names}); "
                                "pass text_column=")
        corpus[lang] = [str(t) for t in (dataset[text_column] if names is not None
                                         else (r[text_column] for r in dataset)) if str(t).strip()]
    return corpus


def token_stream(tokenizer, corpus_entry, max_tokens: int | None = None) -> np.ndarray:
    """1-D int32 ids of one language: the documents tokenized (special tokens added, as a tokenizer does by
    default) and concatenated, or the given ids; cut at max_tokens (None: all)."""
    if isinstance(corpus_entry, np.ndarray) or (not isinstance(corpus_entry, (str, list, tuple))
                                                and hasattr(corpus_entry, "shape")):
        ids = np.asarray(corpus_entry)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"token ids of a corpus must be a 1-D integer array, got {ids.dtype} {ids.shape}")
        return ids[:max_tokens].astype(np.int32)
    if isinstance(corpus_entry, str):
        raise ValueError("a corpus maps each language to a list of documents (or ids), not to one string")
    if tokenizer is None:
        raise ValueError("this model has no tokenizer: give the corpus as token ids {lang: 1-D array}")
    out, count = [], 0
    for text in corpus_entry:
        ids = tokenizer(text)["input_ids"]
        out.append(np.asarray(ids, np.int32))
        count += len(ids)
        if max_tokens is not None and count >= max_tokens:
            break
    stream = np.concatenate(out) if out else np.zeros(0, np.int32)
    return stream[:max_tokens]


def cut_rows(stream: np.ndarray, max_length: int) -> np.ndarray:
    """[R, max_length]: the stream cut into whole rows (the last partial row dropped, as LAPE does)."""
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    whole = len(stream) // max_length * max_length
    return np.asarray(stream[:whole], np.int32).reshape(-1, max_length)


def corpus_rows(tokenizer, corpus: Mapping, max_length: int, max_tokens: int | None = None) -> dict[str, np.ndarray]:
    """{language: [R, max_length] token ids}; a language with fewer than max_length tokens is an error."""
    if not corpus:
        raise ValueError("the corpus is empty: give {language: [documents]} or {language: token ids}")
    rows = {lang: cut_rows(token_stream(tokenizer, entry, max_tokens), max_length) for lang, entry in corpus.items()}
    short = [lang for lang, r in rows.items() if not len(r)]
    if short:
        raise ValueError(f"corpus languages {short} have fewer than max_length={max_length} tokens: give more "
                         "text or a smaller max_length")
    return rows


def rows_digest(rows: Mapping[str, np.ndarray]) -> str:
    """sha256 over the languages and their token rows (what the model reads, in order)."""
    digest = hashlib.sha256()
    for lang, r in rows.items():
        digest.update(f"{lang}:{r.shape};".encode())
        digest.update(np.ascontiguousarray(r, np.int32).tobytes())
    return digest.hexdigest()
