"""Attribution x category over a task: which sharing categories hold the neurons that matter.

For every example and language, at the prompt's last token: the example's categories (threshold 0, across
its languages), then each method's score of every neuron toward the gold answer's first token
(contribution, effective, ig), then per layer the category mix of the top-k neurons, per category the
max / mean / min / sum of the score, and the share of the positive attribution each category carries.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from jaxneurons.analysis import CATEGORIES, categorize, write_json_atomic
from jaxneurons.attribution import attribution_statistics, integrated_gradients, scaled_top_k
from jaxneurons.attribution.static import static_scores
from jaxneurons.lm import LanguageModel, pad_rows, run_decoder
from jaxneurons.models.decoder import Decoder, Record
from jaxneurons.pipeline.batching import plan_batches, tokenize_examples
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.progress import load_progress, save_progress

METHODS = ("contribution", "effective", "ig")
ATTRIBUTION_FILE = "attribution.json"


def prompt_batches(lm: LanguageModel, task, examples, languages, batch_size):
    """Yield (example indices [B], left-padded prompt ids/mask [B*N, T], gold first tokens [B*N])."""
    rows = tokenize_examples(lm.tokenizer, examples, languages, task.scoring)
    plan = plan_batches(rows, batch_size, "last", "left", lm.pad_id)
    for index in range(plan.num_batches):
        batch = plan.batch(index)
        picked = batch.example_index_b
        flat = [rows[e][n] for e in picked for n in range(len(languages))]
        ids, mask = pad_rows([r.prompt for r in flat], lm.pad_id, "left", pad_to_multiple_of=16)
        targets = np.array([r.continuations[0][0] for r in flat], np.int32)
        yield picked, batch.valid_b, ids, mask, targets


@functools.partial(jax.jit, static_argnames=("decoder", "num_languages"))
def neurons_and_codes(decoder: Decoder, params, ids, mask, num_languages: int):
    """(act [B*N, L, F], m [B*N, L, F], category codes [B, L, F]) at the prompts' last token."""
    _, sown = run_decoder(decoder, params, ids, mask)
    act, m = jnp.moveaxis(sown["act"], 0, 1), jnp.moveaxis(sown["ffn_hidden"], 0, 1)
    rows, layers, width = act.shape
    active = act.reshape(rows // num_languages, num_languages, layers, width) > 0
    return act, m, jax.vmap(categorize)(active)


def run_attribution_analysis(lm: LanguageModel, task, examples: Sequence, languages: Sequence[str],
                             output_dir: str, methods: Sequence[str] = METHODS, top_k: int | None = None,
                             batch_size: int = 4, ig_steps: int = 20, ig_rule: str = "left",
                             ig_chunk_size: int | None = None, resume: bool = False, progress: bool = True,
                             ig_memory_gb: float = 2.0) -> dict:
    """Write output_dir/attribution.json; see the module docstring. Resumable batch by batch."""
    methods = [m for m in methods]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise PipelineInputError(f"unknown attribution methods {unknown}; choose from {list(METHODS)}")
    n, layers, width = len(languages), lm.config.num_layers, lm.config.intermediate_size
    k = scaled_top_k(width, top_k)
    identity = {"model": str(lm.source), "task": task.name, "languages": list(languages), "methods": methods,
                "ids": [ex.id for ex in examples], "top_k": k, "ig": [ig_steps, ig_rule], "batch_size": batch_size}
    progress_path = os.path.join(output_dir, "attribution_state.npz")
    saved = load_progress(progress_path, identity) if resume else None
    start, acc = saved if saved else (0, _empty_accumulators(methods, n, layers))
    decoder = lm.decoder(Record(("act", "ffn_hidden"), "last"), logits="none")
    bar = tqdm(total=len(examples), unit="ex", disable=not progress, desc=f"attribution ({','.join(methods)})")
    for index, (picked, valid_b, ids, mask, targets) in enumerate(
            prompt_batches(lm, task, examples, languages, batch_size)):
        if index < start:
            bar.update(int(valid_b.sum()))
            continue
        _, m, codes = neurons_and_codes(decoder, lm.params, jnp.asarray(ids), jnp.asarray(mask), n)
        scores = static_scores(lm.config, lm.params, m, targets)
        for method in methods:
            if method == "ig":
                scores["ig"] = integrated_gradients(lm, ids, targets, mask, steps=ig_steps, rule=ig_rule,
                                                    chunk_size=ig_chunk_size,
                                                    memory_gb=ig_memory_gb).attributions
            s = jnp.asarray(scores[method]).reshape(-1, n, layers, width)
            stats = jax.device_get(attribution_statistics(s, codes, k))
            _accumulate(acc, method, stats, np.asarray(valid_b))
        _accumulate_categories(acc, np.asarray(codes), np.asarray(valid_b), width)
        save_progress(progress_path, identity, index + 1, acc)
        bar.update(int(valid_b.sum()))
    bar.close()
    result = summarize_attribution(acc, methods, languages, k, width)
    write_json_atomic(os.path.join(output_dir, ATTRIBUTION_FILE), result)
    return result


def _empty_accumulators(methods, n, layers) -> dict[str, np.ndarray]:
    acc = {"examples": np.zeros(()), "category_neurons": np.zeros((layers, 4))}
    for m in methods:
        acc.update({f"{m}/top": np.zeros((n, layers, 4)), f"{m}/positive": np.zeros((n, 4)),
                    f"{m}/sum": np.zeros((n, layers, 4)), f"{m}/mean": np.zeros((n, layers, 4)),
                    f"{m}/mean_count": np.zeros((n, layers, 4)), f"{m}/max": np.full((n, layers, 4), -np.inf),
                    f"{m}/min": np.full((n, layers, 4), np.inf)})
    return acc


def _accumulate(acc, method, stats, valid_b) -> None:
    v = valid_b
    acc[f"{method}/top"] += stats["top_counts"][v].sum(0)
    acc[f"{method}/positive"] += stats["positive"][v].sum(0)
    acc[f"{method}/sum"] += stats["sum"][v].sum(0)
    acc[f"{method}/mean"] += np.nansum(stats["mean"][v], 0)
    acc[f"{method}/mean_count"] += (~np.isnan(stats["mean"][v])).sum(0)
    acc[f"{method}/max"] = np.fmax(acc[f"{method}/max"], np.nanmax(np.where(np.isnan(stats["max"][v]), -np.inf,
                                                                              stats["max"][v]), 0))
    acc[f"{method}/min"] = np.fmin(acc[f"{method}/min"], np.nanmin(np.where(np.isnan(stats["min"][v]), np.inf,
                                                                              stats["min"][v]), 0))


def _accumulate_categories(acc, codes_blf, valid_b, width) -> None:
    onehot = np.eye(4)[codes_blf[valid_b].astype(int)]  # [B, L, F, 4]
    acc["category_neurons"] += onehot.sum((0, 2))
    acc["examples"] += int(valid_b.sum())


def summarize_attribution(acc, methods, languages, top_k, width) -> dict:
    """attribution.json: per language and method, top-k category shares per layer and attribution shares."""
    e = max(float(acc["examples"]), 1.0)
    layers = acc["category_neurons"].shape[0]
    neuron_share = acc["category_neurons"].sum(0) / (e * layers * width) * 100
    out = {"methods": list(methods), "top_k": int(top_k), "neurons_per_layer": int(width),
           "num_examples": int(acc["examples"]), "languages": list(languages),
           "neuron_share": {c: float(neuron_share[i]) for i, c in enumerate(CATEGORIES)},
           "per_language": {}}
    for n, lang in enumerate(languages):
        out["per_language"][lang] = {}
        for m in methods:
            top = acc[f"{m}/top"][n] / (e * top_k) * 100  # [L, 4]
            positive = acc[f"{m}/positive"][n]
            total = positive.sum()
            mean = acc[f"{m}/mean"][n] / np.maximum(acc[f"{m}/mean_count"][n], 1)
            out["per_language"][lang][m] = {
                "top_share": {c: top[:, i].tolist() for i, c in enumerate(CATEGORIES)},
                "attribution_share": {c: float(positive[i] / total * 100) if total > 0 else None
                                      for i, c in enumerate(CATEGORIES)},
                "score": {c: {"max": _finite(acc[f"{m}/max"][n][:, i]), "min": _finite(acc[f"{m}/min"][n][:, i]),
                              "mean": mean[:, i].tolist(), "sum": (acc[f"{m}/sum"][n][:, i] / e).tolist()}
                          for i, c in enumerate(CATEGORIES)},
            }
    out["headline"] = headline(out)
    return out


def headline(result: dict) -> dict:
    """The paper's German-XNLI figure: share of neurons that are all-shared vs share of positive attribution."""
    langs = result["languages"]
    lang = "de" if "de" in langs else next((l for l in langs if l != "en"), langs[0])
    return {"language": lang, "all_shared_neuron_pct": result["neuron_share"]["all_shared"],
            "all_shared_attribution_pct": {m: result["per_language"][lang][m]["attribution_share"]["all_shared"]
                                           for m in result["methods"]}}


def _finite(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in values]
