"""Attribution x category over a task: which sharing categories hold the neurons that matter.

For every example and language, at the prompt's last token: the example's categories (threshold 0, across
its languages), then each method's score of every neuron toward the gold answer's first token
(contribution, effective, ig), then per layer the category mix of the top-k neurons, per category the
max / mean / min / sum of the score, and the share of the positive attribution each category carries.

The headline is the authors' notebook statistic: per language and layer, the share of the top-k neurons (by
score, per example) that are all-shared, averaged over examples (and over layers for one number), beside
the base rates it must beat: all-shared's share of all neurons, of the neurons active in the language (act >
0) and of the active top-k neurons. Beside it, nulls per example, language and layer, of neurons that are not
all-shared (`attribution.matched`, several seeds):
- `null`: active in that language, drawn for the all-shared set's count and |m| distribution;
- `null_any`: the same draw from every neuron, whatever its activation;
- `null_top`: the all-shared count of largest-|m| neurons (no seed);
- `null_mass`: random neurons added until their summed |m| is nearest all-shared's.
`matching` gives each null's count, mean |m| and |m|-mass ratio to all-shared; a null off by more than 10% is
reported as not matched (the active pool usually holds far less |m| than all-shared: no draw can match it).
Per-example values are kept (and saved for resume) so that every number gets a 95% bootstrap interval over
examples.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from jaxneurons import distributed
from jaxneurons.analysis import ALL_SHARED, CATEGORIES, categorize
from jaxneurons.analysis.report import FIGURES_DIR, write_section
from jaxneurons.analysis.bootstrap import DEFAULT_RESAMPLES, estimate, finite, resample_counts, spread
from jaxneurons.attribution import PATHS, attribution_statistics, integrated_gradients, scaled_top_k, top_mask
from jaxneurons.attribution.matched import DRAWS_VERSION, magnitude_matched, mass_matched, off_by_more, top_magnitude
from jaxneurons.attribution.static import static_scores
from jaxneurons.lm import LanguageModel, pad_rows
from jaxneurons.models.decoder import Decoder, Record
from jaxneurons.models.output import forward
from jaxneurons.pipeline import merge
from jaxneurons.pipeline.batching import plan_batches, tokenize_examples
from jaxneurons.attribution.ig import COMPLETENESS_FLOOR, COMPLETENESS_TOLERANCE, RULES, node_levels, relative_gap
from jaxneurons.pipeline.checkpoint import NEXT_BATCH, load_checkpoint, save_checkpoint
from jaxneurons.pipeline.checks import check_at_least_zero, check_choices, check_positive, check_seeds, seed_list
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.identity import pass_identity
from jaxneurons.pipeline.outputs import write_result_json
from jaxneurons.pipeline.runner import checkpoint_dir, run_pass

METHODS = ("contribution", "effective", "ig")
ATTRIBUTION_FILE = "attribution.json"
ATTRIBUTION_STATE_FILE = "attribution_state.npz"
SCORE_STATS = ("sum", "mean", "max", "min")  # per example, language, layer and category: the score table
NULLS = ("null", "null_any", "null_top", "null_mass")  # see the module docstring
SETS = ("all_shared", "matched_null", "matched_any", "other_active", "all", "top_null", "mass_null")  # per row
NULL_SETS = dict(zip(NULLS, ("matched_null", "matched_any", "top_null", "mass_null")))  # null -> its SETS entry
NULL_PROMISES = {"null": ("count_ratio", "abs_m_ratio"), "null_any": ("count_ratio", "abs_m_ratio"),
                 "null_top": ("count_ratio",), "null_mass": ("mass_ratio",)}  # what each null's name promises
logger = logging.getLogger(__name__)
TARGET_TOKEN = ("the gold answer's first token (the notebook used the label word, e.g. ' entailment', as the "
                "effective score's target)")


@dataclasses.dataclass(frozen=True)
class AttributionConfig:
    """The attribution pass's settings (analyze.py's flags); validated when built."""

    methods: tuple[str, ...] = METHODS  # scores split by category: contribution, effective, ig
    top_k: int | None = None  # top neurons per layer (None: the paper's 800 of 16,384, scaled to the width)
    batch_size: int = 4  # examples per step
    ig_steps: int = 20  # integrated-gradients alphas
    # adaptive IG: (row, layer) pairs above COMPLETENESS_TOLERANCE at ig_steps are recomputed with doubled
    # nodes up to this many (None, or <= ig_steps: ig_steps everywhere); pairs that meet it keep their numbers
    ig_max_steps: int | None = 160
    ig_rule: str = "gauss_legendre"  # quadrature rule (one of attribution.ig.RULES)
    ig_path: str = PATHS[0]  # path integrated along (one of attribution.PATHS)
    seeds: int | tuple[int, ...] = 3  # the nulls' seeds: n (0..n-1) or a list
    bootstrap: int = DEFAULT_RESAMPLES  # resamples of the examples for the 95% intervals (0: none)
    # how IG's replays are chunked: memory, not results, so a resume may change them
    ig_chunk_size: int | None = dataclasses.field(default=None, metadata={"identity": False})
    ig_memory_gb: float = dataclasses.field(default=2.0, metadata={"identity": False})

    def __post_init__(self):
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        check_choices("methods", self.methods, METHODS)
        check_choices("ig_rule", [self.ig_rule], RULES)
        check_choices("ig_path", [self.ig_path], PATHS)
        check_positive(top_k=self.top_k, batch_size=self.batch_size, ig_steps=self.ig_steps,
                       ig_chunk_size=self.ig_chunk_size, ig_max_steps=self.ig_max_steps)
        check_at_least_zero(bootstrap=self.bootstrap)
        if not self.ig_memory_gb > 0:
            raise PipelineInputError(f"ig_memory_gb must be > 0, got {self.ig_memory_gb}")


def prompt_batch(lm: LanguageModel, plan, rows, index: int, num_languages: int):
    """(example indices [B], valid [B], left-padded prompt ids/mask [B*N, T], gold first tokens [B*N]) of a batch."""
    picked, valid_b = plan.batch_examples(index)
    flat = [rows[e][n] for e in picked for n in range(num_languages)]
    ids, mask = pad_rows([r.prompt for r in flat], lm.pad_id, "left", pad_to_multiple_of=16)
    targets = np.array([r.continuations[0][0] for r in flat], np.int32)
    return picked, valid_b, ids, mask, targets


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def neurons_and_codes(decoder: Decoder, params, ids, mask, num_languages: int):
    """(act [B*N, L, F], m [B*N, L, F], category codes [B, L, F]) at the prompts' last token."""
    out = forward(decoder, params, ids, mask)
    act, m = out.activations["act"], out.activations["ffn_hidden"]
    rows, layers, width = act.shape
    active = act.reshape(rows // num_languages, num_languages, layers, width) > 0
    return act, m, jax.vmap(categorize)(active)


def run_attribution_analysis(lm: LanguageModel, task, examples: Sequence, languages: Sequence[str],
                             output_dir: str | None, config: AttributionConfig = AttributionConfig(), *,
                             resume: bool = False, progress: bool = True, figures: bool = True,
                             mesh: Mesh | None = None, process_index: int | None = None,
                             process_count: int | None = None) -> dict:
    """Write output_dir/attribution.json, its figures and report section; see the module docstring. Resumable
    batch by batch. output_dir None runs in memory: no file, no checkpoint.

    resume: continue from output_dir/attribution_state.npz; a checkpoint of another identity is refused.
    mesh: as in `run_sharing_analysis` (default: `distributed.default_mesh()`); batch_size is rounded up to a
      multiple of its data axis.
    process_index, process_count: as in `run_sharing_analysis` (default `distributed.process_layout`): process k
      runs the batches i with i % count == k and keeps its checkpoint in output_dir/process_{k}_of_{count}/;
      every accumulator is per example, so the merge is exactly a one-process run; process 0 alone writes.
    """
    if any(ex.readout != "prompt" for ex in examples):
        raise PipelineInputError("these examples read the neurons at the gold answer's end; attribution scores the "
                                 "answer's first token from the prompt's last token: load them with a prompt-end "
                                 "format (e.g. prompt_format='paper')")
    methods, seeds, batch_size = list(config.methods), config.seeds, config.batch_size
    n, layers, width = len(languages), lm.config.num_layers, lm.config.neurons_per_layer
    k = scaled_top_k(width, config.top_k)
    token_rows = tokenize_examples(lm.tokenizer, examples, languages, task.scoring)
    placement = distributed.placement(mesh)
    distributed.require_process_local(placement.mesh, "attribution")
    plan = plan_batches(token_rows, placement.round_batch_size(batch_size), "last", "left", lm.pad_id)
    identity = pass_identity("attribution", config, lm, examples, token_rows, task=task.name,
                            languages=list(languages), top_k_used=k, batch_size_used=plan.batch_size,
                            draws=DRAWS_VERSION, nulls=list(NULLS))
    process_index, process_count = distributed.process_layout(process_index, process_count)
    state_dir, own_identity = checkpoint_dir(output_dir, identity, process_index, process_count, resume)
    progress_path = None if state_dir is None else os.path.join(state_dir, ATTRIBUTION_STATE_FILE)
    saved = load_checkpoint(progress_path, own_identity) if resume else None
    start = int(saved.pop(NEXT_BATCH)) if saved else 0
    acc = saved if saved else _empty_accumulators(methods, len(examples), n, layers, len(seed_list(seeds)))
    decoder = lm.decoder(Record(("act", "ffn_hidden"), "last"), logits="none")
    params = placement.params(lm.params)

    def step(index: int) -> None:
        picked, valid_b, ids, mask, targets = prompt_batch(lm, plan, token_rows, index, n)
        with placement.context():
            act, m, codes = neurons_and_codes(decoder, params, *placement.batch((ids, mask)), n)
            scores = static_scores(lm.config, params, m, placement.batch(targets))
        valid_b, rows = np.asarray(valid_b), picked[np.asarray(valid_b)]
        act_v = np.asarray(act).reshape(-1, n, layers, width)[valid_b]
        m_v = np.asarray(m).reshape(-1, n, layers, width)[valid_b]
        codes_v = np.asarray(codes)[valid_b]
        nulls = null_sets(act_v, m_v, codes_v, seeds, index)
        _accumulate_sets(acc, rows, act_v, m_v, codes_v, nulls)
        for method in methods:
            if method == "ig":
                ig = integrated_gradients(lm, ids, targets, mask, steps=config.ig_steps, rule=config.ig_rule,
                                          path=config.ig_path, chunk_size=config.ig_chunk_size,
                                          memory_gb=config.ig_memory_gb, placement=placement,
                                          max_steps=config.ig_max_steps, tolerance=COMPLETENESS_TOLERANCE)
                scores["ig"] = ig.attributions
                _accumulate_completeness(acc, rows, valid_b, ig, n)
            with placement.context():
                s = placement.batch(scores[method]).reshape(-1, n, layers, width)
                stats = jax.device_get(attribution_statistics(s, codes, k))
                in_top = np.asarray(top_mask(s, k))[valid_b]
            _accumulate(acc, method, rows, stats, valid_b)
            _accumulate_examples(acc, method, rows, stats, valid_b, np.asarray(s)[valid_b], in_top, act_v, codes_v,
                                 nulls)
            acc[f"{method}/top_active_e"][rows] = (in_top & (act_v > 0)).sum(-1)
        _accumulate_categories(acc, rows, codes_v)

    def save(next_batch: int) -> None:
        if progress_path is not None:
            save_checkpoint(progress_path, own_identity, {**acc, NEXT_BATCH: np.asarray(next_batch)})

    run_pass(f"attribution ({','.join(methods)})", plan, start, step, save,
             process_index=process_index, process_count=process_count, progress=progress)
    if process_count > 1:
        acc = merge.gather_accumulators(acc, plan, identity, output_dir, ATTRIBUTION_STATE_FILE, process_index,
                                        process_count)
    result = summarize_attribution(acc, methods, languages, k, width, config.bootstrap, seed_list(seeds))
    result.update(target=TARGET_TOKEN, model=lm.source or lm.config.family, task=task.name)
    if "ig" in methods:
        result["ig"] = {"steps": config.ig_steps, "max_steps": config.ig_max_steps, "rule": config.ig_rule,
                        "path": config.ig_path,
                        "completeness": ig_completeness(acc, [ex.id for ex in examples], list(languages),
                                                        config.ig_steps, config.ig_max_steps)}
    if process_index == 0 and output_dir is not None:
        write_attribution(output_dir, result, figures=figures)
    return result


def write_attribution(output_dir: str, result: dict, figures: bool = True) -> dict:
    """attribution.json, its figures (figures/attribution_*.png) and its report section; returns what
    attribution.json holds."""
    from jaxneurons.analysis import attribution_report as report  # matplotlib, imported when first needed

    result = write_result_json(os.path.join(output_dir, ATTRIBUTION_FILE), result)
    paths = report.write_figures(result, os.path.join(output_dir, FIGURES_DIR)) if figures else {}
    write_section(output_dir, "attribution", report.attribution_section(result, paths, output_dir))
    return result


def matched_nulls(act_bnlf, m_bnlf, codes_blf, seeds, batch_index: int,
                  active_only: bool = True) -> np.ndarray:
    """bool [S, B, N, L, F]: per seed, per example, language and layer, neurons that are not all-shared
    (active in that language, act > 0, unless active_only is False), drawn to match the all-shared set's
    count and |m| distribution."""
    target = np.broadcast_to((codes_blf == ALL_SHARED)[:, None], act_bnlf.shape)
    pool = act_bnlf > 0 if active_only else np.ones(act_bnlf.shape, bool)
    abs_m = np.abs(m_bnlf)
    stream = [] if active_only else [1]
    return np.stack([magnitude_matched(abs_m, target, pool, np.random.default_rng([seed, batch_index] + stream))
                     for seed in seed_list(seeds)])


def null_sets(act_bnlf, m_bnlf, codes_blf, seeds, batch_index: int) -> dict[str, np.ndarray]:
    """NULLS as bool [S, B, N, L, F] (seeds: an int n or a list): the two |m|-distribution draws
    (`matched_nulls`), the largest-|m| neurons that are not all-shared (the same for every seed), and random
    neurons that are not all-shared added until their summed |m| is nearest all-shared's (per row)."""
    shared = np.broadcast_to((codes_blf == ALL_SHARED)[:, None], act_bnlf.shape)
    abs_m = np.abs(m_bnlf)
    seeds = seed_list(seeds)
    top = top_magnitude(abs_m, shared.sum(-1), ~shared)
    target_mass = (abs_m * shared).sum(-1)
    mass = [mass_matched(abs_m, target_mass, ~shared, np.random.default_rng([seed, batch_index, 2])) for seed in seeds]
    return {"null": matched_nulls(act_bnlf, m_bnlf, codes_blf, seeds, batch_index),
            "null_any": matched_nulls(act_bnlf, m_bnlf, codes_blf, seeds, batch_index, active_only=False),
            "null_top": np.broadcast_to(top, (len(seeds),) + top.shape), "null_mass": np.stack(mass)}


def _set_masks(act_bnlf, codes_blf, nulls: dict) -> list[np.ndarray]:
    """SETS as float masks [B, N, L, F] (the nulls: mean over seeds)."""
    shared = np.broadcast_to((codes_blf == ALL_SHARED)[:, None], act_bnlf.shape)
    mean = {name: nulls[name].mean(0, dtype=np.float32) for name in NULLS}
    return [shared.astype(np.float32), mean["null"], mean["null_any"], ((act_bnlf > 0) & ~shared).astype(np.float32),
            np.ones(act_bnlf.shape, np.float32), mean["null_top"], mean["null_mass"]]


def _empty_accumulators(methods, num_examples, n, layers, seeds) -> dict[str, np.ndarray]:
    """Per-example arrays (NaN until filled; the first axis is the example), reduced in example order only when
    summarized: the same numbers however the examples were split over batches and processes."""
    e, sets = num_examples, len(SETS)
    acc = {"category_e": np.full((e, layers, 4), np.nan), "set_count_e": np.full((e, n, layers, sets), np.nan),
           "set_abs_m_e": np.full((e, n, layers, sets), np.nan)}
    for m in methods:
        acc.update({**{f"{m}/score_{stat}_e": np.full((e, n, layers, 4), np.nan) for stat in SCORE_STATS},
                    f"{m}/top_e": np.full((e, n, layers, 4), np.nan), f"{m}/positive_e": np.full((e, n, 4), np.nan),
                    **{f"{m}/{name}_top_e": np.full((e, n, layers, seeds), np.nan) for name in NULLS},
                    **{f"{m}/{name}_positive_e": np.full((e, n, seeds), np.nan) for name in NULLS},
                    f"{m}/set_score_e": np.full((e, n, sets), np.nan),
                    f"{m}/top_active_e": np.full((e, n, layers), np.nan)})
    if "ig" in methods:
        acc.update({"ig/sum_e": np.full((e, n, layers), np.nan), "ig/change_e": np.full((e, n, layers), np.nan),
                    "ig/prob_e": np.full((e, n), np.nan), "ig/nodes_e": np.full((e, n, layers), np.nan)})
    return acc


def _accumulate(acc, method, rows, stats, valid_b) -> None:
    """Per example, language, layer and category: the score's sum, mean, max and min (NaN: an empty category)."""
    for stat in SCORE_STATS:
        acc[f"{method}/score_{stat}_e"][rows] = stats[stat][valid_b]


def _accumulate_examples(acc, method, rows, stats, valid_b, s_bnlf, in_top_bnlf, act_bnlf, codes_blf,
                         nulls: dict) -> None:
    """Per example: top-k category counts, positive score per category, the nulls' share of both."""
    acc[f"{method}/top_e"][rows] = stats["top_counts"][valid_b]
    acc[f"{method}/positive_e"][rows] = stats["positive"][valid_b]
    positive = np.maximum(s_bnlf, 0)
    for name, null_sbnlf in nulls.items():
        acc[f"{method}/{name}_top_e"][rows] = np.moveaxis((null_sbnlf & in_top_bnlf).sum(-1), 0, -1)
        acc[f"{method}/{name}_positive_e"][rows] = np.moveaxis((null_sbnlf * positive).sum((-1, -2)), 0, -1)
    acc[f"{method}/set_score_e"][rows] = np.stack(
        [(mask * s_bnlf).sum((-1, -2)) for mask in _set_masks(act_bnlf, codes_blf, nulls)], -1)


def _accumulate_sets(acc, rows, act_bnlf, m_bnlf, codes_blf, nulls: dict) -> None:
    """Per example, language and layer: size and summed |m| of each of SETS (does the matching work?)."""
    masks = _set_masks(act_bnlf, codes_blf, nulls)
    acc["set_count_e"][rows] = np.stack([mask.sum(-1) for mask in masks], -1)
    acc["set_abs_m_e"][rows] = np.stack([(mask * np.abs(m_bnlf)).sum(-1) for mask in masks], -1)


def _accumulate_completeness(acc, rows, valid_b, ig, n) -> None:
    """Per example, language and layer: sum_f IG, the change it should add up to, P(x) - P(m_l = 0), and the
    quadrature nodes used; per example and language P(x) (completeness_error's floor)."""
    total = np.asarray(ig.attributions, np.float64).sum(-1)  # [B*N, L]
    change = np.asarray(ig.target_prob, np.float64)[:, None] - np.asarray(ig.zeroed_prob, np.float64)
    layers = total.shape[-1]
    acc["ig/sum_e"][rows] = total.reshape(-1, n, layers)[valid_b]
    acc["ig/change_e"][rows] = change.reshape(-1, n, layers)[valid_b]
    acc["ig/prob_e"][rows] = np.asarray(ig.target_prob, np.float64).reshape(-1, n)[valid_b]
    if ig.nodes is not None:
        acc["ig/nodes_e"][rows] = np.asarray(ig.nodes, np.float64).reshape(-1, n, layers)[valid_b]


def _accumulate_categories(acc, rows, codes_blf) -> None:
    acc["category_e"][rows] = (codes_blf[..., None] == np.arange(4)).sum(-2)  # [B, L, 4]


def ig_completeness(acc, example_ids=None, languages=None, steps: int | None = None,
                    max_steps: int | None = None) -> dict:
    """Per layer: |sum over rows of (sum_f IG - (P - P0))| / sum |P - P0| (pooled), and per (example, language,
    layer) row the error of `_row_errors`: its median and worst per layer, the single worst row (named by
    example_ids[e] and languages[n] when given, else by index), and how many rows exceed the tolerance.
    satisfied: the pooled errors and every row's error within COMPLETENESS_TOLERANCE. With ig/nodes_e (the
    adaptive IG's node counts) and steps: how many rows used each count (`_node_counts`)."""
    layers = acc["ig/sum_e"].shape[-1]
    gap, change = (acc["ig/sum_e"] - acc["ig/change_e"]).reshape(-1, layers), acc["ig/change_e"].reshape(-1, layers)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.abs(np.nansum(gap, 0)) / np.nansum(np.abs(change), 0)
    row_enl = _row_errors(acc)
    row_error = row_enl.reshape(-1, layers)
    done = np.isfinite(row_error).any(0)
    worst = float(np.nanmax(error)) if np.isfinite(error).any() else None
    judged = np.isfinite(row_enl)
    worst_entry = None
    if judged.any():
        e, n, layer = np.unravel_index(np.argmax(np.where(judged, row_enl, -np.inf)), row_enl.shape)
        worst_entry = {"example": example_ids[e] if example_ids is not None else int(e),
                       "language": languages[n] if languages is not None else int(n), "layer": int(layer),
                       "error": float(row_enl[e, n, layer])}
    out = {"definition": "per layer: |sum over examples and languages of (sum_f IG - (P(x) - P(layer's m = 0)))| "
                         "/ sum |P(x) - P(layer's m = 0)|",
           "row_definition": "per example, language and layer: |sum_f IG - (P(x) - P(layer's m = 0))| / "
                             f"max(|P(x) - P(layer's m = 0)|, {COMPLETENESS_FLOOR} P(x))",
           "error_per_layer": finite(error),
           "median_row_relative_error": [float(np.nanmedian(c)) if ok else None for c, ok in zip(row_error.T, done)],
           "worst_row_relative_error": [float(np.nanmax(c)) if ok else None for c, ok in zip(row_error.T, done)],
           "max_error": worst, "worst_row": worst_entry,
           "rows_above_tolerance": int(_above_tolerance(row_enl).sum()), "rows": int(judged.sum()),
           "tolerance": COMPLETENESS_TOLERANCE,
           "satisfied": (worst is not None and worst <= COMPLETENESS_TOLERANCE
                         and (worst_entry is None or worst_entry["error"] <= COMPLETENESS_TOLERANCE))}
    if acc.get("ig/nodes_e") is not None and steps is not None:
        out["nodes"] = _node_counts(acc["ig/nodes_e"], row_enl, steps, max_steps)
    return out


def _row_errors(acc) -> np.ndarray:
    """[E, N, L] completeness error of each (example, language, layer) row: `attribution.ig.relative_gap`
    (floored at COMPLETENESS_FLOOR x P(x)) when acc holds P(x) as ig/prob_e, else relative to |P - P0| alone
    (states saved before P(x) was kept); NaN for rows not judged."""
    total, change, prob = acc["ig/sum_e"], acc["ig/change_e"], acc.get("ig/prob_e")
    with np.errstate(invalid="ignore", divide="ignore"):
        if prob is None:
            return np.where(np.abs(change) > 0, np.abs(total - change) / np.abs(change), np.nan)
        return np.where((np.abs(prob) > 0)[..., None], relative_gap(total, change, prob[..., None]), np.nan)


def _above_tolerance(row_enl: np.ndarray) -> np.ndarray:
    return np.isfinite(row_enl) & (np.where(np.isfinite(row_enl), row_enl, 0) > COMPLETENESS_TOLERANCE)


def _node_counts(nodes_enl, row_enl, steps: int, max_steps: int | None) -> dict:
    """The rows judged per node count of the adaptive IG (`attribution.ig.node_levels`), the most used, and the
    rows that reached the last count still above the tolerance."""
    levels = node_levels(steps, max_steps)
    used = nodes_enl[np.isfinite(nodes_enl) & np.isfinite(row_enl)]
    at_max = (nodes_enl == levels[-1]) & _above_tolerance(row_enl)
    return {"levels": levels, "rows_per_level": [int((used == v).sum()) for v in levels],
            "max_used": int(used.max()) if used.size else None,
            "at_max_above_tolerance": int(at_max.sum()) if len(levels) > 1 else 0}


def summarize_attribution(acc, methods, languages, top_k, width, bootstrap: int = DEFAULT_RESAMPLES,
                          seeds=None) -> dict:
    """attribution.json: per language and method, top-k category shares per layer (the paper's statistic),
    pooled positive shares, the nulls beside all-shared, the base rates (all-shared's share of all, of the
    active and of the active top-k neurons), each with its 95% bootstrap interval; "warnings"."""
    done = ~np.isnan(acc["category_e"][:, 0, 0])
    e = int(done.sum())
    layers = acc["category_e"].shape[1]
    counts = resample_counts(e, bootstrap, seed=0) if bootstrap and e else None
    ci = functools.partial(estimate, counts=counts)
    neuron_share = acc["category_e"][done].sum(1) / (layers * width)  # [E, 4]
    out = {"methods": list(methods), "top_k": int(top_k), "neurons_per_layer": int(width),
           "num_examples": e, "languages": list(languages), "bootstrap": {"resamples": int(bootstrap), "seed": 0,
                                                                          "unit": "example"},
           "neuron_share": {c: float(neuron_share[:, i].mean() * 100) for i, c in enumerate(CATEGORIES)},
           "neuron_share_ci": {c: ci(neuron_share[:, i]) for i, c in enumerate(CATEGORIES)},
           "per_language": {}}
    if seeds is not None:
        out["seeds"] = list(seeds)
    for n, lang in enumerate(languages):
        out["per_language"][lang] = {m: _method_summary(acc, m, n, done, top_k, ci) for m in methods}
        out["per_language"][lang]["matching"] = _matching_summary(acc, n, done, methods)
        out["per_language"][lang]["base_rates"] = _base_rates(acc, n, done, ci)
    out["headline"] = headline(out)
    out["warnings"] = matching_warnings(out)
    for line in out["warnings"]:
        logger.warning("attribution: %s", line)
    return out


def _base_rates(acc, n, done, ci) -> dict:
    """All-shared's share (%) of the neurons active in the language (act > 0; all-shared neurons are active in
    every language) and of all neurons, pooled over layers per example."""
    count = acc["set_count_e"][done, n].sum(1)  # [E, sets]
    shared, other, every = (count[:, SETS.index(s)] for s in ("all_shared", "other_active", "all"))
    return {"all_shared_pct_of_active": ci(shared, shared + other), "all_shared_pct_of_neurons": ci(shared, every)}


def matching_warnings(result: dict) -> list[str]:
    """A sentence per null that misses what its name promises (NULL_PROMISES) by more than MATCH_TOLERANCE (a
    count below 95% for the count), naming the languages and the achieved ratios."""
    lines = []
    for name, promised in NULL_PROMISES.items():
        off = []
        for lang in result["languages"]:
            match = result["per_language"][lang]["matching"]
            ratios = {k: match.get(f"{name}_{k}") for k in promised}
            if any(v is None or (v < 0.95 if k == "count_ratio" else off_by_more(v)) for k, v in ratios.items()):
                off.append(f"{lang} (" + ", ".join(f"{_ratio_name(k)} {_num(v)}" for k, v in ratios.items()) + ")")
        if off and all(f"{name}_{promised[0]}" in result["per_language"][l]["matching"] for l in result["languages"]):
            lines.append(f"{NULL_LABELS[name]} is not matched to all-shared in {', '.join(off)}: its pool lacks "
                         "neurons of all-shared's |m|, so it cannot tell sharing from activation strength there")
    return lines


NULL_LABELS = {"null": "null (active)", "null_any": "null (any)", "null_top": "null (top abs m)",
               "null_mass": "null (abs m mass)"}  # no "|" in a label: the report's tables use it


def _ratio_name(key: str) -> str:
    return {"count_ratio": "neurons", "abs_m_ratio": "mean |m|", "mass_ratio": "|m| mass"}[key]


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}x"


