"""The paper's four neuron categories, computed on the device.

For one example with N parallel languages, S(l, j) is the number of languages whose activation at
(layer l, neuron j) is strictly greater than the threshold tau (a value equal to tau is NOT activated):

- all_shared:     S == N
- partial_shared: 2 <= S <= N - 1
- specific:       S == 1 and N > 1
- non_activated:  S == 0

With a single language (N == 1) an activated neuron counts as all_shared: it is shared by every language
of the example, and "specific" needs another language to be specific against.

Only small per-example counts and a (K, L, F) overlap state leave these functions, so a pipeline can keep
the activations on the device.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

ALL_SHARED = 0
PARTIAL_SHARED = 1
SPECIFIC = 2
NON_ACTIVATED = 3
CATEGORIES = ("all_shared", "partial_shared", "specific", "non_activated")
NUM_CATEGORIES = len(CATEGORIES)
INCONSISTENT = -1  # code in the consistent-category map for a neuron whose category changed across examples


def categorize(active_nlf: jax.Array) -> jax.Array:
    """Category code (int8[L, F]) of every neuron from its activated flags (bool[N, L, F]) in N languages."""
    num_languages = active_nlf.shape[0]
    if num_languages < 1:
        raise ValueError("categorize needs at least one language")
    shared_lf = jnp.sum(active_nlf, axis=0, dtype=jnp.int32)
    # Checked in this order so that N == 1 (S == N == 1) lands in all_shared, not specific.
    code_lf = jnp.select(
        [shared_lf == num_languages, shared_lf >= 2, shared_lf == 1],
        [ALL_SHARED, PARTIAL_SHARED, SPECIFIC],
        NON_ACTIVATED,
    )
    return code_lf.astype(jnp.int8)


def _category_codes_bklf(acts_bnlf: jax.Array, thresholds_k: jax.Array) -> jax.Array:
    """Category codes int8[B, K, L, F] for every example and threshold."""
    per_threshold = jax.vmap(lambda acts_nlf, tau: categorize(acts_nlf > tau), in_axes=(None, 0))
    return jax.vmap(per_threshold, in_axes=(0, None))(acts_bnlf, thresholds_k)


def _one_example_one_threshold(acts_nlf: jax.Array, tau: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(category counts int32[L, 4], activated neurons per language int32[N, L]) for one example and tau."""
    active_nlf = acts_nlf > tau
    code_lf = categorize(active_nlf)
    counts_lc = jnp.sum(code_lf[..., None] == jnp.arange(NUM_CATEGORIES, dtype=jnp.int8), axis=1, dtype=jnp.int32)
    activated_nl = jnp.sum(active_nlf, axis=-1, dtype=jnp.int32)
    return counts_lc, activated_nl


@jax.jit
def example_statistics(acts_bnlf: jax.Array, thresholds_k: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-example counts for every threshold: what the pipeline keeps of each batch.

    Args:
      acts_bnlf: float[B, N, L, F] activations, B examples x N parallel languages x L layers x F neurons.
      thresholds_k: float[K] activation thresholds (an array, so new values do not recompile).
    Returns:
      category_counts_bklc: int32[B, K, L, 4] neurons of each category (order of CATEGORIES) per layer.
      activated_bknl: int32[B, K, N, L] activated neurons per language and layer.
    """
    thresholds_k = jnp.asarray(thresholds_k, dtype=jnp.float32)
    per_threshold = jax.vmap(_one_example_one_threshold, in_axes=(None, 0))
    return jax.vmap(per_threshold, in_axes=(0, None))(acts_bnlf, thresholds_k)


class OverlapState(NamedTuple):
    """Running state for "neurons in the same category for every example" (a pytree, lives on the device).

    first_code: int8[K, L, F] category of each neuron in the first valid example seen (-1 before any).
    consistent: bool[K, L, F] whether every valid example seen so far gave that same category.
    seen: int32[] number of valid examples folded in.
    """

    first_code: jax.Array
    consistent: jax.Array
    seen: jax.Array


def overlap_init(num_thresholds: int, num_layers: int, neurons_per_layer: int) -> OverlapState:
    """Empty overlap state for K thresholds x L layers x F neurons."""
    shape = (num_thresholds, num_layers, neurons_per_layer)
    return OverlapState(
        first_code=jnp.full(shape, INCONSISTENT, dtype=jnp.int8),
        consistent=jnp.ones(shape, dtype=jnp.bool_),
        seen=jnp.zeros((), dtype=jnp.int32),
    )


@jax.jit
def overlap_update(
    state: OverlapState, acts_bnlf: jax.Array, thresholds_k: jax.Array, valid_b: jax.Array
) -> OverlapState:
    """Fold a batch into the overlap state; rows with valid_b False (batch padding) change nothing."""
    thresholds_k = jnp.asarray(thresholds_k, dtype=jnp.float32)
    valid_b = jnp.asarray(valid_b, dtype=jnp.bool_)
    code_bklf = _category_codes_bklf(acts_bnlf, thresholds_k)
    # The reference category comes from the first valid example ever seen.
    batch_first_klf = code_bklf[jnp.argmax(valid_b)]
    take_batch_first = (state.seen == 0) & jnp.any(valid_b)
    first_klf = jnp.where(take_batch_first, batch_first_klf, state.first_code)
    same_bklf = (code_bklf == first_klf[None]) | ~valid_b[:, None, None, None]
    return OverlapState(
        first_code=first_klf,
        consistent=state.consistent & jnp.all(same_bklf, axis=0),
        seen=state.seen + jnp.sum(valid_b, dtype=jnp.int32),
    )


@jax.jit
def consistent_category_map(state: OverlapState) -> jax.Array:
    """int8[K, L, F]: each neuron's category if it was the same for every example seen, else -1."""
    return jnp.where(state.consistent, state.first_code, jnp.int8(INCONSISTENT))


@jax.jit
def overlap_result(state: OverlapState) -> jax.Array:
    """float32[K, 4, L]: % of each layer's neurons in category c for every example seen (0 before any)."""
    code_klf = consistent_category_map(state)
    in_category_kclf = code_klf[:, None] == jnp.arange(NUM_CATEGORIES, dtype=jnp.int8)[None, :, None, None]
    return 100.0 * jnp.mean(in_category_kclf, axis=-1, dtype=jnp.float32)
