"""Models by Hugging Face hub id ("org/name", "org/name@revision"), through ``huggingface_hub``'s shared cache.

``snapshot(repo_id, revision)`` returns the cached snapshot folder of a model repo (a Hugging Face checkpoint
directory, loaded as any other), downloading only the config, tokenizer and safetensors weight files when it is
not cached. ``HF_HUB_OFFLINE=1`` (read at each call) means cache only. The cache is ``$HF_HUB_CACHE`` (else
``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``), the one transformers and datasets share. A failure is one
line naming the id, the cache folder and what to do.
"""

from __future__ import annotations

import functools
import os
import re

# What a checkpoint folder needs: config, tokenizer and the transformers-named safetensors weights (not pickles,
# nor the copies some repos keep under other names, e.g. consolidated.safetensors, original/).
ALLOW_PATTERNS = (
    "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "chat_template.jinja",
    "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json",
)
# org/name as the hub spells ids, optionally @revision; a path to a file (.gguf, .json, ...) is never an id.
_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(@[\w./-]+)?$")
_FILE_SUFFIXES = (".gguf", ".safetensors", ".bin", ".json", ".pt", ".pth")
_TRUE = {"1", "ON", "YES", "TRUE"}


def is_hub_id(source: str) -> bool:
    """True when ``source`` reads as "org/name" or "org/name@revision" (the caller checks it is no local path)."""
    return bool(_ID.match(source)) and not source.split("@")[0].lower().endswith(_FILE_SUFFIXES)


def split_revision(source: str, revision: str | None = None) -> tuple[str, str | None]:
    """("org/name", revision) of "org/name@revision"; ValueError when it disagrees with the ``revision`` given."""
    repo_id, _, pinned = source.partition("@")
    if pinned and revision is not None and pinned != revision:
        raise ValueError(f"{source!r} names revision {pinned!r} but revision={revision!r} was given: give one")
    return repo_id, pinned or revision


def cache_dir() -> str:
    """The hub cache folder, from the environment at call time (as huggingface_hub reads it at import)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return os.path.expanduser(os.path.expandvars(os.environ[name]))
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.path.expandvars(os.environ["HF_HOME"])), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to 1/ON/YES/TRUE now, or when huggingface_hub was imported."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE")
    if value is not None:
        return value.upper() in _TRUE
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def snapshot(source: str, revision: str | None = None) -> str:
    """The local snapshot folder of hub model ``source`` ("org/name" or "org/name@revision") at ``revision``
    (default: main), from the cache or downloaded into it; FileNotFoundError (one line) when it cannot be had."""
    repo_id, revision = split_revision(source, revision)
    return _snapshot(repo_id, revision, cache_dir(), offline())


@functools.lru_cache(maxsize=None)
def _snapshot(repo_id: str, revision: str | None, cache: str, local_only: bool) -> str:
    """Resolved once per process and setting: the launcher reads config, tokenizer and weights in turn."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, revision=revision, cache_dir=cache, local_files_only=local_only,
                                 allow_patterns=list(ALLOW_PATTERNS))
    except Exception as e:  # noqa: BLE001 - the hub's errors differ by version; each becomes one line below
        raise FileNotFoundError(_message(e, repo_id, revision, cache, local_only)) from e


def _message(error: Exception, repo_id: str, revision: str | None, cache: str, local_only: bool) -> str:
    """One line: what failed for which id (which may be a mistyped local path), the cache folder, what to do."""
    name = type(error).__name__
    at = f" at revision {revision!r}" if revision else ""
    detail = str(error).strip().splitlines()[0] if str(error).strip() else name
    head = f"{repo_id!r}{at} is no local path or zoo model, and as a Hugging Face hub id it"
    if name == "HFValidationError":
        return f"{head} is not valid ({detail}): give org/name or an existing path"
    if name in ("RepositoryNotFoundError", "GatedRepoError"):
        return (f"{head} was not found or is gated/private ({name}): check the id or path, or log in "
                "(huggingface-cli login, or set HF_TOKEN) for a model you have access to")
    if name == "RevisionNotFoundError":
        return f"{head} has no revision {revision!r}: check the branch, tag or commit"
    if local_only:
        return (f"{head} is not in the cache {cache} while HF_HUB_OFFLINE=1 forbids downloading: download it once "
                f"online (huggingface-cli download {repo_id}), point HF_HUB_CACHE at a cache that holds it, or pass "
                "a checkpoint folder")
    return (f"{head} could not be downloaded into {cache} ({name}: {detail}): check the network and the id or "
            "path, or download it elsewhere into that cache and set HF_HUB_OFFLINE=1")
