"""End-to-end alignment run: evaluate before, train (lambda) and a control (lambda = 0), evaluate after,
write alignment.json, figures/all_shared_per_layer.png, report.md and model/ (loadable by jn.load_model)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from typing import Sequence

import numpy as np

from jaxneurons.alignment.train import TrainConfig, train, training_rows
from jaxneurons.analysis import write_json_atomic, write_text_atomic
from jaxneurons.pipeline import ResumeMismatchError, SharingConfig, run_sharing_analysis
from jaxneurons.pipeline.checkpoint import load_checkpoint, save_checkpoint
from jaxneurons.pipeline.identity import pass_identity, weights_fingerprint


def load_examples(task, languages: Sequence[str], train_split: str, eval_split: str, num_train: int,
                  num_eval: int, data_dir: str | None = None, prompt_format: str | None = None,
                  prompt_suffix: str = ""):
    """(train, eval) ParallelExamples; never the same examples (same split -> disjoint slices).

    prompt_format, prompt_suffix: the task formulation (`Task.load`), the same for both."""
    prompts = {"data_dir": data_dir, "prompt_format": prompt_format, "prompt_suffix": prompt_suffix}
    if train_split == eval_split:
        examples = task.load(languages, split=train_split, num_examples=num_train + num_eval, **prompts).examples
        train_ex, eval_ex = examples[:num_train], examples[num_train:num_train + num_eval]
    else:
        train_ex = task.load(languages, split=train_split, num_examples=num_train, **prompts).examples
        eval_ex = task.load(languages, split=eval_split, num_examples=num_eval, **prompts).examples
    overlap = {e.id for e in train_ex} & {e.id for e in eval_ex}
    if overlap:
        raise ValueError(f"train and eval share examples: {sorted(overlap)[:3]}")
    if any(e.readout != "prompt" for e in train_ex):
        raise ValueError(f"--prompt_format={prompt_format} reads the neurons at the gold answer's end; the alignment "
                         "objective reads them at the prompt's last token: choose a prompt-end format "
                         "(e.g. --prompt_format=paper)")
    return train_ex, eval_ex


ALIGNMENT_FILE = "alignment.json"
ALIGNMENT_STATE_FILE = "alignment_state.npz"  # the run's identity, checked before a resume continues


def evaluate(lm, params, task, examples, languages: Sequence[str], output_dir: str, batch_size: int = 8,
             resume: bool = False) -> dict:
    """Mean % all-shared neurons (tau = 0, per layer and over layers) and accuracy per language, computed by
    the sharing pipeline itself (the same batches, scoring and statistics as analyze.py; resumable).

    The weights evaluated are the training's output, so an evaluation saved for other weights (a resumed run
    trained further) is not an error here: it is recomputed, never reported."""
    model = dataclasses.replace(lm, params=params)
    config = SharingConfig(batch_size=batch_size, thresholds=(0.0,))
    try:
        sharing = run_sharing_analysis(model, task, examples, languages, output_dir, config, resume=resume,
                                       figures=False)
    except ResumeMismatchError:
        sharing = run_sharing_analysis(model, task, examples, languages, output_dir, config, figures=False)
    per_layer = sharing["per_layer"]["all_shared"]
    return {"all_shared_pct": float(np.mean(per_layer)), "all_shared_per_layer": per_layer,
            "accuracy": sharing["accuracy"], "weights": weights_fingerprint(params)}


def alignment_identity(lm, cfg: TrainConfig, train_rows: Sequence, eval_ex: Sequence, languages,
                       eval_batch_size: int) -> dict:
    """The alignment run's identity: its training config (steps aside), base weights, train and eval examples."""
    return pass_identity("alignment", cfg, lm, eval_ex, [train_rows, [repr(ex) for ex in eval_ex]],
                        languages=list(languages), eval_batch_size=eval_batch_size)


