"""Regenerate every number of REPRODUCTION.md (study v3), and its figures, from the study's committed results.

    python study/make_tables.py                 # print the verdict table and the tables
    python study/make_tables.py --write         # also rewrite REPRODUCTION.md's marked blocks (status, verdicts,
                                                # tables), study/figures/prompt_ending.png and dose_response.png
    python study/make_tables.py --extract runs/study/NAME study/results/NAME   # (study/run_all.sh does this)

Reads only study/results/<run>/: sharing.json (with its grouping controls and overlap frequency),
templates.json, attribution.json, interventions.json, alignment_sweep.json (and <lambda>_<seed>/eval/<weights>/
of the alignment sweep), alignment_gradients.json, per_example.json, per_item_deactivation.json and
wall_time.txt, which study/run_all.sh copies out of each run's folder (runs/ itself is not committed). A run
that is missing, or whose results come from before v3, is reported as such, and a verdict that needs it says
"pending". Every number in a verdict is computed here. Intervals are 95% percentile bootstraps over the items
(the pipeline's, seeded); the prompt-ending and alignment differences, and deactivation at equal mass, are
paired over the same items (per_example.json, per_item_deactivation.json)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from jaxneurons.analysis.bootstrap import DEFAULT_RESAMPLES, interval, point_and_ci, replicates, resample_counts
from jaxneurons.pipeline.interventions import at_equal_mass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "study", "results")
DOC = os.path.join(ROOT, "REPRODUCTION.md")
FIGURE = os.path.join(ROOT, "study", "figures", "prompt_ending.png")
DOSE_FIGURE = os.path.join(ROOT, "study", "figures", "dose_response.png")
CONTROLS_FIGURE = os.path.join(ROOT, "study", "figures", "grouping_controls.png")
BLOCKS = {name: (f"<!-- {name}:start -->", f"<!-- {name}:end -->") for name in ("status", "verdicts", "tables")}
CATS = ("all_shared", "partial_shared", "specific", "non_activated")
MODELS = {"gemma": "gemma3-270m", "smollm": "smollm2-135m"}

SHARING_RUNS = [  # (run, label): every run with a sharing.json, in the order of the tables
    ("gemma_xnli", "gemma3-270m XNLI"), ("gemma_mpararel", "gemma3-270m mParaRel"),
    ("gemma_mzsre_en2all", "gemma3-270m MzsRE EN->ALL"), ("gemma_mzsre_all2en", "gemma3-270m MzsRE ALL->EN"),
    ("smollm_xnli", "smollm2-135m XNLI"), ("smollm_mpararel", "smollm2-135m mParaRel"),
    ("smollm_mzsre_en2all", "smollm2-135m MzsRE EN->ALL"), ("smollm_mzsre_all2en", "smollm2-135m MzsRE ALL->EN"),
]
ENDING_RUNS = [  # (model, task, run ending in one English word, run ending in the item's language)
    ("gemma", "XNLI", "gemma_xnli", "gemma_xnli_cut"), ("gemma", "mParaRel", "gemma_mpararel_answer", "gemma_mpararel"),
    ("smollm", "XNLI", "smollm_xnli", "smollm_xnli_cut"),
    ("smollm", "mParaRel", "smollm_mpararel_answer", "smollm_mpararel"),
]
ENDINGS = {"english": "one English word", "native": "the item's language"}
TEMPLATE_RUNS = [("gemma_xnli_templates", "gemma3-270m XNLI"), ("gemma_mpararel_templates", "gemma3-270m mParaRel"),
                 ("smollm_xnli_templates", "smollm2-135m XNLI"),
                 ("smollm_mpararel_templates", "smollm2-135m mParaRel")]
BEYOND_RUNS = [("gemma_xnli_all", "gemma_xnli", "gemma3-270m XNLI"),
               ("gemma_mpararel_all", "gemma_mpararel", "gemma3-270m mParaRel")]  # (all tokens, last token)
ATTR_RUNS = [("gemma_xnli_attr", "gemma3-270m XNLI"), ("smollm_xnli_attr", "smollm2-135m XNLI")]
IG_RUNS = [("gemma_xnli_ig", "gemma3-270m XNLI, IG with the post-FFN norm scale frozen"),
           ("smollm_xnli_ig", "smollm2-135m XNLI, IG (no post-FFN norm)")]
IV_RUNS = [("gemma_mpararel_iv", "gemma3-270m mParaRel"), ("smollm_mpararel_iv", "smollm2-135m mParaRel")]
NP_RUNS = {"gemma_mpararel_iv": "gemma_mpararel_np", "smollm_mpararel_iv": "smollm_mpararel_np"}  # same items
ALIGN_RUN = "align_xnli"
ALL_RUNS = ([r for _, _, a, b in ENDING_RUNS for r in (a, b)] + [r for r, _ in SHARING_RUNS]
            + [r for r, _ in TEMPLATE_RUNS] + [a for a, _, _ in BEYOND_RUNS] + ["gemma_xnli_13"]
            + [r for r, _ in ATTR_RUNS + IG_RUNS + IV_RUNS] + list(NP_RUNS.values()))


# ---------------------------------------------------------------- reading and formatting

def load(run: str, name: str):
    path = os.path.join(RESULTS, run, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return f.read() if name.endswith(".txt") else json.load(f)


def before_v3(s: dict) -> str:
    """' (before v3)' for a result without a schema_version (a v2 run not yet rerun), else ''."""
    return "" if s.get("schema_version") else " (before v3)"


def fmt(x, digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}"


def ci(entry, digits=1, scale=1.0) -> str:
    """'v [lo, hi]' of a {"value", "ci95"} entry (the pipeline's intervals)."""
    if entry is None or entry.get("value") is None:
        return "n/a"
    v = entry["value"] * scale
    if not entry.get("ci95") or entry["ci95"][0] is None:
        return fmt(v, digits)
    lo, hi = (x * scale for x in entry["ci95"])
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def difference_ci(a: np.ndarray, b: np.ndarray) -> dict:
    """{"value", "ci95"} of mean(a) - mean(b) for two unpaired samples, each resampled on its own."""
    reps = replicates(a, resample_counts(len(a), seed=0)) - replicates(b, resample_counts(len(b), seed=1))
    lo, hi = interval(reps)
    return {"value": float(a.mean() - b.mean()), "ci95": [float(lo), float(hi)]}


def category_ci(s: dict, cat: str) -> str:
    return ci({"value": s["mean_over_layers"][cat], "ci95": s["mean_over_layers_ci95"][cat]})


def wall_min(run: str):
    line = load(run.split("/")[0], "wall_time.txt")  # a sweep's time is its run's
    if not line:
        return None
    fields = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
    wall = fields.get("wall_s", "")
    return int(wall) / 60 if wall.isdigit() else None  # the v3 pilots' notes give minutes in words: n/a


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only; imported when a figure is drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: str) -> str:
    """Lay out, write and close a figure; returns its path."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    pyplot().close(fig)
    return path


# ---------------------------------------------------------------- tables

RESULT_FILES = ("sharing.json", "templates.json", "attribution.json", "interventions.json", "alignment_sweep.json",
                "alignment.json", "alignment_gradients.json", "lape_categories.json", "ppl.json")


def status_table() -> str:
    """Which runs' committed results come from the v3 code (their files carry a schema_version) and which are
    older or missing: the verdicts say "pending" where they need a run that is not on v3."""
    rows = []
    for run in list(dict.fromkeys(ALL_RUNS)) + ["alignment_gradients", ALIGN_RUN, LAPE_RUN]:
        files = [f for f in RESULT_FILES if load(run, f) is not None]
        if not files:
            rows.append([f"`{run}`", "pending (not run)", ""])
            continue
        main = load(run, files[0])
        new = main.get("schema_version") or files[0] == "alignment_sweep.json"  # a sweep exists only since v3
        state = "v3" if new else "pending (its committed result is from before v3)"
        if run == "alignment_gradients":
            state = "v2 (its method did not change in v3)"
        rows.append([f"`{run}`", state, ", ".join(files)])
    return table(["run", "results", "files"], rows)


def sharing_units(run: str) -> list[str]:
    """The folders of a run that hold a sharing.json: the run itself, or a template sweep's one per template."""
    t = load(run, "templates.json")
    return [f"{run}/{name}" for name in t["templates"]] if t else [run]


def runs_table():
    rows = []
    for run in [u for r in dict.fromkeys(ALL_RUNS) for u in sharing_units(r)]:
        s = load(run, "sharing.json")
        if s is None:
            rows.append([run, "not run"] + [""] * 9)
            continue
        acc = s["accuracy_detail"]
        warned = [lang for lang, d in acc.items() if d.get("warning")]
        ending = s.get("prompt_format", "") + (f" + {s['prompt_suffix']!r}" if s.get("prompt_suffix") else "")
        rows.append([run + before_v3(s), s["model"], s["task"], ending, s["num_examples"], len(s["languages"]),
                     s.get("neuron_position", s.get("positions")),  # v2 results say "positions"
                     fmt(s.get("examples_per_second"), 2), fmt(wall_min(run)),
                     fmt(100 * float(np.mean([d["value"] for d in acc.values()]))),
                     ", ".join(warned) if warned else "none"])
    return table(["run", "model", "task", "prompt", "items", "languages", "tokens", "items/s (sharing pass)",
                  "wall min",
                  "mean accuracy %", "languages whose accuracy is at chance or one answer (run's warning)"], rows)


