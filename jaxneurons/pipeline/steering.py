"""Language steering: generate from each language's prompts with another language's neurons deactivated or
boosted, and measure the language of what comes out (`jaxneurons.language_id`), against random controls.

Conditions, per set language B (its neurons: `sets[B]`, {layer: [neuron indices]}):
- `clean`: nothing changed;
- `off:B`: B's neurons zeroed (m = 0), `boost:B`: multiplied by `boost` (at every prompt and generated token);
- `random_off:B:s<k>`, `random_boost:B:s<k>`: as many neurons per layer as B's set, drawn uniformly from the
  layer's other neurons (seed k);
- `matched_off:B:s<k>`, `matched_boost:B:s<k>`: as many, with B's set's |m| distribution per layer
  (`attribution.matched.magnitude_matched`; |m| is each neuron's mean |down-projection input| at the last
  prompt token over every prompt), achieved mean-|m| ratio reported.
Every prompt of language A runs under every condition; one unit of work is (A, condition), so a run resumes
and splits over processes by unit like the other passes. The neuron sets of a task's examples default to the
neurons most often specific to each language (`specific_sets`), or come from a file (a LAPE selection, ...).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence

import jax
import numpy as np

from jaxneurons import distributed
from jaxneurons.analysis.bootstrap import DEFAULT_RESAMPLES, estimate, resample_counts, sign_test
from jaxneurons.attribution.matched import count_matched, magnitude_matched
from jaxneurons.generation import generate
from jaxneurons.language_id import UNKNOWN, identify
from jaxneurons.lm import LanguageModel
from jaxneurons.models.decoder import Intervention
from jaxneurons.pipeline import merge
from jaxneurons.pipeline.checkpoint import NEXT_BATCH, load_checkpoint, save_checkpoint
from jaxneurons.pipeline.checks import check_at_least_zero, check_choices, check_positive
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.identity import pass_identity
from jaxneurons.pipeline.neuron_sets import set_mask
from jaxneurons.pipeline.runner import checkpoint_dir, run_pass

ACTIONS = ("off", "boost")
CONTROLS = ("random", "matched")
STEERING_FILE = "steering.json"
GENERATIONS_FILE = "generations.jsonl"
STEERING_STATE_FILE = "steering_state.npz"


@dataclasses.dataclass(frozen=True)
class SteeringConfig:
    """The steering pass's settings; validated when built."""

    actions: tuple[str, ...] = ACTIONS  # what is done to a language's neurons: off (zeroed), boost (x boost)
    controls: tuple[str, ...] = CONTROLS  # count-matched random and |m|-matched sets beside each action
    boost: float = 2.0  # the factor of "boost"
    seeds: int = 1  # draws of every control
    max_new_tokens: int = 24
    batch_size: int = 32  # prompts generated together
    set_size: float = 0.01  # share of each layer's neurons in a language's computed set (`specific_sets`)
    bootstrap: int = DEFAULT_RESAMPLES  # resamples of the prompts for the 95% intervals (0: none)

    def __post_init__(self):
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "controls", tuple(self.controls))
        check_choices("steer_actions", self.actions, ACTIONS)
        check_choices("steer_controls", self.controls, CONTROLS)
        check_positive(seeds=self.seeds, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size)
        check_at_least_zero(boost=self.boost, bootstrap=self.bootstrap)
        if not 0 < self.set_size <= 1:
            raise PipelineInputError(f"--steer_set_size must be in (0, 1], got {self.set_size}")


def specific_sets(lm: LanguageModel, examples: Sequence, languages: Sequence[str], size: float = 0.01,
                  batch_size: int = 16) -> dict[str, dict[int, list[int]]]:
    """Per language, per layer the ceil(size * F) neurons most often *specific* to it (act > 0 at the prompt's
    last token in that language and in none of the others) over the examples; only neurons specific at least
    once, ties broken by the lower index."""
    acts = np.stack([_last_acts(lm, [ex.prompts[lang] for ex in examples], batch_size) for lang in languages], 1)
    active = acts > 0  # [E, N, L, F]
    only = active & (active.sum(1, keepdims=True) == 1)
    counts_nlf = only.sum(0)
    top = int(np.ceil(size * lm.config.neurons_per_layer))
    sets = {}
    for n, lang in enumerate(languages):
        order = np.argsort(-counts_nlf[n], axis=-1, kind="stable")[:, :top]
        sets[lang] = {layer: sorted(int(i) for i in order[layer] if counts_nlf[n, layer, i] > 0)
                      for layer in range(lm.config.num_layers)}
    return sets


def condition_names(languages: Sequence[str], config: SteeringConfig) -> list[str]:
    names = ["clean"]
    for lang in languages:
        names += [f"{action}:{lang}" for action in config.actions]
        names += [f"{control}_{action}:{lang}:s{seed}" for control in config.controls for action in config.actions
                  for seed in range(config.seeds)]
    return names