def _method_summary(acc, m, n, done, top_k, ci) -> dict:
    top_el4 = acc[f"{m}/top_e"][done, n] / top_k
    positive_e4 = acc[f"{m}/positive_e"][done, n]
    total_e = positive_e4.sum(-1)
    shared_top_el = top_el4[..., ALL_SHARED]
    summary = {
        "top_share": {c: (top_el4[..., i].mean(0) * 100).tolist() for i, c in enumerate(CATEGORIES)},
        "attribution_share": {c: _ratio(positive_e4[:, i], total_e) for i, c in enumerate(CATEGORIES)},
        "top_k_share": {c: {"per_layer": ci(top_el4[..., i]), "mean": ci(top_el4[..., i].mean(-1))}
                        for i, c in enumerate(CATEGORIES)},
        "pooled_positive_share": {c: ci(positive_e4[:, i], total_e) for i, c in enumerate(CATEGORIES)},
    }
    for name in NULLS:
        null_top_el = acc[f"{m}/{name}_top_e"][done, n].mean(-1) / top_k
        summary[name] = {"top_k_share": {"per_layer": ci(null_top_el), "mean": ci(null_top_el.mean(-1))},
                         "pooled_positive_share": ci(acc[f"{m}/{name}_positive_e"][done, n].mean(-1), total_e),
                         "top_k_share_per_seed": (acc[f"{m}/{name}_top_e"][done, n].mean((0, 1)) / top_k
                                                  * 100).tolist()}
        summary[name]["top_k_share_seed_spread"] = spread(summary[name]["top_k_share_per_seed"])
        summary[f"all_shared_minus_{name}"] = {"top_k_share": ci(shared_top_el.mean(-1) - null_top_el.mean(-1))}
    if acc.get(f"{m}/top_active_e") is not None:  # all-shared neurons are active: their share of the active top-k
        summary["all_shared_pct_of_active_top_k"] = ci(acc[f"{m}/top_e"][done, n, :, ALL_SHARED].sum(-1),
                                                       acc[f"{m}/top_active_e"][done, n].sum(-1))
    summary["score"] = _score_table(acc, m, n, done)
    counts = acc["set_count_e"][done, n].sum((0, 1))
    score = acc[f"{m}/set_score_e"][done, n].sum(0)
    summary["score_per_neuron"] = {s: float(score[i] / counts[i]) if counts[i] else None for i, s in enumerate(SETS)}
    return summary


