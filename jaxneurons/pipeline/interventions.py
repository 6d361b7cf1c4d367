"""Deactivation: zero a set of neurons and measure accuracy per language, with matched controls.

Each example's categories come from its own clean forward (threshold 0, at the prompt's last token, across
its languages). A condition sets the down-projection inputs m of its neurons to 0 at the prompt's last token (or,
with every_token, at every token of the row), the same neurons in all the example's languages:

- `all_shared`, `partial_shared`, `specific`: every neuron of that category (today's full-category conditions);
- `partial_shared_count`, `specific_count`: per example and layer, as many neurons of that category as the
  example has all-shared ones there, drawn uniformly within the category (several seeds);
- `random`: as many uniformly drawn neurons of the layer (mostly inactive ones; several seeds);
- `magnitude`: as many activated neurons (partial-shared or specific: act > 0 in some language) with the
  all-shared set's |m| distribution (|m| averaged over the languages; quantile bins, a short top bin served by
  the nearest neurons, `attribution.matched`); it is only called matched where its mean |m| and mass ratios
  to all-shared are within 10% (`sets.<name>.match`, a warning otherwise);
- `top_magnitude`: as many neurons that are not all-shared, the largest |m| ones (no seed);
- `mass`: neurons that are not all-shared, in a random order, added until their contribution mass in the
  layer is nearest all-shared's (several seeds; usually many more neurons than all-shared);
- `non_parallel`: the all-shared neurons of a non-parallel group (`analysis.controls`: the example's own prompt
  in the first language, in each other language n the prompt of the item n places after it in a seeded order):
  the neurons active in every language's prompt when the prompts do not say the same thing (several seeds; a
  first forward over every example records which neurons each row activates, before the pass).

With dose_fractions (e.g. 0.25, 0.5, 1, 2): a dose-response curve, accuracy and gold log-probability against
the contribution mass removed, for `random@f` (f x the all-shared count, uniformly), `ranked@f` (the f x count
largest-|m| neurons, any category) and `all_shared@f` (a uniform f-subset of all-shared, f <= 1); draws of one
seed are nested across f. f = 1 reuses `random` and `all_shared`.

For every condition: accuracy per language, its change from clean (paired), the contribution mass it removes
(sum over its neurons of |m| * ||v|| at the last token / the row's total over all neurons, from the clean
forward), its size and mean |m| per neuron, its count, mean |m| and mass ratios to all-shared, the spread over
seeds, and a paired test of all-shared-off against each control and of each set against clean (the primary
criterion: the paired bootstrap interval; the exact sign test, one-sided, as secondary; `analysis.bootstrap`).
The answers are scored exactly as in the sharing run (same batches, same option scoring). At the prompt's last
token, a condition cannot change the tokens before it: a clean forward of each batch keeps their keys and values
(`prompt_cache`), and each condition runs only the prompt's last token and the answers over them (`cached_scores`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxneurons import distributed
from jaxneurons.analysis import ALL_SHARED, CATEGORIES, PARTIAL_SHARED, SPECIFIC, categorize
from jaxneurons.analysis.report import FIGURES_DIR, write_section
from jaxneurons.analysis.bootstrap import (CRITERION, DEFAULT_RESAMPLES, estimate, paired_test, resample_counts,
                                           spread)
from jaxneurons.analysis.controls import anchored_groups, control_readout, shared_in_groups
from jaxneurons.analysis.equal_mass import compare, read_curve
from jaxneurons.attribution.matched import (DRAWS_VERSION, MATCH_TOLERANCE, count_matched, magnitude_matched,
                                            mass_matched, off_by_more, top_magnitude)
from jaxneurons.attribution.static import down_rows
from jaxneurons.lm import LanguageModel
from jaxneurons.models.decoder import Decoder, Intervention, KVCache, Record
from jaxneurons.models.output import forward
from jaxneurons.pipeline import merge
from jaxneurons.pipeline.batching import plan_batches, tokenize_examples
from jaxneurons.pipeline.checkpoint import NEXT_BATCH, load_checkpoint, save_checkpoint
from jaxneurons.pipeline.checks import check_at_least_zero, check_choices, check_positive, check_seeds, seed_list
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.generated_answers import SCORING, generated_matches
from jaxneurons.pipeline.identity import pass_identity
from jaxneurons.pipeline.neuron_sets import read_sets, set_mask
from jaxneurons.pipeline.outputs import write_result_json
from jaxneurons.pipeline.runner import checkpoint_dir, run_pass
from jaxneurons.pipeline.scoring import accuracy_per_language, hidden_scores, judge, record_scores, slot_scores

KINDS = ("all_shared", "partial_shared", "specific", "random", "magnitude", "top_magnitude", "mass", "non_parallel")
SEEDED = {"random": "random", "magnitude": "magnitude", "partial_shared": "partial_shared_count",
          "specific": "specific_count", "mass": "mass", "non_parallel": "non_parallel"}  # kind -> seeded condition
UNSEEDED = ("top_magnitude",)  # drawn sets without a seed
SET_PREFIX = "set:"  # a condition of a file's neuron set: set:<lang>
STREAMS = {"random": 0, "magnitude": 1, "partial_shared_count": 2, "specific_count": 3, "mass": 4,
           "all_shared": 5}  # a seeded NumPy draw's stream (the first four: the draws before issue 26)
MATCHED = {"magnitude": ("mean_abs_m_ratio", "mass_ratio"), "mass": ("mass_ratio",)}  # the ratios a name promises
logger = logging.getLogger(__name__)
INTERVENTIONS_FILE = "interventions.json"
INTERVENTIONS_STATE_FILE = "interventions_state.npz"


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def example_neurons(decoder: Decoder, params, inputs: dict, num_languages: int):
    """(category codes [B, L, F], |m| [B, N, L, F], contribution |m| * ||v|| [B, N, L, F]) at the prompts'
    last token, from each example's clean forward."""
    out = forward(decoder, params, inputs["ids_rt"], inputs["mask_rt"], record_index=inputs["record_index_r"])
    act, m = out.activations["act"], out.activations["ffn_hidden"]  # [R, L, F]
    rows, layers, width = act.shape
    shape = (rows // num_languages, num_languages, layers, width)
    abs_m = jnp.abs(m.astype(jnp.float32))
    contribution = abs_m * jnp.linalg.norm(down_rows(params).astype(jnp.float32), axis=-1)[None]
    return jax.vmap(categorize)(act.reshape(shape) > 0), abs_m.reshape(shape), contribution.reshape(shape)


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def example_active_bits(decoder: Decoder, params, inputs: dict, num_languages: int) -> jax.Array:
    """uint8 [B, N, L, ceil(F / 8)]: each row's neurons active (act > 0) at the prompt's last token, packed 8 to a
    byte along the neurons as the sharing controls keep them (`controls.control_readout`; what `non_parallel`
    regroups)."""
    act = forward(decoder, params, inputs["ids_rt"], inputs["mask_rt"],
                  record_index=inputs["record_index_r"]).activations["act"]  # [R, L, F]
    rows, layers, width = act.shape
    return control_readout(act.reshape(rows // num_languages, num_languages, layers, width))["active_bits"]


@functools.partial(jax.jit, static_argnames=("decoder",))
def prompt_cache(decoder: Decoder, params, inputs: dict) -> KVCache:
    """The clean keys and values of every row's tokens before its prompt's last token (`record_index_r`), from a
    decoder that records them (`Record(kv=True)`): the slots from there on are masked."""
    out = forward(decoder, params, inputs["ids_rt"], inputs["mask_rt"], record_index=inputs["record_index_r"])
    before = jnp.arange(inputs["ids_rt"].shape[1])[None] < inputs["record_index_r"][:, None]
    return out.cache.replace(mask=out.cache.mask * before)


def condition_names(kinds: Sequence[str], seeds, dose_fractions: Sequence[float] = (),
                    set_languages: Sequence[str] = ()) -> list[str]:
    """'clean', the full-category and unseeded conditions, each seeded condition as 'name/seed', the dose
    points' conditions not already there ('random@0.5/seed', 'ranked@0.5', ...), then a file's sets ('set:de')."""
    seeds = seed_list(seeds)
    conditions = ["clean"] + [k for k in kinds if k in CATEGORIES or k in UNSEEDED]
    conditions += [f"{SEEDED[k]}/{s}" for k in kinds if k in SEEDED for s in seeds]
    for points in dose_groups(dose_fractions).values():
        for _, group in points:
            seeded = not (group in CATEGORIES or group.startswith("ranked@"))
            conditions += [c for c in ([f"{group}/{s}" for s in seeds] if seeded else [group]) if c not in conditions]
    return conditions + [f"{SET_PREFIX}{lang}" for lang in set_languages]


def dose_groups(fractions: Sequence[float]) -> dict[str, list[tuple[float, str]]]:
    """Per dose kind, (fraction of the all-shared count, condition group): f = 1 is `random` / `all_shared`
    themselves; all-shared has no point above 1."""
    name = {f: f"{f:g}" for f in fractions}
    return {"random": [(f, "random" if f == 1 else f"random@{name[f]}") for f in fractions],
            "ranked": [(f, f"ranked@{name[f]}") for f in fractions],
            "all_shared": [(f, "all_shared" if f == 1 else f"all_shared@{name[f]}") for f in fractions if f <= 1]}


def off_mask(condition: str, codes_blf, abs_m_bnlf, batch_index: int, contribution_bnlf=None,
             sets_lf: dict | None = None, regrouped_blf: dict | None = None) -> np.ndarray:
    """bool [B, L, F]: the neurons a condition deactivates in each example (all its languages); `set:<lang>`
    takes sets_lf[lang] ([L, F], a file's set) in every example, `non_parallel/<seed>` regrouped_blf[seed] (each
    example's non-parallel group's all-shared neurons, `non_parallel_groups`)."""
    codes = np.asarray(codes_blf)
    if condition.startswith(SET_PREFIX):
        return np.broadcast_to(sets_lf[condition.removeprefix(SET_PREFIX)], codes.shape).copy()
    shared = codes == ALL_SHARED
    group, _, seed = condition.partition("/")
    name, _, fraction = group.partition("@")
    if name == "non_parallel":
        return regrouped_blf[seed].copy()
    if condition == "clean":
        return np.zeros(codes.shape, bool)
    if name in CATEGORIES and not seed and not fraction:
        return codes == CATEGORIES.index(name)
    count_bl = shared.sum(-1)
    if fraction:
        count_bl = np.minimum(np.round(float(fraction) * count_bl).astype(np.int64), codes.shape[-1])
    if name in ("top_magnitude", "ranked"):  # no seed: the largest mean |m| over the languages
        pool = ~shared if name == "top_magnitude" else np.ones(codes.shape, bool)
        return top_magnitude(np.asarray(abs_m_bnlf).mean(1), count_bl, pool)
    if name == "random":  # today's uniform draw, on the device
        key = jax.random.fold_in(jax.random.key(int(seed)), batch_index)
        rank_blf = jnp.argsort(jnp.argsort(jax.random.uniform(key, codes.shape), -1), -1)
        return np.asarray(rank_blf < count_bl[..., None])
    rng = np.random.default_rng([int(seed), batch_index, STREAMS[name]])
    if name == "magnitude":
        pool = (codes == PARTIAL_SHARED) | (codes == SPECIFIC)
        return magnitude_matched(np.asarray(abs_m_bnlf).mean(1), shared, pool, rng)
    if name == "mass":
        contribution = np.asarray(contribution_bnlf).mean(1)
        return mass_matched(contribution, (contribution * shared).sum(-1), ~shared, rng)
    return count_matched(count_bl, codes == CATEGORIES.index(name.removesuffix("_count")), rng)


def deactivation_scale(off_blf, num_languages: int) -> np.ndarray:
    """scale [B*N, L, F]: 0 for the neurons to deactivate of each example (the same in all its languages)."""
    scale_blf = np.where(np.asarray(off_blf), np.float32(0), np.float32(1))
    return np.repeat(scale_blf, num_languages, axis=0)


@functools.partial(jax.jit, static_argnames=("decoder", "every_token"))
def intervened_scores(decoder: Decoder, params, inputs: dict, scale_rlf, every_token: bool, first_tokens_rs):
    """Scores of a forward with m <- m * scale at the prompt's last token (or every token with every_token):
    (logprob [R], greedy [R], first-token [R, S] x2)."""
    change = Intervention(scale_rlf, jnp.zeros_like(scale_rlf), _where(inputs, every_token))
    hidden = forward(decoder, params, inputs["ids_rt"], inputs["mask_rt"],
                         record_index=inputs["record_index_r"], intervention=change,
                         logit_index=inputs["logit_index_rj"]).logits
    return hidden_scores(decoder.config, params, hidden, inputs["targets_rj"], inputs["target_mask_rj"],
                         first_tokens_rs, decoder.dtype)


@functools.partial(jax.jit, static_argnames=("decoder",))
def cached_scores(decoder: Decoder, params, inputs: dict, prefix: KVCache, scale_rlf, first_tokens_rs):
    """`intervened_scores` at the prompt's last token (every_token False), run from that token on: it and the
    continuation attend over `prefix`, the clean keys and values of the tokens before it (`prompt_cache`),
    which a change at the last token cannot reach in a causal decoder. inputs: right-padded rows whose
    record_index is the prompt's last token (`batching.Inputs`; its prompts those of `prefix`'s rows)."""
    ids, mask, logit_index = _from_prompt_end(inputs)
    change = Intervention(scale_rlf, jnp.zeros_like(scale_rlf), (jnp.arange(ids.shape[1]) == 0)[None])
    hidden = forward(decoder, params, ids, mask, intervention=change, logit_index=logit_index, cache=prefix).logits
    return hidden_scores(decoder.config, params, hidden, inputs["targets_rj"], inputs["target_mask_rj"],
                         first_tokens_rs, decoder.dtype)


def _from_prompt_end(inputs: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(ids [R, K], mask [R, K], logit_index [R, K]) of each row from its prompt's last token on: the K tokens
    (K: the targets' length) whose logits score the continuation, mask 0 past the row's end."""
    t, k = inputs["ids_rt"].shape[1], inputs["targets_rj"].shape[1]
    start_r = inputs["record_index_r"]
    index_rk = start_r[:, None] + jnp.arange(k)[None]
    inside_rk = index_rk < t
    index_rk = jnp.minimum(index_rk, t - 1)
    ids = jnp.take_along_axis(inputs["ids_rt"], index_rk, axis=1)
    mask = jnp.take_along_axis(inputs["mask_rt"], index_rk, axis=1) * inside_rk
    return ids, mask, inputs["logit_index_rj"] - start_r[:, None]


def _where(inputs: dict, every_token: bool) -> jax.Array:
    if every_token:
        return inputs["mask_rt"].astype(bool)
    t = inputs["ids_rt"].shape[1]
    return jnp.arange(t)[None, :] == inputs["record_index_r"][:, None]


@dataclasses.dataclass(frozen=True)
class InterventionsConfig:
    """The deactivation pass's settings (analyze.py's flags); validated when built."""

    kinds: tuple[str, ...] = KINDS  # neuron sets to deactivate, each measured separately (see the module)
    batch_size: int = 8  # examples per step
    every_token: bool = False  # deactivate at every token instead of the prompt's last token
    seeds: int | tuple[int, ...] = 3  # the seeded controls' seeds: n (0..n-1) or a list
    bootstrap: int = DEFAULT_RESAMPLES  # resamples of the examples for the 95% intervals (0: none)
    dose_fractions: tuple[float, ...] = ()  # dose-response sizes, x the all-shared count (e.g. 0.25, 0.5, 1, 2)
    generated: bool = False  # also score greedy generations (open answers; `generated_answers`), dose points aside
    neuron_sets: str | None = None  # a JSON file of per-language sets (e.g. a LAPE selection): each one a condition

    def __post_init__(self):
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "seeds", check_seeds(self.seeds))
        object.__setattr__(self, "dose_fractions", tuple(float(f) for f in self.dose_fractions))
        check_choices("kinds", self.kinds, KINDS)
        check_positive(batch_size=self.batch_size)
        check_at_least_zero(bootstrap=self.bootstrap)
        if any(not (math.isfinite(f) and f > 0) for f in self.dose_fractions):
            raise PipelineInputError(f"dose_fractions must be finite numbers > 0, got {list(self.dose_fractions)}")


def run_interventions(lm: LanguageModel, task, examples: Sequence, languages: Sequence[str], output_dir: str | None,
                      config: InterventionsConfig = InterventionsConfig(), *, resume: bool = False,
                      progress: bool = True, figures: bool = True, mesh: Mesh | None = None,
                      process_index: int | None = None, process_count: int | None = None,
                      _full_forwards: bool = False) -> dict:
    """Write output_dir/interventions.json, its figure and report section (see the module docstring); output_dir
    None runs in memory: no file, no checkpoint.

    resume: continue from output_dir/interventions_state.npz; a checkpoint of another identity is refused.
    mesh: as in `run_sharing_analysis` (default: `distributed.default_mesh()`); batch_size is rounded up to a
      multiple of its data axis.
    process_index, process_count: as in `run_sharing_analysis` (default `distributed.process_layout`): process k
      conditions the batches i with i % count == k and keeps its checkpoint in output_dir/process_{k}_of_{count}/;
      every process returns the merged result (exactly a one-process run's), process 0 alone writes it.

    At the prompt's last token (every_token False) a clean forward of each batch keeps the keys and values of the
    tokens before it (`prompt_cache`), and each condition runs only the last token and the continuations over
    them (`cached_scores`); _full_forwards: a full forward per condition instead (the reference the tests compare
    to).
    """
    every_token, seeds = config.every_token, config.seeds
    if not every_token and any(ex.readout != "prompt" for ex in examples):
        raise PipelineInputError("these examples read the neurons at the gold answer's end, where deactivating them "
                                 "cannot change the scored answer: load them with a prompt-end format "
                                 "(e.g. prompt_format='paper') or deactivate at every token")
    if config.generated and task.scoring != "greedy":
        raise PipelineInputError(f"generated answers are scored for open-answer tasks (mpararel, mzsre_*, "
                                 f"builtin_facts), not {task.name!r}, whose answers are options")
    n = len(languages)
    if "non_parallel" in config.kinds and not 2 <= n <= len(examples):
        raise PipelineInputError(f"the non_parallel control groups the {n} languages' prompts of {n} different "
                                 f"examples: it needs at least 2 languages and as many examples as languages, got "
                                 f"{len(examples)} examples")
    rows = tokenize_examples(lm.tokenizer, examples, languages, task.scoring)
    placement = distributed.placement(mesh)
    plan = plan_batches(rows, placement.round_batch_size(config.batch_size), "last", "right", lm.pad_id)
    sets = {} if config.neuron_sets is None else read_sets(config.neuron_sets, languages, lm.config,
                                                             "--deactivate_sets")
    sets_lf = {lang: set_mask(neurons, lm.config) for lang, neurons in sets.items()}
    conditions = condition_names(config.kinds, seeds, config.dose_fractions, list(sets))
    identity = pass_identity("interventions", config, lm, examples, rows, task=task.name, languages=list(languages),
                            batch_size_used=plan.batch_size, draws=DRAWS_VERSION,
                            **({"sets": {k: {str(l): v for l, v in s.items()} for k, s in sets.items()}} if sets else {}))
    process_index, process_count = distributed.process_layout(process_index, process_count)
    split = distributed.batch_split(placement.mesh, process_index, process_count)  # (0, 1) across processes
    state_dir, own_identity = checkpoint_dir(output_dir, identity, process_index, process_count, resume,
                                             lockstep=split[1] == 1)
    path = None if state_dir is None else os.path.join(state_dir, INTERVENTIONS_STATE_FILE)
    saved = load_checkpoint(path, own_identity) if resume else None
    start = int(saved.pop(NEXT_BATCH)) if saved else 0
    acc = saved if saved else _empty(conditions, len(examples), n, plan.num_slots, lm.config.num_layers,
                                     config.generated)
    cached = not (every_token or _full_forwards)
    codes_decoder = lm.decoder(Record(("act", "ffn_hidden"), "last"), logits="none")
    cache_decoder = lm.decoder(Record(kv=True), logits="none")
    score_decoder = lm.decoder(Record(), logits="hidden")
    params = placement.params(lm.params)
    regroup = (non_parallel_groups(codes_decoder, params, plan, placement, len(examples), n, seeds, progress)
               if "non_parallel" in config.kinds else None)

    def step(index: int) -> None:
        batch = plan.batch(index)
        main, first_tokens = placement.batch((batch.neuron_inputs.arrays(), batch.first_tokens_rs))
        with placement.context():
            codes, abs_m, contribution = placement.fetch(example_neurons(codes_decoder, params, main, n))
        regrouped = None if regroup is None else {
            seed: shared_in_groups(regroup[0], groups[batch.example_index_b], codes.shape[-1])
            for seed, groups in regroup[1].items()}
        if cached:  # from the prompt's last token on, over the clean keys and values of the tokens before it
            with placement.context():
                prefix = prompt_cache(cache_decoder, params, main)
            score = functools.partial(cached_scores, score_decoder, params, prefix=prefix)
        else:
            score = functools.partial(intervened_scores, score_decoder, params, every_token=every_token)
        e_v = batch.example_index_b[batch.valid_b]
        acc["total_contribution"][e_v] = contribution.sum((-1, -2))[batch.valid_b]
        for condition in conditions:
            off = off_mask(condition, codes, abs_m, index, contribution, sets_lf, regrouped)
            _record_set(acc, condition, e_v, off[batch.valid_b], abs_m[batch.valid_b], contribution[batch.valid_b])
            scale = placement.batch(deactivation_scale(off, n))
            with placement.context():
                stats = score(main, scale_rlf=scale, first_tokens_rs=first_tokens)
                full = {}
                for slot, fwd in zip(batch.scoring_slots, batch.scoring_inputs):
                    extra = score(placement.batch(fwd.arrays()), scale_rlf=scale, first_tokens_rs=first_tokens)
                    full[slot] = (extra["logprob"], extra["greedy"])
            stats, full = placement.fetch((stats, full))
            record_scores(batch, slot_scores(batch, stats, full, "last"), n, acc[f"{condition}/option_logprobs"],
                          acc[f"{condition}/greedy"], acc[f"{condition}/gold_logprob"])
            if f"{condition}/gen_prefix" in acc:
                scale_rlf = None if condition == "clean" else deactivation_scale(off, n)[np.repeat(batch.valid_b, n)]
                _record_generated(acc, condition, lm, rows, examples, languages, e_v, scale_rlf, every_token, mesh)

    def save(next_batch: int) -> None:
        if path is not None:
            save_checkpoint(path, own_identity, {**acc, NEXT_BATCH: np.asarray(next_batch)})

    run_pass(f"interventions ({len(conditions) - 1} + clean)", plan, start, step, save,
             process_index=split[0], process_count=split[1], progress=progress)
    if split[1] > 1:
        acc = merge.gather_accumulators(acc, plan, identity, output_dir, INTERVENTIONS_STATE_FILE, process_index,
                                        process_count)
    result = summarize_interventions(acc, conditions, task, examples, languages, every_token, seeds, config.bootstrap,
                                     config.dose_fractions)
    result["meta"].update(model=lm.source or lm.config.family, task=task.name, languages=list(languages))
    if config.generated:
        result["meta"]["generated"] = SCORING
    if process_index == 0 and output_dir is not None:
        write_deactivation(output_dir, result, figures=figures)
    return result


def non_parallel_groups(decoder: Decoder, params, plan, placement, num_examples: int, num_languages: int, seeds,
                        progress: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(every row's active neurons at the prompt's last token, uint8 [E, N, L, ceil(F / 8)] from a first forward
    over the plan's batches; per seed, each example's non-parallel group, int [E, N] (`controls.anchored_groups`)).
    Every process records every example (a group reaches across batches); a resumed run records them again."""
    bits = None

    def record(index: int) -> None:
        nonlocal bits
        batch = plan.batch(index)
        with placement.context():
            got = placement.fetch(example_active_bits(decoder, params, placement.batch(batch.neuron_inputs.arrays()),
                                                      num_languages))
        if bits is None:
            bits = np.zeros((num_examples,) + got.shape[1:], np.uint8)
        bits[batch.example_index_b[batch.valid_b]] = got[batch.valid_b]

    run_pass("non-parallel groups", plan, 0, record, lambda next_batch: None, progress=progress)
    return bits, {str(s): anchored_groups(num_examples, num_languages, s) for s in seed_list(seeds)}


def write_deactivation(output_dir: str, result: dict, figures: bool = True) -> dict:
    """interventions.json, its figure (figures/interventions.png) and its report section; returns what
    interventions.json holds."""
    from jaxneurons.analysis import deactivation_report as report  # matplotlib, imported when first needed

    result = write_result_json(os.path.join(output_dir, INTERVENTIONS_FILE), result)
    paths = report.write_figures(result, os.path.join(output_dir, FIGURES_DIR)) if figures else {}
    write_section(output_dir, "deactivation", report.interventions_section(result, paths, output_dir))
    return result


def _empty(conditions, e, n, slots, layers, generated: bool = False) -> dict[str, np.ndarray]:
    """Per-example arrays (NaN until filled): scores, and what each condition deactivates; with generated, the
    generated answers' first-token and prefix matches of every condition but the dose points."""
    acc = {"total_contribution": np.full((e, n), np.nan)}
    for condition in conditions:
        acc.update({f"{condition}/option_logprobs": np.full((e, n, slots), np.nan, np.float32),
                    f"{condition}/greedy": np.zeros((e, n), bool), f"{condition}/gold_logprob": np.full((e, n), np.nan),
                    f"{condition}/count": np.full((e, layers), np.nan), f"{condition}/abs_m": np.full((e, n), np.nan),
                    f"{condition}/contribution": np.full((e, n), np.nan)})
    if generated:
        for condition in conditions:
            if "@" not in condition:
                acc.update({f"{condition}/gen_first": np.full((e, n), np.nan),
                            f"{condition}/gen_prefix": np.full((e, n), np.nan)})
    return acc


def _record_generated(acc, condition, lm, rows, examples, languages, e_v, scale_rlf, every_token, mesh) -> None:
    """The batch's valid rows generated under the condition (scale_rlf [R, L, F]; None: clean), scored against
    their gold answers (`generated_answers.generated_matches`)."""
    pairs = [(e, i) for e in e_v for i in range(len(languages))]
    first, prefix = generated_matches(lm, [rows[e][i].prompt for e, i in pairs],
                                      [examples[e].answers[languages[i]] for e, i in pairs],
                                      [rows[e][i].continuations[0] for e, i in pairs], scale_rlf, every_token, mesh)
    acc[f"{condition}/gen_first"][e_v] = first.reshape(len(e_v), -1)
    acc[f"{condition}/gen_prefix"][e_v] = prefix.reshape(len(e_v), -1)


def _record_set(acc, condition, e_v, off_blf, abs_m_bnlf, contribution_bnlf) -> None:
    """Per example: neurons off per layer; summed |m| and contribution of those neurons per language."""
    acc[f"{condition}/count"][e_v] = off_blf.sum(-1)
    acc[f"{condition}/abs_m"][e_v] = (abs_m_bnlf * off_blf[:, None]).sum((-1, -2))
    acc[f"{condition}/contribution"][e_v] = (contribution_bnlf * off_blf[:, None]).sum((-1, -2))


def _groups(conditions: Sequence[str]) -> dict[str, list[str]]:
    """Condition group (a seeded condition's name without the seed) -> its conditions, in order."""
    groups: dict[str, list[str]] = {}
    for condition in conditions:
        groups.setdefault(condition.split("/")[0], []).append(condition)
    return groups


def summarize_interventions(acc, conditions, task, examples, languages, every_token, seeds,
                            bootstrap: int = DEFAULT_RESAMPLES, dose_fractions: Sequence[float] = ()) -> dict:
    """interventions.json: accuracy per condition group and language (old flat keys kept), and under "sets" each
    group's accuracy, paired change from clean, contribution mass removed, size and ratios to all-shared (with
    the spread over seeds), all with 95% intervals; "paired_tests": all-shared-off against each other group,
    "paired_tests_vs_clean": each group against clean; "dose_response" and "at_equal_mass" with dose_fractions;
    "warnings"."""
    done = ~np.isnan(acc["total_contribution"][:, 0])
    kept = [ex for ex, d in zip(examples, done) if d]
    counts = resample_counts(int(done.sum()), bootstrap, seed=0) if bootstrap and done.any() else None
    per_condition = {condition: _per_example(acc, condition, done, task, kept, languages) for condition in conditions}
    members = _groups(conditions)
    groups = {g: {key: np.mean([per_condition[r][key] for r in rs], 0) for key in per_condition[rs[0]]}
              for g, rs in members.items()}
    result = {g: accuracy_per_language(v["correct"], languages) for g, v in groups.items()}
    result["sets"] = {g: _set_summary(v, groups["clean"], languages, counts) for g, v in groups.items()}
    target = groups.get("all_shared")
    for g, entry in result["sets"].items():
        if target is not None and g != "clean":
            entry["match"] = _ratios(groups[g], target)
        if len(members[g]) > 1:
            entry["per_seed"] = _per_seed([per_condition[c] for c in members[g]], groups["clean"], target)
            entry["per_seed"]["seeds"] = [c.split("/")[1] for c in members[g]]
            entry["seed_spread"] = {k: spread(v) for k, v in entry["per_seed"].items() if k != "seeds"}
    if target is not None:
        result["paired_tests"] = {g: paired_test(target, v, counts) for g, v in groups.items()
                                  if g not in ("clean", "all_shared")}
    result["paired_tests_vs_clean"] = {g: paired_test(v, groups["clean"], counts) for g, v in groups.items()
                                       if g != "clean"}
    if dose_fractions:
        result["dose_response"] = dose_response(result["sets"], dose_fractions)
        if target is not None:
            result["at_equal_mass"] = at_equal_mass(groups, dose_fractions, bootstrap)
    result["warnings"] = matching_warnings(result["sets"]) + discordance_warnings(result)
    for line in result["warnings"]:
        logger.warning("deactivation: %s", line)
    seeds = seed_list(seeds)
    result["meta"] = {
        "deactivated_at": "every token" if every_token else "last token", "random_seeds": len(seeds),
        "seeds": seeds, "num_examples": int(done.sum()),
        "mean_deactivated_per_layer": {g: v["count"].mean(0).tolist() for g, v in groups.items() if g != "clean"},
        "random_per_seed": {c.split("/")[1]: accuracy_per_language(per_condition[c]["correct"], languages)
                            for c in conditions if c.startswith("random/")},
        "bootstrap": {"resamples": int(bootstrap), "seed": 0, "unit": "example"},
        "criterion": CRITERION, "match_tolerance": MATCH_TOLERANCE,
        "removed_mass": "sum over the deactivated neurons of |m| * ||v|| at the prompt's last token (clean "
                        "forward) / the same sum over all neurons of all layers, per row; mean over languages "
                        "and examples, in %"}
    return result


def _ratios(values: dict, target: dict) -> dict:
    """A set's size, mean |m| per neuron and summed contribution (pooled over examples, languages and layers)
    divided by the all-shared set's."""
    def ratio(a, b):
        return float(a / b) if b else None

    size, target_size = values["count"].sum(), target["count"].sum()
    mean = ratio(values["abs_m"].sum(), size)
    target_mean = ratio(target["abs_m"].sum(), target_size)
    return {"count_ratio": ratio(size, target_size),
            "mean_abs_m_ratio": ratio(mean, target_mean) if mean is not None and target_mean else None,
            "mass_ratio": ratio(values["contribution"].sum(), target["contribution"].sum())}


def _per_seed(values: list[dict], clean: dict, target: dict | None) -> dict[str, list]:
    """Per seed of a group: mean accuracy (%), its change from clean (pp), the gold log-prob change (nats) and,
    beside all-shared, the mean |m| and mass ratios."""
    out = {"accuracy": [float(v["correct"].mean() * 100) for v in values],
           "delta": [float((v["correct"] - clean["correct"]).mean() * 100) for v in values],
           "gold_logprob_change": [float((v["gold_logprob"] - clean["gold_logprob"]).mean()) for v in values]}
    if target is not None:
        ratios = [_ratios(v, target) for v in values]
        out.update({k: [r[k] for r in ratios] for k in ("mean_abs_m_ratio", "mass_ratio")})
    return out


def matching_warnings(sets: dict) -> list[str]:
    """A sentence for each control whose name promises a match to all-shared (MATCHED) that it misses by more
    than MATCH_TOLERANCE."""
    lines = []
    for name, promised in MATCHED.items():
        match = sets.get(name, {}).get("match")
        if match is None:
            continue
        off = [f"{key.removesuffix('_ratio').replace('_', ' ')} {_num(match[key])}x" for key in promised
               if off_by_more(match[key])]
        if off:
            lines.append(f"the {name} control is not matched to all-shared ({', '.join(off)} all-shared's; "
                         f"tolerance {MATCH_TOLERANCE:.0%}): its pool lacks neurons of all-shared's size, so it "
                         "cannot tell sharing from magnitude")
    return lines


def discordance_warnings(result: dict) -> list[str]:
    """A sentence naming the paired accuracy tests with fewer than MIN_DISCORDANT differing examples."""
    few = [f"{kind} {name} ({test['correct']['discordant']})"
           for kind, tests in (("all-shared vs", result.get("paired_tests", {})),
                               ("clean vs", result.get("paired_tests_vs_clean", {})))
           for name, test in tests.items() if test["correct"]["few_discordant"]]
    if not few:
        return []
    return [f"fewer than 10 examples differ in accuracy for: {', '.join(few)}; the sign test cannot reach a small "
            "p-value there, judge by the bootstrap interval and the gold log-probability"]


def dose_response(sets: dict, fractions: Sequence[float]) -> dict:
    """Per dose kind and fraction: the set's removed mass, accuracy, its change from clean and the gold
    log-probability change (each {"value", "ci95"}), and its size: arrays in fraction order."""
    curves = {}
    for kind, points in dose_groups(fractions).items():
        entries = [sets[g] for _, g in points]
        curves[kind] = {"fraction": [f for f, _ in points], "set": [g for _, g in points],
                        "removed_mass": [e["removed_mass"] for e in entries],
                        "accuracy": [e["accuracy"]["mean"] for e in entries],
                        "delta": [e["delta"]["mean"] for e in entries],
                        "gold_logprob_change": [e["gold_logprob_change"] for e in entries],
                        "neurons_per_layer": [e["neurons_per_layer"] for e in entries]}
    return {"fractions": list(fractions), "kinds": list(curves), "curves": curves,
            "definition": "x the all-shared count per example and layer: random@f uniform neurons, ranked@f the "
                          "largest mean-|m| neurons (any category), all_shared@f a uniform subset of all-shared"}


def at_equal_mass(groups: dict, fractions: Sequence[float], resamples: int) -> dict:
    """All-shared off against every other set at equal contribution mass removed (`analysis.equal_mass`), on the
    gold answer's log-probability change (per example, mean over languages): each set that is not a dose point
    at its own mass, against the all-shared curve (its dose subsets and the whole set) read there; "ranked": the
    |m|-ranked curve read at all-shared's own mass. {"sets": {set: {"n", "left_out", "mass", "all_shared",
    "other", "difference"}}, "definition"}; difference = all-shared minus the other (negative: all-shared hurts
    more)."""
    clean = groups["clean"]["gold_logprob"]

    def per_example(group):  # (removed mass %, gold log-prob change) [E]
        return 100 * groups[group]["mass"].mean(-1), (groups[group]["gold_logprob"] - clean).mean(-1)

    def curve(kind):  # [E, K] each; all-shared's up to the whole set
        names = [g for _, g in dose_groups(fractions)[kind]]
        points = [per_example(g) for g in names + (["all_shared"] if kind == "all_shared" and 1 not in fractions
                                                   else [])]
        return np.stack([m for m, _ in points], 1), np.stack([c for _, c in points], 1)

    shared_mass, shared_change = per_example("all_shared")
    shared_curve, out = curve("all_shared"), {}
    for group in groups:
        if group in ("clean", "all_shared") or "@" in group:
            continue
        mass, change = per_example(group)
        on_curve, inside = read_curve(*shared_curve, mass)
        out[group] = compare(mass, on_curve, change, inside, resamples)
    ranked, inside = read_curve(*curve("ranked"), shared_mass)
    out["ranked"] = compare(shared_mass, shared_change, ranked, inside, resamples)
    return {"sets": out, "definition": "per example: the other set's removed mass (% of the row's contribution) "
                                       "and both sets' gold log-prob change there (nats; all-shared's from its dose "
                                       "curve, linear between clean and its sizes; 'ranked': the |m|-ranked curve "
                                       "at all-shared's mass); examples beyond the curve's largest size left out"}


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _per_example(acc, condition, done, task, examples, languages) -> dict[str, np.ndarray]:
    """One condition's per-example values: correct [E, N], gold log-prob [E, N], removed mass [E, N], neurons off
    per layer [E, L], summed |m| and contribution of those neurons [E, N]."""
    correct = judge(task, acc[f"{condition}/option_logprobs"][done], acc[f"{condition}/greedy"][done], examples,
                    languages)
    values = {"correct": correct.astype(np.float64), "gold_logprob": acc[f"{condition}/gold_logprob"][done],
              "mass": acc[f"{condition}/contribution"][done] / acc["total_contribution"][done],
              "count": acc[f"{condition}/count"][done], "abs_m": acc[f"{condition}/abs_m"][done],
              "contribution": acc[f"{condition}/contribution"][done]}
    for key in ("gen_first", "gen_prefix"):
        if f"{condition}/{key}" in acc:
            values[key] = acc[f"{condition}/{key}"][done]
    return values


def _set_summary(values: dict, clean: dict, languages, counts) -> dict:
    """Accuracy and its paired change from clean per language and mean, the paired change of the gold answer's
    log-probability (nats, mean over languages), removed mass, size, per-neuron |m|."""
    ci = functools.partial(estimate, counts=counts)
    change = values["correct"] - clean["correct"]
    neurons = values["count"].sum() * len(languages)
    return {"accuracy": {**{l: ci(values["correct"][:, i]) for i, l in enumerate(languages)},
                         "mean": ci(values["correct"].mean(-1))},
            "delta": {**{l: ci(change[:, i]) for i, l in enumerate(languages)}, "mean": ci(change.mean(-1))},
            "gold_logprob_change": ci((values["gold_logprob"] - clean["gold_logprob"]).mean(-1), scale=1.0),
            "removed_mass": ci(values["mass"].mean(-1)),
            "neurons_per_layer": float(values["count"].mean()),
            "mean_abs_m": float(values["abs_m"].sum() / neurons) if neurons else None,
            "mean_contribution": float(values["contribution"].sum() / neurons) if neurons else None,
            **({"generated": _generated_summary(values, clean, languages, ci)} if "gen_prefix" in values else {})}


def _generated_summary(values: dict, clean: dict, languages, ci) -> dict:
    """The generated answers' prefix and first-token match (%) per language and mean, and the prefix match's
    paired change from clean (percentage points), 95% intervals over examples."""
    out = {}
    for key, name in (("gen_prefix", "prefix_match"), ("gen_first", "first_token")):
        out[name] = {**{l: ci(values[key][:, i]) for i, l in enumerate(languages)}, "mean": ci(values[key].mean(-1))}
    out["prefix_change"] = ci((values["gen_prefix"] - clean["gen_prefix"]).mean(-1))
    return out
