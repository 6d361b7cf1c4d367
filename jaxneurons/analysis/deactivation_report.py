"""The deactivation pass's figure and report section, from interventions.json (95% bootstrap intervals drawn):
`interventions_figure` builds the Figure (what a notebook shows), `write_figures` saves it as the run's PNG."""

from __future__ import annotations

import os

import numpy as np

from matplotlib.figure import Figure

from jaxneurons.analysis.bootstrap import MIN_DISCORDANT, excludes_zero
from jaxneurons.analysis.figures import CATEGORY_COLORS, _finish, _new_figure, save_figure
from jaxneurons.analysis.intervals import ci_text, error_bars, num_text, or_zero

def interventions_figure(interventions: dict) -> Figure:
    """Per run group: mean accuracy over languages, the gold answer's log-probability change from clean, and
    the contribution mass the set removes, with 95% error bars."""
    sets = interventions["sets"]
    names = list(sets)
    panels = [("accuracy (%)", lambda s: s["accuracy"]["mean"]),
              ("gold log-prob change from clean (nats)", lambda s: s.get("gold_logprob_change")),
              ("contribution mass removed (%)", lambda s: s["removed_mass"])]
    fig, axes = _new_figure(len(panels))
    x = np.arange(len(names))
    colors = [CATEGORY_COLORS.get(n.removesuffix("_count"), "black" if n == "clean" else "tab:purple")
              for n in names]
    for ax, (label, get) in zip(axes, panels):
        stats = [get(sets[n]) or {"value": None, "ci95": None} for n in names]
        ax.bar(x, [or_zero(s["value"]) for s in stats], 0.7, color=colors, yerr=error_bars(stats), capsize=3)
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize="small")
        ax.set(ylabel=label)
        ax.axhline(0, color="gray", linewidth=0.8)
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Neurons deactivated at the {_where(interventions['meta'])} "
                 "(error bars: 95% bootstrap over examples)")
    return _finish(fig)


DOSE_COLORS = {"random": "gray", "ranked": "tab:purple", "all_shared": CATEGORY_COLORS["all_shared"]}