def _score_table(acc, m, n, done) -> dict:
    """Per category and layer: the score's max and min over examples, its mean over the examples where the
    category is not empty, and its sum per example (NaN entries: an empty category)."""
    stat = {name: acc[f"{m}/score_{name}_e"][done, n] for name in SCORE_STATS}  # [E, L, 4]
    count = (~np.isnan(stat["mean"])).sum(0)
    mean = np.nansum(stat["mean"], 0) / np.maximum(count, 1)
    total = np.nansum(stat["sum"], 0) / max(float(done.sum()), 1.0)
    extreme = {name: np.where(count > 0, reduce(np.where(np.isnan(stat[name]), fill, stat[name]), 0), np.nan)
               for name, reduce, fill in (("max", np.max, -np.inf), ("min", np.min, np.inf))}
    return {c: {"max": finite(extreme["max"][:, i]), "min": finite(extreme["min"][:, i]),
                "mean": mean[:, i].tolist(), "sum": total[:, i].tolist()} for i, c in enumerate(CATEGORIES)}


def _matching_summary(acc, n, done, methods) -> dict:
    """Mean size per layer and mean |m| per neuron of each set; per null its count, mean |m| and summed |m| (mass)
    divided by all-shared's."""
    count_els = acc["set_count_e"][done, n]
    abs_m = acc["set_abs_m_e"][done, n].sum((0, 1))
    total = count_els.sum((0, 1))
    mean_abs_m = [float(abs_m[i] / total[i]) if total[i] else None for i in range(len(SETS))]
    shared = SETS.index("all_shared")
    out = {"sets": list(SETS), "count_per_layer": {s: float(count_els[..., i].mean()) for i, s in enumerate(SETS)},
           "mean_abs_m": dict(zip(SETS, mean_abs_m))}
    for name, null in ((name, SETS.index(s)) for name, s in NULL_SETS.items()):
        out[f"{name}_count_ratio"] = float(total[null] / total[shared]) if total[shared] else None
        out[f"{name}_abs_m_ratio"] = (mean_abs_m[null] / mean_abs_m[shared] if mean_abs_m[null] and
                                      mean_abs_m[shared] else None)
        out[f"{name}_mass_ratio"] = float(abs_m[null] / abs_m[shared]) if abs_m[shared] else None
    return out


