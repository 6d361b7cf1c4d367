"""A Hugging Face checkpoint directory: config.json, one or many *.safetensors, tokenizer files. Offline."""

from __future__ import annotations

import glob
import json
import os
from typing import Iterator

import numpy as np

from jaxneurons.loading.convert import CheckpointError

_PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def read_config(directory: str) -> dict:
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{directory} has no config.json: it is not a Hugging Face checkpoint directory.")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path} is not valid JSON (line {e.lineno}): {e.msg}") from None


def shard_files(directory: str, allow_pickle: bool = False) -> list[str]:
    """The shards an index names (all must exist), else the *.safetensors files, else (with allow_pickle)
    pytorch_model.bin."""
    pickles = [n for n in _PICKLE_NAMES if os.path.exists(os.path.join(directory, n))]
    if pickles and not allow_pickle and not glob.glob(os.path.join(directory, "*.safetensors")):
        raise CheckpointError(
            f"{directory} holds only pickled PyTorch weights ({pickles[0]}). Loading a pickle runs arbitrary code: "
            "convert it to safetensors, or pass allow_pickle=True (--allow_pickle) if you trust its origin.")
    for index in _INDEXES[:1 + allow_pickle]:
        path = os.path.join(directory, index)
        if os.path.exists(path):
            return _indexed_shards(directory, path)
    files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if files:
        return files
    if os.path.exists(os.path.join(directory, "pytorch_model.bin")) and allow_pickle:
        return [os.path.join(directory, "pytorch_model.bin")]
    raise CheckpointError(f"{directory} has no *.safetensors weights.")


def _indexed_shards(directory: str, index: str) -> list[str]:
    with open(index) as f:
        names = sorted(set(json.load(f)["weight_map"].values()))
    missing = [n for n in names if not os.path.exists(os.path.join(directory, n))]
    if missing:
        raise CheckpointError(f"{index} names shards that are missing: {', '.join(missing)}. "
                              "Download them again (e.g. huggingface-cli download ... --include '*.safetensors').")
    return [os.path.join(directory, n) for n in names]


def iter_tensors(files: list[str]) -> Iterator[tuple[str, np.ndarray]]:
    """Stream (name, array) one tensor at a time; bfloat16 arrives as ml_dtypes.bfloat16."""
    from safetensors import SafetensorError, safe_open

    for path in files:
        if path.endswith(".bin"):
            yield from _iter_pickle(path)
            continue
        try:
            with safe_open(path, framework="numpy") as f:
                for name in f.keys():
                    yield name, f.get_tensor(name)
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} could not be read as safetensors ({e}); the file may be truncated or "
                                  "corrupt: download it again.") from None


def _iter_pickle(path: str) -> Iterator[tuple[str, np.ndarray]]:
    import torch  # only reached with allow_pickle=True

    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways (UnpicklingError, EOFError, ...)
        raise CheckpointError(f"{path} could not be read as a PyTorch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else 'no detail'}); the file may be truncated or "
                              "corrupt: download it again.") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a state dict of tensors: it is no "
                              "model checkpoint.")
    for name, tensor in state.items():
        yield name, tensor.float().numpy()


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def load_tokenizer(directory: str):
    """The directory's tokenizer, or None when it ships no tokenizer files."""
    if not any(os.path.exists(os.path.join(directory, n)) for n in TOKENIZER_FILES):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory)