def dose_response_figure(interventions: dict) -> Figure:
    """Accuracy and the gold answer's log-probability change against the contribution mass removed, one curve per
    dose kind (random, |m|-ranked, all-shared subsets), 95% error bars on both axes."""
    dose = interventions.get("dose_response")
    if not dose:
        raise ValueError("dose_response_figure: this result has no dose_response (run with dose_fractions)")
    fig, axes = _new_figure(2)
    for ax, (key, label) in zip(axes, (("accuracy", "mean accuracy (%)"),
                                       ("gold_logprob_change", "gold log-prob change from clean (nats)"))):
        for kind, curve in dose["curves"].items():
            x, y = curve["removed_mass"], curve[key]
            ax.errorbar([or_zero(s["value"]) for s in x], [or_zero(s["value"]) for s in y], yerr=error_bars(y),
                        xerr=error_bars(x), marker="o", capsize=2, color=DOSE_COLORS.get(kind), label=kind)
            for xs, f in zip(x, curve["fraction"]):
                ax.annotate(f"{f:g}x", (or_zero(xs["value"]), or_zero(y[curve["fraction"].index(f)]["value"])),
                            fontsize="x-small", textcoords="offset points", xytext=(3, 3))
        ax.set(xlabel="contribution mass removed (%)", ylabel=label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small", title="set (labels: x all-shared count)")
    fig.suptitle("Dose-response of deactivation (error bars: 95% bootstrap over examples)")
    return _finish(fig)


DEACTIVATION_FIGURES = {"interventions": (interventions_figure, "interventions.png"),
                        "dose_response": (dose_response_figure, "dose_response.png")}  # name -> (builder, PNG)


def available_figures(interventions: dict) -> list[str]:
    """The figures this result can draw (dose_response only with its data)."""
    return [name for name in DEACTIVATION_FIGURES if name != "dose_response" or interventions.get("dose_response")]


def plot_interventions(interventions: dict, path: str) -> str:
    """`interventions_figure` written to path (PNG); returns the path."""
    return save_figure(interventions_figure(interventions), path)


def write_figures(interventions: dict, figures_dir: str) -> dict[str, str]:
    """Every figure of DEACTIVATION_FIGURES written into figures_dir; {name: path} for the report."""
    return {name: save_figure(build(interventions), os.path.join(figures_dir, file))
            for name, (build, file) in DEACTIVATION_FIGURES.items() if name in available_figures(interventions)}


def interventions_section(interventions: dict, figures: dict[str, str], output_dir: str) -> str:
    sets, meta = interventions["sets"], interventions["meta"]
    languages = list(interventions["clean"])
    tests, vs_clean = interventions.get("paired_tests", {}), interventions.get("paired_tests_vs_clean", {})
    lines = ["## Deactivation", "",
             f"Each example's neurons of a set are zeroed at the {_where(meta)}. `*_count`, "
             "`random`, `magnitude` and `top_magnitude` zero as many neurons per layer as the example has "
             "all-shared ones (within the category; uniformly; among activated neurons with all-shared's |m| "
             "distribution, a short top bin served by the nearest neurons; the largest-|m| neurons that are not "
             "all-shared); `mass` adds random neurons that are not all-shared until their contribution mass "
             "matches all-shared's; `non_parallel` zeroes the neurons active in every language's prompt of a "
             "non-parallel group (the example's own prompt in the first language, other examples' in the others: "
             "all-shared without the shared content); "
             f"seeded sets: mean of {meta['random_seeds']} seeds "
             f"({', '.join(str(s) for s in meta.get('seeds', range(meta['random_seeds'])))}). Removed mass: "
             f"{meta['removed_mass']}. Intervals: 95% bootstrap over {meta['num_examples']} examples; vs "
             "all-shared: control minus all-shared-off accuracy (paired). Ratios: the set's size, mean |m| per "
             "neuron and removed contribution mass / all-shared's.", ""]
    if meta.get("criterion"):
        lines += [f"Significance ({meta['criterion']}): `yes` where the paired bootstrap interval excludes 0; "
                  "sign test p one-sided (all-shared-off lower), examples that differ in brackets.", ""]
    lines += [f"**Warning: {w}.**" for w in interventions.get("warnings", [])]
    lines += ["", "| set | neurons per layer | mean abs m | count; mean abs m; mass ratio | removed mass | "
              "mean accuracy | change from clean | gold log-prob change (nats) | vs all-shared (pp) | "
              "significant | sign test p (one-sided) |", "|---" * 11 + "|"]
    for name, s in sets.items():
        lines.append(f"| {_label(name, s, meta)} | {s['neurons_per_layer']:.0f} | {num_text(s['mean_abs_m'])} | "
                     f"{_ratio_text(s.get('match'))} | {ci_text(s['removed_mass'])} | "
                     f"{ci_text(s['accuracy']['mean'])} | {ci_text(s['delta']['mean'], ' pp')} | "
                     f"{ci_text(s.get('gold_logprob_change'), '')} | "
                     f"{_test_text(tests.get(name, {}).get('correct'))} |")
    lines += _seed_lines(sets) + _clean_test_lines(vs_clean) + _dose_lines(interventions.get("dose_response"))
    lines += _equal_mass_lines(interventions.get("at_equal_mass"))
    lines += _generated_lines(sets, meta)
    lines += ["", "Accuracy per language (%):", "", "| set | " + " | ".join(languages) + " |",
              "|---" * (len(languages) + 1) + "|"]
    for name, s in sets.items():
        lines.append(f"| {name} | " + " | ".join(ci_text(s["accuracy"][l], "") for l in languages) + " |")
    lines += [""] + [f"![{name}]({os.path.relpath(path, output_dir)})" for name, path in figures.items()]
    return "\n".join(lines) + "\n"


def _generated_lines(sets: dict, meta: dict) -> list[str]:
    """Teacher-forced accuracy beside the generated answers' matches, per set (mean over languages)."""
    rows = [(name, s) for name, s in sets.items() if "generated" in s]
    if not rows:
        return []
    lines = ["", f"Generated answers ({meta.get('generated', 'greedy generation')}); means over languages, %:", "",
             "| set | teacher-forced accuracy | generated: prefix match | change from clean (pp) | first token |",
             "|---|---|---|---|---|"]
    for name, s in rows:
        g = s["generated"]
        lines.append(f"| {name} | {ci_text(s['accuracy']['mean'])} | {ci_text(g['prefix_match']['mean'])} | "
                     f"{ci_text(g['prefix_change'], ' pp')} | {ci_text(g['first_token']['mean'])} |")
    return lines


def _where(meta: dict) -> str:
    """Where the sets were zeroed (results before 'deactivated_at' named it 'positions')."""
    if meta.get("deactivated_at"):
        return meta["deactivated_at"]
    return {"all": "every token"}.get(meta.get("positions"), "last token")


def _label(name: str, entry: dict, meta: dict) -> str:
    """The set's name; a control whose name promises a match it misses is marked NOT matched."""
    from jaxneurons.pipeline.interventions import MATCHED  # the promise lives with the sets

    match, tolerance = entry.get("match"), meta.get("match_tolerance", 0.1)
    if name in MATCHED and match and any(match[k] is None or abs(match[k] - 1) > tolerance for k in MATCHED[name]):
        return f"{name} (NOT matched)"
    return name


def _ratio_text(match: dict | None) -> str:
    if not match:
        return ""
    return "; ".join(num_text(match[k]) for k in ("count_ratio", "mean_abs_m_ratio", "mass_ratio"))


def _test_text(test: dict | None) -> str:
    """'diff [lo, hi] | yes/no | p (n)' for a paired accuracy test; blank cells without one."""
    if not test:
        return " | | "
    significant = {True: "yes", False: "no", None: "n/a"}[test.get("significant", excludes_zero(test["difference"]))]
    one_sided = test.get("sign_test_p_one_sided")
    p = f"{one_sided:.3g}" if one_sided is not None else f"{test['sign_test_p']:.3g} (two-sided)"  # older results
    discordant = test["control_higher"] + test["control_lower"]
    few = f", < {MIN_DISCORDANT}" if discordant < MIN_DISCORDANT else ""
    return f"{ci_text(test['difference'], '')} | {significant} | {p} ({discordant} differ{few})"


def _seed_lines(sets: dict) -> list[str]:
    """The spread over seeds of each seeded set's mean accuracy and, for the matched controls, its ratios."""
    rows = [(name, s["seed_spread"]) for name, s in sets.items() if s.get("seed_spread")]
    if not rows:
        return []
    lines = ["", "Spread over seeds (min, max; sd):", "",
             "| set | mean accuracy (%) | gold log-prob change | mean abs m ratio | mass ratio |", "|---" * 5 + "|"]
    for name, spread in rows:
        cells = [_spread_text(spread.get(k)) for k in ("accuracy", "gold_logprob_change", "mean_abs_m_ratio",
                                                        "mass_ratio")]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _spread_text(spread: dict | None) -> str:
    if not spread or spread["min"] is None:
        return "n/a"
    return f"{spread['min']:.3g}, {spread['max']:.3g}; {num_text(spread['sd'])}"


def _clean_test_lines(vs_clean: dict) -> list[str]:
    """Each set against clean: the accuracy drop's interval (primary) and the one-sided sign test."""
    if not vs_clean:
        return []
    lines = ["", "Each set against clean (accuracy drop = clean minus set, pp; one-sided sign test for a drop):", "",
             "| set | drop (pp) | significant | sign test p (one-sided) |", "|---" * 4 + "|"]
    lines += [f"| {name} | {_test_text(test['correct'])} |" for name, test in vs_clean.items()]
    return lines


def _dose_lines(dose: dict | None) -> list[str]:
    """The dose-response table: per kind and fraction, removed mass, accuracy and gold log-prob change."""
    if not dose:
        return []
    lines = ["", f"Dose-response ({dose['definition']}):", "",
             "| set | fraction | neurons per layer | removed mass | mean accuracy | gold log-prob change (nats) |",
             "|---" * 6 + "|"]
    for kind, curve in dose["curves"].items():
        for i, f in enumerate(curve["fraction"]):
            lines.append(f"| {kind} | {f:g} | {curve['neurons_per_layer'][i]:.0f} | "
                         f"{ci_text(curve['removed_mass'][i])} | {ci_text(curve['accuracy'][i])} | "
                         f"{ci_text(curve['gold_logprob_change'][i], '')} |")
    return lines


def _equal_mass_lines(equal: dict | None) -> list[str]:
    """All-shared against each other set at equal removed mass: the mass, both changes and the paired difference."""
    if not equal:
        return []
    lines = ["", f"At equal mass removed ({equal['definition']}); difference: all-shared minus the other, negative "
             "where all-shared hurts more:", "",
             "| other set | at the mass of | mass removed | all-shared: gold log-prob change | the other's | "
             "difference (nats, paired 95%) | examples (beyond the curve) |", "|---" * 7 + "|"]
    for name, r in equal["sets"].items():
        where = "all-shared" if name == "ranked" else name
        if not r["n"]:
            lines.append(f"| {name} | {where} | | | | | 0 ({r['left_out']}) |")
            continue
        d, ci = r["difference"]["value"], r["difference"]["ci95"]
        interval = f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and ci[0] is not None else ""
        lines.append(f"| {name} | {where} | {r['mass']:.1f}% | {r['all_shared']:.3f} | {r['other']:.3f} | "
                     f"{d:.3f}{interval} | {r['n']} ({r['left_out']}) |")
    return lines