def condition_sets(lm: LanguageModel, sets: dict, abs_m_lf: np.ndarray, config: SteeringConfig) -> dict:
    """{condition: (bool [L, F] neurons, scale)} of every condition but clean."""
    out = {}
    for n, lang in enumerate(sets):
        target = set_mask(sets[lang], lm.config)
        for action in config.actions:
            scale = 0.0 if action == "off" else config.boost
            out[f"{action}:{lang}"] = (target, scale)
            for seed in range(config.seeds):
                rng = np.random.default_rng([seed, n, ACTIONS.index(action)])
                if "random" in config.controls:
                    out[f"random_{action}:{lang}:s{seed}"] = (count_matched(target.sum(-1), ~target, rng), scale)
                if "matched" in config.controls:
                    out[f"matched_{action}:{lang}:s{seed}"] = (magnitude_matched(abs_m_lf, target, ~target, rng), scale)
    return out


@dataclasses.dataclass
class _Units:
    """The pass's units of work for the runner: unit i is (prompt language, condition) number i."""

    keys: list[tuple[str, str]]

    @property
    def num_batches(self) -> int:
        return len(self.keys)

    @property
    def num_examples(self) -> int:
        return len(self.keys)

    def examples_in(self, index: int) -> np.ndarray:
        return np.asarray([index])


def run_steering(lm: LanguageModel, prompts: dict[str, list[str]], sets: dict, output_dir: str | None,
                 config: SteeringConfig = SteeringConfig(), *, resume: bool = False, progress: bool = True,
                 mesh=None, process_index: int | None = None, process_count: int | None = None,
                 figures: bool = True, identity_extra: dict | None = None) -> dict:
    """Generate every language's prompts under every condition; write steering.json, generations.jsonl, its
    figure and report section (output_dir None: in memory). prompts: {lang: texts}; sets: {lang: {layer:
    [indices]}} (the languages whose neurons are deactivated or boosted); identity_extra: facts of the run
    (e.g. the task) that enter its identity and steering.json's meta."""
    if not prompts or any(not texts for texts in prompts.values()):
        raise PipelineInputError("steering needs at least one prompt in every prompt language")
    conditions = condition_names(list(sets), config)
    units = _Units([(lang, c) for lang in prompts for c in conditions])
    size = max(len(texts) for texts in prompts.values())
    identity = pass_identity("steering", config, lm, [], [], prompts=prompts,
                             sets={k: {str(l): v for l, v in s.items()} for k, s in sets.items()},
                             **(identity_extra or {}))
    process_index, process_count = distributed.process_layout(process_index, process_count)
    state_dir, own_identity = checkpoint_dir(output_dir, identity, process_index, process_count, resume)
    path = None if state_dir is None else os.path.join(state_dir, STEERING_STATE_FILE)
    saved = load_checkpoint(path, own_identity) if resume else None
    start = int(saved.pop(NEXT_BATCH)) if saved else 0
    abs_m = _mean_abs_m(lm, [t for texts in prompts.values() for t in texts], config.batch_size)
    chosen = condition_sets(lm, sets, abs_m, config)
    acc = saved or {"tokens": np.zeros((len(units.keys), size, config.max_new_tokens), np.int32),
                    "lengths": np.zeros((len(units.keys), size), np.int32)}

    def step(index: int) -> None:
        lang, condition = units.keys[index]
        intervention = None
        if condition != "clean":
            neurons, scale = chosen[condition]
            intervention = Intervention.on(lm, {l: np.flatnonzero(neurons[l]) for l in range(len(neurons))},
                                           scale=scale)
        out = generate(lm, prompts[lang], max_new_tokens=config.max_new_tokens, intervention=intervention,
                       batch_size=config.batch_size, mesh=mesh)
        acc["tokens"][index, :len(out)], acc["lengths"][index, :len(out)] = out.token_ids, out.lengths

    def save(next_batch: int) -> None:
        if path is not None:
            save_checkpoint(path, own_identity, {**acc, NEXT_BATCH: np.asarray(next_batch)})

    run_pass(f"steering ({len(conditions)} conditions x {len(prompts)} languages)", units, start, step, save,
             process_index=process_index, process_count=process_count, progress=progress)
    if process_count > 1:
        acc = merge.gather_accumulators(acc, units, identity, output_dir, STEERING_STATE_FILE, process_index,
                                        process_count)
    rows = _generations(lm, prompts, units, acc)
    result = summarize_steering(rows, list(prompts), list(sets), conditions, chosen, abs_m, config)
    result["meta"].update(model=lm.source or lm.config.family, set_sizes={
        lang: int(sum(len(v) for v in s.values())) for lang, s in sets.items()}, **(identity_extra or {}))
    for lang, size in result["meta"]["set_sizes"].items():
        if size == 0:
            logging.warning("steering: the neuron set of %s is empty, so its conditions equal clean", lang)
    if process_index == 0 and output_dir is not None:
        from jaxneurons.analysis.steering_report import write_steering

        write_steering(output_dir, result, rows, figures=figures)
    return {**result, "generations": rows}


