"""The LAPE run's files: activation_stats.npz, lape_neurons.json, ppl.json, lape_categories.json, figures/ and
report.md (its own; a LAPE run is a folder of its own)."""

from __future__ import annotations

import os

import numpy as np

from jaxneurons.analysis.figures import save_figure
from jaxneurons.analysis.io import write_text_atomic
from jaxneurons.analysis.sharing import CATEGORIES
from jaxneurons.lape.perplexity import PPL_FILE
from jaxneurons.lape.relation import RELATION_FILE
from jaxneurons.pipeline.outputs import write_result_json


def _ci(stat: dict, digits: int = 3, sign: str = "") -> str:
    ci = stat.get("ci95")
    text = f"{stat['value']:{sign}.{digits}f}"
    return text + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci and ci[0] is not None else "")


def corpus_lines(facts: dict) -> list[str]:
    lines = ["## Corpus", "", f"{facts['corpus']}; rows of {facts['max_length']} tokens (last partial row dropped). "
             f"Identification corpus digest `{facts['identity']['corpus.digest'][:16]}`.", "",
             "| language | identification tokens | held-out tokens (rows) |", "|---|---|---|"]
    for lang in facts["languages"]:
        held = facts["heldout_tokens"].get(lang)
        lines.append(f"| {lang} | {facts['identity'][f'corpus.tokens.{lang}']} | "
                     f"{held} ({held // facts['max_length'] if held else 0}) |")
    return lines + [""]


def neuron_lines(neurons: dict, settings: dict) -> list[str]:
    lines = ["## LAPE neurons", "", f"top_rate {settings['top_rate']}, filter_rate {settings['filter_rate']}, "
             f"activation_bar_ratio {settings['activation_bar_ratio']} (identify.py's algorithm; a neuron may "
             "belong to several languages).", "", "| language | neurons | per layer |", "|---|---|---|"]
    for lang, per in neurons.items():
        lines.append(f"| {lang} | {sum(map(len, per.values()))} | {' '.join(str(len(v)) for v in per.values())} |")
    return lines + [""]


def ppl_lines(summary: dict) -> list[str]:
    langs, matrix = summary["languages"], summary["matrix"]
    lines = ["## Perplexity under masks", "", "Mean next-token NLL (nats/token) of each language's held-out rows "
             "(columns) with the masked language's neurons zeroed (rows); change from the clean model with its "
             f"paired 95% bootstrap interval over rows ({summary['bootstrap']} resamples). `random(x)`: as many "
             "random neurons as x's in every layer.", "",
             "| masked \\ evaluated | " + " | ".join(langs) + " |", "|---|" + "---|" * len(langs)]
    lines.append("| none (NLL) | " + " | ".join(_ci(matrix["none"][l]["nll"], 2) for l in langs) + " |")
    for condition in summary["conditions"][1:]:
        lines.append(f"| {condition} ({summary['neurons_zeroed'][condition]}) | "
                     + " | ".join(_ci(matrix[condition][l]["delta_nll"], 2, "+") for l in langs) + " |")
    rows = ", ".join(f"{l} {matrix['none'][l]['rows']}" for l in langs)
    return lines + ["", f"Rows per language: {rows}.", ""]


