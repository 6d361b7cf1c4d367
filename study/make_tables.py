"""Regenerate the tables of REPRODUCTION.md from the study runs' JSON files.

    python study/make_tables.py                 # print the tables
    python study/make_tables.py --write         # also rewrite the block between the table markers of REPRODUCTION.md

Reads runs/study/<name>/{sharing,attribution,interventions,alignment}.json and examples.npz (runs/ is not
committed: rerun the flagfiles launchers/configs/study_*.flags first). A run that is missing is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = os.path.join(ROOT, "runs", "study")
DOC = os.path.join(ROOT, "REPRODUCTION.md")
START, END = "<!-- tables:start -->", "<!-- tables:end -->"
CATS = ("all_shared", "partial_shared", "specific", "non_activated")

SHARING_RUNS = [  # (run folder, label)
    ("gemma_xnli", "gemma3-270m XNLI"),
    ("gemma_mpararel", "gemma3-270m mParaRel"),
    ("gemma_mzsre_en2all", "gemma3-270m MzsRE EN->ALL"),
    ("gemma_mzsre_all2en", "gemma3-270m MzsRE ALL->EN"),
    ("smollm_xnli", "smollm2-135m XNLI (no th)"),
    ("smollm_xnli_full", "smollm2-135m XNLI, 1,000 items"),
    ("smollm_mpararel", "smollm2-135m mParaRel"),
    ("smollm_mzsre_en2all", "smollm2-135m MzsRE EN->ALL"),
    ("smollm_mzsre_all2en", "smollm2-135m MzsRE ALL->EN"),
]
ATTR_RUNS = [("gemma_xnli_attr", "gemma3-270m XNLI"), ("gemma_xnli_ig", "gemma3-270m XNLI, IG"),
             ("gemma_mpararel_iv", "gemma3-270m mParaRel"), ("smollm_mpararel_attr", "smollm2-135m mParaRel")]
ALIGN_RUNS = [("align_xnli", "smollm2-135m XNLI alignment (reduced)")]


def load(run: str, name: str):
    path = os.path.join(RUNS, run, name)
    if not os.path.exists(path):
        return None
    if name.endswith(".npz"):
        return np.load(path)
    with open(path) as f:
        return json.load(f)


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def runs_table():
    rows = []
    for run, label in SHARING_RUNS + ATTR_RUNS:
        s = load(run, "sharing.json")
        if s is None:
            rows.append([label, f"`{run}`", "not run", "", "", ""])
            continue
        acc = s["accuracy"]
        e = load(run, "examples.npz")
        majority = "n/a"
        if e is not None:
            o = e["option_logprobs"]  # [E, N, O]
            if o.shape[-1] > 1:
                pred = np.nanargmax(np.where(np.isnan(o), -np.inf, o), -1)
                share = [np.bincount(pred[:, n]).max() / len(pred) * 100 for n in range(pred.shape[1])]
                majority = fmt(float(np.mean(share)))
        rows.append([label, f"`{run}`", s["num_examples"], ",".join(s["languages"]),
                     fmt(s.get("examples_per_second"), 2), fmt(100 * float(np.mean(list(acc.values())))), majority])
    return table(["model / task", "run", "examples", "languages", "examples/s (sharing pass)", "mean acc %",
                  "% of answers that are the model's most frequent option (mean over languages)"], rows)


def times_table():
    """Wall times from runs/study/times.txt (written by study/run_all.sh), last entry per run."""
    path = os.path.join(RUNS, "times.txt")
    if not os.path.exists(path):
        return "(no runs/study/times.txt)"
    last = {}
    for line in open(path):
        parts = line.split()
        if len(parts) >= 3 and parts[1].startswith("rc=") or (len(parts) >= 2 and parts[1].startswith("wall_s=")):
            fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
            last[parts[0]] = fields
    rows = [[f"`launchers/configs/study_{name}.flags`", f.get("rc", "0"),
             fmt(int(f["wall_s"]) / 60) if "wall_s" in f else "n/a", f.get("end", "")] for name, f in last.items()]
    return table(["flagfile", "exit status (137: killed, out of memory; ?: not recorded)", "wall min", "ended"], rows)


def per_run_table(header, row_of):
    """One row per sharing run: its label, then row_of(sharing.json), or "not run" cells when it is missing."""
    rows = []
    for run, label in SHARING_RUNS:
        s = load(run, "sharing.json")
        rows.append([label] + (row_of(s) if s is not None else ["not run"] * (len(header) - 1)))
    return table(header, rows)


def category_table():
    """Claim 1: mean over layers of each category (% of a layer's neurons, tau = 0, averaged over examples)."""
    def row(s):
        m = s["mean_over_layers"]
        ratio = m["partial_shared"] / m["all_shared"] if m["all_shared"] > 0 else float("nan")
        return [fmt(m[c]) for c in CATS] + [fmt(ratio, 2)]

    return per_run_table(["run", "all-shared %", "partial-shared %", "specific %", "non-activated %",
                          "partial / all"], row)


def layer_table():
    """Claim 2: where the all-shared (and partial-shared) neurons sit: lower / middle / upper third of layers."""
    def row(s):
        out = []
        for c in ("all_shared", "partial_shared"):
            v = np.asarray(s["per_layer"][c])
            out += [fmt(t.mean()) for t in np.array_split(v, 3)] + [str(int(np.argmax(v)))]
        return out

    return per_run_table(["run", "all-shared lower", "middle", "upper", "peak layer",
                          "partial-shared lower", "middle", "upper", "peak layer"], row)


def per_layer_table(run):
    s = load(run, "sharing.json")
    if s is None:
        return f"(`{run}` not run)"
    rows = [[l] + [fmt(s["per_layer"][c][l]) for c in CATS] + [fmt(s["per_layer_min"]["all_shared"][l]) + "-"
                                                               + fmt(s["per_layer_max"]["all_shared"][l])]
            for l in range(s["num_layers"])]
    return table(["layer", "all-shared %", "partial-shared %", "specific %", "non-activated %",
                  "all-shared min-max over examples"], rows)


def sweep_table():
    rows, keys = [], None
    for run, label in SHARING_RUNS:
        s = load(run, "sharing.json")
        if s is None:
            continue
        sweep = s["threshold_sweep"]
        keys = keys or list(sweep)
        rows.append([label] + [f"{np.mean(v['all_shared']):.1f} / {np.mean(v['non_activated']):.1f}"
                               for v in sweep.values()])
    if not rows:
        return "(no run)"
    return table(["run"] + [f"tau {k}" for k in keys], rows)


def overlap_table():
    rows = []
    for run, label in SHARING_RUNS:
        s = load(run, "sharing.json")
        if s is None or not s.get("overlap"):
            continue
        o, m = s["overlap"], s["mean_over_layers"]
        rows.append([label, s["num_examples"]] + [fmt(float(np.mean(o[c])), 2) for c in CATS]
                    + [fmt(100 * float(np.mean(o["non_activated"])) / m["non_activated"], 1)
                       if m["non_activated"] > 0 else "n/a"])
    return table(["run", "examples", "always all-shared %", "always partial %", "always specific %",
                  "always non-activated %", "always non-activated as % of non-activated"], rows)


def missing(run: str, label: str, name: str) -> str:
    """The line that stands for a results file a run did not write (or for the run itself)."""
    return f"{label}: no {name} in `{run}`" + ("" if load(run, "sharing.json") else " (not run)") + "."


def per_run_sections(name: str, section_of) -> str:
    """One section per attribution/intervention run, from its results file `name`: section_of(label, data)."""
    parts = []
    for run, label in ATTR_RUNS:
        data = load(run, name)
        parts.append(section_of(label, data) if data is not None else missing(run, label, name))
    return "\n\n".join(parts)


def attribution_section(label: str, a: dict) -> str:
    h = a["headline"]
    rows = []
    for m in a["methods"]:
        shares = [a["per_language"][lang][m]["attribution_share"]["all_shared"] for lang in a["languages"]]
        shares = [x for x in shares if x is not None]
        top = [float(np.mean(a["per_language"][lang][m]["top_share"]["all_shared"])) for lang in a["languages"]]
        rows.append([m, fmt(a["neuron_share"]["all_shared"]), fmt(h["all_shared_attribution_pct"][m]),
                     fmt(float(np.mean(shares)) if shares else None),
                     fmt(min(shares) if shares else None) + "-" + fmt(max(shares) if shares else None),
                     fmt(float(np.mean(top)))])
    headline = (f"**{label}** ({a['num_examples']} examples, top_k = {a['top_k']} of "
                f"{a['neurons_per_layer']} per layer; headline language {h['language']})\n\n"
                + table(["method", "all-shared % of neurons", f"% of positive attribution ({h['language']})",
                         "% of positive attribution (mean over languages)", "range over languages",
                         "all-shared % of top-k (mean over layers, languages)"], rows))
    rows = [[m] + [fmt(a["per_language"][h["language"]][m]["attribution_share"][c]) for c in CATS]
            for m in a["methods"]]
    by_category = (f"Share of positive attribution by category ({h['language']}, {label}); neuron shares: "
                   + ", ".join(f"{c} {a['neuron_share'][c]:.1f}%" for c in CATS) + "\n\n"
                   + table(["method"] + [f"{c} %" for c in CATS], rows))
    return headline + "\n\n" + by_category


def intervention_section(label: str, iv: dict) -> str:
    langs = list(iv["clean"])
    kinds = [k for k in ("clean", "all_shared", "partial_shared", "specific", "random") if k in iv]
    rows = []
    for k in kinds:
        vals = [100 * iv[k][lang] for lang in langs]
        rows.append([k] + [fmt(v, 0) for v in vals] + [fmt(float(np.mean(vals)))])
    meta = iv.get("meta", {})
    deact = meta.get("mean_deactivated_per_layer", {})
    note = ", ".join(f"{c} {float(np.mean(v)):.0f}" for c, v in deact.items())
    seeds = meta.get("random_per_seed", {})
    seed_note = "; random per seed (mean acc %): " + ", ".join(
        f"{s}: {100 * float(np.mean(list(v.values()))):.1f}" for s, v in seeds.items()) if seeds else ""
    return (f"**{label}** ({meta.get('num_examples')} examples, deactivation at the "
            f"{meta.get('positions')} token; mean neurons zeroed per layer: {note}{seed_note})\n\n"
            + table(["deactivated"] + langs + ["mean"], rows))


def alignment_table():
    parts = []
    for run, label in ALIGN_RUNS:
        a = load(run, "alignment.json")
        if a is None:
            parts.append(f"{label}: `{run}` not run.")
            continue
        c = a["config"]
        langs = c["languages"]
        rows = []
        for k in ("before", "after", "control_after"):
            r = a[k]
            accs = [100 * r["accuracy"][lang] for lang in langs]
            rows.append([k, fmt(r["all_shared_pct"], 2)] + [fmt(x, 1) for x in accs] + [fmt(float(np.mean(accs)))])
        parts.append(f"**{label}**: train {c['num_train']} ({c['train_split']}), eval {c['num_eval']} "
                     f"({c['eval_split']}), {c['steps']} steps, lambda {c['lambda_sharing']}, "
                     f"total {a['timings'].get('total_s', 0) / 60:.1f} min\n\n"
                     + table(["model", "all-shared %"] + [f"acc {l} %" for l in langs] + ["mean acc %"], rows))
    return "\n\n".join(parts)


def correctness_tables():
    """Own finding: sharing vs correctness, and activated neurons per language vs accuracy."""
    rows, rows2 = [], []
    for run, label in SHARING_RUNS:
        s = load(run, "sharing.json")
        e = load(run, "examples.npz")
        if s is None or e is None:
            continue
        bc = s.get("by_correctness")
        if bc:
            a, b = bc["all_correct"], bc["not_all_correct"]
            ma = float(np.mean(a["per_layer"]["all_shared"])) if a["num_examples"] else None
            mb = float(np.mean(b["per_layer"]["all_shared"])) if b["num_examples"] else None
        else:
            a = b = {"num_examples": 0}
            ma = mb = None
        counts = e["category_counts"][:, 0].astype(np.float64)  # [E, L, 4] at tau = 0 (first threshold)
        width = s["neurons_per_layer"]
        all_shared_e = counts[..., 0].mean(-1) / width * 100
        n_correct_e = e["correct"].sum(-1)
        r = float(np.corrcoef(all_shared_e, n_correct_e)[0, 1]) if np.std(n_correct_e) > 0 else None
        # per language: mean activated neurons vs accuracy, across languages
        act = {lang: float(np.mean(v)) for lang, v in s["activated_per_language"].items()}
        accs = [s["accuracy"][lang] for lang in act]
        r_lang = float(np.corrcoef(list(act.values()), accs)[0, 1]) if np.std(accs) > 0 else None
        rows.append([label, a["num_examples"], fmt(ma, 2), b["num_examples"], fmt(mb, 2), fmt(r, 2)])
        rows2.append([label] + [f"{act[lang]:.0f} ({100 * s['accuracy'][lang]:.0f}%)" for lang in act]
                     + [fmt(r_lang, 2)])
    t1 = table(["run", "# examples correct in all languages", "all-shared % (mean over layers)",
                "# other examples", "all-shared %", "Pearson r (per example: all-shared % vs # languages correct)"],
               rows)
    langs = None
    for run, _ in SHARING_RUNS:
        s = load(run, "sharing.json")
        if s is not None:
            langs = list(s["activated_per_language"])
            break
    t2 = "\n".join(
        "| " + r[0] + " | " + " ".join(r[1:-1]) + f" | {r[-1]} |" for r in rows2)
    t2 = "| run | activated neurons per layer, mean (accuracy), per language in the run's order | r (activated vs accuracy, across languages) |\n|---|---|---|\n" + t2
    return t1, t2, langs


def build() -> str:
    t1, t2, _ = correctness_tables()
    sections = [
        ("Runs", runs_table()),
        ("Wall time (2 shared CPU cores, nice 10, other jobs beside; runs after 17:00 paused during benchmarks)",
         times_table()),
        ("Claim 1: categories by task (mean over layers, % of a layer's neurons, tau = 0)", category_table()),
        ("Claim 2: where the shared neurons sit (mean % in the lower / middle / upper third of the layers)",
         layer_table()),
        ("Claim 2: per layer, gemma3-270m XNLI", per_layer_table("gemma_xnli")),
        ("Claim 2: per layer, gemma3-270m mParaRel", per_layer_table("gemma_mpararel")),
        ("Threshold sweep (all-shared % / non-activated %, mean over layers)", sweep_table()),
        ("Overlap: neurons in the same category for every example (mean over layers, % of a layer)", overlap_table()),
        ("Claim 3: all-shared neurons vs the attribution they carry",
         per_run_sections("attribution.json", attribution_section)),
        ("Claim 4: accuracy (%) after deactivating one category at the prompt's last token",
         per_run_sections("interventions.json", intervention_section)),
        ("Claim 5: alignment fine-tuning (lambda) vs the lambda = 0 control", alignment_table()),
        ("Own finding (a): sharing vs correctness", t1),
        ("Own finding (b): activated neurons per language vs accuracy", t2),
    ]
    return "\n\n".join(f"#### {title}\n\n{body}" for title, body in sections)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true", help="rewrite the marked block of REPRODUCTION.md")
    args = p.parse_args()
    text = build()
    if args.write:
        with open(DOC) as f:
            doc = f.read()
        if START not in doc or END not in doc:
            print(f"{DOC} has no {START} ... {END} block", file=sys.stderr)
            return 1
        head, rest = doc.split(START, 1)
        _, tail = rest.split(END, 1)
        with open(DOC, "w") as f:
            f.write(head + START + "\n" + text + "\n" + END + tail)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
