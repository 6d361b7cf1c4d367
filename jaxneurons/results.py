"""What an analysis returns: its numbers (what its JSON holds, and for sharing the per-example arrays), a tidy
table, the figures the CLI writes, the files, and a short HTML summary for a notebook.

>>> result = jn.sharing(lm, examples)   # a SharingResult; jn.attribution / jn.deactivation in the same shape
>>> result                              # in a notebook: what ran, n, headline numbers with intervals, warnings
>>> result.to_pandas()                  # layer, category, threshold, value (% of neurons), ci_low, ci_high
>>> result.plot()                       # the CLI's figure as a matplotlib Figure (result.plot("overlap"), ...)
>>> result.save("runs/nli")             # the files the CLI writes; jn.load_result("runs/nli") reads them back

pandas and matplotlib are imported when first used (`to_pandas`, `plot`), not with the package.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
from collections.abc import Callable, Mapping

import numpy as np

PASSES = ("sharing", "attribution", "deactivation", "steering", "templates")
INTERVENTIONS_FILE = "interventions.json"  # pipeline.interventions' name, here without importing the pass
ATTRIBUTION_FILE = "attribution.json"  # pipeline.attribution's
STEERING_FILE = "steering.json"  # pipeline.steering's
TEMPLATES_FILE = "templates.json"  # a template sweep's (analysis.templates)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class _Result:
    """A pass's summary (the dict its JSON holds); subclasses name their pass, figures and frames."""

    summary: dict

    PASS = ""
    FILE = ""

    @property
    def model(self) -> str | None:
        return self.summary.get("model")

    @property
    def task(self) -> str | None:
        return self.summary.get("task")

    @property
    def languages(self) -> list[str]:
        return list(self.summary["languages"])

    @property
    def num_examples(self) -> int:
        return int(self.summary["num_examples"])

    @property
    def figure_names(self) -> list[str]:
        """The names `plot` takes, the default first."""
        return list(self._figures())

    def plot(self, name: str | None = None):
        """The figure `name` (default: the first of `figure_names`) as a `matplotlib.figure.Figure`: the one the
        CLI writes to figures/."""
        figures = self._figures()
        name = next(iter(figures)) if name is None else name
        if name not in figures:
            raise ValueError(f"{type(self).__name__}.plot: no figure {name!r}; choose from {', '.join(figures)}")
        return figures[name](self.summary)

    def _figures(self) -> dict[str, Callable]:
        raise NotImplementedError

    def save(self, directory: str | os.PathLike) -> str:
        """Write the files the CLI writes for this pass into directory (JSON, figures/, its report section of
        report.md); returns directory. `load_result(directory)` reads them back."""
        raise NotImplementedError

    def _repr_html_(self) -> str:
        ran = ", ".join(f"{k} <b>{html.escape(str(v))}</b>" for k, v in self._facts().items() if v is not None)
        parts = [f"<div><b>{self.PASS.capitalize()}</b>: {ran}"]
        parts += [f"<br>{line}" for line in self._headline_html()]
        parts += [f"<br><span style='color:#b00'><b>Warning</b>: {html.escape(w)}</span>" for w in self.warnings()]
        return "".join(parts) + "</div>"

    def _facts(self) -> dict:
        return {"model": self.model, "task": self.task, "languages": ", ".join(self.languages),
                "n": self.num_examples}

    def _headline_html(self) -> list[str]:
        raise NotImplementedError

    def warnings(self) -> list[str]:
        """Plain sentences on what makes the numbers uninformative (empty when none)."""
        return []

    def __repr__(self) -> str:
        facts = ", ".join(f"{k}={v!r}" for k, v in self._facts().items())
        return f"{type(self).__name__}({facts})"


def _interval(stat: Mapping | None, unit: str = "%", digits: int = 1) -> str:
    """'12.3% [10.1, 14.2]' from {"value", "ci95"} (html-escaped)."""
    if stat is None or stat.get("value") is None:
        return "n/a"
    text = f"{stat['value']:.{digits}f}{unit}"
    ci = stat.get("ci95")
    if ci and ci[0] is not None:
        text += f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"
    return html.escape(text)


