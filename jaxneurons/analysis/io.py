"""Atomic file writers: a long run must never leave a half-written result behind."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temp path in the target's directory; on success fsync it and os.replace it onto `path`.

    On error the temp file is removed and `path` keeps its old content (or stays absent).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; results are files like any other (0644)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        raise
    _fsync_directory(directory)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself (best effort: not every platform can open a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def to_jsonable(obj: Any) -> Any:
    """Plain-Python copy of obj: arrays (NumPy or JAX) become lists, non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "__array__") and not isinstance(obj, (str, bytes)):
        arr = np.asarray(obj)
        return to_jsonable(arr.tolist()) if arr.ndim else to_jsonable(arr.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (os.PathLike,)):
        return os.fspath(obj)
    return obj


def write_text_atomic(path: str | os.PathLike, text: str) -> str:
    """Write text to `path` atomically; returns the path."""
    with atomic_path(path) as tmp_path, open(tmp_path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> str:
    """Write obj as standard JSON atomically (arrays -> lists, NaN/inf -> null); returns the path."""
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False, ensure_ascii=False)
    return write_text_atomic(path, text + "\n")
