"""Integrated gradients on FFN neurons (Knowledge Neurons, Dai et al. 2022), made fast by what it computes.

Target: P(target token | prompt) at the last position. For each layer l separately, that layer's
down-projection input m at the last position is scaled by alpha (baseline zero), the other layers computed
normally: IG(l, j) = m_j * sum_k w_k dP/dm_j (alpha_k m) = sum_k w_k dP/ds_j at s = alpha_k (m -> s * m).

Paths (`PATHS`, default first):
  frozen_norm       : the same, with the target layer's post-feedforward norm (Gemma 3's sandwich norm) held
                      at its clean 1/RMS factor, so the layer's output moves on the straight line from "m
                      zeroed" to clean and the attributions sum to P(x) - P(m zeroed) (completeness). On
                      families without a post-feedforward norm it is the Knowledge-Neurons path itself.
  knowledge_neurons : m -> s * m through the real network. With a post-feedforward RMSNorm the output is the
                      same for every s > 0 except an eps-sized interval near 0, so the sum is not the change.

Scaling m at the last position of layer l changes nothing at earlier positions (attention is causal) and
nothing below layer l. So the prompt runs once, keeping every layer's keys/values and the last token's
residual stream; then each (layer, alpha) replays only the last token through layers l..L-1 against that
cache, batched over alphas, target layers and examples (`lax.map` in chunks bounds the memory). Target
layers go in a few groups (`replay_plan`), each replayed from its lowest layer up, so the replays cost
within 1.25x of the layers they need. The test suite checks this equals the naive recomputation (full
forward and backward of the whole prompt for every layer and alpha, in PyTorch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxneurons.lm import LanguageModel, pad_rows
from jaxneurons.models.decoder import Decoder, Intervention, Record
from jaxneurons.models.output import Output, forward

RULES = ("left", "trapezoid", "gauss_legendre")
PATHS = ("frozen_norm", "knowledge_neurons")  # the default first; see the module docstring
COMPLETENESS_FLOOR = 0.01  # completeness_error's smallest denominator, as a fraction of P(x)
COMPLETENESS_TOLERANCE = 0.05  # integrated_gradients' adaptive mode: the completeness_error it aims for
MAX_PROGRAMS = 16  # compiled IG programs kept (`_ig`'s cache): the adaptive mode's recomputations have a plan of
# their own layers, so nearly every example compiles new ones, and each program holds memory maps of its code; an
# unbounded cache hit the kernel's map limit (vm.max_map_count) after 26 smollm2-135m examples (BUILD_NOTES)


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes alpha_k in [0, 1] and weights w_k of the path integral from the zero baseline."""
    if rule == "left":  # the Knowledge-Neurons recipe: alpha_k = k / n, k = 0..n-1
        return np.arange(steps) / steps, np.full(steps, 1.0 / steps)
    if rule == "trapezoid":
        alphas = np.linspace(0.0, 1.0, steps + 1)
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
        return alphas, weights
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    raise ValueError(f"unknown integration rule {rule!r}; choose from {RULES}")


@dataclasses.dataclass
class IGResult:
    """attributions [B, L, F] (layers not asked for are 0); target_prob [B] = P(x);
    zeroed_prob [B, L] = the path's end point, P with that layer's m zeroed at the last position, NaN for
    layers not asked (completeness: attributions[:, l].sum(-1) ~ target_prob - zeroed_prob[:, l], see
    `completeness_error`); neurons [B, L, F] = m; path: the path integrated along (one of PATHS); nodes [B, L]:
    the quadrature nodes each (row, layer) was integrated with (`integrated_gradients`' adaptive mode may use
    more for some), 0 for layers not asked."""

    attributions: np.ndarray
    target_prob: np.ndarray
    zeroed_prob: np.ndarray
    neurons: np.ndarray
    layers: tuple[int, ...]
    path: str = PATHS[0]
    nodes: np.ndarray | None = None  # [B, L] quadrature nodes each (row, layer) used (0: not asked); None: unknown