def _ci(stat: Mapping | None, index: int | None = None) -> tuple[float, float, float]:
    """(value, ci_low, ci_high) of an estimate (element index of a per-layer one); NaN where absent."""
    if stat is None:
        return np.nan, np.nan, np.nan
    pick = (lambda v: v) if index is None else (lambda v: v[index])
    ci = stat.get("ci95")
    value = pick(stat["value"])
    low, high = (pick(ci[0]), pick(ci[1])) if ci is not None else (None, None)
    return tuple(np.nan if v is None else float(v) for v in (value, low, high))


def _frame(rows: list[dict], columns: list[str]):
    import pandas as pd

    return pd.DataFrame(rows, columns=columns)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SharingResult(_Result):
    """The sharing pass: `summary` as in sharing.json; `arrays` as in examples.npz (category_counts [E, K, L, 4],
    activated [E, K, N, L], correct [E, N], predicted, gold_logprob, greedy_match, option_logprobs, ids,
    thresholds, languages), read-only."""

    arrays: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)

    PASS = "sharing"
    FILE = "sharing.json"

    def __post_init__(self):
        for value in self.arrays.values():
            value.flags.writeable = False

    @property
    def thresholds(self) -> list[float]:
        return [float(t) for t in self.summary["thresholds"]]

    @property
    def categories(self) -> list[str]:
        return list(self.summary["categories"])

    @property
    def per_layer(self) -> np.ndarray:
        """[L, 4] mean % of each layer's neurons per category (tau = 0; order of `categories`)."""
        return np.array([self.summary["per_layer"][c] for c in self.categories], np.float64).T

    @property
    def threshold_sweep(self) -> np.ndarray:
        """[K, L, 4] mean % of each layer's neurons per category at every threshold."""
        from jaxneurons.analysis.statistics import threshold_key

        sweep = self.summary["threshold_sweep"]
        return np.array([[sweep[threshold_key(t)][c] for c in self.categories] for t in self.thresholds],
                        np.float64).transpose(0, 2, 1)

    @property
    def accuracy(self) -> dict[str, float]:
        return dict(self.summary.get("accuracy") or {})

    def to_pandas(self):
        """One row per threshold, layer and category: value (mean % of the layer's neurons over examples) and
        its 95% bootstrap interval over examples (every threshold from the per-example counts; without them, or
        with bootstrap 0, sharing.json's tau = 0 interval, NaN elsewhere)."""
        values_klc, (low_klc, high_klc) = self.threshold_sweep, self._intervals()
        rows = [{"threshold": t, "layer": l, "category": c, "value": values_klc[k, l, i],
                 "ci_low": low_klc[k, l, i], "ci_high": high_klc[k, l, i]}
                for k, t in enumerate(self.thresholds) for l in range(values_klc.shape[1])
                for i, c in enumerate(self.categories)]
        return _frame(rows, ["threshold", "layer", "category", "value", "ci_low", "ci_high"])

    def _intervals(self) -> tuple[np.ndarray, np.ndarray]:
        """(low, high) [K, L, 4]: `statistics.share_intervals` at every threshold, the resamples of sharing.json."""
        from jaxneurons.analysis.statistics import MAIN_THRESHOLD, share_intervals

        shape = self.threshold_sweep.shape
        low, high = np.full(shape, np.nan), np.full(shape, np.nan)
        bootstrap = self.summary.get("bootstrap") or 0
        counts = self.arrays.get("category_counts")
        for k, tau in enumerate(self.thresholds):
            if counts is not None and bootstrap:
                percent_blc = 100.0 * counts[:, k].astype(np.float64) / self.summary["neurons_per_layer"]
                ci = share_intervals(percent_blc, bootstrap)["per_layer_ci95"]
            elif tau == MAIN_THRESHOLD:
                ci = self.summary.get("per_layer_ci95")
            else:
                ci = None
            if ci:
                lo_hi_cl2 = np.array([ci[c] for c in self.categories], np.float64)
                low[k], high[k] = lo_hi_cl2[..., 0].T, lo_hi_cl2[..., 1].T
        return low, high

    def controls_to_pandas(self, mean: bool = False):
        """The grouping controls (sharing.json "controls", tau = 0): one row per measure (a category, % of the
        layer's neurons, or "cosine", the mean cosine of the grouped rows), grouping (parallel, non_parallel,
        same_language, and the paired differences parallel_excess = parallel - non_parallel, same_language_excess
        = parallel - same_language) and layer, with value and its 95% interval over items; mean=True: one row per
        measure and grouping, the mean over layers (layer -1). Empty when the run has no controls."""
        controls = self.summary.get("controls") or {}
        rows = []
        if controls.get("categories"):
            series = {(c, g): stat for g, by_category in controls["categories"].items()
                      for c, stat in by_category.items()}
            series.update({("cosine", g): stat for g, stat in controls["cosine"].items()})
            for (measure, grouping), stat in series.items():
                layers = [-1] if mean else range(len(stat["per_layer"]["value"]))
                for layer in layers:
                    value, low, high = (_ci(stat["mean_over_layers"]) if mean else _ci(stat["per_layer"], layer))
                    rows.append({"measure": measure, "grouping": grouping, "layer": layer, "value": value,
                                 "ci_low": low, "ci_high": high, "n": controls["num_items"]})
        return _frame(rows, ["measure", "grouping", "layer", "value", "ci_low", "ci_high", "n"])

    def overlap_frequency_to_pandas(self):
        """Per layer (sharing.json "overlap_frequency", tau = 0): ever (% of the layer's neurons all-shared in at
        least one item) and, of those, the % all-shared in every item and in at least half the items, with 95%
        intervals over items."""
        freq = self.summary.get("overlap_frequency")
        rows = []
        for layer, ever in enumerate(freq["ever_per_layer"] if freq else []):
            row = {"layer": layer, "ever": ever, "n": freq["num_items"]}
            for name in ("every", "half"):
                row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = _ci(freq[name]["per_layer"], layer)
            rows.append(row)
        return _frame(rows, ["layer", "ever", "every", "every_ci_low", "every_ci_high", "half", "half_ci_low",
                             "half_ci_high", "n"])

    def accuracy_frame(self):
        """One row per language: accuracy, its 95% interval, n, chance (1 / options; NaN for open answers), the
        majority answer and its share of rows, and the warning of report.md's accuracy table (None when fine)."""
        from jaxneurons.analysis.report import accuracy_warnings

        warnings = accuracy_warnings(self.summary)
        detail = self.summary.get("accuracy_detail") or {
            lang: {"value": v, "ci95": None, "n": self.num_examples, "chance": None}
            for lang, v in self.accuracy.items()}
        rows = []
        for lang, d in detail.items():
            value, low, high = _ci(d)
            rows.append({"language": lang, "accuracy": value, "ci_low": low, "ci_high": high, "n": d.get("n"),
                         "chance": np.nan if d.get("chance") is None else d["chance"],
                         "majority_answer": d.get("majority_answer"), "majority_rate": d.get("majority_rate"),
                         "warning": warnings.get(lang)})
        return _frame(rows, ["language", "accuracy", "ci_low", "ci_high", "n", "chance", "majority_answer",
                             "majority_rate", "warning"])

    def _figures(self) -> dict[str, Callable]:
        from jaxneurons.analysis.figures import SHARING_FIGURES, sharing_figure_names

        return {name: SHARING_FIGURES[name] for name in sharing_figure_names(self.summary)}

    def save(self, directory: str | os.PathLike) -> str:
        from jaxneurons.pipeline.outputs import write_sharing_files

        summary = {k: v for k, v in self.summary.items() if k != "figures"}
        write_sharing_files(directory, summary, dict(self.arrays))
        return os.fspath(directory)

    def _facts(self) -> dict:
        return {**super()._facts(), "layers": self.summary.get("num_layers"),
                "neurons per layer": self.summary.get("neurons_per_layer")}

    def _headline_html(self) -> list[str]:
        means, ci = self.summary["mean_over_layers"], self.summary.get("mean_over_layers_ci95") or {}
        shares = ", ".join(f"{c.replace('_', '-')} {_interval({'value': means[c], 'ci95': ci.get(c)})}"
                           for c in self.categories)
        lines = [f"Neurons per category (mean over layers, tau = 0, 95% CI over examples): {shares}"]
        excess = self._parallel_excess()
        if excess is not None:
            non = self.summary["controls"]["categories"]["non_parallel"]["all_shared"]["mean_over_layers"]
            lines.append(f"All-shared in the non-parallel control: {_interval(non)}; parallel excess "
                         f"{_interval(excess, ' pp')}")
        detail = self.summary.get("accuracy_detail") or {}
        if detail:
            lines.append("Accuracy: " + ", ".join(
                f"{html.escape(lang)} {_interval(d, '', 2)}" + ("" if d.get("chance") is None
                                                                else f" (chance {d['chance']:.2f})")
                for lang, d in detail.items()))
        return lines

    def _parallel_excess(self) -> dict | None:
        """The all-shared parallel excess over layers ({"value", "ci95"}); None without controls."""
        categories = (self.summary.get("controls") or {}).get("categories")
        return categories["parallel_excess"]["all_shared"]["mean_over_layers"] if categories else None

    def warnings(self) -> list[str]:
        from jaxneurons.analysis.report import accuracy_warnings

        lines = [f"{lang}: {text}" for lang, text in accuracy_warnings(self.summary).items()]
        excess = self._parallel_excess()
        if excess is not None and excess.get("ci95") and excess["ci95"][0] is not None and excess["ci95"][0] <= 0:
            lines.append("all-shared: the parallel groups do not share more neurons than the non-parallel control "
                         f"(parallel excess {_interval(excess, ' pp')}); see controls_to_pandas()")
        return lines


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class AttributionResult(_Result):
    """The attribution pass: `summary` as in attribution.json."""

    PASS = "attribution"
    FILE = ATTRIBUTION_FILE

    @property
    def methods(self) -> list[str]:
        return list(self.summary["methods"])

    def to_pandas(self):
        """One row per language, method, layer and neuron set: value (% of the layer's top-k neurons, mean over
        examples) and its 95% bootstrap interval. The sets are the four categories and the |m|-drawn nulls
        ("null": among the neurons active in the row, "null_any": among all)."""
        from jaxneurons.analysis.sharing import CATEGORIES

        rows = []
        for lang in self.languages:
            for method in self.methods:
                entry = self.summary["per_language"][lang][method]
                series = {c: entry["top_k_share"][c]["per_layer"] for c in CATEGORIES}
                series.update({null: entry[null]["top_k_share"]["per_layer"] for null in ("null", "null_any")})
                for category, stat in series.items():
                    for layer in range(len(stat["value"])):
                        value, low, high = _ci(stat, layer)
                        rows.append({"language": lang, "method": method, "layer": layer, "category": category,
                                     "value": value, "ci_low": low, "ci_high": high})
        return _frame(rows, ["language", "method", "layer", "category", "value", "ci_low", "ci_high"])

    def _figures(self) -> dict[str, Callable]:
        from jaxneurons.analysis.attribution_report import ATTRIBUTION_FIGURES

        return {name: build for name, (build, _) in ATTRIBUTION_FIGURES.items()}

    def save(self, directory: str | os.PathLike) -> str:
        from jaxneurons.pipeline.attribution import write_attribution

        write_attribution(os.fspath(directory), self.summary)
        return os.fspath(directory)

    def _headline_html(self) -> list[str]:
        h = self.summary["headline"]
        share = _interval({"value": h["all_shared_neuron_pct"],
                           "ci95": (h.get("all_shared_neuron_pct_ci") or {}).get("ci95")})
        lines = [f"Headline ({html.escape(h['language'])}, top-{self.summary['top_k']} of "
                 f"{self.summary['neurons_per_layer']} neurons per layer; all-shared are {share} of the neurons"
                 + (f", {_interval(h['all_shared_active_pct'])} of those active" if h.get("all_shared_active_pct") else "")
                 + "):"]
        lines += [f"{html.escape(m)}: all-shared {_interval(h['all_shared_top_k_share'][m])} of the top neurons vs "
                  f"{_interval(h['null_top_k_share'][m])} for the |m|-drawn null" for m in self.methods]
        return lines

    def warnings(self) -> list[str]:
        from jaxneurons.analysis.attribution_report import _completeness_lines, _matching_warning

        lines = _matching_warning(self.summary) + _completeness_lines(self.summary)
        return [line.strip("*").removeprefix("Warning: ") for line in lines if line.startswith("**Warning")]


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class DeactivationResult(_Result):
    """The deactivation pass: `summary` as in interventions.json."""

    PASS = "deactivation"
    FILE = INTERVENTIONS_FILE

    @property
    def model(self) -> str | None:
        return self.summary["meta"].get("model")

    @property
    def task(self) -> str | None:
        return self.summary["meta"].get("task")

    @property
    def languages(self) -> list[str]:
        return list(self.summary["meta"].get("languages") or self.summary["clean"])

    @property
    def num_examples(self) -> int:
        return int(self.summary["meta"]["num_examples"])

    @property
    def sets(self) -> list[str]:
        return list(self.summary["sets"])

    def to_pandas(self):
        """One row per neuron set, language (and "mean" over languages) and statistic: "accuracy" (%) and
        "delta" (its paired change from clean, percentage points), each with its 95% bootstrap interval."""
        rows = []
        for name, entry in self.summary["sets"].items():
            for statistic in ("accuracy", "delta"):
                for lang in [*self.languages, "mean"]:
                    value, low, high = _ci(entry[statistic][lang])
                    rows.append({"set": name, "language": lang, "statistic": statistic, "value": value,
                                 "ci_low": low, "ci_high": high})
        return _frame(rows, ["set", "language", "statistic", "value", "ci_low", "ci_high"])

    def paired_tests_frame(self):
        """One row per control and measure ("correct": percentage points, "gold_logprob": nats): control minus
        all-shared-off, mean over languages, its 95% paired bootstrap interval and the exact sign test."""
        rows = []
        for control, tests in (self.summary.get("paired_tests") or {}).items():
            for measure, test in tests.items():
                value, low, high = _ci(test["difference"])
                rows.append({"control": control, "measure": measure, "difference": value, "ci_low": low,
                             "ci_high": high, "significant": test.get("significant"),
                             "control_higher": test["control_higher"], "control_lower": test["control_lower"],
                             "sign_test_p": test["sign_test_p"],
                             "sign_test_p_one_sided": test.get("sign_test_p_one_sided", np.nan)})
        return _frame(rows, ["control", "measure", "difference", "ci_low", "ci_high", "significant", "control_higher",
                             "control_lower", "sign_test_p", "sign_test_p_one_sided"])

    def dose_response_frame(self):
        """One row per dose kind (random, ranked, all_shared) and fraction of the all-shared count: the removed
        contribution mass (%), mean accuracy (%) and gold log-prob change (nats), each with its 95% interval
        (empty without dose_response)."""
        rows = []
        for kind, curve in ((self.summary.get("dose_response") or {}).get("curves") or {}).items():
            for i, fraction in enumerate(curve["fraction"]):
                row = {"kind": kind, "fraction": fraction, "neurons_per_layer": curve["neurons_per_layer"][i]}
                for key in ("removed_mass", "accuracy", "gold_logprob_change"):
                    row[key], row[f"{key}_low"], row[f"{key}_high"] = _ci(curve[key][i])
                rows.append(row)
        keys = [f"{k}{end}" for k in ("removed_mass", "accuracy", "gold_logprob_change")
                for end in ("", "_low", "_high")]
        return _frame(rows, ["kind", "fraction", "neurons_per_layer", *keys])

    def equal_mass_frame(self):
        """One row per set compared with all-shared at equal removed mass (`analysis.equal_mass`): the examples
        inside the dose curve and those left out, the mean mass (%), both gold log-prob changes (nats) and their
        paired difference (all-shared minus the other) with its 95% interval (empty without dose_response)."""
        rows = []
        for name, r in ((self.summary.get("at_equal_mass") or {}).get("sets") or {}).items():
            value, low, high = _ci(r.get("difference"))
            rows.append({"set": name, "examples": r["n"], "left_out": r["left_out"], "mass": r.get("mass", np.nan),
                         "all_shared": r.get("all_shared", np.nan), "other": r.get("other", np.nan),
                         "difference": value, "ci_low": low, "ci_high": high})
        return _frame(rows, ["set", "examples", "left_out", "mass", "all_shared", "other", "difference", "ci_low",
                             "ci_high"])

    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings", []))

    def _figures(self) -> dict[str, Callable]:
        from jaxneurons.analysis.deactivation_report import DEACTIVATION_FIGURES, available_figures

        return {name: DEACTIVATION_FIGURES[name][0] for name in available_figures(self.summary)}

    def save(self, directory: str | os.PathLike) -> str:
        from jaxneurons.pipeline.interventions import write_deactivation

        write_deactivation(os.fspath(directory), self.summary)
        return os.fspath(directory)

    def _headline_html(self) -> list[str]:
        lines = [f"Deactivated at the {html.escape(self.summary['meta']['deactivated_at'])}; mean accuracy over "
                 "languages (change from clean), 95% CI over examples:"]
        lines += [f"{html.escape(name)}: {_interval(s['accuracy']['mean'])} ({_interval(s['delta']['mean'], ' pp')})"
                  for name, s in self.summary["sets"].items()]
        return lines


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class SteeringResult(_Result):
    """The steering pass: `summary` as in steering.json; `generations` (one dict per prompt, condition and
    generated text, as in generations.jsonl) when the run returned them."""

    generations: list | None = None

    PASS = "steering"
    FILE = STEERING_FILE

    @property
    def model(self) -> str | None:
        return self.summary["meta"].get("model")

    @property
    def languages(self) -> list[str]:
        return list(self.summary["meta"]["prompt_languages"])

    @property
    def num_examples(self) -> int:
        return int(min(self.summary["meta"]["n_prompts"].values()))

    def to_pandas(self):
        """One row per prompt language, condition and output language ("off_target": identified and not the
        prompt's), the share of outputs in % with its 95% bootstrap interval over prompts."""
        rows = []
        for lang, conditions in self.summary["per_language"].items():
            for condition, entry in conditions.items():
                for output, stat in [("off_target", entry["off_target"]), *entry["shares"].items()]:
                    value, low, high = _ci(stat)
                    rows.append({"prompt_language": lang, "condition": condition, "output": output, "value": value,
                                 "ci_low": low, "ci_high": high})
        return _frame(rows, ["prompt_language", "condition", "output", "value", "ci_low", "ci_high"])

    def generations_frame(self):
        """The generations (prompt language, condition, prompt, text, identified language and confidence)."""
        if self.generations is None:
            raise ValueError("this SteeringResult has no generations: read generations.jsonl of its run folder")
        import pandas as pd

        return pd.DataFrame(self.generations)

    def _figures(self) -> dict[str, Callable]:
        from jaxneurons.analysis.steering_report import steering_figure

        return {"steering": steering_figure}

    def save(self, directory: str | os.PathLike) -> str:
        from jaxneurons.analysis.steering_report import write_steering

        write_steering(os.fspath(directory), self.summary, self.generations or [])
        return os.fspath(directory)

    def _facts(self) -> dict:
        return {"model": self.model, "languages": ", ".join(self.languages), "n": self.num_examples}

    def _headline_html(self) -> list[str]:
        lines = ["Off-target outputs (identified, not the prompt's language), 95% CI over prompts:"]
        for lang, conditions in self.summary["per_language"].items():
            shown = [f"{html.escape(c)} {_interval(e['off_target'])}" for c, e in conditions.items() if ":s" not in c]
            lines.append(f"{html.escape(lang)} prompts: " + "; ".join(shown))
        return lines


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class TemplateResult(_Result):
    """A template sweep (`jn.template_spread`, or analyze.py with several --prompt_format): `summary` as in
    templates.json, each template's headline and the spread over templates per formulation
    (`jaxneurons.analysis.templates`)."""

    PASS = "templates"
    FILE = TEMPLATES_FILE

    def to_pandas(self):
        """One row per template and measure (all_shared: % of neurons, mean over layers, tau = 0; parallel_excess:
        points), value with its 95% interval over items, n and the template's formulation."""
        rows = []
        for name, t in self.summary["templates"].items():
            for measure in ("all_shared", "parallel_excess"):
                value, low, high = _ci(t[measure])
                rows.append({"template": name, "formulation": t["formulation"], "measure": measure, "value": value,
                             "ci_low": low, "ci_high": high, "n": t["num_examples"]})
        return _frame(rows, ["template", "formulation", "measure", "value", "ci_low", "ci_high", "n"])

    def spread_to_pandas(self):
        """One row per formulation and measure: k templates, their mean, sd, range, the 95% t interval over
        templates and the mean half-width of the item intervals."""
        rows = []
        for group, g in self.summary["formulations"].items():
            for measure in ("all_shared", "parallel_excess"):
                s = g[measure] or {}
                ci = s.get("ci95_between") or (np.nan, np.nan)
                rows.append({"formulation": group, "measure": measure, "k": s.get("k"), "mean": s.get("mean"),
                             "sd": s.get("sd"), "range": s.get("range"), "ci_low": ci[0], "ci_high": ci[1],
                             "item_half_width": s.get("item_half_width")})
        return _frame(rows, ["formulation", "measure", "k", "mean", "sd", "range", "ci_low", "ci_high",
                             "item_half_width"])

    def _figures(self) -> dict[str, Callable]:
        from jaxneurons.analysis.templates import templates_figure

        return {"templates": templates_figure}

    def save(self, directory: str | os.PathLike) -> str:
        from jaxneurons.analysis.templates import write_templates

        write_templates(os.fspath(directory), self.summary)
        return os.fspath(directory)

    def _headline_html(self) -> list[str]:
        lines = []
        for group, g in self.summary["formulations"].items():
            s = g["all_shared"]
            if s and s["sd"] is not None:
                lo, hi = s["ci95_between"]
                lines.append(f"{html.escape(group)}: all-shared {s['mean']:.1f}% over {s['k']} templates, sd "
                             f"{s['sd']:.2f}, 95% over templates [{lo:.1f}, {hi:.1f}] (item interval "
                             f"+-{s['item_half_width']:.2f})")
        return lines