def accuracy_table():
    """Accuracy per language with its interval and chance, for the runs whose options make it meaningful."""
    rows = []
    for run in ("gemma_xnli", "smollm_xnli", "gemma_mpararel", "smollm_mpararel", "gemma_mpararel_answer",
                "smollm_mpararel_answer", "gemma_mzsre_en2all", "gemma_mzsre_all2en", "smollm_mzsre_en2all",
                "smollm_mzsre_all2en"):
        s = load(run, "sharing.json")
        if s is None:
            continue
        d = s["accuracy_detail"]
        chance = next((x["chance"] for x in d.values() if x.get("chance")), None)
        major = [x["majority_rate"] for x in d.values() if x.get("majority_rate") is not None]
        rows.append([run + before_v3(s), s["num_examples"], fmt(100 * chance) if chance else "open answer"]
                    + [ci(d[lang], 0, 100) for lang in s["languages"]]
                    + [fmt(100 * float(np.mean(major))) if major else "n/a"])
    langs = load("gemma_xnli", "sharing.json")["languages"] if load("gemma_xnli", "sharing.json") else []
    return table(["run", "items", "chance %"] + [f"{l} %" for l in langs] + ["rows with the most frequent answer %"],
                 rows)


def category_table():
    """Claim 1: mean over layers of each category with its interval (% of a layer's neurons, tau = 0)."""
    rows = []
    for run, label in SHARING_RUNS:
        s = load(run, "sharing.json")
        if s is None:
            rows.append([label, "not run"] + [""] * 5)
            continue
        m = s["mean_over_layers"]
        rows.append([label + before_v3(s), s["num_examples"]] + [category_ci(s, c) for c in CATS]
                    + [fmt(m["partial_shared"] / m["all_shared"], 2) if m["all_shared"] else "n/a"])
    return table(["run", "items", "all-shared %", "partial-shared %", "specific %", "non-activated %",
                  "partial / all"], rows)


def layer_table():
    """Claim 2: the lower / middle / upper third of the layers and the peak layer."""
    rows = []
    for run, label in SHARING_RUNS:
        s = load(run, "sharing.json")
        if s is None:
            continue
        out = [label + before_v3(s)]
        for c in ("all_shared", "partial_shared"):
            v = np.asarray(s["per_layer"][c])
            out += [fmt(t.mean()) for t in np.array_split(v, 3)] + [f"{int(np.argmax(v))} of {len(v)}"]
        rows.append(out)
    return table(["run", "all-shared lower", "middle", "upper", "peak layer", "partial-shared lower", "middle",
                  "upper", "peak layer"], rows)


def sweep_table():
    rows, keys = [], None
    for run, label in SHARING_RUNS:
        s = load(run, "sharing.json")
        if s is None:
            continue
        keys = keys or list(s["threshold_sweep"])
        rows.append([label + before_v3(s)] + [fmt(float(np.mean(v["all_shared"])))
                                              for v in s["threshold_sweep"].values()])
    return table(["run (all-shared %, mean over layers)"] + [f"tau {k}" for k in keys or []], rows)


# ---------------------------------------------------------------- grouping controls, templates, overlap (v3)

def ending_runs():
    """(model, task, ending key, run) for the eight runs of the prompt-ending design."""
    return [(model, task, key, run) for model, task, english, native in ENDING_RUNS
            for key, run in (("english", english), ("native", native))]


def controls(run: str):
    """The run's grouping controls (sharing.json "controls"), or None (not run, or a result from before them)."""
    s = load(run, "sharing.json")
    return None if s is None else s.get("controls")


def controlled_runs():
    """(model, task, ending key, run, controls) of the prompt-ending runs that have grouping controls."""
    for model, task, key, run in ending_runs():
        c = controls(run)
        if c is not None:
            yield model, task, key, run, c


def _mean(block: dict, group: str, cat: str = "all_shared") -> dict:
    return block["categories"][group][cat]["mean_over_layers"]


def _ratio_pct(part: dict, whole: dict) -> str:
    return fmt(100 * part["value"] / whole["value"], 0) if whole["value"] else "n/a"


def controls_table() -> str:
    """Grouping controls at the last token: all-shared % with the languages' rows of one item (parallel), of
    different items (non-parallel) and N items of one language (same-language); the parallel excess; the mean
    cosine of the languages' activation vectors."""
    rows = []
    for model, task, key, run in ending_runs():
        c = controls(run)
        if c is None:
            rows.append([MODELS[model], task, ENDINGS[key], f"`{run}` not run on v3"] + [""] * 8)
            continue
        par, exc = _mean(c, "parallel"), _mean(c, "parallel_excess")
        cos = c["cosine"]
        rows.append([MODELS[model], task, ENDINGS[key], f"{c['num_items']} x {c['draws']}", ci(par),
                     ci(_mean(c, "non_parallel")), ci(_mean(c, "same_language")), ci(exc, 2), _ratio_pct(exc, par),
                     ci(cos["parallel"]["mean_over_layers"], 3), ci(cos["non_parallel"]["mean_over_layers"], 3),
                     ci(cos["parallel_excess"]["mean_over_layers"], 4)])
    return table(["model", "task", "prompt ends in", "items x draws", "all-shared %, parallel",
                  "non-parallel", "same-language", "parallel excess, points (paired)", "excess as % of parallel",
                  "cosine, parallel", "cosine, non-parallel", "cosine excess"], rows)


def controls_figure(path: str) -> str | None:
    """All-shared % with the parallel grouping and its two controls, per run of the prompt-ending design
    (95% intervals), and the parallel excess per layer (one panel per model)."""
    runs = list(controlled_runs())
    if not runs:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [2, 1, 1]})
    x = np.arange(len(runs))
    for offset, (group, color) in zip((-0.27, 0, 0.27), (("parallel", "tab:blue"), ("non_parallel", "tab:grey"),
                                                          ("same_language", "tab:green"))):
        entries = [_mean(c, group) for *_, c in runs]
        mean = np.array([e["value"] for e in entries])
        lo_hi = np.array([e["ci95"] for e in entries], np.float64)
        axes[0].bar(x + offset, mean, 0.27, color=color, label=group.replace("_", "-"),
                    yerr=np.abs(np.stack([mean - lo_hi[:, 0], lo_hi[:, 1] - mean])), capsize=2)
    axes[0].set_xticks(x, [f"{MODELS[m].split('-')[0]}\n{t}\n{'English end' if k == 'english' else 'own-language end'}"
                           for m, t, k, _, _ in runs], fontsize=7)
    axes[0].set_ylabel("all-shared % of a layer's neurons (mean over layers)")
    axes[0].set_title("grouping controls at the last token (tau = 0, 95% intervals)", fontsize=10)
    axes[0].legend(fontsize=8)
    for ax, model in zip(axes[1:], MODELS):
        for m, task, key, run, c in runs:
            if m != model:
                continue
            v = c["categories"]["parallel_excess"]["all_shared"]["per_layer"]["value"]
            ax.plot(range(len(v)), v, "-" if key == "english" else "--", marker="o" if task == "XNLI" else "s",
                    markersize=3, label=f"{task}, ends in {'English' if key == 'english' else 'its language'}")
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("layer")
        ax.set_ylabel("parallel excess, points")
        ax.set_title(f"{MODELS[model]}: all-shared, parallel minus non-parallel", fontsize=10)
        if ax.lines:
            ax.legend(fontsize=7)
    return save(fig, path)


def partial_controls_table() -> str:
    """The same for partial-shared and specific (claim 1 speaks of partial-shared)."""
    rows = []
    for model, task, key, run, c in controlled_runs():
        rows.append([MODELS[model], task, ENDINGS[key]]
                     + [ci(_mean(c, g, cat), 2 if "excess" in g else 1) for cat in ("partial_shared", "specific")
                        for g in ("parallel", "non_parallel", "parallel_excess")])
    return table(["model", "task", "prompt ends in", "partial-shared %, parallel", "non-parallel", "excess, points",
                  "specific %, parallel", "non-parallel", "excess, points"], rows)


def thirds(values) -> list[float]:
    return [float(t.mean()) for t in np.array_split(np.asarray(values, np.float64), 3)]


def excess_layer_table() -> str:
    """Claim 2 in the controls' light: all-shared and its parallel excess in the lower / middle / upper third."""
    rows = []
    for model, task, key, run, c in controlled_runs():
        par = c["categories"]["parallel"]["all_shared"]["per_layer"]["value"]
        exc = c["categories"]["parallel_excess"]["all_shared"]["per_layer"]["value"]
        rows.append([MODELS[model], task, ENDINGS[key]] + [fmt(v) for v in thirds(par)]
                    + [fmt(v, 2) for v in thirds(exc)] + [f"{int(np.argmax(exc))} of {len(exc)}"])
    return table(["model", "task", "prompt ends in", "all-shared % lower", "middle", "upper",
                  "parallel excess lower", "middle", "upper", "peak excess layer"], rows)


def templates_table() -> str:
    """Template-to-template spread within each formulation, beside the item interval's half-width, and the
    difference between the formulations' means."""
    rows = []
    for run, label in TEMPLATE_RUNS:
        t = load(run, "templates.json")
        if t is None:
            rows.append([label, f"`{run}` not run"] + [""] * 8)
            continue
        for name, f in t["formulations"].items():
            a, e = f["all_shared"], f["parallel_excess"]
            rows.append([label, f"{name}: {', '.join(f['templates'])}", t["num_examples"], fmt(a["mean"]),
                         fmt(a["sd"], 2), fmt(a["range"], 2), fmt(a["item_half_width"], 2),
                         fmt(e["mean"], 2), fmt(e["sd"], 2), fmt(e["item_half_width"], 2)])
    return table(["model and task", "formulation: templates", "items", "all-shared % (mean of templates)",
                  "sd over templates", "range", "item interval half-width", "parallel excess, points (mean)",
                  "sd over templates", "item interval half-width"], rows)


