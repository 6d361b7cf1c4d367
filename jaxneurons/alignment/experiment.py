"""End-to-end alignment run: load, evaluate before, train (lambda) and a control (lambda = 0), evaluate after,
write alignment.json, figures/all_shared_per_layer.png, report.md and model/ (loadable by jn.load_model)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Sequence

import numpy as np

from jaxneurons.alignment.train import TrainConfig, tokenize_examples, train
from jaxneurons.analysis import write_json_atomic


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


def evaluate(lm, params, task, examples, languages: Sequence[str], output_dir: str, batch_size: int = 8,
             resume: bool = False) -> dict:
    """Mean % all-shared neurons (tau = 0, per layer and over layers) and accuracy per language, computed by
    the sharing pipeline itself (the same batches, scoring and statistics as analyze.py; resumable)."""
    import jaxneurons as jn
    from jaxneurons.pipeline import run_sharing_analysis

    model = jn.LanguageModel(lm.config, params, lm.tokenizer, lm.compute_dtype, lm.source)
    sharing = run_sharing_analysis(model, task, examples, languages, output_dir, batch_size=batch_size,
                                   thresholds=(0.0,), resume=resume, figures=False)
    per_layer = sharing["per_layer"]["all_shared"]
    return {"all_shared_pct": float(np.mean(per_layer)), "all_shared_per_layer": per_layer,
            "accuracy": sharing["accuracy"]}


def run_alignment(model: str, task: str, languages: Sequence[str], train_split: str, eval_split: str,
                  num_train: int, num_eval: int, cfg: TrainConfig, output_dir: str, resume: bool = False,
                  dtype: str = "float32", data_dir: str | None = None, eval_batch_size: int = 8,
                  prompt_format: str | None = None, prompt_suffix: str = "") -> dict:
    import jaxneurons as jn
    from jaxneurons.tasks import get_task

    t0 = time.time()
    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    task_obj = get_task(task)
    prompt_format = task_obj.check_prompt_format(prompt_format)  # before the (slow) model load
    lm = jn.load_model(model, dtype=dtype)
    train_ex, eval_ex = load_examples(task_obj, languages, train_split, eval_split, num_train, num_eval, data_dir,
                                      prompt_format, prompt_suffix)
    train_items = tokenize_examples(lm, train_ex, languages)
    timings = {"load_s": time.time() - t0}

    def evaluate_params(params, name):
        return evaluate(lm, params, task_obj, eval_ex, languages, os.path.join(output_dir, "eval", name),
                        eval_batch_size, resume)

    t = time.time()
    before = evaluate_params(lm.params, "before")
    timings["eval_before_s"] = time.time() - t
    t = time.time()
    params, history = train(lm, train_items, cfg, os.path.join(output_dir, "checkpoints", "aligned"), resume)
    timings["train_s"] = time.time() - t
    after = evaluate_params(params, "after")
    t = time.time()
    control_cfg = dataclasses.replace(cfg, lambda_sharing=0.0)
    control_params, control_history = train(lm, train_items, control_cfg,
                                            os.path.join(output_dir, "checkpoints", "control"), resume)
    timings["control_train_s"] = time.time() - t
    control_after = evaluate_params(control_params, "control_after")
    from jaxneurons.loading.export import export_hf
    from jaxneurons.loading.orbax_dir import save_orbax_model

    save_orbax_model(os.path.join(output_dir, "model"), lm.config, params, lm.tokenizer, tokenizer_source=model)
    export_hf(dataclasses.replace(lm, params=params), os.path.join(output_dir, "model_hf"))  # for transformers
    timings["total_s"] = time.time() - t0
    result = {"before": before, "after": after, "control_after": control_after,
              "config": dict(dataclasses.asdict(cfg), model=model, task=task, languages=list(languages),
                             train_split=train_split, eval_split=eval_split, num_train=len(train_ex),
                             num_eval=len(eval_ex), dtype=dtype, prompt_format=prompt_format,
                             prompt_suffix=prompt_suffix),
              "history_last": history[-1] if history else None,
              "control_history_last": control_history[-1] if control_history else None, "timings": timings}
    write_json_atomic(os.path.join(output_dir, "alignment.json"), result)
    _figure(result, os.path.join(output_dir, "figures", "all_shared_per_layer.png"))
    _report(result, os.path.join(output_dir, "report.md"))
    return result


def _figure(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for key, style in (("before", "k-"), ("after", "r-"), ("control_after", "b--")):
        ax.plot(result[key]["all_shared_per_layer"], style, label=f"{key} ({result[key]['all_shared_pct']:.2f}%)")
    ax.set_xlabel("layer")
    ax.set_ylabel("% all-shared neurons")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _report(result: dict, path: str) -> None:
    c = result["config"]
    lines = [f"# Alignment run: {c['model']} on {c['task']} ({', '.join(c['languages'])})", "",
             f"Train {c['num_train']} examples of {c['train_split']}, evaluate {c['num_eval']} of {c['eval_split']}; "
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
    with open(path, "w") as f:
        f.write("\n".join(lines))
