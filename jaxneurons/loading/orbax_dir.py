"""A model directory written by `jaxneurons.alignment`: jaxneurons_checkpoint.json + orbax params (+ tokenizer).

Layout:
  jaxneurons_checkpoint.json  {"format": 1, "model_config": ModelConfig fields, "tokenizer_source": str|null,
                               "param_dtype": str}
  params/                     orbax StandardCheckpointer tree (the LanguageModel.params pytree)
  tokenizer/                  (optional) the tokenizer's save_pretrained files; else tokenizer_source (a zoo
                              name or a checkpoint path) is loaded to rebuild it
"""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np

from jaxneurons.lm import LanguageModel
from jaxneurons.models.config import ModelConfig, RopeConfig

META = "jaxneurons_checkpoint.json"


def _tuples(value):
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_to_dict(config: ModelConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(d: dict) -> ModelConfig:
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    kwargs = {k: _tuples(v) for k, v in d.items() if k in fields}
    for key in ("rope", "local_rope"):
        if isinstance(d.get(key), dict):
            kwargs[key] = RopeConfig(**{k: _tuples(v) for k, v in d[key].items()})
    return ModelConfig(**kwargs)


def save_orbax_model(directory: str, config: ModelConfig, params, tokenizer=None,
                     tokenizer_source: str | None = None) -> str:
    """Write `directory` so that `jn.load_model(directory)` returns these params."""
    import orbax.checkpoint as ocp

    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(directory, "params"), params, force=True)
    checkpointer.wait_until_finished()
    saved_tokenizer = False
    if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
        try:
            tokenizer.save_pretrained(os.path.join(directory, "tokenizer"))
            saved_tokenizer = True
        except Exception:  # noqa: BLE001 - fall back to tokenizer_source
            saved_tokenizer = False
    meta = {"format": 1, "model_config": config_to_dict(config), "tokenizer_source": tokenizer_source,
            "tokenizer_saved": saved_tokenizer, "param_dtype": str(jax.tree.leaves(params)[0].dtype)}
    with open(os.path.join(directory, META), "w") as f:
        json.dump(meta, f, indent=1)
    return directory


def read_saved_config(source: str) -> ModelConfig:
    """The directory's model config (no weights read)."""
    with open(os.path.join(source, META)) as f:
        return config_from_dict(json.load(f)["model_config"])


def load_orbax_model(source: str, param_dtype, compute_dtype) -> LanguageModel:
    import orbax.checkpoint as ocp

    source = os.path.abspath(source)
    with open(os.path.join(source, META)) as f:
        meta = json.load(f)
    config = config_from_dict(meta["model_config"])
    params = ocp.StandardCheckpointer().restore(os.path.join(source, "params"))
    params = jax.tree.map(lambda x: jax.numpy.asarray(np.asarray(x), param_dtype), params)
    return LanguageModel(config, params, saved_tokenizer(source, meta), compute_dtype, source)


def saved_source(source: str) -> str | None:
    """The model source the directory was saved from (its tokenizer_source) when that still resolves, else None."""
    with open(os.path.join(source, META)) as f:
        origin = json.load(f).get("tokenizer_source")
    if not origin:
        return None
    from jaxneurons.loading.zoo import zoo_names

    return origin if os.path.exists(origin) or origin in zoo_names() else None


def saved_tokenizer(source: str, meta: dict | None = None):
    """The directory's tokenizer: its tokenizer/ files, else its tokenizer_source's tokenizer (no weights loaded)."""
    if meta is None:
        with open(os.path.join(source, META)) as f:
            meta = json.load(f)
    tok_dir = os.path.join(source, "tokenizer")
    if meta.get("tokenizer_saved") and os.path.isdir(tok_dir):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(tok_dir)
    if meta.get("tokenizer_source"):
        from jaxneurons.loading import load_tokenizer

        return load_tokenizer(meta["tokenizer_source"])
    return None