def template_ending_gap(run: str):
    """(English-ending mean minus language-ending mean of all-shared %, the larger sd over templates) or None."""
    t = load(run, "templates.json")
    if t is None:
        return None
    f = t["formulations"]
    return (f["ends_english"]["all_shared"]["mean"] - f["ends_in_language"]["all_shared"]["mean"],
            max(f["ends_english"]["all_shared"]["sd"], f["ends_in_language"]["all_shared"]["sd"]))


def overlap_table() -> str:
    """Claim (i)'s second half: of the neurons all-shared in at least one item, the % all-shared in every item
    and in at least half of them (mean over layers; delete-one jackknife intervals over items)."""
    rows = []
    for model, task, key, run in ending_runs():
        s = load(run, "sharing.json")
        f = None if s is None else s.get("overlap_frequency")
        if f is None:
            rows.append([MODELS[model], task, ENDINGS[key], f"`{run}` not run on v3", "", "", ""])
            continue
        rows.append([MODELS[model], task, ENDINGS[key], f["num_items"], fmt(float(np.mean(f["ever_per_layer"]))),
                     ci(f["every"]["mean_over_layers"]), ci(f["half"]["mean_over_layers"])])
    return table(["model", "task", "prompt ends in", "items", "all-shared in at least one item, % of a layer",
                  "of those, % all-shared in every item", "% in at least half the items"], rows)


def ending_rows():
    """Per (model, task): each ending's all-shared and partial-shared with intervals, and the paired difference."""
    rows = []
    for model, task, english, native in ENDING_RUNS:
        a, b = load(english, "sharing.json"), load(native, "sharing.json")
        pa, pb = load(english, "per_example.json"), load(native, "per_example.json")
        if a is None or b is None:
            rows.append(dict(model=model, task=task, missing=True))
            continue
        diff = {}
        if pa and pb and pa["ids"] == pb["ids"]:
            for c in ("all_shared", "partial_shared"):
                diff[c] = point_and_ci(np.asarray(pa[c]) - np.asarray(pb[c]))
        rows.append(dict(model=model, task=task, english=english, native=native, a=a, b=b, diff=diff,
                         missing=False))
    return rows


def ending_table():
    rows = []
    for r in ending_rows():
        if r["missing"]:
            rows.append([MODELS[r["model"]], r["task"], "not run"] + [""] * 5)
            continue
        d = r["diff"]
        rows.append([MODELS[r["model"]], r["task"], r["a"]["num_examples"],
                     category_ci(r["a"], "all_shared"), category_ci(r["b"], "all_shared"),
                     ci(d.get("all_shared")),
                     category_ci(r["a"], "partial_shared"), category_ci(r["b"], "partial_shared"),
                     ci(d.get("partial_shared"))])
    return table(["model", "task", "items", "all-shared %, ends in one English word", "all-shared %, ends in the "
                  "item's language", "difference (paired)", "partial-shared %, English end", "partial-shared %, "
                  "language end", "difference (paired)"], rows)


def task_effect_table():
    """Claim 1 with the ending held fixed: XNLI minus mParaRel all-shared % per model and ending (different items:
    each run resampled on its own)."""
    rows = []
    for model in MODELS:
        for ending, pick in (("one English word", 2), ("the item's language", 3)):
            runs = {task: r[pick] for r in ENDING_RUNS for task in (r[1],) if r[0] == model}
            per = {task: load(run, "per_example.json") for task, run in runs.items()}
            if not all(per.values()):
                rows.append([MODELS[model], ending, "not run", "", ""])
                continue
            x, m = (np.asarray(per[t]["all_shared"]) for t in ("XNLI", "mParaRel"))
            rows.append([MODELS[model], ending, ci(point_and_ci(x)), ci(point_and_ci(m)), ci(difference_ci(x, m))])
    return table(["model", "prompt ends in", "XNLI all-shared %", "mParaRel all-shared %",
                  "XNLI minus mParaRel (points)"], rows)


def ending_figure(path: str) -> str | None:
    """Top: all-shared and partial-shared per (model, task) and ending, with the 95% intervals. Bottom: the
    all-shared share per layer of each run, one panel per model."""
    rows = [r for r in ending_rows() if not r["missing"]]
    if not rows:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    x = np.arange(len(rows))
    endings = (("a", "prompt ends in one English word", "tab:blue", "-"),
               ("b", "prompt ends in the item's language", "tab:orange", "--"))
    for ax, cat, title in zip(axes[0], ("all_shared", "partial_shared"), ("all-shared", "partial-shared")):
        for offset, (key, label, color, _) in zip((-0.2, 0.2), endings):
            mean = np.array([r[key]["mean_over_layers"][cat] for r in rows])
            lo_hi = np.array([r[key]["mean_over_layers_ci95"][cat] for r in rows])
            ax.bar(x + offset, mean, 0.4, label=label, color=color,
                   yerr=np.abs(np.stack([mean - lo_hi[:, 0], lo_hi[:, 1] - mean])), capsize=3)
        ax.set_xticks(x, [f"{MODELS[r['model']]}\n{r['task']}" for r in rows], fontsize=8)
        ax.set_ylabel(f"% of a layer's neurons (mean over layers)")
        ax.set_title(f"{title} neurons, tau = 0, last token (95% intervals)", fontsize=10)
    axes[0][0].legend(fontsize=8)
    for ax, model in zip(axes[1], MODELS):
        for r in (r for r in rows if r["model"] == model):
            for key, label, color, style in endings:
                v = r[key]["per_layer"]["all_shared"]
                ax.plot(range(len(v)), v, style, color=color, marker="o" if r["task"] == "XNLI" else "s",
                        markersize=3, label=f"{r['task']}, {label}")
        ax.set_xlabel("layer")
        ax.set_ylabel("all-shared % of the layer's neurons")
        ax.set_title(f"{MODELS[model]}: all-shared per layer", fontsize=10)
        if ax.lines:
            ax.legend(fontsize=7)
    return save(fig, path)


def positions_table():
    """Every token vs the last token: the categories, and the grouping controls' all-shared and parallel excess."""
    rows = []
    for all_run, last_run, label in BEYOND_RUNS:
        a, b = load(all_run, "sharing.json"), load(last_run, "sharing.json")
        if a is None or b is None:
            rows.append([label, "not run"] + [""] * 6)
            continue
        cells = [label + before_v3(a), f"{a['num_examples']} / {b['num_examples']}"]
        cells += [f"{category_ci(a, c)} / {category_ci(b, c)}" for c in CATS]
        ca, cb = a.get("controls"), b.get("controls")
        cells += [" / ".join(ci(_mean(c, g), 2 if "excess" in g else 1) if c else "before v3" for c in (ca, cb))
                  for g in ("non_parallel", "parallel_excess")]
        rows.append(cells)
    return table(["run", "items (all tokens / last token)"] + [f"{c} %: all tokens / last token" for c in CATS]
                 + ["all-shared %, non-parallel: all / last", "parallel excess, points: all / last"], rows)


def languages_table():
    """The 9 languages vs 9 + sw, ur, hi, ar on the same XNLI items: categories and activated neurons."""
    a, b = load("gemma_xnli_13", "sharing.json"), load("gemma_xnli", "sharing.json")
    if a is None or b is None:
        return "(gemma_xnli_13 or gemma_xnli not run)"
    def grouping(s):  # all-shared under the non-parallel grouping, and the parallel excess
        c = s.get("controls")
        return [ci(_mean(c, "non_parallel")), ci(_mean(c, "parallel_excess"), 2)] if c else ["n/a", "n/a"]

    rows = [[f"{len(s['languages'])} languages{before_v3(s)}", s["num_examples"]] + [category_ci(s, c) for c in CATS]
            + grouping(s) for s in (b, a)]
    pa, pb = load("gemma_xnli_13", "per_example.json"), load("gemma_xnli", "per_example.json")
    if pa and pb:  # the 9-language run on the 13-language run's items
        keep = [pb["ids"].index(i) for i in pa["ids"] if i in pb["ids"]]
        rows.insert(1, [f"{len(b['languages'])} languages, the same items", len(keep)]
                    + [ci(point_and_ci(np.asarray(pb[c])[keep])) for c in CATS] + ["", ""])
    t1 = table(["languages", "items"] + [f"{c} %" for c in CATS]
               + ["all-shared %, non-parallel", "parallel excess, points"], rows)
    act = {lang: float(np.mean(v)) for lang, v in a["activated_per_language"].items()}
    t2 = table(["language"] + list(act), [["activated neurons per layer (mean)"] + [f"{v:.0f}" for v in act.values()],
                                          ["accuracy % [95% interval]"]
                                          + [ci(a["accuracy_detail"][l], 0, 100) for l in act]])
    return t1 + "\n\n" + t2


