"""How LAPE's neurons fall into the paper's per-example categories (all-shared, partial-shared, specific,
non-activated at tau = 0), over the items of a parallel task.

The sharing pass keeps per-example counts per layer (examples.npz: category_counts [E, K, L, 4]), not each
neuron's category, so this pass re-reads the same rows the same way (`batching.tokenize_examples`,
`plan_batches`, the act at the prompt's last token, `analysis.sharing.categorize`) and keeps, per neuron, how
many examples put it in each category ([L, F, 4]) and how many made it specific to each language ([N, L, F]),
and per example the category shares of each LAPE set. Its per-layer sums equal the sharing pass's
category_counts at tau = 0 (`check_against_sharing`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxneurons import distributed
from jaxneurons.analysis.bootstrap import estimate, resample_counts
from jaxneurons.analysis.sharing import CATEGORIES, NUM_CATEGORIES, SPECIFIC, categorize
from jaxneurons.lape.select import Neurons, neuron_mask
from jaxneurons.models.decoder import Decoder, Record
from jaxneurons.pipeline.batching import plan_batches, tokenize_examples
from jaxneurons.pipeline.step import forward_rows

RELATION_FILE = "lape_categories.json"


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def category_step(decoder: Decoder, params, inputs: dict, valid_b, sets_mlf, num_languages: int) -> dict:
    """Per neuron: examples in each category [L, F, 4], examples specific to each language [N, L, F]; per
    example and set m (sets_mlf bool [M, L, F]): the set's neurons in each category [B, M, 4]."""
    _, activations = forward_rows(decoder, params, inputs)
    rows, layers, width = activations["act"].shape
    active_bnlf = activations["act"].reshape(rows // num_languages, num_languages, layers, width) > 0
    code_blf = jax.vmap(categorize)(active_bnlf)
    onehot_blfc = (code_blf[..., None] == jnp.arange(NUM_CATEGORIES, dtype=code_blf.dtype)) & valid_b[:, None, None, None]
    specific_bnlf = active_bnlf & (code_blf == SPECIFIC)[:, None] & valid_b[:, None, None, None]
    return {"per_neuron": jnp.sum(onehot_blfc, 0, dtype=jnp.int32),
            "specific_to": jnp.sum(specific_bnlf, 0, dtype=jnp.int32),
            "per_set": jnp.einsum("blfc,mlf->bmc", onehot_blfc.astype(jnp.int32), sets_mlf.astype(jnp.int32))}


@dataclasses.dataclass(frozen=True, eq=False)
class NeuronCategories:
    """per_neuron [L, F, 4] examples in each category; specific_to [N, L, F]; per_set [E, M, 4] (example order
    of the task); set_names; languages; ids of the examples."""

    per_neuron: np.ndarray
    specific_to: np.ndarray
    per_set: np.ndarray
    set_names: tuple[str, ...]
    languages: tuple[str, ...]
    ids: tuple[str, ...]

    @property
    def num_examples(self) -> int:
        return len(self.ids)


def neuron_categories(lm, task, examples: Sequence, languages: Sequence[str], neurons: Neurons,
                      batch_size: int = 8, progress: bool = True, mesh=None) -> NeuronCategories:
    """Categorize every neuron of every example (act at the prompt's last token > 0, as the sharing pass at
    tau = 0 with neuron_position="last") and count, per neuron and per LAPE set."""
    placement = distributed.placement(mesh)
    plan = plan_batches(tokenize_examples(lm.tokenizer, examples, languages, task.scoring),
                        placement.round_batch_size(batch_size), "last", "right", lm.pad_id, pack=False)
    L, F, N = lm.config.num_layers, lm.config.neurons_per_layer, len(languages)
    sets = {"all neurons": np.ones((L, F), bool), **{lang: neuron_mask(per, L, F) for lang, per in neurons.items()}}
    decoder = lm.decoder(Record(("act",), "last"), logits="none")
    params, sets_mlf = placement.params(lm.params), placement.replicate(np.stack(list(sets.values())))
    per_neuron, specific = np.zeros((L, F, NUM_CATEGORIES), np.int64), np.zeros((N, L, F), np.int64)
    per_set = np.zeros((len(examples), len(sets), NUM_CATEGORIES), np.int64)
    for index in tqdm(range(plan.num_batches), desc="neuron categories", disable=not progress):
        batch = plan.batch(index)
        with placement.context():
            out = category_step(decoder, params, placement.batch(batch.neuron_inputs.arrays()),
                                placement.batch(batch.valid_b), sets_mlf, N)
        out = jax.device_get(out)
        per_neuron += out["per_neuron"]
        specific += out["specific_to"]
        per_set[batch.example_index_b[batch.valid_b]] = out["per_set"][batch.valid_b]
    return NeuronCategories(per_neuron, specific, per_set, tuple(sets), tuple(languages),
                            tuple(ex.id for ex in examples))


def check_against_sharing(categories: NeuronCategories, sharing) -> None:
    """Raise unless the per-layer sums equal a `SharingResult`'s category_counts at tau = 0 (same examples)."""
    ids = tuple(str(i) for i in sharing.arrays["ids"])
    if ids != categories.ids or list(sharing.languages) != list(categories.languages):
        raise ValueError("the sharing run holds other examples or languages than the LAPE relation pass")
    k = sharing.thresholds.index(0.0)
    theirs = sharing.arrays["category_counts"][:, k].sum(0)  # [L, 4]
    if not np.array_equal(theirs, categories.per_neuron.sum(1)):
        raise ValueError("per-layer category counts differ from the sharing run's (other model or settings?)")


def most_specific(specific_lf: np.ndarray, count: int) -> set[tuple[int, int]]:
    """The `count` neurons most often specific to a language (ties: lower (layer, neuron) first; never-specific
    neurons left out)."""
    flat = specific_lf.reshape(-1)
    order = np.lexsort((np.arange(flat.size), -flat))[:count]
    width = specific_lf.shape[1]
    return {(int(i // width), int(i % width)) for i in order if flat[i] > 0}


def relation_summary(categories: NeuronCategories, neurons: Neurons, bootstrap: int = 1000) -> dict:
    """distribution: {set: {category: % of the set's neurons, mean over examples, ci95}}; overlap: {language:
    |LAPE|, |top specific|, intersection, Jaccard, shares of each set in the other, Jaccard expected by chance}."""
    counts = resample_counts(categories.num_examples, bootstrap) if bootstrap else None
    distribution = {}
    for m, name in enumerate(categories.set_names):
        size = categories.per_set[:, m].sum(-1)
        if not size[0]:
            continue
        share = categories.per_set[:, m] / size[:, None]
        distribution[name] = {c: estimate(share[:, i], counts=counts) for i, c in enumerate(CATEGORIES)}
        distribution[name]["neurons"] = int(size[0])
    total = categories.per_neuron.shape[0] * categories.per_neuron.shape[1]
    overlap = {}
    for n, lang in enumerate(categories.languages):
        if lang not in neurons:
            continue
        lape = {(l, j) for l, per in neurons[lang].items() for j in per}
        top = most_specific(categories.specific_to[n], len(lape))
        both = len(lape & top)
        union = len(lape | top)
        overlap[lang] = {"lape": len(lape), "top_specific": len(top), "intersection": both,
                         "jaccard": both / union if union else None,
                         "lape_in_top": both / len(lape) if lape else None,
                         "top_in_lape": both / len(top) if top else None,
                         "jaccard_chance": _chance_jaccard(len(lape), len(top), total),
                         "mean_specific_rate_of_lape": float(np.mean([categories.specific_to[n][l, j] for l, j in lape])
                                                             / categories.num_examples) if lape else None}
    return {"num_examples": categories.num_examples, "languages": list(categories.languages),
            "bootstrap": bootstrap, "distribution": distribution, "overlap": overlap}


def _chance_jaccard(a: int, b: int, total: int) -> float | None:
    """Jaccard of two random sets of sizes a and b among total neurons, from the expected intersection."""
    if not a + b:
        return None
    expected = a * b / total
    return expected / (a + b - expected)