def headline(result: dict) -> dict:
    """German (else the first non-English language): the notebook's top-k share of all-shared neurons (mean
    over examples, then layers) next to the |m|-drawn null, and the pooled positive share as a second number."""
    langs = result["languages"]
    lang = "de" if "de" in langs else next((l for l in langs if l != "en"), langs[0])
    entry = result["per_language"][lang]
    methods = result["methods"]
    return {"language": lang,
            "statistic": f"% of each layer's top-{result['top_k']} neurons (by score, per example) that are "
                         "all-shared, mean over examples and layers",
            "all_shared_top_k_share": {m: entry[m]["top_k_share"]["all_shared"]["mean"] for m in methods},
            "null_top_k_share": {m: entry[m]["null"]["top_k_share"]["mean"] for m in methods},
            "all_shared_pooled_positive_share": {m: entry[m]["pooled_positive_share"]["all_shared"] for m in methods},
            "null_pooled_positive_share": {m: entry[m]["null"]["pooled_positive_share"] for m in methods},
            "null_any_top_k_share": {m: entry[m]["null_any"]["top_k_share"]["mean"] for m in methods},
            "null_any_pooled_positive_share": {m: entry[m]["null_any"]["pooled_positive_share"] for m in methods},
            "all_shared_neuron_pct": result["neuron_share"]["all_shared"],
            "all_shared_active_pct": entry["base_rates"]["all_shared_pct_of_active"],
            "all_shared_active_top_k_pct": {m: entry[m].get("all_shared_pct_of_active_top_k") for m in methods},
            "all_shared_neuron_pct_ci": result["neuron_share_ci"]["all_shared"],
            "all_shared_attribution_pct": {m: entry[m]["attribution_share"]["all_shared"] for m in methods}}


def _ratio(num_e, den_e):
    den = float(np.sum(den_e))
    return float(np.sum(num_e) / den * 100) if den > 0 else None
