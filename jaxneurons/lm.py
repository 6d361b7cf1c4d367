"""`LanguageModel`: a loaded model (config, params, tokenizer) with jitted logits and neuron readouts."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.models.config import ModelConfig
from jaxneurons.models.decoder import Decoder, Intervention, Record

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def as_dtype(name) -> Any:
    if isinstance(name, str):
        if name not in DTYPES:
            raise ValueError(f"unknown dtype {name!r}; choose from {sorted(DTYPES)}")
        return DTYPES[name]
    return name


@functools.partial(jax.jit, static_argnames=("decoder",))
def run_decoder(decoder: Decoder, params, input_ids, mask, record_index=None, intervention=None,
                logit_positions=None):
    """One jitted forward; returns (logits or None, {quantity: [L, ...]} recorded neurons)."""
    out, state = decoder.apply({"params": params}, input_ids, mask, record_index, intervention,
                               logit_positions, mutable=["intermediates"])
    return out, sown_values(state)


def sown_values(state) -> dict:
    """{name: [L, ...]} of everything the layers sowed (neurons; keys, values and residuals when caching)."""
    layers = state.get("intermediates", {}).get("layers", {})
    found = {}
    for scope in (layers, layers.get("attn", {}), layers.get("mlp", {})):
        found.update({name: value[0] for name, value in scope.items() if isinstance(value, tuple)})
    return found


@dataclasses.dataclass
class LanguageModel:
    """A decoder with its weights and tokenizer. Params are a plain pytree: jit, grad, shard and save it."""

    config: ModelConfig
    params: Any
    tokenizer: Any = None
    compute_dtype: Any = jnp.float32
    source: str = ""

    def decoder(self, record: Record = Record(), logits: str = "all") -> Decoder:
        return Decoder(self.config, dtype=self.compute_dtype, param_dtype=self.param_dtype, record=record,
                       logits=logits)

    @property
    def param_dtype(self):
        return jax.tree.leaves(self.params)[0].dtype

    def forward(self, input_ids, attention_mask=None, record: Record = Record(), record_index=None,
                logits: str = "all", logit_positions=None, intervention: Intervention | None = None):
        """The general forward: (logits, {quantity: neurons [L, B, F] or [L, B, T, F]}).

        record_index [B]: where positions="last" reads (default: each row's last real token);
        logits: "all" [B, T, V], "last" [B, V], "positions" [B, K, V] at logit_positions [B, K], or "none".
        """
        ids, mask = _ids_and_mask(input_ids, attention_mask)
        return run_decoder(self.decoder(record, logits), self.params, ids, mask, record_index, intervention,
                           logit_positions)

    def logits(self, input_ids, attention_mask=None, intervention: Intervention | None = None) -> jax.Array:
        """Float32 logits [B, T, V]."""
        ids, mask = _ids_and_mask(input_ids, attention_mask)
        out, _ = run_decoder(self.decoder(), self.params, ids, mask, None, intervention)
        return out

    def neurons(self, input_ids, attention_mask=None, positions: str = "last", quantity: str = "act",
                intervention: Intervention | None = None) -> jax.Array:
        """FFN neurons: [B, L, F] at each row's last real token ("last") or max over real tokens ("max"),
        [B, T, L, F] at every token ("all")."""
        ids, mask = _ids_and_mask(input_ids, attention_mask)
        decoder = self.decoder(Record((quantity,), positions), logits="none")
        _, sown = run_decoder(decoder, self.params, ids, mask, None, intervention)
        value = sown[quantity]  # [L, B, F] or [L, B, T, F]
        return jnp.moveaxis(value, 0, 2 if positions == "all" else 1)

    def encode(self, texts: Sequence[str], padding_side: str = "right", pad_to_multiple_of: int = 1,
               add_special_tokens: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask [B, T] (numpy), padded on the chosen side."""
        if self.tokenizer is None:
            raise ValueError(f"{self.source or 'this model'} has no tokenizer; pass token ids instead.")
        rows = [self.tokenizer(t, add_special_tokens=add_special_tokens)["input_ids"] for t in texts]
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
