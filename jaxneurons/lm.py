"""`LanguageModel`: a loaded model (config, params, tokenizer) with jitted logits, activation caches and
patching, and token helpers; every output in the batch-first layout of `jaxneurons.models.output`."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models.config import ModelConfig
from jaxneurons.models.decoder import NAMES, Decoder, Intervention, Patch, Record
from jaxneurons.models.output import Output, forward

CACHED = tuple(n for n in NAMES if n != "attn_pattern")  # run_with_cache's default: all but the pattern
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def as_dtype(name) -> Any:
    if isinstance(name, str):
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}; choose from {sorted(DTYPES)}")
        return DTYPES[name]
    return name


@dataclasses.dataclass
class LanguageModel:
    """A decoder with its weights and tokenizer. Params are a plain pytree: jit, grad, shard and save it."""

    config: ModelConfig
    params: Any
    tokenizer: Any = None
    compute_dtype: Any = jnp.float32
    source: str = ""

    def decoder(self, record: Record = Record(), logits: str = "every") -> Decoder:
        return Decoder(self.config, dtype=self.compute_dtype, param_dtype=self.param_dtype, record=record,
                       logits=logits)

    @property
    def param_dtype(self):
        return jax.tree.leaves(self.params)[0].dtype

    def forward(self, input_ids, attention_mask=None, *, record: Record = Record(), record_index=None,
                logits: str = "every", logit_index=None, intervention: Intervention | None = None,
                patches: Sequence[Patch] = ()) -> Output:
        """The general forward: an `Output` (logits and the recorded activations, batch first).

        record_index [B]: where Record.at="last" reads (default: each row's last real token);
        logits: "every" [B, T, V], "last" [B, V], "indexed" [B, J, V] at logit_index [B, J], or "none".
        """
        ids, mask = _ids_and_mask(input_ids, attention_mask)
        return forward(self.decoder(record, logits), self.params, ids, mask, record_index=record_index,
                       intervention=intervention, patches=tuple(patches), logit_index=logit_index)

    def logits(self, input_ids, attention_mask=None, intervention: Intervention | None = None,
               patches: Sequence[Patch] = ()) -> jax.Array:
        """Float32 logits [B, T, V]."""
        return self.forward(input_ids, attention_mask, intervention=intervention, patches=patches).logits

    def neurons(self, input_ids, attention_mask=None, at: str = "last", quantity: str = "act",
                intervention: Intervention | None = None, *, positions: str | None = None) -> jax.Array:
        """FFN neurons: [B, L, F] at each row's last real token ("last") or max over real tokens ("max"),
        [B, T, L, F] at every token ("every")."""
        at = _renamed_at(at, positions)
        out = self.forward(input_ids, attention_mask, record=Record((quantity,), at), logits="none",
                           intervention=intervention)
        return out.activations[quantity]

    def run_with_cache(self, inputs, names: Sequence[str] = CACHED, layers: Sequence[int] | None = None,
                       at: str = "every", intervention: Intervention | None = None,
                       patches: Sequence[Patch] = (), *, positions: str | None = None
                       ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(logits [B, T, V], {name: activations}) in the public layout ([B, T, L, ...] at every token).

        inputs: a text, a list of texts (right-padded, special tokens added) or token ids [B, T] / [T];
        names: any of `NAMES`; layers: a subset of layers (None: all); at: every | last | max."""
        if isinstance(inputs, str) or (isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], str)):
            ids, mask = self.encode([inputs] if isinstance(inputs, str) else list(inputs))
        else:
            ids, mask = inputs, None
        record = Record(tuple(names), _renamed_at(at, positions), None if layers is None else tuple(layers))
        out = self.forward(ids, mask, record=record, intervention=intervention, patches=patches)
        return out.logits, out.activations

    def generate(self, prompts, *, max_new_tokens: int, intervention: Intervention | None = None, **settings):
        """Continue prompts (texts, or ids [B, T] with attention_mask=) under an intervention: a
        `jaxneurons.generation.Generation` (.texts, .token_ids, .lengths); settings: see
        `jaxneurons.generation.generate` (temperature, top_p, seed, stop, positions, batch_size, mesh)."""
        from jaxneurons.generation import generate

        return generate(self, prompts, max_new_tokens=max_new_tokens, intervention=intervention, **settings)

    def token_id(self, text: str) -> int:
        """The id of `text` as one token (no special tokens), e.g. token_id(" Paris"); raises if it is not one."""
        ids = self._tokenizer()(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens, not one: {self.str_tokens(ids)}")
        return int(ids[0])

    def str_tokens(self, ids) -> list:
        """Each token id as its text: a list for [T] ids (or a text, tokenized without special tokens), a list
        of lists for [B, T]."""
        if isinstance(ids, str):
            ids = self._tokenizer()(ids, add_special_tokens=False)["input_ids"]
        ids = np.asarray(ids)
        if ids.ndim == 2:
            return [self.str_tokens(row) for row in ids]
        return [self._tokenizer().decode([int(i)]) for i in ids]

    def _tokenizer(self):
        if self.tokenizer is None:
            raise ValueError(f"{self.source or 'this model'} has no tokenizer; pass token ids instead.")
        return self.tokenizer

    def encode(self, texts: Sequence[str], padding_side: str = "right", pad_to_multiple_of: int = 1,
               add_special_tokens: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask [B, T] (numpy), padded on the chosen side."""
        rows = [self._tokenizer()(t, add_special_tokens=add_special_tokens)["input_ids"] for t in texts]
        return pad_rows(rows, self.pad_id, padding_side, pad_to_multiple_of)

    @property
    def pad_id(self) -> int:
        tok_pad = getattr(self.tokenizer, "pad_token_id", None) if self.tokenizer is not None else None
        for candidate in (tok_pad, self.config.pad_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, padding_side: str = "right",
             pad_to_multiple_of: int = 1, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
    longest = max(len(r) for r in rows)
    length = length or -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    ids = np.full((len(rows), length), pad_id, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        span = slice(length - len(row), length) if padding_side == "left" else slice(0, len(row))
        ids[i, span], mask[i, span] = row, 1
    return ids, mask


def _ids_and_mask(input_ids, attention_mask):
    ids = jnp.asarray(input_ids, jnp.int32)
    if ids.ndim == 1:
        ids = ids[None]
    mask = jnp.ones_like(ids) if attention_mask is None else jnp.asarray(attention_mask, jnp.int32).reshape(ids.shape)
    return ids, mask


def _renamed_at(at: str, positions: str | None) -> str:
    """`at`, or the value of the keyword `positions` it replaces (one release; "all" is now "every")."""
    if positions is None:
        return at
    warnings.warn("the keyword positions= is now at= (and 'all' is 'every'); positions= goes in the next release",
                  DeprecationWarning, stacklevel=3)
    return "every" if positions == "all" else positions
