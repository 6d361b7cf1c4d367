"""The paper's statistics, in NumPy, from the per-example counts of `sharing.example_statistics`.

Percentages are of the layer's neurons (0..100). Layers are indexed from 0. Every value is a plain
Python float / list / dict so the result can go straight to JSON.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxneurons.analysis.bootstrap import DEFAULT_RESAMPLES, interval, replicates, resample_counts
from jaxneurons.analysis.sharing import CATEGORIES

MAIN_THRESHOLD = 0.0  # the paper's tau; the headline statistics are taken at it
MAJORITY_WARNING = 0.8  # warn when one answer takes more than this share of a language's rows
UNINFORMATIVE = ("uninformative: accuracy is not above chance or one answer dominates in some language "
                 "(see accuracy_detail), so 'correct' does not tell understanding from luck")


def threshold_key(threshold: float) -> str:
    """Key of a threshold in `threshold_sweep`: short decimal, free of float32 noise (0.1, not 0.100000001)."""
    return f"{float(threshold):g}"


def _main_threshold_index(thresholds_k: np.ndarray) -> int:
    """Index of tau = 0 among the thresholds; the headline statistics need it."""
    hits = np.flatnonzero(np.isclose(thresholds_k, MAIN_THRESHOLD, rtol=0.0, atol=1e-12))
    if hits.size == 0:
        raise ValueError(f"threshold {MAIN_THRESHOLD} must be among the thresholds, got {thresholds_k.tolist()}")
    return int(hits[0])


def _per_category(values_lc: np.ndarray) -> dict[str, list[float]]:
    """{category: list over layers} from an [L, 4] array."""
    return {name: values_lc[:, c].astype(float).tolist() for c, name in enumerate(CATEGORIES)}


def _mean_percent(percent_blc: np.ndarray) -> dict[str, list[float]] | None:
    """Mean over examples, per category and layer; None for an empty group."""
    return _per_category(percent_blc.mean(axis=0)) if len(percent_blc) else None


def _check_shapes(counts_bklc, activated_bknl, thresholds_k, languages, correct_bn, overlap_kcl) -> None:
    """Raise ValueError early on inconsistent inputs instead of returning wrong numbers."""
    b, k, l, c = counts_bklc.shape
    if c != len(CATEGORIES) or b == 0:
        raise ValueError(f"category_counts must be [B>0, K, L, {len(CATEGORIES)}], got {counts_bklc.shape}")
    if thresholds_k.shape != (k,):
        raise ValueError(f"{k} thresholds in the counts, {thresholds_k.shape} given")
    expected = (b, k, len(languages), l)
    if activated_bknl.shape != expected:
        raise ValueError(f"activated must be {expected} (B, K, N, L), got {activated_bknl.shape}")
    if correct_bn is not None and np.shape(correct_bn) != (b, len(languages)):
        raise ValueError(f"correct must be {(b, len(languages))} (B, N), got {np.shape(correct_bn)}")
    if overlap_kcl is not None and np.shape(overlap_kcl) != (k, c, l):
        raise ValueError(f"overlap must be {(k, c, l)} (K, 4, L), got {np.shape(overlap_kcl)}")


def summarize(
    category_counts_bklc,
    activated_bknl,
    thresholds: Sequence[float],
    languages: Sequence[str],
    neurons_per_layer: int,
    correct_bn=None,
    overlap_kcl=None,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict:
    """All statistics of the sharing analysis as a JSON-ready dict (see the module docstring for units).

    Keys: per_layer / per_layer_min / per_layer_max (category -> [L], tau = 0, mean and min-max band over
    examples), threshold_sweep (threshold_key(tau) -> per_layer), activated_per_language (language -> [L]
    mean activated neurons, tau = 0), overlap (category -> [L] %, tau = 0, or None), by_correctness (only
    with correct_bn: all_correct = correct in every language of the example), mean_over_layers, thresholds,
    categories.
    """
    counts_bklc = np.asarray(category_counts_bklc)
    activated_bknl = np.asarray(activated_bknl)
    thresholds_k = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    _check_shapes(counts_bklc, activated_bknl, thresholds_k, languages, correct_bn, overlap_kcl)
    k0 = _main_threshold_index(thresholds_k)

    percent_bklc = 100.0 * counts_bklc.astype(np.float64) / neurons_per_layer
    percent_blc = percent_bklc[:, k0]
    per_layer = _per_category(percent_blc.mean(axis=0))
    summary = {
        "categories": list(CATEGORIES),
        "thresholds": thresholds_k.tolist(),
        "per_layer": per_layer,
        "per_layer_min": _per_category(percent_blc.min(axis=0)),
        "per_layer_max": _per_category(percent_blc.max(axis=0)),
        "threshold_sweep": {
            threshold_key(tau): _per_category(percent_bklc[:, k].mean(axis=0)) for k, tau in enumerate(thresholds_k)
        },
        "activated_per_language": {
            lang: activated_bknl[:, k0, n].astype(np.float64).mean(axis=0).tolist()
            for n, lang in enumerate(languages)
        },
        "overlap": None if overlap_kcl is None else _per_category(np.asarray(overlap_kcl, np.float64)[k0].T),
        "mean_over_layers": {name: float(np.mean(values)) for name, values in per_layer.items()},
        **share_intervals(percent_blc, bootstrap, seed),
    }
    if correct_bn is not None:
        summary["by_correctness"] = _by_correctness(percent_blc, np.asarray(correct_bn, dtype=bool))
    return summary


def _by_correctness(percent_blc: np.ndarray, correct_bn: np.ndarray) -> dict:
    """Mean per-layer categories for examples answered correctly in every language vs the rest."""
    all_correct_b = correct_bn.all(axis=1)
    return {
        "all_correct": {
            "num_examples": int(all_correct_b.sum()),
            "per_layer": _mean_percent(percent_blc[all_correct_b]),
        },
        "not_all_correct": {
            "num_examples": int((~all_correct_b).sum()),
            "per_layer": _mean_percent(percent_blc[~all_correct_b]),
        },
    }


def share_intervals(percent_blc: np.ndarray, bootstrap: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict:
    """per_layer_ci95 (category -> [L] of [lo, hi]) and mean_over_layers_ci95 (category -> [lo, hi]).

    The bootstrap resamples examples (an example's layers and languages stay together) and recomputes
    the mean over examples of each layer's share, and of its mean over layers. None for bootstrap=0.
    """
    if not bootstrap:
        return {"per_layer_ci95": None, "mean_over_layers_ci95": None}
    counts_rb = resample_counts(len(percent_blc), bootstrap, seed)
    lo_lc, hi_lc = interval(replicates(percent_blc, counts_rb))
    lo_c, hi_c = interval(replicates(percent_blc.mean(axis=1), counts_rb))
    return {
        "per_layer_ci95": {name: np.stack([lo_lc[:, c], hi_lc[:, c]], axis=-1).tolist()
                           for c, name in enumerate(CATEGORIES)},
        "mean_over_layers_ci95": {name: [float(lo_c[c]), float(hi_c[c])] for c, name in enumerate(CATEGORIES)},
    }


def predicted_options(option_logprobs_eno: np.ndarray) -> np.ndarray:
    """[E, N] int: the option with the highest score per row (first on ties, NaN = absent option); -1 if none."""
    scores = np.asarray(option_logprobs_eno, np.float64)
    if scores.shape[-1] == 0:
        return np.full(scores.shape[:2], -1, np.int64)
    filled = np.where(np.isnan(scores), -np.inf, scores)
    return np.where(np.isnan(scores).all(axis=-1), -1, np.argmax(filled, axis=-1))


def accuracy_detail(correct_en, predicted_en, num_options_en, languages: Sequence[str],
                    option_names: dict[str, Sequence[str]] | None = None, bootstrap: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> dict:
    """language -> what the accuracy means: value, ci95, chance, majority answer and rate, n, warning.

    correct_en [E, N] bool; predicted_en [E, N] the predicted option index (-1 for open answers);
    num_options_en [E, N] the number of options (0 for open answers: chance is then not defined, about 0).
    chance = mean over examples of 1 / number of options. majority_rate = share of rows whose predicted
    option is the language's most frequent prediction. warning (None when fine): the interval includes or
    lies below chance (the value does, without a bootstrap), or one answer takes > 80 % of the rows.
    """
    correct_en = np.asarray(correct_en, bool)
    predicted_en, num_options_en = np.asarray(predicted_en), np.asarray(num_options_en)
    counts_re = resample_counts(len(correct_en), bootstrap, seed) if bootstrap else None
    detail = {}
    for n, lang in enumerate(languages):
        value = float(correct_en[:, n].mean())
        ci = None
        if counts_re is not None:
            lo, hi = interval(replicates(correct_en[:, n].astype(np.float64), counts_re))
            ci = [float(lo), float(hi)]
        options = num_options_en[:, n]
        chance = float(np.mean(1.0 / options)) if np.all(options > 0) else None
        entry = {"value": value, "ci95": ci, "n": int(len(correct_en)), "chance": chance,
                 "majority_answer": None, "majority_rate": None}
        if chance is not None:
            answers, freq = np.unique(predicted_en[:, n], return_counts=True)
            top = int(answers[np.argmax(freq)])
            names = (option_names or {}).get(lang)
            entry.update(majority_answer=names[top] if names is not None and 0 <= top < len(names) else top,
                         majority_rate=float(freq.max() / len(correct_en)))
        entry["warning"] = _accuracy_warning(entry)
        detail[lang] = entry
    return detail


def _accuracy_warning(entry: dict) -> str | None:
    """A plain sentence when the accuracy is not above chance or one answer dominates; None otherwise."""
    problems = []
    chance, ci = entry["chance"], entry["ci95"]
    if chance is not None and (ci[0] if ci is not None else entry["value"]) <= chance:
        shown = f"{entry['value']:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci is not None else "")
        problems.append(f"accuracy {shown} is not above chance ({chance:.3f})")
    if entry["majority_rate"] is not None and entry["majority_rate"] > MAJORITY_WARNING:
        problems.append(f"one answer ({entry['majority_answer']!r}) takes {100 * entry['majority_rate']:.0f}% "
                        f"of the rows")
    return "; ".join(problems) if problems else None


def mark_uninformative(summary: dict, detail: dict) -> None:
    """When any language's accuracy carries a warning, mark by_correctness (correct vs incorrect) as such."""
    warned = {lang: d["warning"] for lang, d in detail.items() if d["warning"]}
    summary["accuracy_warnings"] = warned
    if "by_correctness" in summary:
        summary["by_correctness"]["informative"] = not warned
        if warned:
            summary["by_correctness"]["note"] = UNINFORMATIVE
