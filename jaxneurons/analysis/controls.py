"""Grouping controls: does "all-shared" reflect what the N languages of one item share, or only what every prompt
has anyway (the same last token, the same template)?

The paper groups the N languages' rows of one item (parallel). Two controls regroup the same recorded rows:

- non_parallel: slot n takes language n of a different item for every slot, so the group holds N languages
  that say N different things;
- same_language: N different items in one language, for each language (N = number of languages).

Each draw orders the items at random (seeded) and forms group g from the items at positions g, g+1, ..., g+N-1
(mod E) of that order (`window_groups`): every item fills every slot once a draw, a group's N items are
distinct (E >= N), and each language's item map relative to slot 0 is a derangement (a shift of the order).
Groups are categorized by `sharing.example_statistics`, the function of the parallel groups, at tau = 0.
Per item, a control's value is the mean over the groups it sits in (N a draw, over the draws), so the parallel
excess (parallel - non_parallel) is paired per item, and its 95% interval resamples items (analysis.bootstrap).

Similarity: the cosine of two rows' activation vectors (one layer's FFN neurons, at the position the pass
reads), mean over the group's pairs of slots; a row whose activations are all zero counts as cosine 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.analysis.bootstrap import estimate, resample_counts
from jaxneurons.analysis.sharing import CATEGORIES, example_statistics
from jaxneurons.analysis.statistics import MAIN_THRESHOLD

GROUPINGS = ("parallel", "non_parallel", "same_language")
EXCESS = {"parallel_excess": ("parallel", "non_parallel"), "same_language_excess": ("parallel", "same_language")}
DEFAULT_DRAWS = 5
CHUNK_GROUPS = 16  # groups categorized at once (bounds the float32 copy of the regrouped flags)


def control_readout(acts_bnlf: jax.Array) -> dict[str, jax.Array]:
    """What the controls keep of a batch (traced inside the step): activated flags at tau = 0 packed 8 to a byte
    along the neurons (uint8 [B, N, L, ceil(F / 8)]) and each row's unit activation vector (float16 [B, N, L, F])."""
    norm = jnp.linalg.norm(acts_bnlf.astype(jnp.float32), axis=-1, keepdims=True)
    unit = jnp.where(norm > 0, acts_bnlf / jnp.where(norm > 0, norm, 1.0), 0.0)
    return {"active_bits": jnp.packbits(acts_bnlf > MAIN_THRESHOLD, axis=-1), "unit": unit.astype(jnp.float16)}


def window_groups(num_items: int, group_size: int, draws: int, seed: int) -> np.ndarray:
    """int [draws, E, group_size]: item of each slot of each group (see the module docstring); E >= group_size."""
    if num_items < group_size:
        raise ValueError(f"the controls need at least {group_size} items (one per slot), got {num_items}")
    rng = np.random.default_rng(seed)
    shifts = np.arange(num_items)[:, None] + np.arange(group_size)[None, :]
    return np.stack([rng.permutation(num_items)[shifts % num_items] for _ in range(draws)])


def anchored_groups(num_items: int, num_languages: int, seed: int) -> np.ndarray:
    """int [E, N]: row e is the non-parallel group of one draw of `window_groups` whose slot 0 is item e (slot n:
    language n of the item n places after e in the draw's order), so every item anchors one group."""
    groups = window_groups(num_items, num_languages, 1, seed)[0]
    anchored = np.empty_like(groups)
    anchored[groups[:, 0]] = groups
    return anchored


def shared_in_groups(active_bits_enlb: np.ndarray, items_gn: np.ndarray, neurons: int) -> np.ndarray:
    """bool [G, L, F]: the neurons active (tau = 0) in every slot of each group, slot n being row (items_gn[g, n],
    language n): the group's all-shared neurons."""
    bits = active_bits_enlb[items_gn, np.arange(items_gn.shape[1])[None, :]]  # [G, N, L, ceil(F / 8)]
    return np.unpackbits(np.bitwise_and.reduce(bits, axis=1), axis=-1, count=neurons).astype(bool)


def grouping_slots(grouping: str, num_items: int, num_languages: int, draws: int, seed: int
                   ) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(items [G, N], languages [N])]: the groups of one grouping. parallel: every item's N languages;
    non_parallel: the window groups, slot n in language n; same_language: the window groups in each language."""
    languages = np.arange(num_languages)
    if grouping == "parallel":
        return [(np.repeat(np.arange(num_items)[:, None], num_languages, axis=1), languages)]
    groups = window_groups(num_items, num_languages, draws, seed)
    if grouping == "non_parallel":
        return [(g, languages) for g in groups]
    if grouping == "same_language":
        return [(g, np.full(num_languages, m)) for g in groups for m in languages]
    raise ValueError(f"unknown grouping {grouping!r}; choose from {GROUPINGS}")


@jax.jit
def _group_statistics(active_gnlf: jax.Array, unit_gnlf: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(category counts int32 [G, L, 4] by `example_statistics` at tau = 0, mean pair cosine float32 [G, L])."""
    counts_gklc, _ = example_statistics(active_gnlf.astype(jnp.float32), jnp.zeros((1,), jnp.float32))
    gram_glnm = jnp.einsum("gnlf,gmlf->glnm", unit_gnlf.astype(jnp.float32), unit_gnlf.astype(jnp.float32))
    n = unit_gnlf.shape[1]
    off_diagonal = jnp.sum(gram_glnm, axis=(-1, -2)) - jnp.trace(gram_glnm, axis1=-2, axis2=-1)
    return counts_gklc[:, 0], off_diagonal / (n * (n - 1)) if n > 1 else jnp.full(off_diagonal.shape, jnp.nan)


