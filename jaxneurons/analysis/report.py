"""`report.md`: the sharing summary as a page a person reads (header, tables, figures, a generated reading)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jaxneurons.analysis.io import write_text_atomic
from jaxneurons.analysis.sharing import CATEGORIES

# Headline figures of Wang et al., "Sharing Matters" (arXiv 2406.09265, v1; secondhand, as quoted in the
# project's notes outside this repository, not re-read from the paper) that the reading compares against.
PAPER_ALL_SHARED_PERCENT = (20.0, 30.0)  # BLOOM about 20 %, BLOOMZ about 30 %
PAPER_STAY_NON_ACTIVATED_PERCENT = 10.0  # "fewer than 10 % of non-activated neurons stay non-activated"


def _header(sharing: dict) -> list[str]:
    """Title and the run's facts, from the keys the caller added to the summary."""
    title = " on ".join(str(sharing[k]) for k in ("model", "task") if sharing.get(k)) or "run"
    facts = {
        "model": sharing.get("model"),
        "task": sharing.get("task"),
        "languages": ", ".join(sharing.get("languages") or []) or None,
        "examples": sharing.get("num_examples"),
        "layers": sharing.get("num_layers"),
        "neurons per layer": sharing.get("neurons_per_layer"),
        "positions": sharing.get("positions"),
        "prompt format": sharing.get("prompt_format"),
        "prompt suffix": repr(sharing["prompt_suffix"]) if sharing.get("prompt_suffix") else None,
        "thresholds": ", ".join(f"{t:g}" for t in sharing.get("thresholds", [])) or None,
    }
    lines = [f"# Neuron sharing across languages: {title}", ""]
    lines += [f"- **{name}**: {value}" for name, value in facts.items() if value is not None]
    return lines + [""]