def completeness_error(result: IGResult, floor: float = COMPLETENESS_FLOOR) -> np.ndarray:
    """[B, L] |sum_f IG - (P(x) - P(m zeroed))| / max(|P(x) - P(m zeroed)|, floor * P(x)); NaN for layers
    not asked. Relative to the change the layer makes, except that a layer whose removal changes P by less
    than floor (1%) of P(x) is judged against floor * P(x): its tiny gap would otherwise turn float32
    rounding into large relative errors."""
    gap = result.target_prob[:, None].astype(np.float64) - result.zeroed_prob
    return relative_gap(result.attributions.sum(-1, dtype=np.float64), gap, result.target_prob[:, None], floor)


def relative_gap(total, change, prob, floor: float = COMPLETENESS_FLOOR) -> np.ndarray:
    """`completeness_error` from its parts (broadcast): |total - change| / max(|change|, floor * |prob|), where
    total = sum_f IG, change = P(x) - P(m zeroed) and prob = P(x); NaN where any part is NaN."""
    scale = np.maximum(np.abs(change), np.maximum(floor * np.abs(prob), 1e-12))
    return np.abs(total - change) / scale


def node_levels(steps: int, max_steps: int | None) -> list[int]:
    """The adaptive IG's node counts: steps, doubled until max_steps (the last doubling capped at it); [steps]
    when max_steps is None or <= steps."""
    levels = [int(steps)]
    while max_steps is not None and levels[-1] < max_steps:
        levels.append(min(2 * levels[-1], int(max_steps)))
    return levels


def replay_plan(num_layers: int, layers, max_ratio: float = 1.25) -> list[tuple[int, tuple[int, ...]]]:
    """[(start layer, target layers), ...]: the target layers in the fewest groups whose replays cost at most
    max_ratio x the minimum. A replay for target l needs layers l..L-1; a group's replays all run layers
    start..L-1 (start = its lowest target: one compiled scan per group), so per alpha and row the plan costs
    sum over groups of (num_layers - start) * len(group) layers, against sum over targets of
    (num_layers - l). Groups are runs of consecutive targets (sorted), chosen by dynamic programming."""
    targets = sorted({int(l) for l in layers})
    if not targets or not 0 <= targets[0] <= targets[-1] < num_layers:
        raise ValueError(f"layers must be a non-empty subset of 0..{num_layers - 1}, got {tuple(layers)}")
    n, minimum = len(targets), sum(num_layers - l for l in targets)

    def cost(i, j):  # targets[i:j] as one group
        return (num_layers - targets[i]) * (j - i)

    best = [cost(0, j) if j else 0 for j in range(n + 1)]  # best[j]: targets[:j] in g groups
    cuts = [[0] for _ in range(n + 1)]
    for groups in range(1, n + 1):
        if best[n] <= max_ratio * minimum:
            break
        new_best, new_cuts = list(best), [list(c) for c in cuts]
        for j in range(groups + 1, n + 1):
            for i in range(groups, j):
                if best[i] + cost(i, j) < new_best[j]:
                    new_best[j], new_cuts[j] = best[i] + cost(i, j), cuts[i] + [i]
        best, cuts = new_best, new_cuts
    bounds = cuts[n] + [n]
    return [(targets[i], tuple(targets[i:j])) for i, j in zip(bounds, bounds[1:])]


