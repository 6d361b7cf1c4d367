"""`load_model(source)`: a zoo name, a Hugging Face checkpoint directory, a .gguf file, an orbax checkpoint, or a
Hugging Face hub id ("org/name", through the shared HF cache; `loading/hub.py`)."""

from __future__ import annotations

import os

import jax
import numpy as np

from jaxneurons import distributed
from jaxneurons.lm import LanguageModel, as_dtype
from jaxneurons.loading import hf_dir, hub
from jaxneurons.loading.convert import CheckpointError, build_params, hf_targets
from jaxneurons.models.config import ModelConfig, UnsupportedConfigError, from_hf_config

__all__ = ["load_model", "load_tokenizer", "read_model_config", "read_max_context", "CheckpointError",
           "UnsupportedConfigError"]


def load_model(source: str, dtype="float32", compute_dtype=None, allow_pickle: bool = False,
               tokenizer: str | None = None, revision: str | None = None) -> LanguageModel:
    """Load weights into a LanguageModel (offline, except a hub id not yet in the cache).

    source: a zoo name (see `jaxneurons.loading.zoo.zoo_names()`), a directory with config.json and
    *.safetensors, a .gguf file, a directory written by `jaxneurons.alignment` (orbax), or, when it is none of
    those, a Hugging Face hub id "org/name" (or "org/name@revision"): its config, tokenizer and safetensors
    files from the shared HF cache, downloaded there first unless HF_HUB_OFFLINE=1.
    dtype: weight dtype ("float32" or "bfloat16"); compute_dtype: activation dtype (default: dtype).
    allow_pickle: permit pytorch_model.bin (a pickle runs code when loaded).
    tokenizer: where to take the tokenizer from instead (zoo name, .gguf, HF or orbax dir), e.g. for a
    checkpoint directory that ships no tokenizer files.
    revision: of a hub id, the branch, tag or commit (default: main).
    """
    lm = _load_weights(source, dtype, compute_dtype, allow_pickle, revision)
    if tokenizer is not None:
        lm.tokenizer = load_tokenizer(tokenizer)
        if lm.tokenizer is None:
            raise FileNotFoundError(f"tokenizer source {tokenizer!r} has no tokenizer files.")
    return lm


def read_model_config(source: str, revision: str | None = None) -> ModelConfig:
    """The config of a model source without its weights (cheap: to check settings before the slow load)."""
    source = _resolve(source, revision=revision)
    _check_not_a_weights_file(source)
    if source.endswith(".gguf"):
        from jaxneurons.loading.gguf_reader import read_gguf

        return _config_for(read_gguf(source).hf_config, source)
    if _is_saved(source):
        from jaxneurons.loading.orbax_dir import read_saved_config

        return read_saved_config(source)
    return _config_for(hf_dir.read_config(source), os.path.join(source, "config.json"))


def read_max_context(source: str, revision: str | None = None) -> int | None:
    """The longest sequence (tokens) the model's config states it was trained for, without its weights; None when
    it states none (BLOOM's ALiBi). A jaxneurons model directory has the context of the model it was saved from
    (its tokenizer_source)."""
    source = _resolve(source, revision=revision)
    _check_not_a_weights_file(source)
    if source.endswith(".gguf"):
        from jaxneurons.loading.gguf_reader import read_gguf

        value = read_gguf(source).hf_config.get("max_position_embeddings")
    elif _is_saved(source):
        from jaxneurons.loading.orbax_dir import saved_source

        origin = saved_source(source)
        return read_max_context(origin) if origin is not None and origin != source else None
    else:
        value = hf_dir.read_config(source).get("max_position_embeddings")
    return int(value) if isinstance(value, (int, float)) and value > 0 else None


def has_tokenizer(source: str, revision: str | None = None) -> bool:
    """False only for a checkpoint directory (or hub model) that ships no tokenizer files (nor names a tokenizer
    source)."""
    if _is_hub(source):
        source = _resolve(source, revision=revision)
    if not os.path.isdir(source) or _is_saved(source):
        return True
    return any(os.path.exists(os.path.join(source, name)) for name in hf_dir.TOKENIZER_FILES)


def _load_weights(source: str, dtype, compute_dtype, allow_pickle: bool, revision: str | None) -> LanguageModel:
    param_dtype = as_dtype(dtype)
    compute = as_dtype(compute_dtype) if compute_dtype is not None else param_dtype
    path = _resolve(source, revision=revision)  # a local path: the source itself
    if path.endswith(".gguf"):
        return _from_gguf(path, param_dtype, compute, name=source)
    if path.endswith(".bin") and not allow_pickle:
        raise CheckpointError(f"{path} is a pickled PyTorch checkpoint; loading a pickle runs arbitrary code. "
                              "Convert it to safetensors, or pass allow_pickle=True if you trust its origin.")
    _check_not_a_weights_file(path)
    if _is_saved(path):
        from jaxneurons.loading.orbax_dir import load_orbax_model

        return load_orbax_model(path, param_dtype, compute)
    name = _hub_name(source, revision) if path != source else source
    return _from_hf_dir(path, param_dtype, compute, allow_pickle, name)


