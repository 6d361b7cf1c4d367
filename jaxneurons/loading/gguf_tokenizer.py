"""The tokenizer of a GGUF file: built once by transformers from the metadata, then reloaded from the cache.

transformers rebuilds a GGUF tokenizer from its vocabulary on every load: 37 s for Gemma 3's 262k tokens
on a 2-core CPU, against 6 s to reload the same tokenizer saved with ``save_pretrained``. The saved copy
lives under ``<cache>/tokenizers/<key>`` (the cache of :func:`jaxneurons.loading.zoo.cache_dir`), where the
key digests the file's absolute path, size and modification time and the transformers version, so a
changed file or another transformers gets a fresh build. The copy is written to a temporary folder and
renamed into place, so an interrupted save leaves nothing half-written; a cache that cannot be written
only costs the rebuild.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile


def gguf_tokenizer(path: str):
    """transformers' tokenizer for the GGUF file at `path`, from the cache when it has been built before."""
    if importlib.util.find_spec("torch") is None:
        raise ImportError(f"{path}: transformers builds GGUF tokenizers only when PyTorch is installed "
                          "(its GGUF reader imports torch): pip install torch (the CPU build is enough).")
    from transformers import AutoTokenizer

    saved = cached_path(path)
    if os.path.isdir(saved):
        return AutoTokenizer.from_pretrained(saved)
    directory, basename = os.path.split(os.path.abspath(path))
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=basename)
    _save(tokenizer, saved)
    return tokenizer


def cached_path(path: str) -> str:
    """Where the tokenizer of the GGUF file at `path` is (or would be) saved."""
    import transformers

    from jaxneurons.loading.zoo import cache_dir

    stat = os.stat(path)
    key = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    name = f"{os.path.basename(path)}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return str(cache_dir() / "tokenizers" / name)


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _save(tokenizer, target: str) -> None:
    parent = os.path.dirname(target)
    try:
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(dir=parent, prefix=".partial-")
        tokenizer.save_pretrained(staging)
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's folder is 0700: make it a folder like any other
        os.replace(staging, target)
    except OSError as e:  # unwritable cache, or another process renamed its copy first
        logging.getLogger(__name__).info("GGUF tokenizer not cached at %s: %s", target, e)
        if "staging" in locals():
            shutil.rmtree(staging, ignore_errors=True)