def integrated_gradients(lm: LanguageModel, input_ids, target_ids, attention_mask=None, steps: int = 20,
                         layers=None, rule: str = "gauss_legendre", chunk_size: int | None = None,
                         memory_gb: float = 2.0, path: str = PATHS[0], placement=None,
                         max_steps: int | None = None, tolerance: float = COMPLETENESS_TOLERANCE) -> IGResult:
    """IG of every neuron of the chosen layers (all when None) toward target_ids [B] at the last token,
    along `path` (see the module docstring).

    rule: the quadrature of the path integral. Gauss-Legendre by default: along the frozen-norm path P is
    smooth and 20 nodes meet completeness to about 1e-4 where the Knowledge-Neurons left Riemann sum
    ("left", first order) misses it by up to 28% on Gemma 3 270M (BUILD_NOTES.md, integrated gradients).

    steps: nodes per (row, layer). max_steps None (or <= steps): exactly that many everywhere. Adaptive mode,
    max_steps > steps: every (row, layer) starts at `steps`; those whose `completeness_error` exceeds
    `tolerance` are recomputed with twice the nodes (the rows and layers concerned only; Gauss-Legendre nodes
    are not nested, so all anew), and again, up to max_steps (the last doubling capped at it). A pair that
    meets the tolerance keeps the numbers of the first node count that met it, so pairs that meet it at
    `steps` are exactly the fixed-steps result. `IGResult.nodes` records the count each pair used; pairs
    still above the tolerance at max_steps keep their max_steps numbers (check `completeness_error`).

    chunk_size bounds memory: that many (layer, alpha) replays of all B rows run at once. None: as many
    as fit in about memory_gb of activations (the replay's logits, [chunk, B, vocab], dominate).
    placement: a `distributed.Placement` for params and rows (default: the default device).
    """
    if path not in PATHS:
        raise ValueError(f"unknown IG path {path!r}; choose from {PATHS}")
    if max_steps is not None and (isinstance(max_steps, bool) or int(max_steps) != max_steps or max_steps < 1):
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    ids, mask = left_padded(np.asarray(input_ids), attention_mask)
    targets = np.asarray(target_ids, np.int32).reshape(-1)
    num_layers = lm.config.num_layers
    layers = tuple(range(num_layers)) if layers is None else tuple(int(l) for l in layers)
    if any(not 0 <= l < num_layers for l in layers):
        raise ValueError(f"layers must lie in 0..{num_layers - 1}, got {layers}")
    run = functools.partial(_fixed_ig, lm, rule=rule, chunk_size=chunk_size, memory_gb=memory_gb, path=path,
                            placement=placement)
    result = run(ids, mask, targets, steps, layers)
    nodes = np.zeros((len(ids), num_layers), np.int32)
    nodes[:, list(layers)] = steps
    levels = node_levels(steps, max_steps)
    for previous, current in zip(levels, levels[1:]):
        with np.errstate(invalid="ignore"):
            redo = (completeness_error(result) > tolerance) & (nodes == previous)  # NaN (not asked): False
        if not redo.any():
            break
        rows, redo_layers = np.flatnonzero(redo.any(1)), tuple(int(l) for l in np.flatnonzero(redo.any(0)))
        # the rows again, padded (repeating the first) to a multiple of the placement's data axis
        size = len(rows) if placement is None else placement.round_batch_size(len(rows))
        take = np.concatenate([rows, np.full(size - len(rows), rows[0])])
        again = run(ids[take], mask[take], targets[take], current, redo_layers)
        sub = redo[rows]
        result.attributions[rows[:, None], np.arange(num_layers)] = np.where(
            sub[..., None], again.attributions[:len(rows)], result.attributions[rows])
        nodes[redo] = current
    result.nodes = nodes
    return result


def _fixed_ig(lm: LanguageModel, ids, mask, targets, steps: int, layers, *, rule, chunk_size, memory_gb, path,
              placement) -> IGResult:
    """`integrated_gradients` with `steps` nodes everywhere (rows already left-padded)."""
    chunk_size = chunk_size or auto_chunk_size(lm.config, len(ids), memory_gb)
    num_layers = lm.config.num_layers
    plan = tuple(replay_plan(num_layers, layers))
    alphas, weights = quadrature(rule, steps)
    full = Decoder(lm.config, lm.compute_dtype, lm.param_dtype, Record(("ffn_hidden",), "last", replay=True),
                   "last")
    replays = tuple(Decoder(lm.config, lm.compute_dtype, lm.param_dtype, Record(), "last", start)
                    for start, _ in plan)
    frozen_norm = path == "frozen_norm" and lm.config.sandwich_norms  # else the two paths are one
    # MAX_PROGRAMS compiled: drop them all, the next call compiles what it needs (a jax without the count keeps them)
    if getattr(_ig, "_cache_size", lambda: 0)() >= MAX_PROGRAMS:
        _ig.clear_cache()
    params, rows = lm.params, (ids, mask, targets)
    if placement is not None:
        params, rows = placement.params(params), placement.batch(rows)
    with contextlib.nullcontext() if placement is None else placement.context():
        grads, zeroed_asked, m, clean = _ig(full, replays, plan, frozen_norm, params, *rows,
                                            jnp.asarray(alphas, jnp.float32), chunk_size)
    asked = [l for _, group in plan for l in group]  # the order _ig computes them in
    per_layer = np.asarray(grads, np.float64).reshape(len(asked), len(alphas), *grads.shape[1:])
    attributions = np.zeros(m.shape, np.float32)  # [B, L, F]
    attributions[:, asked] = np.einsum("lkbf,k->blf", per_layer, weights)
    zeroed = np.full((len(ids), num_layers), np.nan, np.float32)
    zeroed[:, asked] = np.asarray(zeroed_asked).T
    return IGResult(attributions, np.asarray(clean), zeroed, np.asarray(m, np.float32), tuple(layers), path)