RESULTS = {"sharing": SharingResult, "attribution": AttributionResult, "deactivation": DeactivationResult,
           "steering": SteeringResult, "templates": TemplateResult}


def load_result(directory: str | os.PathLike, pass_name: str | None = None) -> _Result:
    """The result a pass (or `save`) wrote into directory: "sharing" (sharing.json + examples.npz),
    "attribution" (attribution.json) or "deactivation" (interventions.json); pass_name None: the one present
    (a folder holding several needs pass_name)."""
    from jaxneurons.pipeline.outputs import EXAMPLES_FILE, SCHEMA_VERSION

    directory = os.fspath(directory)
    present = [name for name, cls in RESULTS.items() if os.path.exists(os.path.join(directory, cls.FILE))]
    if pass_name is None:
        if len(present) != 1:
            files = ", ".join(c.FILE for c in RESULTS.values())
            found = f"holds {', '.join(present)}" if present else f"holds none of {files}"
            raise FileNotFoundError(f"load_result: {directory} {found}; pass pass_name= one of {', '.join(PASSES)}")
        pass_name = present[0]
    if pass_name not in RESULTS:
        raise ValueError(f"load_result: pass_name {pass_name!r} is not one of {', '.join(PASSES)}")
    cls = RESULTS[pass_name]
    path = os.path.join(directory, cls.FILE)
    if pass_name not in present:
        raise FileNotFoundError(f"load_result: no {path}; run the {pass_name} pass with output_dir={directory!r}")
    with open(path, encoding="utf-8") as f:
        summary = json.load(f)
    if summary.get("schema_version", 0) > SCHEMA_VERSION:
        raise ValueError(f"load_result: {path} has schema_version {summary['schema_version']}, newer than this "
                         f"jaxneurons reads ({SCHEMA_VERSION}): upgrade jaxneurons")
    if cls is not SharingResult:
        return cls(summary)
    npz = os.path.join(directory, EXAMPLES_FILE)
    if not os.path.exists(npz):
        raise FileNotFoundError(f"load_result: no {npz} beside {path}; a sharing result needs both files")
    with np.load(npz, allow_pickle=False) as data:
        return SharingResult(summary, {k: data[k] for k in data.files})
