"""Claim 5's premise: how large is the sharing term's gradient next to the task loss's, at the start of training?

    python study/alignment_gradients.py --output=runs/study/alignment_gradients/alignment_gradients.json

On the alignment objective (`jaxneurons.alignment.objective`: L = L_task + lambda * L_share), for each batch of
the study's alignment setting (smollm2-135m, XNLI dev, the paper's prompt, en/de/fr/zh, the MLPs of layers
10-19 trainable), it computes the two terms' gradients separately with respect to the trainable weights and
writes their global norms, the ratio |grad L_share| / |grad L_task| with its 95% bootstrap interval over
batches, the cosine between the two, and for a sweep of lambda the share of the summed gradient's norm that
the sharing term makes. The optimizer (AdamW after clipping the summed gradient) sees only the sum: a term
whose gradient is a thousandth of the other's cannot steer it, whatever the step count.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxneurons as jn
from jaxneurons.alignment.objective import forward_terms, make_batch, objective_decoder, sharing_loss, task_loss
from jaxneurons.alignment.train import trainable_masks, training_rows
from jaxneurons.analysis import write_json_atomic
from jaxneurons.analysis.bootstrap import point_and_ci
from jaxneurons.tasks import get_task

LAMBDAS = (0.1, 1.0, 5.0, 10.0, 100.0, 1000.0, 10000.0)


def term_gradients(decoder, params, mask, batch, rho: float, margin: float, num_languages: int):
    """(task loss, sharing loss, grad task, grad sharing): gradients of the trainable rows only (others zero)."""
    def terms(p):
        logprob_r, tokens_r, z, _ = forward_terms(decoder, p, batch, num_languages)
        return task_loss(logprob_r, tokens_r), sharing_loss(z, rho, margin)

    (lt, ls), pullback = jax.vjp(terms, params)
    keep = lambda g: jax.tree.map(lambda x, m: x * m if m is not None else jnp.zeros_like(x), g, mask,  # noqa: E731
                                  is_leaf=lambda x: x is None)
    g_task = keep(pullback((jnp.ones(()), jnp.zeros(())))[0])
    g_share = keep(pullback((jnp.zeros(()), jnp.ones(())))[0])
    return lt, ls, g_task, g_share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--languages", default="en,de,fr,zh")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--num_examples", type=int, default=32)
    ap.add_argument("--batch_size", type=int, default=2)
    ap.add_argument("--layers", default="10,11,12,13,14,15,16,17,18,19")
    ap.add_argument("--rho", type=float, default=0.5)
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--data_dir", default=os.environ.get("JAXNEURONS_DATA_DIR"))
    ap.add_argument("--output", required=True)
    args = ap.parse_args()
    languages = args.languages.split(",")
    layers = [int(x) for x in args.layers.split(",")]

    examples = get_task("xnli").load(languages, split=args.split, num_examples=args.num_examples,
                                     data_dir=args.data_dir, prompt_format="paper").examples
    t0 = time.time()
    lm = jn.load_model(args.model)
    items = training_rows(lm, examples, languages)
    _, mask = trainable_masks(lm.params, lm.config.num_layers, layers)
    decoder = objective_decoder(lm)
    grads = jax.jit(term_gradients, static_argnums=(0, 4, 5, 6))
    rows = []
    for start in range(0, len(items), args.batch_size):
        batch = make_batch(items[start:start + args.batch_size], lm.pad_id)
        lt, ls, gt, gs = grads(decoder, lm.params, mask, batch, args.rho, args.margin, len(languages))
        nt, ns = float(optax.global_norm(gt)), float(optax.global_norm(gs))
        rows.append({"task_loss": float(lt), "sharing_loss": float(ls), "grad_task": nt, "grad_sharing": ns,
                     "cosine": float(optax.tree_utils.tree_vdot(gt, gs)) / (nt * ns) if nt > 0 and ns > 0 else None})
        print(f"batch {len(rows)}: task {float(lt):.3f} sharing {float(ls):.5f} |g_task| {nt:.4g} "
              f"|g_share| {ns:.4g}", flush=True)
    gt_b = np.array([r["grad_task"] for r in rows])
    gs_b = np.array([r["grad_sharing"] for r in rows])
    ratio = point_and_ci(gs_b, gt_b)  # ratio of sums over batches
    sweep = {str(lam): {"sharing_share_of_gradient_norm": float(np.mean(lam * gs_b / (lam * gs_b + gt_b)))}
             for lam in LAMBDAS}
    result = {
        "config": vars(args) | {"prompt_format": "paper", "task": "xnli"},
        "num_batches": len(rows),
        "per_batch": rows,
        "mean_task_loss": float(np.mean([r["task_loss"] for r in rows])),
        "mean_sharing_loss": float(np.mean([r["sharing_loss"] for r in rows])),
        "grad_ratio_sharing_over_task": ratio,
        "lambda_for_equal_norms": 1.0 / ratio["value"] if ratio["value"] else None,
        "mean_cosine": float(np.mean([r["cosine"] for r in rows if r["cosine"] is not None])),
        "lambda_sweep": sweep,
        "wall_s": time.time() - t0,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    write_json_atomic(args.output, result)
    print(json.dumps({k: result[k] for k in ("grad_ratio_sharing_over_task", "lambda_for_equal_norms", "mean_cosine",
                                             "mean_task_loss", "mean_sharing_loss")}, indent=1))


if __name__ == "__main__":
    main()
