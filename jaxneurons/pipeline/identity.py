"""A run's identity: what a checkpoint must match to be resumed, the same rule for every pass.

identity = the pass's frozen config (fields that change results) + a fingerprint of the weights + a digest of
the examples as the model reads them (ids and token ids). A flat dict of strings and numbers, so that a
refused resume can name every field that differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence

import jax
import numpy as np

from jaxneurons.pipeline.errors import ResumeMismatchError

_FINGERPRINTS: dict[int, tuple[object, str]] = {}  # id(params) -> (params, digest): hashed once per run


def weights_fingerprint(params) -> str:
    """sha256 over every parameter's path, dtype, shape and bytes (computed once per params object)."""
    cached = _FINGERPRINTS.get(id(params))
    if cached is not None and cached[0] is params:
        return cached[1]
    digest = hashlib.sha256()
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        array = np.ascontiguousarray(jax.device_get(leaf))
        digest.update(f"{jax.tree_util.keystr(path)}:{array.dtype}:{array.shape};".encode())
        digest.update(array.view(np.uint8).reshape(-1).data)
    if len(_FINGERPRINTS) >= 4:  # a run hashes a model or two (alignment: base and trained)
        _FINGERPRINTS.pop(next(iter(_FINGERPRINTS)))
    _FINGERPRINTS[id(params)] = (params, digest.hexdigest())
    return _FINGERPRINTS[id(params)][1]


def examples_digest(examples: Sequence, rows: Sequence) -> str:
    """sha256 of the example ids and their tokenized rows (what the model reads, in order)."""
    return hashlib.sha256(repr(([ex.id for ex in examples], list(rows))).encode()).hexdigest()


def config_fields(config) -> dict:
    """The config's fields that change results, as `config.<name>` (metadata identity=False: left out)."""
    return {f"config.{f.name}": _plain(getattr(config, f.name)) for f in dataclasses.fields(config)
            if f.metadata.get("identity", True)}


def pass_identity(pass_name: str, config, lm, examples: Sequence, rows: Sequence, **extra) -> dict:
    """The identity of one pass over examples with a model (extra: facts of the pass, e.g. the task)."""
    return {"pass": pass_name, **config_fields(config), "weights": weights_fingerprint(lm.params),
            "model_config": repr(lm.config), "compute_dtype": str(lm.compute_dtype),
            "examples": examples_digest(examples, rows), **{k: _plain(v) for k, v in extra.items()}}


def differences(saved: dict, identity: dict) -> list[str]:
    """The fields whose values differ (or exist on one side only), sorted."""
    return sorted(k for k in set(saved) | set(identity) if saved.get(k) != identity.get(k))


def check_identity(where: str, saved: dict, identity: dict) -> None:
    """ResumeMismatchError naming the differing fields unless saved == identity."""
    differ = differences(saved, identity)
    if differ:
        raise ResumeMismatchError(f"{where} belongs to another run (differs in: {', '.join(differ)}); resume it "
                                  "with the same settings, or start over with --overwrite or another --output_dir")


def _plain(value):
    """JSON-stable form: tuples as lists, floats as floats."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def corpus_fields(rows_by_lang) -> dict:
    """A monolingual corpus as the model reads it ({language: [R, T] token ids}): its digest and tokens per
    language, as `corpus.*` identity fields."""
    from jaxneurons.lape.corpus import rows_digest

    return {"corpus.digest": rows_digest(rows_by_lang),
            **{f"corpus.tokens.{lang}": int(np.asarray(r).size) for lang, r in rows_by_lang.items()}}
