"""`activation_stats`: how often each FFN neuron fires (act > 0) over a monolingual corpus per language.

LAPE (Tang et al., ACL 2024, activation.py) hooks the activation function's output (act = act_fn(gate x) of a
gated MLP, GELU(W_in x + b) for BLOOM) and counts, per layer and neuron, the tokens where it is > 0, with n the
number of tokens. Here the count, the sum and the sum of squares are reduced inside one jitted step per batch
of rows (all of one shape), so only [L, F] sums leave the device, never the [B, T, L, F] activations.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxneurons import distributed
from jaxneurons.lape.corpus import corpus_rows, rows_digest
from jaxneurons.models.decoder import Decoder, Record
from jaxneurons.models.output import forward

STATS_FILE = "activation_stats.npz"


@dataclasses.dataclass(frozen=True, eq=False)
class ActivationStats:
    """Per language (axis 0, order of `languages`), layer and neuron: over_zero [N, L, F] (tokens with act > 0),
    n [N] (tokens read), act_sum and act_sq_sum [N, L, F] (float64; None when not asked for)."""

    languages: tuple[str, ...]
    over_zero: np.ndarray
    n: np.ndarray
    act_sum: np.ndarray | None = None
    act_sq_sum: np.ndarray | None = None
    max_length: int = 0
    corpus_digest: str = ""
    model: str = ""

    @property
    def probs(self) -> np.ndarray:
        """[N, L, F] activation probability over_zero / n of every language."""
        return self.over_zero / self.n[:, None, None].astype(np.float64)

    @property
    def mean(self) -> np.ndarray:
        return self._need("act_sum") / self.n[:, None, None]

    @property
    def variance(self) -> np.ndarray:
        """[N, L, F] population variance of act over the tokens read."""
        return self._need("act_sq_sum") / self.n[:, None, None] - self.mean ** 2

    def _need(self, name: str) -> np.ndarray:
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"these stats have no {name}: run activation_stats(..., moments=True)")
        return value

    def to_pandas(self):
        """One row per language and layer: tokens, mean activation probability, neurons that never fired."""
        import pandas as pd

        probs = self.probs
        return pd.DataFrame([{"language": lang, "layer": l, "tokens": int(self.n[i]),
                              "mean_activation_probability": float(probs[i, l].mean()),
                              "never_active": int((self.over_zero[i, l] == 0).sum())}
                             for i, lang in enumerate(self.languages) for l in range(probs.shape[1])])

    def save(self, path) -> str:
        arrays = {"languages": np.asarray(self.languages), "over_zero": self.over_zero, "n": self.n,
                  "max_length": np.asarray(self.max_length), "corpus_digest": np.asarray(self.corpus_digest),
                  "model": np.asarray(self.model)}
        if self.act_sum is not None:
            arrays.update(act_sum=self.act_sum, act_sq_sum=self.act_sq_sum)
        from jaxneurons.analysis.io import atomic_path

        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return str(path)

    @classmethod
    def load(cls, path) -> "ActivationStats":
        with np.load(path, allow_pickle=False) as d:
            return cls(tuple(str(x) for x in d["languages"]), d["over_zero"], d["n"], d.get("act_sum"),
                       d.get("act_sq_sum"), int(d["max_length"]), str(d["corpus_digest"]), str(d["model"]))


@functools.partial(jax.jit, static_argnames=("decoder",))
def count_step(decoder: Decoder, params, ids_bt: jax.Array, valid_b: jax.Array) -> dict:
    """{over_zero int32 [L, F], act_sum, act_sq_sum float32 [L, F]} of one batch of full rows (act > 0 as LAPE
    counts; rows with valid_b False, the last batch's filler, count for nothing)."""
    out = forward(decoder, params, ids_bt, jnp.ones_like(ids_bt))
    act = out.activations["act"].astype(jnp.float32)  # [B, T, L, F], reduced here: never leaves the device
    weight = valid_b.astype(jnp.float32)[:, None, None, None]
    return {"over_zero": jnp.sum((act > 0) & valid_b[:, None, None, None], axis=(0, 1), dtype=jnp.int32),
            "act_sum": jnp.sum(act * weight, axis=(0, 1)), "act_sq_sum": jnp.sum(act * act * weight, axis=(0, 1))}


def activation_stats(lm, corpus: Mapping, max_length: int = 512, *, max_tokens: int | None = None,
                     batch_size: int = 8, moments: bool = True, progress: bool = True, mesh=None
                     ) -> ActivationStats:
    """Count, per language of `corpus` ({lang: [documents]} or {lang: 1-D token ids}), how often each FFN
    neuron's act is > 0 over the corpus cut into rows of max_length tokens (`corpus.corpus_rows`; at most
    max_tokens per language, rounded down to whole rows). batch_size rows per step, split over the mesh's
    `data` axis (`distributed.Placement`; default: `distributed.default_mesh()`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = corpus_rows(lm.tokenizer, corpus, max_length, max_tokens)
    return stats_of_rows(lm, rows, batch_size=batch_size, moments=moments, progress=progress, mesh=mesh)


def stats_of_rows(lm, rows: Mapping[str, np.ndarray], *, batch_size: int = 8, moments: bool = True,
                  progress: bool = True, mesh=None) -> ActivationStats:
    """`activation_stats` of rows already cut ({lang: [R, T] ids})."""
    placement = distributed.placement(mesh)
    distributed.require_process_local(placement.mesh, "LAPE activation statistics")
    batch_size = placement.round_batch_size(batch_size)
    decoder = lm.decoder(Record(("act",), "every"), logits="none")
    params = placement.params(lm.params)
    shape = (len(rows), lm.config.num_layers, lm.config.neurons_per_layer)
    totals = {"over_zero": np.zeros(shape, np.int64), "act_sum": np.zeros(shape), "act_sq_sum": np.zeros(shape)}
    total_tokens = sum(r.size for r in rows.values())
    bar = tqdm(total=total_tokens, unit="tok", unit_scale=True, disable=not progress, dynamic_ncols=True,
               desc=f"activation stats, {len(rows)} languages")
    began = time.perf_counter()
    try:
        for i, (lang, r) in enumerate(rows.items()):
            for start in range(0, len(r), batch_size):
                chunk = r[start:start + batch_size]
                ids = np.zeros((batch_size, r.shape[1]), np.int32)
                ids[:len(chunk)] = chunk
                valid = np.arange(batch_size) < len(chunk)
                with placement.context():
                    counts = count_step(decoder, params, *placement.batch((ids, valid)))
                for key, value in jax.device_get(counts).items():
                    totals[key][i] += value
                bar.update(chunk.size)
                bar.set_postfix({"lang": lang, "tok/s": f"{bar.n / max(time.perf_counter() - began, 1e-9):.0f}"},
                                refresh=False)
    finally:
        bar.close()
    return ActivationStats(tuple(rows), totals["over_zero"], np.array([r.size for r in rows.values()], np.int64),
                           totals["act_sum"] if moments else None, totals["act_sq_sum"] if moments else None,
                           int(next(iter(rows.values())).shape[1]), rows_digest(rows), lm.source or lm.config.family)
