"""Perplexity of held-out text of each language with each language's LAPE neurons zeroed (Tang et al., ppl.py).

LAPE zeros the activation function's output at the masked neurons; for a gated MLP that is zeroing
m = act * up at those neurons, which is what an `Intervention` with scale 0 on `ffn_hidden` does. Each row's
next-token NLL is the mean over its T - 1 predicted tokens (as ppl.py averages each row's prompt log-probs);
a condition's NLL in a language is the mean over rows, with a 95% bootstrap interval over rows, and its change
from the clean model a paired interval (the same rows). Beside each language's mask runs a random mask of the
same size in every layer (seeded), so an effect can be told from the effect of removing that many neurons.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxneurons import distributed
from jaxneurons.analysis.bootstrap import point_and_ci, resample_counts
from jaxneurons.lape.select import Neurons, neuron_mask
from jaxneurons.models.decoder import Decoder, Intervention
from jaxneurons.models.output import forward
from jaxneurons.pipeline.scoring import token_scores

PPL_FILE = "ppl.json"
CLEAN = "none"


@functools.partial(jax.jit, static_argnames=("decoder",))
def nll_step(decoder: Decoder, params, ids_bt: jax.Array, keep_lf: jax.Array) -> jax.Array:
    """[B] mean next-token NLL of each full row with m zeroed where keep_lf [L, F] is 0."""
    b, t = ids_bt.shape
    scale = jnp.broadcast_to(keep_lf[None], (b, *keep_lf.shape))
    intervention = Intervention(scale, jnp.zeros_like(scale), jnp.ones((b, t), bool))
    index = jnp.broadcast_to(jnp.arange(t - 1, dtype=jnp.int32)[None], (b, t - 1))
    hidden = forward(decoder, params, ids_bt, jnp.ones_like(ids_bt), intervention=intervention,
                     logit_index=index).logits
    logprob, _ = token_scores(decoder.config, params, hidden, ids_bt[:, 1:, None], decoder.dtype)
    return -jnp.mean(logprob[..., 0], axis=-1)


def random_like(mask_lf: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random mask with as many neurons as mask_lf in every layer."""
    out = np.zeros_like(mask_lf)
    for layer, count in enumerate(mask_lf.sum(-1)):
        out[layer, rng.choice(mask_lf.shape[1], int(count), replace=False)] = True
    return out


def lape_masks(neurons: Neurons, num_layers: int, width: int, random_controls: bool = True, seed: int = 0
               ) -> dict[str, np.ndarray]:
    """{condition: bool [L, F] neurons zeroed}: "none", each language's neurons, and "random(lang)"."""
    rng = np.random.default_rng(seed)
    masks = {CLEAN: np.zeros((num_layers, width), bool)}
    masks.update({lang: neuron_mask(per, num_layers, width) for lang, per in neurons.items()})
    if random_controls:
        masks.update({f"random({lang})": random_like(masks[lang], rng) for lang in neurons})
    return masks


def row_nll(lm, rows: np.ndarray, mask_lf: np.ndarray, batch_size: int, placement) -> np.ndarray:
    """[R] mean next-token NLL of each row with the neurons of mask_lf zeroed."""
    decoder, params = lm.decoder(logits="hidden"), placement.params(lm.params)
    keep = placement.replicate(jnp.asarray(~mask_lf, lm.compute_dtype))
    out = []
    for start in range(0, len(rows), batch_size):
        ids = np.zeros((batch_size, rows.shape[1]), np.int32)
        chunk = rows[start:start + batch_size]
        ids[:len(chunk)] = chunk
        with placement.context():
            out.append(np.asarray(jax.device_get(nll_step(decoder, params, placement.batch(ids), keep)))[:len(chunk)])
    return np.concatenate(out).astype(np.float64)


@dataclasses.dataclass(frozen=True, eq=False)
class PerplexityResult:
    """nll[condition][language]: [R] per-row mean NLL of the held-out rows of `language` under `condition`
    ("none", a masked language, or "random(lang)"); `summary()` the matrix with 95% intervals over rows."""

    nll: Mapping[str, Mapping[str, np.ndarray]]
    neurons_zeroed: Mapping[str, int]
    bootstrap: int = 1000

    @property
    def conditions(self) -> list[str]:
        return list(self.nll)

    @property
    def languages(self) -> list[str]:
        return list(next(iter(self.nll.values())))

    def summary(self) -> dict:
        """{condition: {language: {nll, ppl, delta_nll (paired, from "none"), rows}}}, values with ci95."""
        out = {}
        for condition, per in self.nll.items():
            out[condition] = {}
            for lang, nll_r in per.items():
                counts = resample_counts(len(nll_r), self.bootstrap, seed=0) if self.bootstrap else None
                nll = point_and_ci(nll_r, counts_re=counts) if counts is not None else {"value": float(nll_r.mean()),
                                                                                        "ci95": None}
                delta = nll_r - self.nll[CLEAN][lang]
                out[condition][lang] = {
                    "nll": nll, "ppl": {"value": float(np.exp(nll["value"])),
                                        "ci95": None if nll["ci95"] is None else [float(np.exp(v)) for v in nll["ci95"]]},
                    "delta_nll": (point_and_ci(delta, counts_re=counts) if counts is not None
                                  else {"value": float(delta.mean()), "ci95": None}),
                    "rows": int(len(nll_r))}
        return {"conditions": self.conditions, "languages": self.languages, "bootstrap": self.bootstrap,
                "neurons_zeroed": dict(self.neurons_zeroed), "matrix": out}

    def to_pandas(self):
        """One row per condition and language: nll, ppl, delta_nll, each with ci_low, ci_high; rows."""
        import pandas as pd

        records = []
        for condition, per in self.summary()["matrix"].items():
            for lang, entry in per.items():
                record = {"condition": condition, "language": lang, "rows": entry["rows"],
                          "neurons_zeroed": self.neurons_zeroed[condition]}
                for key in ("nll", "ppl", "delta_nll"):
                    ci = entry[key]["ci95"] or [np.nan, np.nan]
                    record.update({key: entry[key]["value"], f"{key}_ci_low": ci[0], f"{key}_ci_high": ci[1]})
                records.append(record)
        return pd.DataFrame(records)

    def plot(self):
        """Heatmaps of the NLL change (nats/token) from the clean model: rows the masked language, columns the
        evaluated one; left LAPE's neurons, right the count-matched random masks."""
        from jaxneurons.lape.figures import delta_heatmap

        return delta_heatmap(self.summary())


def masked_perplexity(lm, rows: Mapping[str, np.ndarray], neurons: Neurons, *, batch_size: int = 8,
                      random_controls: bool = True, bootstrap: int = 1000, seed: int = 0, progress: bool = True,
                      mesh=None) -> PerplexityResult:
    """Per-row NLL of each language's held-out rows ({lang: [R, T] ids}) with no mask, each language's LAPE
    neurons zeroed, and (random_controls) a count-matched random mask per language."""
    placement = distributed.placement(mesh)
    batch_size = placement.round_batch_size(batch_size)
    masks = lape_masks(neurons, lm.config.num_layers, lm.config.neurons_per_layer, random_controls, seed)
    nll = {}
    for condition in tqdm(masks, desc="masked perplexity", unit="mask", disable=not progress):
        nll[condition] = {lang: row_nll(lm, r, masks[condition], batch_size, placement) for lang, r in rows.items()}
    return PerplexityResult(nll, {c: int(m.sum()) for c, m in masks.items()}, bootstrap)