def relation_lines(relation: dict) -> list[str]:
    lines = ["## LAPE neurons in the paper's categories", "",
             f"{relation['task']}, {relation['num_examples']} parallel items in {', '.join(relation['languages'])}, "
             "act > 0 (tau = 0) at the read-out token (the prompt's last, or the gold answer's end for a format "
             "that reads there, as the sharing pass). Mean % of each set's neurons in each category over items, "
             f"95% bootstrap interval over items ({relation['bootstrap']} resamples).", "",
             "| set | neurons | " + " | ".join(c.replace("_", "-") for c in CATEGORIES) + " |",
             "|---|---|" + "---|" * len(CATEGORIES)]
    for name, d in relation["distribution"].items():
        lines.append(f"| {name} | {d['neurons']} | " + " | ".join(_ci(d[c], 1) for c in CATEGORIES) + " |")
    lines += ["", "Overlap of LAPE's set for X with the same number of neurons most often specific to X (ties: "
              "lower layer/neuron first; never-specific neurons left out):", "",
              "| language | LAPE | top specific | both | Jaccard | chance Jaccard | LAPE in top | top in LAPE | "
              "LAPE's mean specific-to-X rate |", "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for lang, o in relation["overlap"].items():
        lines.append(f"| {lang} | {o['lape']} | {o['top_specific']} | {o['intersection']} | {fmt(o['jaccard'])} | "
                     f"{fmt(o['jaccard_chance'])} | {fmt(o['lape_in_top'])} | {fmt(o['top_in_lape'])} | "
                     f"{fmt(o['mean_specific_rate_of_lape'])} |")
    return lines + [""]


def write_identification(output_dir: str, facts: dict, stats, neurons: dict) -> dict[str, str]:
    """activation_stats.npz and lape_neurons.json, written as soon as they exist (a later stage can fail)."""
    from jaxneurons.lape.select import NEURONS_FILE, save_lape_neurons
    from jaxneurons.lape.stats import STATS_FILE

    return {"stats": stats.save(os.path.join(output_dir, STATS_FILE)),
            "neurons": save_lape_neurons(os.path.join(output_dir, NEURONS_FILE), neurons, **facts)}


def saved_identification(output_dir: str, identity: dict):
    """(stats, neurons, settings) of an earlier run of this identity in output_dir, or None when it has none;
    ResumeMismatchError when it belongs to another corpus or model."""
    import json

    from jaxneurons.lape.select import NEURONS_FILE, load_lape_neurons
    from jaxneurons.lape.stats import STATS_FILE, ActivationStats
    from jaxneurons.pipeline.identity import check_identity

    neurons_path, stats_path = os.path.join(output_dir, NEURONS_FILE), os.path.join(output_dir, STATS_FILE)
    if not (os.path.exists(neurons_path) and os.path.exists(stats_path)):
        return None
    with open(neurons_path, encoding="utf-8") as f:
        saved = json.load(f)
    check_identity(neurons_path, saved.get("identity", {}), identity)
    return ActivationStats.load(stats_path), load_lape_neurons(neurons_path), saved.get("settings")


def write_lape_run(output_dir: str, facts: dict, stats, neurons: dict, ppl=None, relation: dict | None = None
                   ) -> dict[str, str]:
    """Every file of a LAPE run; returns {name: path}."""
    from jaxneurons.lape.figures import category_bars

    os.makedirs(os.path.join(output_dir, "figures"), exist_ok=True)
    paths = write_identification(output_dir, facts, stats, neurons)
    summary = ppl.summary() if ppl is not None else None
    if ppl is not None:
        write_result_json(os.path.join(output_dir, PPL_FILE), {**summary, "model": facts["model"]})
        paths["ppl_figure"] = save_figure(ppl.plot(), os.path.join(output_dir, "figures", "ppl_delta.png"))
    if relation is not None:
        write_result_json(os.path.join(output_dir, RELATION_FILE), relation)
        paths["relation_figure"] = save_figure(category_bars(relation),
                                               os.path.join(output_dir, "figures", "lape_categories.png"))
    paths["report"] = write_text_atomic(os.path.join(output_dir, "report.md"),
                                        report_text(facts, neurons, summary, relation))
    return paths


def report_text(facts: dict, neurons: dict, ppl_summary: dict | None, relation: dict | None) -> str:
    lines = [f"# LAPE: {facts['model']}", "", "Language-specific neurons by LAPE (Tang et al., ACL 2024): activation "
             "probabilities over monolingual text, the lowest-entropy neurons kept.", ""]
    lines += corpus_lines(facts) + neuron_lines(neurons, facts["settings"])
    if ppl_summary is not None:
        lines += ppl_lines(ppl_summary) + ["![NLL change](figures/ppl_delta.png)", ""]
    if relation is not None:
        lines += relation_lines(relation) + ["![categories](figures/lape_categories.png)", ""]
    return "\n".join(lines)


def rebuild_report(output_dir: str) -> str:
    """report.md again from a LAPE run's JSON files (e.g. after a change of its layout); returns its path."""
    import json

    from jaxneurons.lape.select import NEURONS_FILE, load_lape_neurons

    def read(name):
        path = os.path.join(output_dir, name)
        if not os.path.exists(path):
            return None
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    facts = read(NEURONS_FILE)
    if facts is None:
        raise FileNotFoundError(f"{output_dir} has no {NEURONS_FILE}: not a LAPE run")
    text = report_text(facts, load_lape_neurons(os.path.join(output_dir, NEURONS_FILE)), read(PPL_FILE),
                       read(RELATION_FILE))
    return write_text_atomic(os.path.join(output_dir, "report.md"), text)


def token_counts(rows: dict) -> dict[str, int]:
    return {lang: int(np.asarray(r).size) for lang, r in rows.items()}
