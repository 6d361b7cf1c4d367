"""Deactivation: zero a set of neurons and measure accuracy per language, with matched controls.

Each example's categories come from its own clean forward (threshold 0, at the prompt's last token, across
its languages). A condition sets the down-projection inputs m of its neurons to 0 at the prompt's last token (or,
with every_token, at every token of the row), the same neurons in all the example's languages:

- `all_shared`, `partial_shared`, `specific`: every neuron of that category (today's full-category conditions);
- `partial_shared_count`, `specific_count`: per example and layer, as many neurons of that category as the
  example has all-shared ones there, drawn uniformly within the category (several seeds);
- `random`: as many uniformly drawn neurons of the layer (mostly inactive ones; several seeds);
- `magnitude`: as many activated neurons (partial-shared or specific: act > 0 in some language) with the
  all-shared set's |m| distribution (|m| averaged over the languages; quantile bins, `attribution.matched`).

For every condition: accuracy per language, its change from clean (paired), the contribution mass it removes
(sum over its neurons of |m| * ||v|| at the last token / the row's total over all neurons, from the clean
forward), its size and mean |m| per neuron (so the reader sees the matching worked), and a paired test of
all-shared-off against each control (exact sign test over examples, paired bootstrap of the difference).
The answers are scored exactly as in the sharing run (same batches, same option scoring).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxneurons import distributed
from jaxneurons.analysis import ALL_SHARED, CATEGORIES, PARTIAL_SHARED, SPECIFIC, categorize
from jaxneurons.analysis.report import FIGURES_DIR, write_section
from jaxneurons.analysis.bootstrap import DEFAULT_RESAMPLES, estimate, paired_test, resample_counts
from jaxneurons.attribution.matched import count_matched, magnitude_matched
from jaxneurons.attribution.static import down_rows
from jaxneurons.lm import LanguageModel
from jaxneurons.models.decoder import Decoder, Intervention, Record
from jaxneurons.models.output import forward
from jaxneurons.pipeline import merge
from jaxneurons.pipeline.batching import plan_batches, tokenize_examples
from jaxneurons.pipeline.checkpoint import NEXT_BATCH, load_checkpoint, save_checkpoint
from jaxneurons.pipeline.checks import check_at_least_zero, check_choices, check_positive
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.identity import pass_identity
from jaxneurons.pipeline.outputs import write_result_json
from jaxneurons.pipeline.runner import checkpoint_dir, run_pass
from jaxneurons.pipeline.scoring import accuracy_per_language, hidden_scores, judge, record_scores, slot_scores

KINDS = ("all_shared", "partial_shared", "specific", "random", "magnitude")
SEEDED = {"random": "random", "magnitude": "magnitude", "partial_shared": "partial_shared_count",
          "specific": "specific_count"}  # kind -> its seeded, all-shared-sized condition
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


def condition_names(kinds: Sequence[str], seeds: int) -> list[str]:
    """'clean', the full-category conditions, then each seeded condition as 'name/seed'."""
    conditions = ["clean"] + [k for k in kinds if k in CATEGORIES]
    return conditions + [f"{SEEDED[k]}/{s}" for k in kinds if k in SEEDED for s in range(seeds)]


def off_mask(condition: str, codes_blf, abs_m_bnlf, batch_index: int) -> np.ndarray:
    """bool [B, L, F]: the neurons a condition deactivates in each example (all its languages)."""
    codes = np.asarray(codes_blf)
    shared = codes == ALL_SHARED
    if condition == "clean":
        return np.zeros(codes.shape, bool)
    if "/" not in condition:
        return codes == CATEGORIES.index(condition)
    name, seed = condition.split("/")
    count_bl = shared.sum(-1)
    if name == "random":  # today's uniform draw, on the device
        key = jax.random.fold_in(jax.random.key(int(seed)), batch_index)
        rank_blf = jnp.argsort(jnp.argsort(jax.random.uniform(key, codes.shape), -1), -1)
        return np.asarray(rank_blf < count_bl[..., None])
    rng = np.random.default_rng([int(seed), batch_index, list(SEEDED.values()).index(name)])
    if name == "magnitude":
        pool = (codes == PARTIAL_SHARED) | (codes == SPECIFIC)
        return magnitude_matched(np.asarray(abs_m_bnlf).mean(1), shared, pool, rng)
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
    seeds: int = 3  # draws of every seeded control
    bootstrap: int = DEFAULT_RESAMPLES  # resamples of the examples for the 95% intervals (0: none)

    def __post_init__(self):
        object.__setattr__(self, "kinds", tuple(self.kinds))
        check_choices("kinds", self.kinds, KINDS)
        check_positive(batch_size=self.batch_size, seeds=self.seeds)
        check_at_least_zero(bootstrap=self.bootstrap)


def run_interventions(lm: LanguageModel, task, examples: Sequence, languages: Sequence[str], output_dir: str | None,
                      config: InterventionsConfig = InterventionsConfig(), *, resume: bool = False,
                      progress: bool = True, figures: bool = True, mesh: Mesh | None = None,
                      process_index: int | None = None, process_count: int | None = None) -> dict:
    """Write output_dir/interventions.json, its figure and report section (see the module docstring); output_dir
    None runs in memory: no file, no checkpoint.

    resume: continue from output_dir/interventions_state.npz; a checkpoint of another identity is refused.
    mesh: as in `run_sharing_analysis` (default: `distributed.default_mesh()`); batch_size is rounded up to a
      multiple of its data axis.
    process_index, process_count: as in `run_sharing_analysis` (default `distributed.process_layout`): process k
      conditions the batches i with i % count == k and keeps its checkpoint in output_dir/process_{k}_of_{count}/;
      every process returns the merged result (exactly a one-process run's), process 0 alone writes it.
    """
    every_token, seeds = config.every_token, config.seeds
    if not every_token and any(ex.readout != "prompt" for ex in examples):
        raise PipelineInputError("these examples read the neurons at the gold answer's end, where deactivating them "
                                 "cannot change the scored answer: load them with a prompt-end format "
                                 "(e.g. prompt_format='paper') or deactivate at every token")
    n = len(languages)
    rows = tokenize_examples(lm.tokenizer, examples, languages, task.scoring)
    placement = distributed.placement(mesh)
    plan = plan_batches(rows, placement.round_batch_size(config.batch_size), "last", "right", lm.pad_id)
    conditions = condition_names(config.kinds, seeds)
    identity = pass_identity("interventions", config, lm, examples, rows, task=task.name, languages=list(languages),
                            batch_size_used=plan.batch_size)
    process_index, process_count = distributed.process_layout(process_index, process_count)
    state_dir, own_identity = checkpoint_dir(output_dir, identity, process_index, process_count, resume)
    path = None if state_dir is None else os.path.join(state_dir, INTERVENTIONS_STATE_FILE)
    saved = load_checkpoint(path, own_identity) if resume else None
    start = int(saved.pop(NEXT_BATCH)) if saved else 0
    acc = saved if saved else _empty(conditions, len(examples), n, plan.num_slots, lm.config.num_layers)
    codes_decoder = lm.decoder(Record(("act", "ffn_hidden"), "last"), logits="none")
    score_decoder = lm.decoder(Record(), logits="hidden")
    params = placement.params(lm.params)

    def step(index: int) -> None:
        batch = plan.batch(index)
        main, first_tokens = placement.batch((batch.neuron_inputs.arrays(), batch.first_tokens_rs))
        with placement.context():
            codes, abs_m, contribution = jax.device_get(example_neurons(codes_decoder, params, main, n))
        e_v = batch.example_index_b[batch.valid_b]
        acc["total_contribution"][e_v] = contribution.sum((-1, -2))[batch.valid_b]
        for condition in conditions:
            off = off_mask(condition, codes, abs_m, index)
            _record_set(acc, condition, e_v, off[batch.valid_b], abs_m[batch.valid_b], contribution[batch.valid_b])
            scale = placement.batch(deactivation_scale(off, n))
            with placement.context():
                stats = intervened_scores(score_decoder, params, main, scale, every_token, first_tokens)
                full = {}
                for slot, fwd in zip(batch.scoring_slots, batch.scoring_inputs):
                    extra = intervened_scores(score_decoder, params, placement.batch(fwd.arrays()), scale,
                                              every_token, first_tokens)
                    full[slot] = (extra["logprob"], extra["greedy"])
            stats, full = jax.device_get((stats, full))
            record_scores(batch, slot_scores(batch, stats, full, "last"), n, acc[f"{condition}/option_logprobs"],
                          acc[f"{condition}/greedy"], acc[f"{condition}/gold_logprob"])

    def save(next_batch: int) -> None:
        if path is not None:
            save_checkpoint(path, own_identity, {**acc, NEXT_BATCH: np.asarray(next_batch)})

    run_pass(f"interventions ({len(conditions) - 1} + clean)", plan, start, step, save,
             process_index=process_index, process_count=process_count, progress=progress)
    if process_count > 1:
        acc = merge.gather_accumulators(acc, plan, identity, output_dir, INTERVENTIONS_STATE_FILE, process_index,
                                        process_count)
    result = summarize_interventions(acc, conditions, task, examples, languages, every_token, seeds, config.bootstrap)
    result["meta"].update(model=lm.source or lm.config.family, task=task.name, languages=list(languages))
    if process_index == 0 and output_dir is not None:
        write_deactivation(output_dir, result, figures=figures)
    return result


def write_deactivation(output_dir: str, result: dict, figures: bool = True) -> dict:
    """interventions.json, its figure (figures/interventions.png) and its report section; returns what
    interventions.json holds."""
    from jaxneurons.analysis import deactivation_report as report  # matplotlib, imported when first needed

    result = write_result_json(os.path.join(output_dir, INTERVENTIONS_FILE), result)
    paths = report.write_figures(result, os.path.join(output_dir, FIGURES_DIR)) if figures else {}
    write_section(output_dir, "deactivation", report.interventions_section(result, paths, output_dir))
    return result


def _empty(conditions, e, n, slots, layers) -> dict[str, np.ndarray]:
    """Per-example arrays (NaN until filled): scores, and what each condition deactivates."""
    acc = {"total_contribution": np.full((e, n), np.nan)}
    for condition in conditions:
        acc.update({f"{condition}/option_logprobs": np.full((e, n, slots), np.nan, np.float32),
                    f"{condition}/greedy": np.zeros((e, n), bool), f"{condition}/gold_logprob": np.full((e, n), np.nan),
                    f"{condition}/count": np.full((e, layers), np.nan), f"{condition}/abs_m": np.full((e, n), np.nan),
                    f"{condition}/contribution": np.full((e, n), np.nan)})
    return acc


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
                            bootstrap: int = DEFAULT_RESAMPLES) -> dict:
    """interventions.json: accuracy per condition group and language (old flat keys kept), and under "sets" each
    group's accuracy, paired change from clean, contribution mass removed and size, all with 95% intervals;
    "paired_tests": all-shared-off against each other group."""
    done = ~np.isnan(acc["total_contribution"][:, 0])
    kept = [ex for ex, d in zip(examples, done) if d]
    counts = resample_counts(int(done.sum()), bootstrap, seed=0) if bootstrap and done.any() else None
    per_condition = {condition: _per_example(acc, condition, done, task, kept, languages) for condition in conditions}
    groups = {g: {key: np.mean([per_condition[r][key] for r in members], 0) for key in per_condition[members[0]]}
              for g, members in _groups(conditions).items()}
    result = {g: accuracy_per_language(v["correct"], languages) for g, v in groups.items()}
    result["sets"] = {g: _set_summary(v, groups["clean"], languages, counts) for g, v in groups.items()}
    if "all_shared" in groups:
        result["paired_tests"] = {g: paired_test(groups["all_shared"], v, counts) for g, v in groups.items()
                                  if g not in ("clean", "all_shared")}
    result["meta"] = {
        "deactivated_at": "every token" if every_token else "last token", "random_seeds": seeds,
        "num_examples": int(done.sum()),
        "mean_deactivated_per_layer": {g: v["count"].mean(0).tolist() for g, v in groups.items() if g != "clean"},
        "random_per_seed": {c.split("/")[1]: accuracy_per_language(per_condition[c]["correct"], languages)
                            for c in conditions if c.startswith("random/")},
        "bootstrap": {"resamples": int(bootstrap), "seed": 0, "unit": "example"},
        "removed_mass": "sum over the deactivated neurons of |m| * ||v|| at the prompt's last token (clean "
                        "forward) / the same sum over all neurons of all layers, per row; mean over languages "
                        "and examples, in %"}
    return result


def _per_example(acc, condition, done, task, examples, languages) -> dict[str, np.ndarray]:
    """One condition's per-example values: correct [E, N], gold log-prob [E, N], removed mass [E, N], neurons off
    per layer [E, L], summed |m| and contribution of those neurons [E, N]."""
    correct = judge(task, acc[f"{condition}/option_logprobs"][done], acc[f"{condition}/greedy"][done], examples,
                    languages)
    return {"correct": correct.astype(np.float64), "gold_logprob": acc[f"{condition}/gold_logprob"][done],
            "mass": acc[f"{condition}/contribution"][done] / acc["total_contribution"][done],
            "count": acc[f"{condition}/count"][done], "abs_m": acc[f"{condition}/abs_m"][done],
            "contribution": acc[f"{condition}/contribution"][done]}


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
            "mean_contribution": float(values["contribution"].sum() / neurons) if neurons else None}