def _generations(lm, prompts, units: _Units, acc) -> list[dict]:
    """One record per (prompt language, condition, prompt): the generated text and its language."""
    rows = []
    for index, (lang, condition) in enumerate(units.keys):
        for p, prompt in enumerate(prompts[lang]):
            ids = acc["tokens"][index, p, :acc["lengths"][index, p]]
            rows.append({"prompt_language": lang, "condition": condition, "prompt_index": p, "prompt": prompt,
                         "text": lm.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)})
    for row, guess in zip(rows, identify([r["text"] for r in rows])):
        row.update(language=guess.language, confidence=round(guess.confidence, 4))
    return rows


def summarize_steering(rows: list[dict], prompt_languages: list[str], set_languages: list[str],
                       conditions: list[str], chosen: dict, abs_m_lf: np.ndarray, config: SteeringConfig) -> dict:
    """Per prompt language and condition: the share of outputs in each language (and unknown), the off-target
    rate (identified, and not the prompt's language), with 95% bootstrap intervals over prompts; each action
    against its controls (paired over prompts: difference of the off-target rate, and for boost of the share in
    the boosted language); the achieved mean-|m| ratio of every control."""
    shown = list(dict.fromkeys([*prompt_languages, *set_languages, UNKNOWN]))
    per = {}
    for lang in prompt_languages:
        mine = [r for r in rows if r["prompt_language"] == lang]
        n = len([r for r in mine if r["condition"] == "clean"])
        counts = resample_counts(n, config.bootstrap, seed=0) if config.bootstrap else None
        found = {c: np.asarray([r["language"] for r in mine if r["condition"] == c]) for c in conditions}
        per[lang] = {}
        for c in conditions:
            off = (found[c] != lang) & (found[c] != UNKNOWN)
            entry = {"off_target": estimate(off.astype(float), counts=counts),
                     "shares": {code: estimate((found[c] == code).astype(float), counts=counts) for code in shown}}
            if c != "clean" and not c.startswith(CONTROLS):
                entry["against_controls"] = _against_controls(c, found, lang, conditions, counts)
            per[lang][c] = entry
    return {"meta": {"prompt_languages": prompt_languages, "set_languages": set_languages, "conditions": conditions,
                     "n_prompts": {lang: len([r for r in rows if r["prompt_language"] == lang and
                                              r["condition"] == "clean"]) for lang in prompt_languages},
                     "config": dataclasses.asdict(config), "interval": "95% percentile bootstrap over prompts",
                     "language_id": "py3langid (normalised probabilities); 'unknown' under 5 letters"},
            "matching": _matching(chosen, abs_m_lf), "per_language": per}


def _against_controls(condition: str, found: dict, lang: str, conditions, counts) -> dict:
    """The action minus each of its controls (mean over seeds), per prompt: off-target rate, and the share in
    the set's language; paired bootstrap interval and two-sided sign test."""
    action, target = condition.split(":")
    out = {}
    for control in CONTROLS:
        seeds = [c for c in conditions if c.startswith(f"{control}_{action}:{target}:")]
        if not seeds:
            continue
        out[control] = {}
        for name, hit in (("off_target", lambda v: (v != lang) & (v != UNKNOWN)), ("in_set_language",
                                                                                    lambda v: v == target)):
            diff = hit(found[condition]).astype(float) - np.mean([hit(found[c]) for c in seeds], axis=0)
            out[control][name] = {"difference": estimate(diff, counts=counts), "higher": int((diff > 0).sum()),
                                  "lower": int((diff < 0).sum()),
                                  "sign_test_p": sign_test(int((diff > 0).sum()), int((diff < 0).sum()))}
    return out


def _matching(chosen: dict, abs_m_lf: np.ndarray) -> dict:
    """Per drawn set: size and mean |m| against its target's (the ratio is 1 when matched)."""
    out = {}
    for name, (neurons, _) in chosen.items():
        if ":s" not in name:
            continue
        target = chosen[name.split("_", 1)[1].rsplit(":", 1)[0]][0]
        out[name] = {"size": int(neurons.sum()), "target_size": int(target.sum()),
                     "mean_abs_m_ratio": float(abs_m_lf[neurons].mean() / max(abs_m_lf[target].mean(), 1e-12))
                     if neurons.any() and target.any() else None}
    return out


def _last_acts(lm: LanguageModel, texts: list[str], batch_size: int, quantity: str = "act") -> np.ndarray:
    """[P, L, F] the quantity at each text's last token."""
    out = []
    for start in range(0, len(texts), batch_size):
        ids, mask = lm.encode(texts[start:start + batch_size], pad_to_multiple_of=16)
        out.append(np.asarray(jax.device_get(lm.neurons(ids, mask, at="last", quantity=quantity))))
    return np.concatenate(out)


def _mean_abs_m(lm: LanguageModel, texts: list[str], batch_size: int) -> np.ndarray:
    """[L, F] each neuron's mean |m| (down-projection input) at the last prompt token over the texts."""
    return np.abs(_last_acts(lm, texts, batch_size, "ffn_hidden")).mean(0)