def run_alignment(lm, task, train_ex: Sequence, eval_ex: Sequence, languages: Sequence[str], cfg: TrainConfig,
                  output_dir: str, *, resume: bool = False, eval_batch_size: int = 8,
                  facts: dict | None = None) -> dict:
    """Evaluate lm, train it (cfg) and a control (lambda = 0), evaluate both, write alignment.json, the figure,
    report.md, model/ and model_hf/.

    resume: continue both trainings from their last checkpoints (cfg.steps may be larger than before: the run
    continues and every evaluation of changed weights is recomputed); a run of another identity (config, base
    weights, examples) is refused with the fields that differ.
    facts: what alignment.json records about the run besides cfg (model, splits, dtype, prompt format...).
    """
    t0 = time.time()
    cfg.check_layers(lm.config.num_layers)
    train_rows = training_rows(lm, train_ex, languages)
    identity = alignment_identity(lm, cfg, train_rows, eval_ex, languages, eval_batch_size)
    state_path = os.path.join(output_dir, ALIGNMENT_STATE_FILE)
    if resume:
        load_checkpoint(state_path, identity)
    else:  # a fresh run: no checkpoint of an earlier one may be continued by orbax
        shutil.rmtree(os.path.join(output_dir, "checkpoints"), ignore_errors=True)
    save_checkpoint(state_path, identity, {})
    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    timings = {}

    def evaluate_params(params, name):
        start = time.time()
        result = evaluate(lm, params, task, eval_ex, languages, os.path.join(output_dir, "eval", name),
                          eval_batch_size, resume)
        timings[f"eval_{name}_s"] = time.time() - start
        return result

    def train_run(run_cfg, name):
        start = time.time()
        out = train(lm, train_rows, run_cfg, os.path.join(output_dir, "checkpoints", name), resume)
        timings[f"{name}_train_s"] = time.time() - start
        return out

    before = evaluate_params(lm.params, "before")
    params, history = train_run(cfg, "aligned")
    after = evaluate_params(params, "after")
    control_params, control_history = train_run(dataclasses.replace(cfg, lambda_sharing=0.0), "control")
    control_after = evaluate_params(control_params, "control_after")
    from jaxneurons.loading.export import export_hf
    from jaxneurons.loading.orbax_dir import save_orbax_model

    save_orbax_model(os.path.join(output_dir, "model"), lm.config, params, lm.tokenizer, tokenizer_source=lm.source)
    # for transformers; this run's own earlier export (a resumed run) is replaced
    export_hf(dataclasses.replace(lm, params=params), os.path.join(output_dir, "model_hf"), overwrite=True)
    timings["total_s"] = time.time() - t0
    result = {"before": before, "after": after, "control_after": control_after,
              "config": dict(dataclasses.asdict(cfg), **{"model": str(lm.source), "task": task.name, **(facts or {})},
                             languages=list(languages), num_train=len(train_ex), num_eval=len(eval_ex)),
              "history_last": history[-1] if history else None,
              "control_history_last": control_history[-1] if control_history else None, "timings": timings}
    write_json_atomic(os.path.join(output_dir, ALIGNMENT_FILE), result)
    from jaxneurons.analysis.figures import plot_alignment_per_layer

    plot_alignment_per_layer(result, os.path.join(output_dir, "figures", "all_shared_per_layer.png"))
    _report(result, os.path.join(output_dir, "report.md"))
    return result


def _report(result: dict, path: str) -> None:
    c = result["config"]
    lines = [f"# Alignment run: {c['model']} on {c['task']} ({', '.join(c['languages'])})", "",
             f"Train {c['num_train']} examples of {c.get('train_split')}, evaluate {c['num_eval']} of "
             f"{c.get('eval_split')}; "
             f"{c['steps']} steps, batch {c['batch_size']}, lr {c['lr']}, lambda {c['lambda_sharing']}, "
             f"layers {c['layers'] if c['layers'] is not None else 'all'}, seed {c['seed']}.", "",
             "| run | mean % all-shared | " + " | ".join(f"acc {lang}" for lang in c["languages"]) + " |",
             "|---|---|" + "---|" * len(c["languages"])]
    for key in ("before", "after", "control_after"):
        r = result[key]
        lines.append(f"| {key} | {r['all_shared_pct']:.3f} | "
                     + " | ".join(f"{r['accuracy'][lang]:.3f}" for lang in c["languages"]) + " |")
    lines += ["", f"Timings (s): {json.dumps({k: round(v, 1) for k, v in result['timings'].items()})}",
              "", "control_after = same data, steps and seed with lambda = 0 (task loss only).", ""]
    write_text_atomic(path, "\n".join(lines))
