"""`report.md`: the sharing summary as a page a person reads (header, tables, figures, a generated reading)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jaxneurons.analysis.controls import GROUPINGS
from jaxneurons.analysis.intervals import ci_text
from jaxneurons.analysis.io import write_text_atomic
from jaxneurons.analysis.sharing import CATEGORIES

# Headline figures of Wang et al., "Sharing Matters" (arXiv 2406.09265, v1; secondhand, as quoted in the
# project's notes outside this repository, not re-read from the paper) that the reading compares against.
PAPER_ALL_SHARED_PERCENT = (20.0, 30.0)  # BLOOM about 20 %, BLOOMZ about 30 %
PAPER_STAY_NON_ACTIVATED_PERCENT = 10.0  # "fewer than 10 % of non-activated neurons stay non-activated"
EVEN_HALVES = 0.5  # percentage points: halves of the layers whose means differ less are "spread evenly"


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
        "neuron position": sharing.get("neuron_position"),
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


CONTROL_ROWS = (("parallel", "parallel (the paper's groups)"), ("non_parallel", "non-parallel control"),
                ("same_language", "same-language control"), ("parallel_excess", "parallel excess (parallel - non-parallel)"),
                ("same_language_excess", "parallel - same-language"))


def _controls_section(sharing: dict) -> list[str]:
    """The grouping controls: all-shared % and the mean cosine of each grouping, the excesses, per layer."""
    controls = sharing.get("controls")
    if not controls:
        return []
    head = (f"## Grouping controls (tau = 0, the first {controls['num_items']} of {controls['of_items']} items, "
            f"{controls['draws']} draws, seed {controls['seed']})")
    if not controls.get("categories"):
        return [head, "", f"Not computed: {controls['note']}.", ""]
    cats, cos = controls["categories"], controls["cosine"]
    lines = [head, "", "Each control regroups the recorded rows (README 'Grouping controls'): non-parallel takes each "
             "language from a different item, same-language takes N different items of one language. The parallel "
             "excess is what the paper's grouping shares beyond any N prompts of this format; 95% intervals over "
             "items, paired.", "",
             "| grouping | all-shared % (mean over layers) | mean cosine |", "|---|---:|---:|"]
    for key, label in CONTROL_ROWS:
        unit = " pp" if key.endswith("excess") else "%"
        lines.append(f"| {label} | {ci_text(cats[key]['all_shared']['mean_over_layers'], unit)} | "
                     f"{_cos_text(cos[key]['mean_over_layers'])} |")
    lines += ["", "| layer | parallel % | non-parallel % | same-language % | parallel excess pp | cosine parallel | "
              "cosine non-parallel |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for layer in range(len(cats["parallel"]["all_shared"]["per_layer"]["value"])):
        cells = [ci_text(_at(cats[g]["all_shared"]["per_layer"], layer), "%") for g in GROUPINGS]
        cells.append(ci_text(_at(cats["parallel_excess"]["all_shared"]["per_layer"], layer), ""))
        cells += [_cos_text(_at(cos[g]["per_layer"], layer)) for g in ("parallel", "non_parallel")]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return lines + ["", _controls_reading(cats), ""]


def _controls_reading(cats: dict) -> str:
    """What the parallel excess says about the all-shared share."""
    par, excess = (cats[k]["all_shared"]["mean_over_layers"] for k in ("parallel", "parallel_excess"))
    non = cats["non_parallel"]["all_shared"]["mean_over_layers"]
    text = (f"The non-parallel control has {non['value']:.1f} % all-shared neurons against {par['value']:.1f} % for "
            f"the parallel groups: the parallel excess is {ci_text(excess, ' points')}")
    if par["value"]:
        text += f", {100 * excess['value'] / par['value']:.0f} % of the parallel share"
    ci = excess.get("ci95")
    if ci and ci[0] is not None and ci[0] <= 0 <= ci[1]:
        text += (". Its interval includes 0: at this read-out, all-shared neurons do not tell parallel items from "
                 "unrelated ones.")
    else:
        text += (". The rest is shared as much by N unrelated prompts of this format (the same template or final "
                 "tokens), so it does not reflect the item's meaning.")
    same = cats["same_language_excess"]["all_shared"]["mean_over_layers"]
    if same.get("ci95") and same["ci95"][1] is not None and same["ci95"][1] < 0:
        text += (f" N different items in one language share more ({ci_text(cats['same_language']['all_shared']['mean_over_layers'])}) "
                 "than one item in N languages: the prompts' language weighs more than their content here.")
    return text


def _at(stat: dict, layer: int) -> dict:
    """Element `layer` of a per-layer estimate."""
    ci = stat.get("ci95")
    return {"value": stat["value"][layer], "ci95": None if not ci else [ci[0][layer], ci[1][layer]]}


def _cos_text(stat: dict) -> str:
    """'0.912 [0.900, 0.925]'."""
    if stat is None or stat["value"] is None:
        return "n/a"
    ci = stat.get("ci95")
    return f"{stat['value']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else "")


def _frequency_section(sharing: dict) -> list[str]:
    """How often the all-shared neurons are all-shared across items, with intervals over items."""
    freq = sharing.get("overlap_frequency")
    if not freq:
        return []
    every, half = (freq[k]["mean_over_layers"] for k in ("every", "half"))
    lines = [f"## How often each neuron is all-shared (tau = 0, {freq['num_items']} items)", "",
             f"Of the neurons all-shared in at least one item, {ci_text(every)} are all-shared in every item and "
             f"{ci_text(half)} in at least half of the items (mean over layers, 95% jackknife interval over items). The "
             "lower the first, the more the all-shared neurons change from item to item.", "",
             "| layer | all-shared in >= 1 item (% of neurons) | ... in every item (% of those) | ... in >= half |",
             "|---:|---:|---:|---:|"]
    for layer, ever in enumerate(freq["ever_per_layer"]):
        lines.append(f"| {layer} | {ever:.1f} | {ci_text(_at(freq['every']['per_layer'], layer))} | "
                     f"{ci_text(_at(freq['half']['per_layer'], layer))} |")
    return lines + [""]


def _accuracy_table(sharing: dict) -> list[str]:
    """Accuracy per language, when the caller provided it: with its interval, chance, majority answer, warning."""
    accuracy = sharing.get("accuracy")
    if not accuracy:
        return []
    detail, warnings = sharing.get("accuracy_detail"), accuracy_warnings(sharing)
    if not detail:
        lines = ["## Accuracy", "", "| language | accuracy | warning |", "|---|---:|---|"]
        lines += [f"| {lang} | {value:.3f} | {warnings.get(lang, '')} |" for lang, value in accuracy.items()]
    else:
        lines = ["## Accuracy", "", "| language | accuracy | 95% CI | chance | majority answer (share of rows) | n | "
                 "warning |", "|---|---:|---:|---:|---|---:|---|"]
        for lang, d in detail.items():
            ci = f"{d['ci95'][0]:.3f}-{d['ci95'][1]:.3f}" if d["ci95"] else "-"
            chance = f"{d['chance']:.3f}" if d["chance"] is not None else "~0 (open answer)"
            majority = ("-" if d["majority_rate"] is None
                        else f"{d['majority_answer']!r} ({100 * d['majority_rate']:.0f}%)")
            lines.append(f"| {lang} | {d['value']:.3f} | {ci} | {chance} | {majority} | {d['n']} | "
                         f"{warnings.get(lang, '')} |")
    if warnings:
        lines += ["", f"**Warning:** the accuracy in {', '.join(warnings)} says nothing about the task (see the "
                  "warning column); comparisons of correctly vs incorrectly answered examples below are "
                  "uninformative."]
    return lines + [""]


def accuracy_warnings(sharing: dict) -> dict[str, str]:
    """language -> why its accuracy is uninformative: the summary's warning (not above chance, one answer
    dominates), an accuracy at or below chance (1 / number of options), or no gold answer at all (0: an open
    answer's chance is about 0, so only none right is a sign, of a task the model cannot do or a broken format)."""
    detail = sharing.get("accuracy_detail") or {lang: {"value": value, "chance": None, "warning": None}
                                                for lang, value in (sharing.get("accuracy") or {}).items()}
    warnings = {}
    for lang, d in detail.items():
        problems = [d["warning"]] if d.get("warning") else []
        chance = d.get("chance")
        if chance is not None and d["value"] <= chance and not problems:
            problems.append(f"accuracy {d['value']:.3f} is at or below chance ({chance:.3f})")
        if d["value"] == 0 and not problems:
            problems.append("no example answered correctly (accuracy 0)")
        if problems:
            warnings[lang] = "; ".join(problems)
    return warnings


def _accuracy_caveat(sharing: dict) -> list[str]:
    """The reading's first sentence when some language's accuracy is uninformative."""
    warned = accuracy_warnings(sharing)
    if not warned:
        return []
    return [f"The accuracy in {', '.join(warned)} is uninformative (see Accuracy), so the sharing below describes "
            "how the model reads these prompts, not how it solves the task."]


def _figures(figures: dict[str, str], output_dir: str) -> list[str]:
    """Figures embedded with links relative to the report."""
    if not figures:
        return []
    lines = ["## Figures", ""]
    for name, path in figures.items():
        relative = os.path.relpath(os.path.abspath(path), os.path.abspath(output_dir)).replace(os.sep, "/")
        lines += [f"![{name.replace('_', ' ')}]({relative})", ""]
    return lines


def _layer_reading(name: str, values_l: Sequence[float]) -> str | None:
    """Where the category sits over the layers, in words that hold for the numbers: the half with the larger mean
    ('concentrated' only when its peak lies there too, 'spread evenly' when the halves' means agree within
    EVEN_HALVES points); None with fewer than two layers or none of the category anywhere."""
    values_l = [float(v) for v in values_l]
    if len(values_l) < 2 or max(values_l) <= 0.0:
        return None
    half = len(values_l) // 2
    lower, upper = float(np.mean(values_l[:half])), float(np.mean(values_l[half:]))
    peak = int(np.argmax(values_l))
    label = name.replace("_", "-").capitalize() + " neurons"
    halves = f"{lower:.1f} % in the lower vs {upper:.1f} % in the upper half of the layers"
    at_peak = f"layer {peak} ({values_l[peak]:.1f} %)"
    if abs(lower - upper) < EVEN_HALVES:
        return f"{label} are spread evenly over the layers ({halves}), with their largest share at {at_peak}."
    side, peak_side = ("lower" if lower > upper else "upper"), ("lower" if peak < half else "upper")
    if side == peak_side:
        return f"{label} are concentrated in the {side} half of the layers ({halves}), peaking at {at_peak}."
    return (f"{label} are more frequent in the {side} half of the layers on average ({halves}), although their "
            f"largest share is at {at_peak}, in the {peak_side} half.")


def _reading(sharing: dict) -> list[str]:
    """One paragraph that reads the numbers and sets them against the paper's headline figures."""
    means = sharing["mean_over_layers"]
    low, high = PAPER_ALL_SHARED_PERCENT
    verdict = "within" if low <= means["all_shared"] <= high else ("below" if means["all_shared"] < low else "above")
    sentences = [
        "On average over layers (tau = 0), "
        + ", ".join(f"{means[name]:.1f} % of the neurons are {name.replace('_', '-')}" for name in CATEGORIES[:1])
        + ", "
        + ", ".join(f"{means[name]:.1f} % {name.replace('_', '-')}" for name in CATEGORIES[1:])
        + ".",
    ]
    sentences += [text for text in (_layer_reading("all_shared", sharing["per_layer"]["all_shared"]),
                                    _partial_reading(sharing)) if text]
    sentences.append(f"The all-shared share is {verdict} the paper's {low:.0f}-{high:.0f} % (about {low:.0f} % in "
                     f"BLOOM, {high:.0f} % in BLOOMZ, concentrated in the lower layers).")
    sentences += _overlap_reading(sharing)
    sentences += _correctness_reading(sharing)
    return ["## Reading", "", " ".join(_accuracy_caveat(sharing) + sentences), ""]


def _partial_reading(sharing: dict) -> str | None:
    """Where partial-shared neurons sit; None with two languages or fewer (a neuron activated by some but not all
    of two languages is activated by one: specific), or none of them."""
    languages = sharing.get("languages")
    if languages is not None and len(languages) <= 2:
        return None
    return _layer_reading("partial_shared", sharing["per_layer"]["partial_shared"])


def _overlap_reading(sharing: dict) -> list[str]:
    """How many non-activated neurons stay non-activated for every example, against the paper's < 10 %."""
    overlap = sharing.get("overlap")
    typical = sharing["mean_over_layers"]["non_activated"]
    if not overlap or typical <= 0:
        return []
    stay = float(np.mean(overlap["non_activated"]))
    of_non_activated = 100.0 * stay / typical
    compare = ("consistent with" if of_non_activated < PAPER_STAY_NON_ACTIVATED_PERCENT
               else "more than")
    return [
        f"A typical example leaves {typical:.1f} % of the neurons non-activated, and {stay:.1f} % of the neurons "
        f"stay non-activated for every example: {of_non_activated:.1f} % of a typical example's non-activated "
        f"neurons never activate, {compare} the paper's 'fewer than {PAPER_STAY_NON_ACTIVATED_PERCENT:.0f} %'."
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
SECTION_ORDER = ("sharing", "attribution", "deactivation", "steering")
REPORT_FILE = "report.md"
FIGURES_DIR = "figures"  # every pass's PNGs, linked from report.md


def sharing_section(sharing: dict, figures: dict[str, str], output_dir: str | os.PathLike) -> str:
    """The sharing pass's part of report.md, from a `summarize` dict plus run facts; figures: name -> path."""
    lines = _header(sharing) + _category_table(sharing) + _controls_section(sharing) + _frequency_section(sharing)
    lines += _accuracy_table(sharing)
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
