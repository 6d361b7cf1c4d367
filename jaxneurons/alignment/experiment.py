"""End-to-end alignment run: load, evaluate before, train (lambda) and a control (lambda = 0), evaluate after,
write alignment.json, figures/all_shared_per_layer.png, report.md and model/ (loadable by jn.load_model)."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Sequence

from jaxneurons.alignment.train import TrainConfig, evaluate, tokenize_examples, train


def load_items(lm, task_name: str, languages: Sequence[str], train_split: str, eval_split: str, num_train: int,
               num_eval: int, data_dir: str | None = None):
    """Tokenized (train, eval) items; never the same examples (same split -> disjoint slices)."""
    from jaxneurons.tasks import get_task

    task = get_task(task_name)
    if train_split == eval_split:
        examples = task.load(languages, split=train_split, num_examples=num_train + num_eval,
                             data_dir=data_dir).examples
        train_ex, eval_ex = examples[:num_train], examples[num_train:num_train + num_eval]
    else:
        train_ex = task.load(languages, split=train_split, num_examples=num_train, data_dir=data_dir).examples
        eval_ex = task.load(languages, split=eval_split, num_examples=num_eval, data_dir=data_dir).examples
    overlap = {e.id for e in train_ex} & {e.id for e in eval_ex}
    if overlap:
        raise ValueError(f"train and eval share examples: {sorted(overlap)[:3]}")
    return tokenize_examples(lm, train_ex, languages), tokenize_examples(lm, eval_ex, languages)


def run_alignment(model: str, task: str, languages: Sequence[str], train_split: str, eval_split: str,
                  num_train: int, num_eval: int, cfg: TrainConfig, output_dir: str, resume: bool = False,
                  dtype: str = "float32", data_dir: str | None = None, eval_batch_size: int = 8) -> dict:
    import jaxneurons as jn

    t0 = time.time()
    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    lm = jn.load_model(model, dtype=dtype)
    train_items, eval_items = load_items(lm, task, languages, train_split, eval_split, num_train, num_eval, data_dir)
    timings = {"load_s": time.time() - t0}
    t = time.time()
    before = evaluate(lm, lm.params, eval_items, languages, eval_batch_size)
    timings["eval_before_s"] = time.time() - t
    t = time.time()
    params, history = train(lm, train_items, cfg, os.path.join(output_dir, "checkpoints", "aligned"), resume)
    timings["train_s"] = time.time() - t
    after = evaluate(lm, params, eval_items, languages, eval_batch_size)
    t = time.time()
    control_cfg = dataclasses.replace(cfg, lambda_sharing=0.0)
    control_params, control_history = train(lm, train_items, control_cfg,
                                            os.path.join(output_dir, "checkpoints", "control"), resume)
    timings["control_train_s"] = time.time() - t
    control_after = evaluate(lm, control_params, eval_items, languages, eval_batch_size)
    from jaxneurons.loading.orbax_dir import save_orbax_model

    save_orbax_model(os.path.join(output_dir, "model"), lm.config, params, lm.tokenizer, tokenizer_source=model)
    timings["total_s"] = time.time() - t0
    result = {"before": before, "after": after, "control_after": control_after,
              "config": dict(dataclasses.asdict(cfg), model=model, task=task, languages=list(languages),
                             train_split=train_split, eval_split=eval_split, num_train=len(train_items),
                             num_eval=len(eval_items), dtype=dtype),
              "history_last": history[-1] if history else None,
              "control_history_last": control_history[-1] if control_history else None, "timings": timings}
    with open(os.path.join(output_dir, "alignment.json"), "w") as f:
        json.dump(result, f, indent=1)
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