def attribution_table():
    """Claim 3 on the paper's statistic: % of the top-k neurons per layer that are all-shared (German), beside
    all-shared's base rates (of all neurons, of the neurons active in the language) and the four nulls, each
    with the count, mean |m| and |m|-mass ratios it achieved against all-shared."""
    rows = []
    for run, label in ATTR_RUNS + IG_RUNS:
        a = load(run, "attribution.json")
        if a is None or "headline" not in a or "all_shared_active_pct" not in a["headline"]:
            rows.append([label, f"`{run}` not run on v3"] + [""] * 9)
            continue
        h = a["headline"]
        lang = h["language"]
        for m in a["methods"]:
            entry, match = a["per_language"][lang][m], a["per_language"][lang]["matching"]
            nulls = "; ".join(f"{name.removeprefix('null_') if name != 'null' else 'active'} "
                              f"{ci(entry[name]['top_k_share']['mean'])} "
                              f"({fmt(match.get(f'{name}_count_ratio'), 2)} / {fmt(match.get(f'{name}_abs_m_ratio'), 2)}"
                              f" / {fmt(match.get(f'{name}_mass_ratio'), 2)})" for name in NULLS if name in entry)
            rows.append([label, m, a["num_examples"], lang, f"{a['top_k']} of {a['neurons_per_layer']}",
                         ci(h["all_shared_neuron_pct_ci"]), ci(h["all_shared_active_pct"]),
                         ci(h["all_shared_top_k_share"][m]), ci(h["all_shared_active_top_k_pct"].get(m)), nulls,
                         ci(h["all_shared_pooled_positive_share"][m])])
    return table(["run", "method", "items", "language", "top-k", "all-shared % of neurons",
                  "all-shared % of the active neurons", "all-shared % of top-k (paper's statistic)",
                  "all-shared % of the active top-k", "nulls, % of top-k (size / mean abs(m) / abs(m) mass, "
                  "each / all-shared's)", "all-shared % of positive score (pooled)"], rows)


NULLS = ("null", "null_any", "null_top", "null_mass")  # attribution.json's nulls: |m|-matched from active neurons,
# from any neuron, the top-|m| neurons that are not all-shared, and an |m|-mass-matched draw


def ig_table():
    """IG's completeness: pooled and per (item, language, layer) row, with the worst row named."""
    rows = []
    for run, label in IG_RUNS:
        a = load(run, "attribution.json")
        if a is None or "ig" not in a or "worst_row" not in a["ig"]["completeness"]:
            rows.append([label, f"`{run}` not run on v3"] + [""] * 7)
            continue
        g, c = a["ig"], a["ig"]["completeness"]
        w = c["worst_row"]
        nodes = c.get("nodes") or {}
        rows.append([label, a["num_examples"], f"{g['steps']} to {g['max_steps']}, {g['rule']}",
                     f"{max(v for v in c['error_per_layer'] if v is not None):.1e}",
                     f"{max(v for v in c['median_row_relative_error'] if v is not None):.1e}",
                     f"{w['error']:.1e} (item {w['example']}, {w['language']}, layer {w['layer']})",
                     f"{c['rows_above_tolerance']} of {c['rows']}",
                     ", ".join(f"{v}: {n}" for v, n in zip(nodes.get("levels", []), nodes.get("rows_per_level", [])))
                     or "n/a",
                     "yes" if c["satisfied"] else "no"])
    return table(["run", "items", "nodes per row, rule", "pooled error, worst layer", "median row error, worst "
                  "layer", "worst row", "rows above 5%", "rows per node count", "every row within 5%"], rows)


IV_SETS = ("clean", "all_shared", "random", "magnitude", "top_magnitude", "mass")  # the main rows, in order


def intervention_table():
    """Claim 4: accuracy and the gold answer's log-probability after each deactivation, the mass it removes and
    what its match to all-shared achieved; then all-shared off against each control, paired per item."""
    parts = []
    for run, label in IV_RUNS:
        iv = load(run, "interventions.json")
        if iv is None or "dose_response" not in iv:
            parts.append(f"{label}: `{run}` not run on v3.")
            continue
        rows = []
        for g in [g for g in IV_SETS if g in iv["sets"]]:
            s = iv["sets"][g]
            match = s.get("match") or {}
            sd = (s.get("seed_spread") or {}).get("gold_logprob_change") or {}
            rows.append([g, fmt(s["neurons_per_layer"], 0), ci(s["removed_mass"]), ci(s["accuracy"]["mean"]),
                         ci(s["delta"]["mean"]), ci(s["gold_logprob_change"], 2),
                         fmt(sd.get("sd"), 2) if sd.get("sd") is not None else "",
                         f"{fmt(match.get('count_ratio'), 2)} / {fmt(match.get('mean_abs_m_ratio'), 2)} / "
                         f"{fmt(match.get('mass_ratio'), 2)}" if match else ""])
        tests = []
        for g, t in iv.get("paired_tests", {}).items():
            if "@" in g:
                continue
            c, lp = t["correct"], t["gold_logprob"]
            tests.append([g, ci(c["difference"]), f"{c['control_higher']} / {c['control_lower']}",
                          fmt(c["sign_test_p_one_sided"], 3) + (" (fewer than 10 differ)" if c["few_discordant"]
                                                                else ""),
                          ci(lp["difference"], 2), f"{lp['control_higher']} / {lp['control_lower']}",
                          f"{lp['sign_test_p_one_sided']:.2g}", "yes" if lp["significant"] else "no"])
        meta = iv["meta"]
        parts.append(f"**{label}** (`{run}`, {meta['num_examples']} items x {len(iv['clean'])} languages, "
                     f"deactivation at the {meta['deactivated_at']}, seeds {meta['seeds']})\n\n"
                     + table(["deactivated", "neurons per layer", "mass removed %", "accuracy % (mean over "
                              "languages)", "change from clean, points", "gold answer log-prob change, nats",
                              "sd over seeds", "size / mean abs(m) / mass, each / all-shared's"], rows)
                     + "\n\nPaired against all-shared off (per item, mean over languages; control minus all-shared;"
                       " the primary criterion is the bootstrap interval, the one-sided sign test is secondary):"
                       "\n\n" + table(["control", "accuracy difference, points", "items control higher / lower",
                                       "sign test p (one-sided)", "log-prob difference, nats",
                                       "items higher / lower", "sign test p (one-sided)",
                                       "log-prob interval excludes 0"], tests))
    return "\n\n".join(parts)


def dose_table():
    """Claim 4's dose-response: per set kind and size (x the all-shared count), the mass removed and the gold
    answer's log-probability change."""
    rows = []
    for run, label in IV_RUNS:
        iv = load(run, "interventions.json")
        if iv is None or "dose_response" not in iv:
            continue
        for kind, c in iv["dose_response"]["curves"].items():
            rows.append([label, kind] + [f"{f:g}x: {ci(m)} % / {ci(lp, 2)}"
                                         for f, m, lp in zip(c["fraction"], c["removed_mass"],
                                                             c["gold_logprob_change"])])
    width = max((len(r) for r in rows), default=2)
    return table(["run", "set"] + [f"size {i + 1}: mass removed / gold log-prob change" for i in range(width - 2)],
                 [r + [""] * (width - len(r)) for r in rows]) if rows else "(no dose-response run on v3)"


def per_item(items: dict, group: str) -> tuple[np.ndarray, np.ndarray]:
    """(removed mass % [E], gold log-prob change [E]) of a condition group per item, its seeds averaged."""
    members = [c for c in items["conditions"] if c == group or c.startswith(group + "/")]
    if not members:
        raise Pending(f"per_item_deactivation.json has no condition {group}")
    return tuple(np.mean([items["conditions"][c][key] for c in members], 0)
                 for key in ("removed_mass", "gold_logprob_change"))


EQUAL_MASS = ("random", "magnitude", "top_magnitude", "mass", "non_parallel", "ranked")  # all-shared read against


def equal_mass(run: str) -> dict | None:
    """All-shared off against each other set of EQUAL_MASS that the run has, at equal contribution mass
    removed, item by item, as (all-shared's change) minus (the other's change) at one mass (negative: all-shared
    hurts more): a control (`random`, `magnitude`, `top_magnitude`, `mass`) at its own mass, against the
    all-shared dose curve read there; `ranked`: the |m|-ranked curve read at all-shared's own mass. An item whose
    mass lies beyond the curve's largest set is left out, and counted. {other: {"n", "left_out", and with n > 0
    "mass", "all_shared", "other", "difference" (mean over the items, paired 95% bootstrap interval)}}; None
    without the per-item file or the dose curves. The pass's `at_equal_mass` applied here to the per-item extract,
    and checked against the pass's own result where interventions.json has one (runs made since the library
    computes it). `non_parallel` comes from the run's NP_RUNS partner (the same items and batches, checked), read
    against this run's all-shared curve."""
    items, iv = load(run, "per_item_deactivation.json"), load(run, "interventions.json")
    if items is None or iv is None or "dose_response" not in iv:
        return None
    _, y = per_item(items, "all_shared")
    reported = iv["sets"]["all_shared"]["gold_logprob_change"]["value"]
    if abs(y.mean() - reported) > 1e-3:  # the extraction must reproduce the pass's own mean
        raise ValueError(f"{run}: per-item all-shared change {y.mean():.4f} != interventions.json's {reported:.4f}")
    clean = np.asarray(items["clean_gold_logprob"])[:, None]  # the pass's per-example groups, one "language"

    def as_group(mass, change):  # per-item (mass %, change) as the pass's per-example values
        return {"mass": mass[:, None] / 100, "gold_logprob": clean + change[:, None]}

    groups = {"clean": {"mass": np.zeros_like(clean), "gold_logprob": clean}}
    groups.update({g: as_group(*per_item(items, g)) for g in sorted({c.split("/")[0] for c in items["conditions"]})})
    regrouped = load(NP_RUNS[run], "per_item_deactivation.json") if run in NP_RUNS else None
    if regrouped is not None:
        groups["non_parallel"] = as_group(*non_parallel_items(run, items, regrouped))
    found = at_equal_mass(groups, iv["dose_response"]["fractions"], DEFAULT_RESAMPLES)["sets"]
    out = {other: found[other] for other in EQUAL_MASS if other in found}
    pass_own = iv.get("at_equal_mass", {}).get("sets", {})  # the pass's own (runs since the library computes it)
    for other in set(out) & set(pass_own):
        mine, theirs = out[other].get("difference", {}).get("value"), pass_own[other].get("difference", {}).get("value")
        if out[other]["n"] != pass_own[other]["n"] or (mine is not None and abs(mine - theirs) > 1e-3):
            raise ValueError(f"{run}: equal mass against {other} differs from interventions.json's at_equal_mass")
    return out