def _resolve(source: str, role: str = "", revision: str | None = None) -> str:
    """`source` when it exists, else the file of the zoo model it names, else the cached snapshot folder of the
    hub id it reads as; FileNotFoundError otherwise."""
    from jaxneurons.loading import zoo

    if revision is not None and not _is_hub(source):
        raise ValueError(f"revision={revision!r} is for Hugging Face hub ids; {source!r} is a local path or zoo "
                         "model")
    if os.path.exists(source):
        return source
    if source in zoo.zoo_names():
        return zoo.resolve_zoo(source)
    if hub.is_hub_id(source):
        return hub.snapshot(source, revision)
    raise FileNotFoundError(f"{role}{source!r} is neither a zoo model ({', '.join(zoo.zoo_names())}), an existing "
                            "path to a checkpoint directory or .gguf file, nor a Hugging Face hub id (org/name).")


def _is_hub(source: str) -> bool:
    """A source that reads as a hub id and is no local path or zoo name (those keep their meaning)."""
    from jaxneurons.loading import zoo

    return not os.path.exists(source) and source not in zoo.zoo_names() and hub.is_hub_id(source)


def _hub_name(source: str, revision: str | None) -> str:
    """What a hub model is called (LanguageModel.source): "org/name", with "@revision" when one was asked for,
    so that it loads the same again (e.g. as a saved model's tokenizer source)."""
    repo_id, revision = hub.split_revision(source, revision)
    return f"{repo_id}@{revision}" if revision else repo_id


def _check_not_a_weights_file(path: str) -> None:
    """CheckpointError when `path` is a file other than a .gguf: a checkpoint is the folder holding it."""
    if os.path.isfile(path) and not path.endswith(".gguf"):
        folder = os.path.dirname(os.path.abspath(path))
        raise CheckpointError(f"{path} is a file, not a model: pass the checkpoint folder that holds it with its "
                              f"config.json ({folder}), or a .gguf file")


def _is_saved(source: str) -> bool:
    """A jaxneurons (orbax) model directory."""
    from jaxneurons.loading.orbax_dir import META

    return os.path.isdir(source) and os.path.exists(os.path.join(source, META))


def _from_hf_dir(directory, param_dtype, compute, allow_pickle, name: str) -> LanguageModel:
    hf = hf_dir.read_config(directory)
    config = _config_for(hf, os.path.join(directory, "config.json"))
    files = hf_dir.shard_files(directory, allow_pickle)
    params = build_params(config, hf_targets(config, hf_dir.iter_tensors(files)), _numpy_dtype(param_dtype),
                          directory)
    return LanguageModel(config, _to_device(params), hf_dir.load_tokenizer(directory), compute, name)


def _from_gguf(path, param_dtype, compute, name) -> LanguageModel:
    from jaxneurons.loading.gguf_reader import read_gguf

    checkpoint = read_gguf(path)
    config = _config_for(checkpoint.hf_config, path)
    params = build_params(config, checkpoint.targets(np.float32), _numpy_dtype(param_dtype), path)
    return LanguageModel(config, _to_device(params), checkpoint.tokenizer(), compute, name)


def _config_for(hf: dict, where: str) -> ModelConfig:
    try:
        return from_hf_config(hf)
    except UnsupportedConfigError as e:
        raise UnsupportedConfigError(f"{where}: {e}") from None
    except KeyError as e:
        raise UnsupportedConfigError(f"{where}: the config lacks the attribute {e.args[0]!r}.") from None


def _numpy_dtype(dtype):
    return np.dtype(dtype)


def _to_device(params: dict, prefix: str = "") -> dict:
    """The numpy tree on the default device, in place and leaf by leaf: each numpy array is dropped once its copy
    is on the device, so the weights are never held twice (Gemma 3 270M: a 1.1 GB spike at the end of the load).
    With a default mesh (the launcher's --mesh) each leaf goes straight to its `distributed.place_param` split:
    a model larger than one device (or, across processes, than one host's devices) loads."""
    mesh = distributed.default_mesh()
    for key, value in params.items():
        if isinstance(value, dict):
            params[key] = _to_device(value, f"{prefix}{key}/")
        else:
            placed = jax.device_put(value) if mesh is None else distributed.place_param(f"{prefix}{key}", value, mesh)
            params[key] = placed.block_until_ready()
    return params


def load_tokenizer(source: str, revision: str | None = None):
    """The tokenizer of a model source (zoo name, .gguf file, HF or orbax directory, hub id) without loading its
    weights; None when the source has none."""
    source = _resolve(source, "tokenizer source ", revision)
    if source.endswith(".gguf"):
        from jaxneurons.loading.gguf_reader import read_gguf

        return read_gguf(source).tokenizer()
    if _is_saved(source):
        from jaxneurons.loading.orbax_dir import saved_tokenizer

        return saved_tokenizer(source)
    return hf_dir.load_tokenizer(source)