def auto_chunk_size(config, rows: int, memory_gb: float = 2.0) -> int:
    """(layer, alpha) replays per chunk so that their float32 buffers stay within about memory_gb:
    per replay and row, logits and their softmax and gradient (3 x vocab) plus the per-layer activations
    kept for the backward pass."""
    per_item = rows * 4 * (3 * config.vocab_size + config.num_layers * (4 * config.neurons_per_layer
                                                                          + 8 * config.hidden_size))
    return max(1, int(memory_gb * 2**30 // per_item))


def left_padded(ids: np.ndarray, mask) -> tuple[np.ndarray, np.ndarray]:
    """The same rows, left-padded: every prompt's last token then sits at the last index (rows that already
    are, as the attribution pass lays them out, are returned as they are)."""
    ids = ids[None] if ids.ndim == 1 else ids
    mask = np.ones_like(ids) if mask is None else np.asarray(mask).reshape(ids.shape)
    if np.all(np.diff((mask != 0).astype(np.int8), axis=1) >= 0) and mask[:, -1].all():
        return ids, mask
    return pad_rows([row[m.astype(bool)] for row, m in zip(ids, mask)], 0, "left", length=ids.shape[1])


@functools.partial(jax.jit, static_argnames=("full", "replays", "plan", "frozen_norm", "chunk_size"))
def _ig(full, replays, plan, frozen_norm, params, ids, mask, targets, alphas, chunk_size):
    """(dP/ds [targets in plan order x alphas, B, F], P with m zeroed [targets, B], m [B, L, F], P(x) [B])."""
    clean = forward(full, params, ids, mask)
    grads, zeroed = [], []
    for replay, (start, group) in zip(replays, plan):  # a few groups, each one scan over its layers
        g, z = _replay_group(replay, params, clean, ids, mask, targets, alphas, start, group, frozen_norm,
                             chunk_size)
        grads.append(g)
        zeroed.append(z)
    return jnp.concatenate(grads), jnp.concatenate(zeroed), clean.activations["ffn_hidden"], \
        _prob(clean.logits, targets)


def _replay_group(decoder, params, clean: Output, ids, mask, targets, alphas, start, group, frozen_norm,
                  chunk_size):
    """One group of target layers, replayed through layers start..L-1 only (parameters and cache sliced)."""
    batch, num_layers, width = clean.activations["ffn_hidden"].shape
    sliced = {**params, "layers": jax.tree.map(lambda x: x[start:], params["layers"])}
    base = clean.replay.from_layer(start)
    if not frozen_norm:
        base = base.replace(post_mlp_inv_rms=None)
    where = jnp.ones((batch, 1), bool)

    def prob_at(scale_bf, layer):
        replay = base.replace(stage=jnp.sign(jnp.arange(start, num_layers) - layer))
        scale = jnp.ones((batch, num_layers - start, width), jnp.float32).at[:, layer - start].set(scale_bf)
        change = Intervention(scale, jnp.zeros_like(scale), where)
        out = forward(decoder, sliced, ids[:, -1:], mask, intervention=change, replay=replay).logits
        p = _prob(out, targets)
        return p.sum(), p

    grad_fn = jax.grad(prob_at, has_aux=True)

    def one(item):
        layer, a = item
        return grad_fn(jnp.full((batch, width), a, jnp.float32), layer)[0]

    layer_idx = jnp.repeat(jnp.asarray(group, jnp.int32), len(alphas))
    alpha = jnp.tile(alphas, len(group))
    grads = jax.lax.map(one, (layer_idx, alpha), batch_size=chunk_size)
    zeroed = jax.lax.map(lambda layer: prob_at(jnp.zeros((batch, width), jnp.float32), layer)[1],
                         jnp.asarray(group, jnp.int32), batch_size=chunk_size)
    return grads, zeroed


def _prob(logits_bv, targets_b):
    return jnp.take_along_axis(jax.nn.softmax(logits_bv.astype(jnp.float32), -1), targets_b[:, None], 1)[:, 0]