def non_parallel_items(run: str, items: dict, regrouped: dict) -> tuple[np.ndarray, np.ndarray]:
    """(removed mass % [E], gold log-prob change [E]) of NP_RUNS[run]'s non_parallel sets, seeds averaged, once its
    clean and all-shared values are run's own item by item (the same items, batches and forwards)."""
    pairs = [(items["clean_gold_logprob"], regrouped["clean_gold_logprob"])] + [
        (items["conditions"]["all_shared"][k], regrouped["conditions"]["all_shared"][k])
        for k in ("removed_mass", "gold_logprob_change")]
    for a, b in pairs:
        if len(a) != len(b) or np.abs(np.asarray(a) - np.asarray(b)).max() > 1e-4:
            raise ValueError(f"{NP_RUNS[run]} does not repeat {run}'s clean and all-shared values item by item")
    return per_item(regrouped, "non_parallel")


def non_parallel_table() -> str:
    """Claim 4's content control: all-shared against the all-shared neurons of non-parallel groups (NP_RUNS), at
    their own sizes (paired per item) and what they remove."""
    rows = []
    for run, label in IV_RUNS:
        iv = load(NP_RUNS[run], "interventions.json")
        if iv is None:
            rows.append([label, f"`{NP_RUNS[run]}` not run"] + [""] * 6)
            continue
        shared, other = iv["sets"]["all_shared"], iv["sets"]["non_parallel"]
        match, lp = other["match"], iv["paired_tests"]["non_parallel"]["gold_logprob"]
        sd = other["seed_spread"]["gold_logprob_change"]["sd"]
        rows.append([label, f"{iv['meta']['num_examples']}, seeds {iv['meta']['seeds']}",
                     fmt(shared["neurons_per_layer"], 0) + " / " + fmt(other["neurons_per_layer"], 0),
                     ci(shared["removed_mass"]) + " / " + ci(other["removed_mass"]),
                     ci(shared["gold_logprob_change"], 2) + " / " + ci(other["gold_logprob_change"], 2),
                     fmt(sd, 2), f"{fmt(match['count_ratio'], 2)} / {fmt(match['mean_abs_m_ratio'], 2)} / "
                                 f"{fmt(match['mass_ratio'], 2)}",
                     ci(lp["difference"], 2) + f" ({lp['control_higher']} / {lp['control_lower']} items)"])
    return table(["run", "items", "neurons per layer: all-shared / non-parallel", "mass removed %",
                  "gold log-prob change, nats", "sd over seeds (non-parallel)",
                  "size / mean abs(m) / mass, non-parallel / all-shared", "non-parallel minus all-shared at "
                  "their own sizes, nats (items higher / lower)"], rows)


def equal_mass_table() -> str:
    rows = []
    for run, label in IV_RUNS:
        for other, r in (equal_mass(run) or {}).items():
            where = "all-shared's own" if other == "ranked" else f"the {other} control's"
            if not r["n"]:
                rows.append([label, other, where, "", "", "", "", f"0 ({r['left_out']} beyond the curve)"])
                continue
            rows.append([label, other, where, fmt(r["mass"]), fmt(r["all_shared"], 2), fmt(r["other"], 2),
                         ci(r["difference"], 2), f"{r['n']} ({r['left_out']} beyond the curve's largest set)"])
    return table(["run", "against", "at the mass of", "mass removed, %", "all-shared: gold log-prob change",
                  "the other set", "all-shared minus the other, nats (paired 95% interval)", "items"],
                 rows) if rows else "(no per-item deactivation results)"