def group_statistics(active_bits_enlb: np.ndarray, unit_enlf: np.ndarray, items_gn: np.ndarray,
                     languages_n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(% of the layer's neurons per category [G, L, 4], mean pair cosine [G, L]) of the groups: slot n of group g
    is row (items_gn[g, n], languages_n[n])."""
    neurons, num_groups = unit_enlf.shape[-1], len(items_gn)
    padded = -(-num_groups // CHUNK_GROUPS) * CHUNK_GROUPS  # one chunk shape: one compilation
    items_gn = np.concatenate([items_gn, np.repeat(items_gn[-1:], padded - num_groups, axis=0)])
    percent, cosine = [], []
    for start in range(0, padded, CHUNK_GROUPS):
        items = items_gn[start:start + CHUNK_GROUPS]
        bits = active_bits_enlb[items, languages_n[None, :]]
        active = np.unpackbits(bits, axis=-1, count=neurons).astype(bool)
        counts, cos = jax.device_get(_group_statistics(active, unit_enlf[items, languages_n[None, :]]))
        percent.append(100.0 * counts.astype(np.float64) / neurons)
        cosine.append(cos.astype(np.float64))
    return np.concatenate(percent)[:num_groups], np.concatenate(cosine)[:num_groups]


def per_item(values_g: np.ndarray, items_gn: np.ndarray, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum over the groups each item sits in, counted once per slot [E, ...], number of such slots [E])."""
    total = np.zeros((num_items,) + values_g.shape[1:])
    count = np.zeros(num_items)
    for n in range(items_gn.shape[1]):
        np.add.at(total, items_gn[:, n], values_g)
        np.add.at(count, items_gn[:, n], 1.0)
    return total, count


def grouping_values(active_bits_enlb: np.ndarray, unit_enlf: np.ndarray, grouping: str, draws: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per item: (% per category [E, L, 4], mean pair cosine [E, L]) of a grouping, each the mean over the
    groups the item sits in."""
    num_items, num_languages = unit_enlf.shape[:2]
    total_p, total_c, count = 0.0, 0.0, 0.0
    for items_gn, languages_n in grouping_slots(grouping, num_items, num_languages, draws, seed):
        percent, cosine = group_statistics(active_bits_enlb, unit_enlf, items_gn, languages_n)
        (p, c), (q, _) = per_item(percent, items_gn, num_items), per_item(cosine, items_gn, num_items)
        total_p, total_c, count = total_p + p, total_c + q, count + c
    return total_p / count[:, None, None], total_c / count[:, None]


def _layers_and_mean(values_el: np.ndarray, counts) -> dict:
    """{"per_layer": estimate over layers, "mean_over_layers": estimate} (values already in their unit)."""
    return {"per_layer": estimate(values_el, counts=counts, scale=1.0),
            "mean_over_layers": estimate(values_el.mean(axis=1), counts=counts, scale=1.0)}


def control_summary(active_bits_enlb: np.ndarray, unit_enlf: np.ndarray, *, draws: int = DEFAULT_DRAWS,
                    seed: int = 0, bootstrap: int = 1000, num_items_run: int | None = None) -> dict:
    """The "controls" block of sharing.json from the rows of the first E items (tau = 0).

    categories: grouping or excess -> category -> {"per_layer", "mean_over_layers"}, each {"value", "ci95"}
    (% of the layer's neurons; excesses in percentage points); cosine: the same for the mean pair cosine.
    The parallel excess is parallel - non_parallel, the same-language excess parallel - same_language, paired
    per item; one set of bootstrap resamples (`resample_counts`' seed 0, as every interval of the run; bootstrap 0:
    none) serves every number. seed draws the groupings only.
    """
    num_items, num_languages = unit_enlf.shape[:2]
    facts = {"threshold": MAIN_THRESHOLD, "num_items": int(num_items), "of_items": int(num_items_run or num_items),
             "group_size": int(num_languages), "draws": int(draws), "seed": int(seed)}
    if num_languages < 2 or num_items < num_languages:
        return {**facts, "categories": None, "cosine": None,
                "note": f"the controls need at least 2 languages and as many items as languages ({num_languages}); "
                        f"this run has {num_items} item(s) in {num_languages} language(s)"}
    values = {g: grouping_values(active_bits_enlb, unit_enlf, g, draws, seed) for g in GROUPINGS}
    values.update({name: tuple(a - b for a, b in zip(values[x], values[y])) for name, (x, y) in EXCESS.items()})
    counts = resample_counts(num_items, bootstrap) if bootstrap else None  # the run's resamples (seed 0)
    categories = {name: {c: _layers_and_mean(percent[..., i], counts) for i, c in enumerate(CATEGORIES)}
                  for name, (percent, _) in values.items()}
    cosine = {name: _layers_and_mean(cos, counts) for name, (_, cos) in values.items()}
    return {**facts, "categories": categories, "cosine": cosine, "note": None}
