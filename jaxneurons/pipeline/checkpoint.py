"""The one checkpoint format of every pass: named arrays plus the run's identity in one .npz, written atomically.

A checkpoint of another identity is never used: `load_checkpoint` refuses it with the fields that differ.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jaxneurons.analysis import atomic_path
from jaxneurons.pipeline.identity import check_identity

IDENTITY_KEY = "__identity__"
NEXT_BATCH = "next_batch"  # the array of a batch pass's checkpoint that holds the first batch not yet done


def save_checkpoint(path: str | os.PathLike, identity: dict, arrays: dict[str, np.ndarray]) -> str:
    """Write arrays and identity to path atomically (a crash mid-write keeps the previous checkpoint)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
        np.savez(f, **{IDENTITY_KEY: np.array(json.dumps(identity, sort_keys=True))},
                 **{k: np.asarray(v) for k, v in arrays.items()})
    return os.fspath(path)


def read_identity(path: str | os.PathLike) -> dict | None:
    """The identity saved in a checkpoint, None when there is none."""
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data[IDENTITY_KEY])) if IDENTITY_KEY in data.files else {}


def load_checkpoint(path: str | os.PathLike, identity: dict) -> dict[str, np.ndarray] | None:
    """The arrays saved for this identity; None when there is no checkpoint; ResumeMismatchError if another's."""
    saved = read_identity(path)
    if saved is None:
        return None
    check_identity(os.fspath(path), saved, identity)
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files if k != IDENTITY_KEY}
