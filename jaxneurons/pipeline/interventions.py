"""Deactivation: zero one sharing category's neurons and measure accuracy per language.

Each example's categories come from its own clean forward (threshold 0, at the prompt's last token, across
its languages). `all_shared`, `partial_shared` or `specific` sets that category's down-projection inputs
m to 0 at the prompt's last token (or, with all_positions, at every token of the row); `random` zeroes, in
each layer, as many uniformly drawn neurons as that example has all-shared neurons there, averaged over
seeds. The answers are then scored exactly as in the sharing run (same batches, same option scoring).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxneurons.analysis import ALL_SHARED, CATEGORIES, categorize, write_json_atomic
from jaxneurons.lm import LanguageModel, run_decoder
from jaxneurons.models.decoder import Decoder, Intervention, Record
from jaxneurons.pipeline.batching import plan_batches, tokenize_examples
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.progress import load_progress, save_progress
from jaxneurons.pipeline.run import record_scores, slot_scores
from jaxneurons.pipeline.scoring import accuracy_per_language, continuation_scores, first_token_scores, judge
from jaxneurons.pipeline.step import to_device

KINDS = ("all_shared", "partial_shared", "specific", "random")
INTERVENTIONS_FILE = "interventions.json"


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def example_codes(decoder: Decoder, params, forward: dict, num_languages: int) -> jax.Array:
    """Category codes [B, L, F] of each example, from act at the prompt's last token of each language."""
    _, sown = run_decoder(decoder, params, forward["ids_rt"], forward["mask_rt"], forward["record_index_r"])
    act = jnp.moveaxis(sown["act"], 0, 1)  # [R, L, F]
    rows, layers, width = act.shape
    return jax.vmap(categorize)(act.reshape(rows // num_languages, num_languages, layers, width) > 0)


def deactivation_scale(codes_blf, kind: str, num_languages: int, key=None) -> jax.Array:
    """scale [L, B*N, F]: 0 for the neurons to deactivate of each example (the same in all its languages)."""
    if kind == "random":
        count_bl = (codes_blf == ALL_SHARED).sum(-1)
        rank_blf = jnp.argsort(jnp.argsort(jax.random.uniform(key, codes_blf.shape), -1), -1)
        off = rank_blf < count_bl[..., None]
    else:
        off = codes_blf == CATEGORIES.index(kind)
    scale_blf = jnp.where(off, 0.0, 1.0)
    return jnp.repeat(scale_blf, num_languages, axis=0).transpose(1, 0, 2)


@functools.partial(jax.jit, static_argnames=("decoder",))
def intervened_scores(decoder: Decoder, params, forward: dict, scale_lrf, where_rt, first_tokens_rs):
    """Scores of a forward with m <- m * scale at `where`: (logprob [R], greedy [R], first-token [R, S] x2)."""
    change = Intervention(scale_lrf, jnp.zeros_like(scale_lrf), where_rt)
    logits, _ = run_decoder(decoder, params, forward["ids_rt"], forward["mask_rt"], forward["record_index_r"],
                            change, forward["logit_positions_rk"])
    logprob, greedy = continuation_scores(logits, forward["targets_rk"], forward["target_mask_rk"])
    first_logprob, first_greedy = first_token_scores(logits, first_tokens_rs)
    return {"logprob": logprob, "greedy": greedy, "first_logprob": first_logprob, "first_greedy": first_greedy}


def _where(forward: dict, all_positions: bool) -> jax.Array:
    if all_positions:
        return forward["mask_rt"].astype(bool)
    t = forward["ids_rt"].shape[1]
    return jnp.arange(t)[None, :] == forward["record_index_r"][:, None]


def run_interventions(lm: LanguageModel, task, examples: Sequence, languages: Sequence[str], output_dir: str,
                      kinds: Sequence[str] = KINDS, batch_size: int = 8, all_positions: bool = False,
                      seeds: int = 3, resume: bool = False, progress: bool = True) -> dict:
    """Write output_dir/interventions.json: intervention -> language -> accuracy, with "clean" beside them."""
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise PipelineInputError(f"unknown interventions {unknown}; choose from {list(KINDS)}")
    n = len(languages)
    rows = tokenize_examples(lm.tokenizer, examples, languages, task.scoring)
    plan = plan_batches(rows, batch_size, "last", "right", lm.pad_id)
    runs = ["clean"] + [r for k in kinds for r in ([f"random/{s}" for s in range(seeds)] if k == "random" else [k])]
    identity = {"model": str(lm.source), "task": task.name, "languages": list(languages), "runs": runs,
                "ids": [ex.id for ex in examples], "batch_size": batch_size, "all_positions": all_positions}
    path = os.path.join(output_dir, "interventions_state.npz")
    saved = load_progress(path, identity) if resume else None
    start, acc = saved if saved else (0, _empty(runs, len(examples), n, plan.num_slots, lm.config.num_layers))
    codes_decoder = lm.decoder(Record(("act",), "last"), logits="none")
    score_decoder = lm.decoder(Record(), logits="positions")
    bar = tqdm(total=plan.num_batches, initial=start, unit="batch", disable=not progress,
               desc=f"interventions ({len(runs) - 1} + clean)")
    for index in range(start, plan.num_batches):
        batch = plan.batch(index)
        main = to_device(batch.neuron_forward.arrays())
        codes = example_codes(codes_decoder, lm.params, main, n)
        _count_deactivated(acc, codes, batch.valid_b, kinds, seeds)
        for run in runs:
            scale = _scale_for(run, codes, n, index, lm.config)
            stats = intervened_scores(score_decoder, lm.params, main, scale, _where(main, all_positions),
                                      jnp.asarray(batch.first_tokens_rs))
            full = {}
            for slot, fwd in zip(batch.scoring_slots, batch.scoring_forwards):
                arrays = to_device(fwd.arrays())
                extra = intervened_scores(score_decoder, lm.params, arrays, scale, _where(arrays, all_positions),
                                          jnp.asarray(batch.first_tokens_rs))
                full[slot] = (extra["logprob"], extra["greedy"])
            stats, full = jax.device_get((stats, full))
            record_scores(batch, slot_scores(batch, stats, full, "last"), n, acc[f"{run}/option_logprobs"],
                          acc[f"{run}/greedy"])
        save_progress(path, identity, index + 1, acc)
        bar.update(1)
    bar.close()
    result = _summarize(acc, runs, kinds, task, examples, languages, all_positions, seeds)
    write_json_atomic(os.path.join(output_dir, INTERVENTIONS_FILE), result)
    return result


def _scale_for(run: str, codes, n: int, batch_index: int, config):
    if run == "clean":
        return jnp.ones((config.num_layers, codes.shape[0] * n, config.intermediate_size))
    if run.startswith("random/"):
        key = jax.random.fold_in(jax.random.key(int(run.split("/")[1])), batch_index)
        return deactivation_scale(codes, "random", n, key)
    return deactivation_scale(codes, run, n)


def _empty(runs, e, n, slots, layers) -> dict[str, np.ndarray]:
    acc = {"deactivated/all_shared": np.zeros(layers), "deactivated/partial_shared": np.zeros(layers),
           "deactivated/specific": np.zeros(layers), "examples": np.zeros(())}
    for run in runs:
        acc[f"{run}/option_logprobs"] = np.full((e, n, slots), np.nan, np.float32)
        acc[f"{run}/greedy"] = np.zeros((e, n), bool)
    return acc


def _count_deactivated(acc, codes, valid_b, kinds, seeds) -> None:
    codes = np.asarray(codes)[valid_b]
    for i, c in enumerate(CATEGORIES[:3]):
        acc[f"deactivated/{c}"] += (codes == i).sum((0, 2))
    acc["examples"] += len(codes)


def _summarize(acc, runs, kinds, task, examples, languages, all_positions, seeds) -> dict:
    accuracy = {}
    for run in runs:
        correct = judge(task, acc[f"{run}/option_logprobs"], acc[f"{run}/greedy"], examples, languages)
        accuracy[run] = accuracy_per_language(correct, languages)
    result = {"clean": accuracy["clean"]}
    for kind in kinds:
        if kind == "random":
            seeds_acc = [accuracy[f"random/{s}"] for s in range(seeds)]
            result["random"] = {lang: float(np.mean([a[lang] for a in seeds_acc])) for lang in languages}
        else:
            result[kind] = accuracy[kind]
    e = max(float(acc["examples"]), 1.0)
    result["meta"] = {"positions": "all" if all_positions else "last", "random_seeds": seeds,
                      "num_examples": len(examples),
                      "mean_deactivated_per_layer": {c: (acc[f"deactivated/{c}"] / e).tolist()
                                                     for c in CATEGORIES[:3]},
                      "random_per_seed": {str(s): accuracy[f"random/{s}"] for s in range(seeds)}
                      if "random" in kinds else {}}
    return result