def dose_figure(path: str) -> str | None:
    """Gold answer log-probability change against the contribution mass removed, per set kind, and the
    magnitude-aware controls as single points, one panel per model (95% intervals over items)."""
    runs = [(run, label, load(run, "interventions.json")) for run, label in IV_RUNS]
    runs = [(run, label, iv) for run, label, iv in runs if iv is not None and "dose_response" in iv]
    if not runs:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4.5), squeeze=False)
    for ax, (run, label, iv) in zip(axes[0], runs):
        for kind, c in iv["dose_response"]["curves"].items():
            x = np.array([m["value"] for m in c["removed_mass"]])
            y = np.array([v["value"] for v in c["gold_logprob_change"]])
            lo_hi = np.array([v["ci95"] for v in c["gold_logprob_change"]], np.float64)
            ax.errorbar(x, y, yerr=np.abs(np.stack([y - lo_hi[:, 0], lo_hi[:, 1] - y])), marker="o", capsize=3,
                        label=kind)
            for xi, yi, f in zip(x, y, c["fraction"]):
                ax.annotate(f"{f:g}x", (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        for g, marker in (("magnitude", "s"), ("top_magnitude", "^"), ("mass", "D")):  # the controls: a point each
            if g in iv["sets"]:
                m, lp = iv["sets"][g]["removed_mass"], iv["sets"][g]["gold_logprob_change"]
                v, (lo, hi) = lp["value"], lp["ci95"]
                ax.errorbar([m["value"]], [v], yerr=[[v - lo], [hi - v]], marker=marker, ls="none", color="black",
                            capsize=3, label=f"{g} control")
        ax.set_xlabel("contribution mass removed, % of the row's total")
        ax.set_ylabel("gold answer log-prob change, nats")
        ax.set_title(f"{label} ({iv['meta']['num_examples']} items)", fontsize=10)
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=8)
    return save(fig, path)


STEERING_RUN, GENERATED_RUN = "gemma_steering", "smollm_facts_generated"  # the generation issue's runs


def steering_table() -> str:
    """Language steering: per prompt language, each language set switched off or boosted, the share of
    generations in the set's language and off the prompt's language, and the difference from the |m|-matched
    control (95% intervals over prompts)."""
    st = load(STEERING_RUN, "steering.json")
    if st is None:
        return f"(`{STEERING_RUN}` not run)"
    meta = st["meta"]
    rows = []
    for prompt_lang, conditions in st["per_language"].items():
        for name, c in conditions.items():
            if name == "clean" or ":" not in name or name.count(":") > 1:
                continue
            set_lang = name.split(":")[1]
            matched = c.get("against_controls", {}).get("matched", {})
            rows.append([prompt_lang, name, ci(c["shares"][set_lang]), ci(c["off_target"]),
                         ci(matched.get("in_set_language", {}).get("difference")),
                         ci(matched.get("off_target", {}).get("difference"))])
    head = (f"{meta['model']}, {meta['task']}: {meta['n_prompts'][next(iter(meta['n_prompts']))]} prompts per "
            f"language, sets of the {meta['sets_from']} neurons per language ({meta['config']['set_size']:.0%} of "
            f"each layer), {meta['config']['max_new_tokens']} new tokens, boost x{meta['config']['boost']:g}, "
            f"{meta['config']['seeds']} seed per control; language by {meta['language_id']}")
    return head + "\n\n" + table(["prompt language", "set switched", "generations in the set's language %",
                                   "off the prompt's language %", "set's language minus matched control, points",
                                   "off-target minus matched control, points"], rows)


def generated_table() -> str:
    """Claim (ii) on generated answers: the greedy answer's prefix match after deactivation, against clean and the
    uniform control (95% intervals over items)."""
    iv = load(GENERATED_RUN, "interventions.json")
    if iv is None:
        return f"(`{GENERATED_RUN}` not run)"
    rows = []
    for g, s in iv["sets"].items():
        gen = s.get("generated")
        if gen is None:
            continue
        rows.append([g, ci(gen["prefix_match"]["mean"]), ci(gen["first_token"]["mean"]),
                     ci(gen["prefix_change"]) if g != "clean" else "", ci(s["gold_logprob_change"], 2)])
    return (f"smollm2-135m, the built-in facts ({iv['meta']['num_examples']} items x {len(iv['clean'])} languages), "
            f"seeds {iv['meta'].get('seeds')}\n\n"
            + table(["deactivated", "generated answer matches the gold (prefix) %", "first token right %",
                     "prefix match change from clean, points", "gold log-prob change (teacher forcing), nats"], rows))


LAPE_RUN = "lape_gemma"  # the LAPE issue's run: launchers/lape.py --flagfile=launchers/configs/lape_gemma.flags


def lape_table() -> str:
    """LAPE's language neurons: per language, how many, the held-out NLL change when they are zeroed (own
    language, mean of the others, a same-size random mask; paired 95% intervals over rows), and the paper's
    per-item categories of the set (% of its neurons, 95% interval over items) beside all neurons'."""
    ppl, rel, found = (load(LAPE_RUN, f) for f in ("ppl.json", "lape_categories.json", "lape_neurons.json"))
    if ppl is None or rel is None or found is None:
        return f"(`{LAPE_RUN}` not run)"
    matrix, langs, dist, overlap = ppl["matrix"], ppl["languages"], rel["distribution"], rel["overlap"]
    rows = [["all neurons", dist["all neurons"]["neurons"], "", "", ""]
            + [ci(dist["all neurons"][c]) for c in CATS] + [""]]
    for lang in found["languages"]:
        others = [matrix[lang][o]["delta_nll"]["value"] for o in langs if o != lang]
        same_size = matrix.get(f"random({lang})", {}).get(lang)
        o = overlap[lang]
        rows.append([lang, dist[lang]["neurons"], ci(matrix[lang][lang]["delta_nll"], 2), fmt(np.mean(others), 2),
                     ci(same_size["delta_nll"], 2) if same_size else "not run"] + [ci(dist[lang][c]) for c in CATS]
                    + [f"{fmt(o['jaccard'], 3)} ({fmt(o['jaccard_chance'], 4)})"])
    sets = found["languages"]
    share = {c: span([dist[lang][c]["value"] for lang in sets], 1) for c in CATS}
    settings, held = found["settings"], matrix["none"][langs[0]]["rows"]
    return (f"{found['model']}: LAPE (top_rate {settings['top_rate']}, filter_rate {settings['filter_rate']}, "
            f"activation_bar_ratio {settings['activation_bar_ratio']}) on {', '.join(langs)}; NLL changes on "
            f"{held} held-out rows of 64 tokens per language (paired 95% intervals over rows); categories over "
            f"{rel['num_examples']} {rel['task']} items (act > 0 at the read-out token, as the sharing pass; 95% "
            f"intervals over items). Of each language's LAPE set, {share['all_shared']}% are all-shared, "
            f"{share['partial_shared']}% partial-shared and {share['specific']}% specific (all neurons: "
            f"{fmt(dist['all neurons']['all_shared']['value'])}, {fmt(dist['all neurons']['partial_shared']['value'])}"
            f" and {fmt(dist['all neurons']['specific']['value'])}%). Jaccard: the LAPE set against as many neurons "
            "most often specific to the language, chance in brackets.\n\n"
            + table(["language", "LAPE neurons", "own-language NLL change, nats/token",
                     "mean change on the other languages", "same-size random mask, own language"]
                    + [f"{c.replace('_', '-')} %" for c in CATS] + ["Jaccard with the most often specific (chance)"],
                    rows))


def alignment_section():
    g = load("alignment_gradients", "alignment_gradients.json")
    if g is None:
        return "(alignment_gradients not run)"
    r = g["grad_ratio_sharing_over_task"]
    c = g["config"]
    rows = [[lam, fmt(100 * v["sharing_share_of_gradient_norm"], 2)] for lam, v in g["lambda_sweep"].items()]
    return (f"{c['model']}, XNLI {c['split']}, {c['languages']}, {c['num_examples']} items in {g['num_batches']} "
            f"batches of {c['batch_size']}, trainable: the MLPs of layers {c['layers']}. Task loss "
            f"{g['mean_task_loss']:.2f}, sharing loss {g['mean_sharing_loss']:.4f} (means over batches). "
            f"norm(grad L_share) / norm(grad L_task) = {r['value']:.2e} [{r['ci95'][0]:.2e}, "
            f"{r['ci95'][1]:.2e}] (ratio "
            f"of sums over batches), so equal norms need lambda of about {g['lambda_for_equal_norms']:.0f}; "
            f"cosine between the two gradients {g['mean_cosine']:.2f} (mean over batches).\n\n"
            + table(["lambda", "lambda * norm(g_share) / (lambda * norm(g_share) + norm(g_task)), %"], rows))


def alignment_run_table():
    """Claim 5: per (lambda, seed), all-shared and accuracy after the aligned training minus its lambda = 0
    control on the same held-out items (paired over items); per lambda, the spread of those effects over seeds."""
    sweep = load(ALIGN_RUN, "alignment_sweep.json")
    if sweep is None:
        return f"(`{ALIGN_RUN}` not run on v3: no alignment_sweep.json)"
    rows = []
    for name, r in sweep["runs"].items():
        per = {k: load(f"{ALIGN_RUN}/{name}/eval/{k}", "per_example.json") for k in ("before", "after",
                                                                                     "control_after")}
        if not all(per.values()):
            rows.append([f"{r['lambda_sharing']:g}", r["seed"], "eval files missing", "", "", ""])
            continue
        shared = {k: np.asarray(v["all_shared"]) for k, v in per.items()}
        correct = {k: np.asarray(v["correct"], np.float64).mean(-1) * 100 for k, v in per.items()}
        rows.append([f"{r['lambda_sharing']:g}", r["seed"], ci(point_and_ci(shared["after"] - shared["control_after"]), 2),
                     ci(point_and_ci(correct["after"] - correct["control_after"])),
                     ci(point_and_ci(shared["after"] - shared["before"]), 2), ci(point_and_ci(correct["before"]))])
    spread_rows = []
    for lam, g in sweep["per_lambda"].items():
        for effect in ("sharing_vs_control", "accuracy_vs_control"):
            s = g[effect]
            between = s.get("ci95_between")
            spread_rows.append([lam, effect.replace("_", " "), len(g["seeds"]), fmt(s["mean"], 2), fmt(s["sd"], 2),
                                fmt(s["range"], 2), f"[{between[0]:.2f}, {between[1]:.2f}]" if between else "n/a"])
    head = (f"{sweep['model']}, {sweep['task']}, {','.join(sweep['languages'])}: train {sweep['num_train']} items, "
            f"evaluate {sweep['num_eval']} held-out items, {sweep['steps']} steps a run")
    return (head + "\n\n" + table(["lambda", "seed", "all-shared after minus control, points (paired over items)",
                                   "accuracy after minus control, points", "all-shared after minus before",
                                   "accuracy before, %"], rows)
            + "\n\nOver seeds (t interval over the seeds; it conditions on these items and this training set):\n\n"
            + table(["lambda", "effect", "seeds", "mean, points", "sd", "range", "95% over seeds"], spread_rows))


PAPER_TOP_K_SHARE = 91.6  # claim 3: the paper's all-shared % of the top-800 by contribution (German XNLI)
XNLI_CHANCE, CHANCE_POINTS = 100 / 3, 5.0  # claim 5: accuracy within 5 points of XNLI's chance reads as chance
TASK_EFFECT_POINTS = 2.0  # claim 1: a task difference this large at a fixed ending would count as a task effect


class Pending(Exception):
    """A verdict's run is not (yet) in study/results on v3; the message names it."""


def need(run: str, name: str, key: str | None = None):
    """load(run, name), raising Pending when it is missing or lacks key (a result from before v3)."""
    value = load(run, name)
    if value is None or (key is not None and key not in value):
        raise Pending(f"`{run}` not yet run on v3")
    return value


def shared_of(run: str, group: str = "parallel", cat: str = "all_shared") -> dict:
    return _mean(need(run, "sharing.json", "controls")["controls"], group, cat)


def span(values, digits: int = 0) -> str:
    """'a-b' (min to max) of some values, or 'a' where they agree at that precision."""
    lo, hi = f"{min(values):.{digits}f}", f"{max(values):.{digits}f}"
    return lo if lo == hi else f"{lo}-{hi}"


def excludes_zero(entry: dict) -> bool:
    lo, hi = entry["ci95"]
    return lo is not None and (lo > 0 or hi < 0)


def claim1():
    parts, excess_share, fixed, paper_split = [], [], [], []
    for model, _, _, _ in ENDING_RUNS[::2]:
        xnli, mpararel = f"{model}_xnli", f"{model}_mpararel"
        a, b = shared_of(xnli), shared_of(mpararel)
        ex = shared_of(xnli, "parallel_excess")
        parts.append(f"{MODELS[model]}: XNLI {ci(a)} vs mParaRel {ci(b)}; XNLI's non-parallel control "
                     f"{ci(shared_of(xnli, 'non_parallel'))}, parallel excess {ci(ex, 2)} points")
        excess_share.append(100 * ex["value"] / a["value"])
        paper_split.append(a["value"] - b["value"])
        for ending, x_run, m_run in (("English", xnli, f"{model}_mpararel_answer"),
                                     ("language", f"{model}_xnli_cut", mpararel)):
            fixed.append(shared_of(x_run)["value"] - shared_of(m_run)["value"])
    ours = "; ".join(parts) + " (n = 200 items each; tau = 0, last token)"
    observed = all(p > 0 for p in paper_split)
    task = max(abs(f) for f in fixed) >= TASK_EFFECT_POINTS
    label = ("Not observed" if not observed else "Observed, and it holds with the ending fixed" if task
             else "Observed, but not a task effect")
    verdict = (f"**{label}.** With the prompt's ending held fixed, XNLI minus mParaRel is {min(fixed):+.1f} to "
               f"{max(fixed):+.1f} points (both models, both endings; 'Prompt ending' tables). Grouping each "
               f"language's row with a different item leaves all but {min(excess_share):.0f}-"
               f"{max(excess_share):.0f}% of XNLI's all-shared share (grouping controls): at the last token, "
               f"all-shared mostly measures what every language's prompt shares at its end, not the parallel "
               f"content." + templates_sentence())
    return ours, verdict


def templates_sentence() -> str:
    """The ending's effect on all-shared against the template-to-template sd, over the template sweeps run."""
    gaps = {label: template_ending_gap(run) for run, label in TEMPLATE_RUNS}
    done = {label: g for label, g in gaps.items() if g is not None}
    if not done:
        return " (Template sweeps: pending.)"
    missing = [label for label, g in gaps.items() if g is None]
    return (f" Over three templates per formulation ({len(done)} model-task pairs"
            + (f"; pending: {', '.join(missing)}" if missing else "") + "), the English ending adds "
            f"{min(g for g, _ in done.values()):.1f}-{max(g for g, _ in done.values()):.1f} points of all-shared, "
            f"against a template-to-template sd of at most {max(sd for _, sd in done.values()):.1f}.")


def claim2():
    parts, peaks, excess, levels = [], [], [], []
    for model in MODELS:
        c = need(f"{model}_xnli", "sharing.json", "controls")["controls"]["categories"]
        par, part = (thirds(c["parallel"][k]["per_layer"]["value"]) for k in ("all_shared", "partial_shared"))
        exc = c["parallel_excess"]["all_shared"]["per_layer"]["value"]
        excess += thirds(exc)
        levels += par
        parts.append(f"{MODELS[model]} XNLI, lower / middle / upper third: all-shared "
                     + " / ".join(fmt(v) for v in par) + ", partial-shared " + " / ".join(fmt(v) for v in part)
                     + ", parallel excess " + " / ".join(fmt(v, 2) for v in thirds(exc)))
        peaks.append((MODELS[model], int(np.argmax(c["parallel"]["all_shared"]["per_layer"]["value"])), len(exc),
                      par[0] >= max(par[1:]), part[2] >= max(part[:2])))
    lower = [m for m, _, _, low, _ in peaks if low]
    upper = [m for m, _, _, _, up in peaks if up]
    holds = len(lower) + len(upper)
    label = "Yes" if holds == 2 * len(peaks) else "No" if holds == 0 else "Partly"
    verdict = (f"**{label}.** " + (f"All-shared is highest in the lower third on {', '.join(lower)} only; "
                                 if lower else "All-shared is not highest in the lower third on either model; ")
               + (f"partial-shared is highest in the upper third on {', '.join(upper)}. " if upper else
                  "partial-shared is not highest in the upper third on either model. ")
               + "Peak all-shared layers: " + ", ".join(f"{m} {p} of {n}" for m, p, n, _, _ in peaks)
               + f". Per third, the parallel excess is {min(excess):.2f} to {max(excess):.2f} points against "
                 f"all-shared shares of {min(levels):.1f} to {max(levels):.1f}%: the depth profile is the profile "
                 f"of what the languages' prompts share at their last token, not of the parallel content.")
    return "; ".join(parts), verdict


def claim_i_second_half():
    parts, every = [], {}
    for model, task, key, run in ending_runs():
        f = need(run, "sharing.json", "overlap_frequency")["overlap_frequency"]
        every.setdefault(key, []).append(f["every"]["mean_over_layers"]["value"])
        parts.append(f"{MODELS[model]} {task}, {ENDINGS[key]}: {ci(f['every']['mean_over_layers'])} in every item, "
                     f"{ci(f['half']['mean_over_layers'])} in at least half")
    ours = "of the neurons all-shared in at least one item: " + "; ".join(parts) + " (200 items each)"
    half = {}
    for model, task, key, run in ending_runs():
        half.setdefault(key, []).append(load(run, "sharing.json")["overlap_frequency"]["half"]["mean_over_layers"]["value"])
    english, native = every["english"], every["native"]
    label = "It depends on the prompt's ending" if min(english) > max(native) else "Mixed"
    verdict = (f"**{label}.** With one English ending there is a large stable core: {span(english, 0)}% of "
               f"the ever-all-shared neurons are all-shared in every one of the items "
               f"({span(half['english'], 0)}% in at least half). With endings in each "
               f"language, {span(native, 0)}% ({span(half['native'], 0)}% in at least half): the set changes "
               f"from item to item, as the paper "
               f"says. A neuron all-shared independently in a fraction p of the items would be in all n of them "
               f"with probability p^n, so any sizeable share 'in every item' is a stable core. The share falls as "
               f"items are added: it conditions on n (jackknife intervals over these items).")
    return ours, verdict


def claim3():
    parts, active_top, base = [], [], []
    for run, label in ATTR_RUNS:
        a = need(run, "attribution.json", "headline")
        h = a["headline"]
        if "all_shared_active_pct" not in h:
            raise Pending(f"`{run}` not yet run on v3")
        parts.append(f"{label} ({h['language']}, n = {a['num_examples']}): {ci(h['all_shared_top_k_share']['contribution'])}"
                     f" of the top-{a['top_k']} by contribution are all-shared; all-shared are "
                     f"{ci(h['all_shared_neuron_pct_ci'])} of all neurons, {ci(h['all_shared_active_pct'])} of the "
                     f"neurons active in the language, {ci(h['all_shared_active_top_k_pct']['contribution'])} of the "
                     f"active top-k")
        active_top.append(h["all_shared_active_top_k_pct"]["contribution"]["value"])
        base.append(h["all_shared_active_pct"]["value"])
    for run, label in IG_RUNS:
        a = load(run, "attribution.json")
        if a is None or "worst_row" not in a.get("ig", {}).get("completeness", {}):
            parts.append(f"IG ({label}): pending, `{run}` not yet run on v3")
            continue
        c = a["ig"]["completeness"]
        parts.append(f"IG ({label}, n = {a['num_examples']}): {ci(a['headline']['all_shared_top_k_share']['ig'])} of "
                     f"the top-{a['top_k']}; worst row completeness error {c['worst_row']['error']:.3g} "
                     f"({c['rows_above_tolerance']} of {c['rows']} rows above {c['tolerance']:.0%})")
    lift = [t / b for t, b in zip(active_top, base)]
    match = [a["per_language"][a["headline"]["language"]]["matching"]
             for a in (load(run, "attribution.json") for run, _ in ATTR_RUNS)]
    mass, count = [m["null_mass_mass_ratio"] for m in match], [m["null_mass_count_ratio"] for m in match]
    top = [load(run, "attribution.json")["headline"]["all_shared_top_k_share"]["contribution"]["value"]
           for run, _ in ATTR_RUNS]
    label = (f"{'A majority' if min(top) > 50 else 'Not a majority'} of the top-k ({span(top, 0)}% against the "
             f"paper's {PAPER_TOP_K_SHARE}%), and most of it is all-shared's base rate among the active neurons")
    verdict = (f"**{label}.** All-shared neurons are a minority of all neurons but {span(base, 0)}% of the neurons "
               f"active in the language, and {span(active_top, 1)}% of the active top-k: {span(lift, 2)}x their "
               f"base rate. No null can be matched to them: drawn from all other neurons until its mass matches, "
               f"the mass null takes {span(count, 1)}x as many neurons and still reaches only {span(mass, 2)}x "
               f"all-shared's |m| mass, so at this read-out 'all-shared' and 'carries the |m|' cannot be told "
               f"apart. At chance on XNLI, the 'correct output' is the gold option.")
    return "; ".join(parts), verdict


def claim4():
    parts, verdicts = [], []
    for run, label in IV_RUNS:
        try:
            iv = need(run, "interventions.json", "dose_response")
        except Pending as e:
            parts.append(f"{label}: pending, {e}")
            verdicts.append(f"{label}: pending")
            continue
        sets = iv["sets"]
        controls = [g for g in ("random", "magnitude", "top_magnitude", "mass") if g in sets]
        equal = equal_mass(run)
        if equal is None:
            raise Pending(f"`{run}` has no per_item_deactivation.json")
        clean = np.mean(load(run, "per_item_deactivation.json")["clean_gold_logprob"])
        parts.append(f"{label} (n = {iv['meta']['num_examples']}; clean gold log-prob {clean:.2f} nats, summed "
                     f"over the answer's tokens): change with all-shared off "
                     f"{ci(sets['all_shared']['gold_logprob_change'], 2)} nats, removing "
                     f"{ci(sets['all_shared']['removed_mass'])}% of the mass (accuracy "
                     f"{ci(sets['clean']['accuracy']['mean'])}% clean, {ci(sets['all_shared']['accuracy']['mean'])}%"
                     f" with all-shared off); "
                     + ", ".join(f"{g} {ci(sets[g]['gold_logprob_change'], 2)} "
                                 f"(mass {fmt(sets[g]['match']['mass_ratio'], 2)}x)" for g in controls)
                     + "; all-shared minus each at equal mass: "
                     + ", ".join(f"{g} {ci(r['difference'], 2)} (n = {r['n']})" for g, r in equal.items() if r["n"]))
        differ = {g: r["difference"]["value"] for g, r in equal.items() if r["n"] and excludes_zero(r["difference"])}
        more, less = [g for g, v in differ.items() if v < 0], [g for g, v in differ.items() if v > 0]
        verdicts.append(f"{label}: at equal mass removed, all-shared lowers the gold answer more than "
                        + (", ".join(more) if more else "none of the other sets")
                        + (f", less than {', '.join(less)}" if less else "")
                        + (f", and as much as {', '.join(g for g in equal if g not in more + less)}"
                           if len(more + less) < len(equal) else ""))
    if all(v.endswith(": pending") for v in verdicts):
        raise Pending(parts[0].split("pending, ", 1)[1])
    verdict = ("**" + "; ".join(verdicts) + "** (paired bootstrap intervals over items of the gold answer's "
               "log-probability change; accuracy is low on mParaRel). The controls drawn outside all-shared "
               "remove at most its mass (their mass ratios beside them), so each is compared with the "
               "all-shared dose curve at its own mass; 'ranked' is the largest-|m| neurons of any "
               "category, read at all-shared's mass; 'non_parallel' (where run) is the all-shared neurons of "
               "groups of different items, one per language: what the prompts share whatever they say.")
    return "; ".join(parts), verdict


def claim5():
    g = need("alignment_gradients", "alignment_gradients.json")
    r = g["grad_ratio_sharing_over_task"]
    sweep = need(ALIGN_RUN, "alignment_sweep.json")
    lines = []
    for lam, s in sweep["per_lambda"].items():
        sh, acc = s["sharing_vs_control"], s["accuracy_vs_control"]
        lines.append(f"lambda {lam}: all-shared {sh['mean']:+.2f} points (seed sd {fmt(sh['sd'], 2)}), accuracy "
                     f"{acc['mean']:+.2f} points (seed sd {fmt(acc['sd'], 2)}) over {len(s['seeds'])} seeds")
    ours = (f"norm(grad L_share) / norm(grad L_task) = {r['value']:.1e}; after minus the lambda = 0 control on "
            f"{sweep['num_eval']} held-out items, {sweep['steps']} steps: " + "; ".join(lines))
    up = all(s["sharing_vs_control"]["ci95_between"] and s["sharing_vs_control"]["ci95_between"][0] > 0
             for s in sweep["per_lambda"].values())
    accuracy = {key: [100 * float(np.mean(list(load(f"{ALIGN_RUN}/{name}", "alignment.json")[key]["accuracy"]
                                                .values()))) for name in sweep["runs"]]
                for key in ("before", "after", "control_after")}
    acc_effects = ", ".join(f"{s['accuracy_vs_control']['mean']:+.2f} (lambda {lam})"
                            for lam, s in sweep["per_lambda"].items())
    no_gain = all(s["accuracy_vs_control"]["ci95_between"] and s["accuracy_vs_control"]["ci95_between"][0] <= 0
                  for s in sweep["per_lambda"].values())
    at_chance = all(abs(v - XNLI_CHANCE) < CHANCE_POINTS for key in ("before", "after") for v in accuracy[key])
    verdict = (f"**The objective raises all-shared {'at every lambda, beyond the spread over seeds' if up else 'not reliably'}"
               f"; accuracy {span(accuracy['before'], 1)}% before, {span(accuracy['after'], 1)}% after and "
               f"{span(accuracy['control_after'], 1)}% in the controls (XNLI chance: {XNLI_CHANCE:.1f}%).** "
               + ("A model at chance before and after cannot show the paper's accuracy gain: this measures the "
                  "mechanism, not the claim." if at_chance else
                  f"Accuracy after minus the control: {acc_effects} points; "
                  + ("every t interval over seeds includes 0: no accuracy gain is seen." if no_gain else
                     "see the Claim 5 table.")))
    return ours, verdict


CLAIMS = [  # (claim, the paper's statistic and figure, a function giving (ours, verdict))
    ("1. Sharing depends on the task: XNLI more all-shared, fact probing more partial-shared",
     "all-shared % of a layer's neurons, mean over layers (BLOOMZ about 30% on XNLI)", claim1),
    ("2. All-shared in the lower layers, partial-shared in the upper ones", "per-layer category shares", claim2),
    ("(i) second half: neuron behaviour changes across inputs within one task",
     "not quantified (examples in the paper's figures)", claim_i_second_half),
    ("3. All-shared neurons are a minority but carry most of the attribution",
     "German XNLI: all-shared under 30% of neurons, 91.6% of the top-800 of 16,384 by contribution", claim3),
    ("4. Deactivating all-shared neurons hurts more than deactivating others",
     "\"significantly decreases performance\" (no control statistic published)", claim4),
    ("5. Raising all-shared neurons by alignment fine-tuning raises multilingual accuracy", "XNLI accuracy gains",
     claim5),
]


def verdict_table() -> str:
    rows = []
    for claim, paper, judge in CLAIMS:
        try:
            ours, verdict = judge()
        except Pending as e:
            ours, verdict = f"pending: {e}", "pending"
        rows.append([claim, paper, ours, verdict])
    return table(["claim", "the paper's statistic and figure", "ours on the same statistic (95% interval, n)",
                  "verdict and reason (from the numbers beside it)"], rows)


def build() -> str:
    sections = [
        ("Runs", runs_table()),
        ("Accuracy per language (%, 95% interval over items)", accuracy_table()),
        ("Grouping controls: all-shared with the languages' rows of one item, of different items, and of one "
         "language (last token, tau = 0, mean over layers)", controls_table()),
        ("Grouping controls: partial-shared and specific", partial_controls_table()),
        ("Claim 1: categories by task (% of a layer's neurons, mean over layers, tau = 0, 95% interval)",
         category_table()),
        ("Prompt ending: the same items, the prompt ending in one English word or in the item's language",
         ending_table()),
        ("Prompt ending: the task difference of claim 1 with the ending held fixed", task_effect_table()),
        ("Templates: three per formulation, their spread beside the item interval", templates_table()),
        ("Claim 2: where the shared neurons sit, and where the parallel excess sits (mean % and points in the "
         "lower / middle / upper third of the layers)", excess_layer_table()),
        ("Claim 2: both categories by third (the v2 table)", layer_table()),
        ("Claim (i), second half: are the all-shared neurons the same in every item?", overlap_table()),
        ("Threshold sweep", sweep_table()),
        ("Claim 3: the top-k share (the paper's statistic), all-shared's base rates and the nulls",
         attribution_table()),
        ("Claim 3: integrated gradients' completeness, per row", ig_table()),
        ("Claim 4: deactivation against magnitude- and mass-aware controls", intervention_table()),
        ("Claim 4: dose-response (figure: study/figures/dose_response.png)", dose_table()),
        ("Claim 4: all-shared against the all-shared neurons of non-parallel groups (each item's English prompt "
         "with other items' prompts in the other languages)", non_parallel_table()),
        ("Claim 4: all-shared against the other sets at equal mass removed (per item, a dose curve read at the "
         "other set's mass, linearly between clean and its sizes; negative: all-shared hurts more)",
         equal_mass_table()),
        ("Claim (ii) on generated answers: deactivation scored on the model's own greedy answers",
         generated_table()),
        ("Language steering: per-language sets switched off or boosted during generation", steering_table()),
        ("LAPE's language neurons: perplexity when zeroed, and their place in the paper's categories", lape_table()),
        ("Beyond the paper: every token vs the last token", positions_table()),
        ("Beyond the paper: low-resource languages (XNLI's sw, ur, hi, ar added)", languages_table()),
        ("Claim 5: the two terms' gradients at the start of alignment training", alignment_section()),
        ("Claim 5: alignment over seeds and lambdas, against each run's lambda = 0 control", alignment_run_table()),
    ]
    return "\n\n".join(f"#### {title}\n\n{body}" for title, body in sections)


def extract(run_dir: str, out_dir: str) -> str:
    """out_dir/per_example.json: per item, each category's % of a layer's neurons (mean over layers, tau = 0)
    and the correct answers per language, from run_dir/examples.npz (too large to commit); with a deactivation
    pass, also out_dir/per_item_deactivation.json (`extract_deactivation`)."""
    with np.load(os.path.join(run_dir, "examples.npz")) as e:
        counts = e["category_counts"][:, 0].astype(np.float64)  # [E, L, 4] at the first threshold
        width = json.load(open(os.path.join(run_dir, "sharing.json")))["neurons_per_layer"]
        pct = counts.mean(1) / width * 100  # [E, 4]
        out = {"ids": [str(x) for x in e["ids"]], "threshold": float(e["thresholds"][0]),
               "languages": [str(x) for x in e["languages"]],
               **{c: [round(float(v), 4) for v in pct[:, i]] for i, c in enumerate(CATS)},
               "correct": e["correct"].astype(int).tolist()}
    path = os.path.join(out_dir, "per_example.json")
    with open(path, "w") as f:
        json.dump(out, f)
    if os.path.exists(os.path.join(run_dir, "interventions_state.npz")):
        path += " " + extract_deactivation(run_dir, out_dir)
    return path


def extract_deactivation(run_dir: str, out_dir: str) -> str:
    """out_dir/per_item_deactivation.json: per condition (as the pass names it, seeds apart) and item, the gold
    answer's log-probability change from clean (nats) and the contribution mass removed (% of the row's total),
    each the mean over languages, as interventions.json's sets average them; from the pass's checkpoint,
    run_dir/interventions_state.npz (too large to commit)."""
    with np.load(os.path.join(run_dir, "interventions_state.npz")) as z:
        total = z["total_contribution"]
        done = ~np.isnan(total[:, 0])
        clean = z["clean/gold_logprob"][done]
        conditions = [k.removesuffix("/gold_logprob") for k in z.files if k.endswith("/gold_logprob")]
        out = {"num_items": int(done.sum()),
               "definition": "per item, mean over languages: clean_gold_logprob = the gold answer's log-prob "
                             "(nats, summed over its tokens) without deactivation; gold_logprob_change = the "
                             "condition's minus clean's; removed_mass = 100 x the deactivated neurons' "
                             "|m| * ||v|| / the row's total",
               "clean_gold_logprob": _rounded(clean.mean(-1)),
               "conditions": {c: {"gold_logprob_change": _rounded((z[f"{c}/gold_logprob"][done] - clean).mean(-1)),
                                  "removed_mass": _rounded(100 * (z[f"{c}/contribution"][done]
                                                                  / total[done]).mean(-1))}
                              for c in conditions}}
    path = os.path.join(out_dir, "per_item_deactivation.json")
    with open(path, "w") as f:
        json.dump(out, f)
    return path


def _rounded(values) -> list[float]:
    return [round(float(v), 5) for v in values]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--write", action="store_true", help="rewrite the marked blocks of REPRODUCTION.md and the figures")
    p.add_argument("--extract", nargs=2, metavar=("RUN_DIR", "OUT_DIR"), help="write OUT_DIR/per_example.json")
    args = p.parse_args()
    if args.extract:
        print(extract(*args.extract))
        return 0
    text = build()
    verdicts = verdict_table()
    if args.write:
        with open(DOC) as f:
            doc = f.read()
        for name, body in (("status", status_table()), ("tables", text), ("verdicts", verdicts)):
            start, end = BLOCKS[name]
            if start not in doc or end not in doc:
                print(f"{DOC} has no {start} ... {end} block", file=sys.stderr)
                return 1
            head, rest = doc.split(start, 1)
            doc = head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]
        with open(DOC, "w") as f:
            f.write(doc)
        ending_figure(FIGURE)
        dose_figure(DOSE_FIGURE)
        controls_figure(CONTROLS_FIGURE)
    print(verdicts + "\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
