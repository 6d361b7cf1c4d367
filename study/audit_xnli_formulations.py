"""Audit of the XNLI formulations: option tokens, option probability mass, answer bias and accuracy (95% CI).

  PYTHONPATH=$PWD JAXNEURONS_DATA_DIR=/work/shared/data python study/audit_xnli_formulations.py \
      --model=gemma3-270m --formats=paper,paper+cue,paper_fewshot,qa,qa_fewshot --languages=en,de --n=150

Scores each option as a continuation of the prompt (summed log-likelihood, as the pipeline does: prompt with
BOS, option without); prints one line per (format, language) and writes a JSON with the numbers.
"""

from __future__ import annotations

import argparse
import collections
import json
import time

import numpy as np

import jaxneurons as jn
from jaxneurons.analysis.bootstrap import point_and_ci
from jaxneurons.tasks import get_task

CUE = "\nAnswer:"


def option_logprobs(lm, prompts: list[str], options: list[tuple[str, ...]], batch: int = 8) -> np.ndarray:
    """[E, O] summed log-likelihood of each option after its prompt (one forward per prompt + option)."""
    tok = lm.tokenizer
    p_ids = [tok(p)["input_ids"] for p in prompts]
    o_ids = [[tok(o, add_special_tokens=False)["input_ids"] for o in opts] for opts in options]
    out = np.zeros((len(prompts), len(options[0])))
    single = all(len(t) == 1 for opts in o_ids for t in opts)
    order = np.argsort([-len(p) for p in p_ids])
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        if single:  # one forward: the next-token distribution at the prompt's last token
            ids, mask = jn.lm.pad_rows([p_ids[i] for i in idx], lm.pad_id, pad_to_multiple_of=32)
            logits = lm.forward(ids, mask, logits="last").logits
            logp = np.asarray(logits, np.float64)
            logp = logp - np.logaddexp.reduce(logp, axis=-1, keepdims=True)
            for r, i in enumerate(idx):
                out[i] = [logp[r, t[0]] for t in o_ids[i]]
            continue
        for o in range(len(options[0])):
            rows = [p_ids[i] + o_ids[i][o] for i in idx]
            ids, mask = jn.lm.pad_rows(rows, lm.pad_id, pad_to_multiple_of=32)
            pos = np.zeros((len(idx), max(len(o_ids[i][o]) for i in idx)), np.int32)
            for r, i in enumerate(idx):
                k = len(o_ids[i][o])
                pos[r, :k] = np.arange(len(p_ids[i]) - 1, len(p_ids[i]) - 1 + k)
            logits = lm.forward(ids, mask, logits="indexed", logit_index=pos).logits
            logp = np.asarray(logits, np.float64)
            logp = logp - np.logaddexp.reduce(logp, axis=-1, keepdims=True)
            for r, i in enumerate(idx):
                out[i, o] = sum(logp[r, k, t] for k, t in enumerate(o_ids[i][o]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma3-270m")
    ap.add_argument("--formats", default="paper,paper+cue,paper_fewshot,qa,qa_fewshot")
    ap.add_argument("--languages", default="en,de")
    ap.add_argument("--task", default="xnli")
    ap.add_argument("--split", default="test")
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    lm = jn.load_model(args.model)
    tok = lm.tokenizer
    print("option tokens:", {o: tok(o, add_special_tokens=False)["input_ids"]
                             for o in (" true", " false", " inconclusive", " True", " False", " Neither")})
    task, results = get_task(args.task), {}
    langs = args.languages.split(",")
    for fmt in args.formats.split(","):
        name, suffix = (fmt[:-4], CUE) if fmt.endswith("+cue") else (fmt, "")
        loaded = task.load(langs, args.split, args.n, prompt_format=name, prompt_suffix=suffix)
        for lang in langs:
            t0 = time.time()
            exs = loaded.examples
            scores = option_logprobs(lm, [e.prompts[lang] for e in exs], [e.options[lang] for e in exs])
            gold = np.array([e.gold[lang] for e in exs])
            pred = scores.argmax(1)
            correct = (pred == gold).astype(float)
            acc = point_and_ci(correct, resamples=1000, seed=0)
            counts = collections.Counter(int(p) for p in pred)
            mass = float(np.median(np.exp(scores).sum(1)))
            ntok = int(np.mean([len(tok(e.prompts[lang])["input_ids"]) for e in exs]))
            results[f"{fmt}/{lang}"] = dict(accuracy=acc, n=len(exs), predicted=dict(counts), option_mass_median=mass,
                                            majority=max(counts.values()) / len(exs), prompt_tokens=ntok)
            lo, hi = acc["ci95"]
            print(f"{args.model} {fmt:16s} {lang}: acc {acc['value']:.3f} [{lo:.3f}, {hi:.3f}] n={len(exs)} "
                  f"pred {dict(sorted(counts.items()))} option mass (median) {mass:.2e} tokens {ntok} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