def _category_table(sharing: dict) -> list[str]:
    """Per-layer mean % of each category (tau = 0), with the overlap columns when available."""
    per_layer = sharing["per_layer"]
    overlap = sharing.get("overlap")
    columns = [f"{name} %" for name in CATEGORIES]
    if overlap:
        columns += [f"{name} every example %" for name in CATEGORIES]
    lines = [
        "## Categories per layer (tau = 0, mean over examples, layers from 0)",
        "",
        "| layer | " + " | ".join(columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for layer in range(len(per_layer[CATEGORIES[0]])):
        cells = [per_layer[name][layer] for name in CATEGORIES]
        if overlap:
            cells += [overlap[name][layer] for name in CATEGORIES]
        lines.append(f"| {layer} | " + " | ".join(f"{v:.1f}" for v in cells) + " |")
    mean_cells = [sharing["mean_over_layers"][name] for name in CATEGORIES]
    if overlap:
        mean_cells += [float(np.mean(overlap[name])) for name in CATEGORIES]
    lines.append("| mean | " + " | ".join(f"{v:.1f}" for v in mean_cells) + " |")
    ci = sharing.get("mean_over_layers_ci95")
    if ci:
        lines += ["", "Mean over layers with its 95% bootstrap interval over examples: " + ", ".join(
            f"{name.replace('_', '-')} {sharing['mean_over_layers'][name]:.1f} % [{ci[name][0]:.1f}, {ci[name][1]:.1f}]"
            for name in CATEGORIES) + "."]
    return lines + [""]


def _accuracy_table(sharing: dict) -> list[str]:
    """Accuracy per language, when the caller provided it: with its interval, chance, majority answer, warning."""
    accuracy = sharing.get("accuracy")
    if not accuracy:
        return []
    detail = sharing.get("accuracy_detail")
    if not detail:
        lines = ["## Accuracy", "", "| language | accuracy |", "|---|---:|"]
        return lines + [f"| {lang} | {value:.3f} |" for lang, value in accuracy.items()] + [""]
    lines = ["## Accuracy", "", "| language | accuracy | 95% CI | chance | majority answer (share of rows) | n | "
             "warning |", "|---|---:|---:|---:|---|---:|---|"]
    for lang, d in detail.items():
        ci = f"{d['ci95'][0]:.3f}-{d['ci95'][1]:.3f}" if d["ci95"] else "-"
        chance = f"{d['chance']:.3f}" if d["chance"] is not None else "~0 (open answer)"
        majority = "-" if d["majority_rate"] is None else f"{d['majority_answer']!r} ({100 * d['majority_rate']:.0f}%)"
        lines.append(f"| {lang} | {d['value']:.3f} | {ci} | {chance} | {majority} | {d['n']} | {d['warning'] or ''} |")
    if sharing.get("accuracy_warnings"):
        lines += ["", "**Warning:** the model does not answer this task above chance (or one answer dominates) in "
                  f"{', '.join(sharing['accuracy_warnings'])}; comparisons of correctly vs incorrectly answered "
                  "examples below are uninformative."]
    return lines + [""]


def _figures(figures: dict[str, str], output_dir: str) -> list[str]:
    """Figures embedded with links relative to the report."""
    if not figures:
        return []
    lines = ["## Figures", ""]
    for name, path in figures.items():
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(output_dir)).replace(os.sep, "/")
        lines += [f"![{name.replace('_', ' ')}]({relative})", ""]
    return lines


def _where_concentrated(values_l: Sequence[float]) -> str:
    """'lower' or 'upper' half of the layers, whichever holds the larger mean."""
    values_l = [float(v) for v in values_l]
    half = len(values_l) // 2
    lower, upper = float(np.mean(values_l[:half] or values_l)), float(np.mean(values_l[half:]))
    side = "lower" if lower >= upper else "upper"
    return f"the {side} half of the layers ({lower:.1f} % in the lower vs {upper:.1f} % in the upper half)"


def _reading(sharing: dict) -> list[str]:
    """One paragraph that reads the numbers and sets them against the paper's headline figures."""
    means = sharing["mean_over_layers"]
    all_shared_l = sharing["per_layer"]["all_shared"]
    low, high = PAPER_ALL_SHARED_PERCENT
    verdict = "within" if low <= means["all_shared"] <= high else ("below" if means["all_shared"] < low else "above")
    sentences = [
        "On average over layers (tau = 0), "
        + ", ".join(f"{means[name]:.1f} % of the neurons are {name.replace('_', '-')}" for name in CATEGORIES[:1])
        + ", "
        + ", ".join(f"{means[name]:.1f} % {name.replace('_', '-')}" for name in CATEGORIES[1:])
        + ".",
        f"All-shared neurons are concentrated in {_where_concentrated(all_shared_l)}, peaking at layer "
        f"{int(np.argmax(all_shared_l))} ({max(all_shared_l):.1f} %); partial-shared neurons lean towards "
        f"{_where_concentrated(sharing['per_layer']['partial_shared'])}.",
        f"The all-shared share is {verdict} the paper's {low:.0f}-{high:.0f} % (about {low:.0f} % in BLOOM, "
        f"{high:.0f} % in BLOOMZ, concentrated in the lower layers).",
    ]
    sentences += _overlap_reading(sharing)
    sentences += _correctness_reading(sharing)
    return ["## Reading", "", " ".join(sentences), ""]


def _overlap_reading(sharing: dict) -> list[str]:
    """How many non-activated neurons stay non-activated for every example, against the paper's < 10 %."""
    overlap = sharing.get("overlap")
    if not overlap:
        return []
    stay = float(np.mean(overlap["non_activated"]))
    typical = sharing["mean_over_layers"]["non_activated"]
    of_non_activated = 100.0 * stay / typical if typical > 0 else 0.0
    compare = "consistent with" if of_non_activated < PAPER_STAY_NON_ACTIVATED_PERCENT else "more than"
    return [
        f"{stay:.1f} % of the neurons stay non-activated for every example, i.e. {of_non_activated:.1f} % of "
        f"the neurons non-activated in a typical example ({typical:.1f} %), {compare} the paper's "
        f"'fewer than {PAPER_STAY_NON_ACTIVATED_PERCENT:.0f} %'."
    ]


def _correctness_reading(sharing: dict) -> list[str]:
    """All-shared share on examples answered correctly in every language vs the rest."""
    groups = sharing.get("by_correctness")
    if not groups or not all(groups[g]["per_layer"] for g in ("all_correct", "not_all_correct")):
        return []
    correct, other = (float(np.mean(groups[g]["per_layer"]["all_shared"])) for g in ("all_correct", "not_all_correct"))
    caveat = " (uninformative: the accuracy is not above chance or one answer dominates)" \
        if groups.get("informative") is False else ""
    return [
        f"Examples answered correctly in every language ({groups['all_correct']['num_examples']}) have "
        f"{correct:.1f} % all-shared neurons on average, the others ({groups['not_all_correct']['num_examples']}) "
        f"{other:.1f} %{caveat}."
    ]


SECTIONS_DIR = "sections"  # each pass's part of report.md, composed in SECTION_ORDER
SECTION_ORDER = ("sharing", "attribution", "deactivation")
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"  # every pass's PNGs, linked from report.md


def sharing_section(sharing: dict, figures: dict[str, str], output_dir: str | os.PathLike) -> str:
    """The sharing pass's part of report.md, from a `summarize` dict plus run facts; figures: name -> path."""
    lines = _header(sharing) + _category_table(sharing) + _accuracy_table(sharing)
    lines += _reading(sharing) + _figures(figures, os.fspath(output_dir))
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    output_dir: str | os.PathLike,
    sharing: dict,
    figures: dict[str, str],
    extra_sections: Sequence[str] = (),
) -> str:
    """Write output_dir/report.md (atomically) from a `summarize` dict alone; returns its path.

    extra_sections are markdown blocks appended in order. A run folder's report is composed by `write_section`.
    """
    blocks = [sharing_section(sharing, figures, output_dir), *extra_sections]
    return write_text_atomic(os.path.join(output_dir, REPORT_FILE), _join(blocks))


def write_section(output_dir: str | os.PathLike, name: str, text: str) -> str:
    """Write one pass's section (output_dir/sections/<name>.md), then report.md from every section present,
    in SECTION_ORDER: each pass writes its own part, and no pass loses another's. Returns report.md's path."""
    if name not in SECTION_ORDER:
        raise ValueError(f"unknown report section {name!r}; choose from {SECTION_ORDER}")
    write_text_atomic(os.path.join(output_dir, SECTIONS_DIR, f"{name}.md"), text)
    blocks = []
    for part in SECTION_ORDER:
        path = os.path.join(output_dir, SECTIONS_DIR, f"{part}.md")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                blocks.append(f.read())
    return write_text_atomic(os.path.join(output_dir, REPORT_FILE), _join(blocks))


def _join(blocks: Sequence[str]) -> str:
    return "\n".join(block.rstrip() + "\n" for block in blocks).rstrip() + "\n"
