"""Percentile bootstrap over examples: the 95% interval of every headline number.

Examples are the unit of resampling (the languages of one example are not independent). A resample is a
vector of counts, how often each example was drawn (multinomial), so a statistic over R resamples is one
matrix product `[R, E] @ [E, D]` instead of R fancy-indexing copies. The same seed gives the same
resamples for every statistic of a run, so intervals of related numbers are drawn from the same replicates.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_RESAMPLES = 1000
LEVEL = 0.95


def resample_counts(num_examples: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """[R, E] float64: how many times each example appears in each bootstrap resample (rows sum to E)."""
    if num_examples < 1:
        raise ValueError(f"the bootstrap needs at least one example, got {num_examples}")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(num_examples, np.full(num_examples, 1.0 / num_examples), size=resamples).astype(np.float64)


def replicates(values, counts_re: np.ndarray, denominator=None) -> np.ndarray:
    """[R, ...]: the statistic on each resample.

    values [E, ...] per example. Without a denominator the statistic is the mean over examples, skipping
    NaN (an example where the quantity is undefined, e.g. an empty category); with one ([E, ...], same shape)
    it is the ratio of sums, sum(values) / sum(denominator), as for a pooled share.
    """
    values = np.asarray(values, np.float64)
    flat = values.reshape(len(values), -1)
    if denominator is None:
        present = ~np.isnan(flat)
        total = counts_re @ np.where(present, flat, 0.0)
        weight = counts_re @ present.astype(np.float64)
    else:
        total = counts_re @ np.nan_to_num(flat)
        weight = counts_re @ np.nan_to_num(np.asarray(denominator, np.float64).reshape(flat.shape))
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.where(weight != 0, total / np.where(weight != 0, weight, 1.0), np.nan)
    return stat.reshape((len(counts_re),) + values.shape[1:])


def interval(replicates_r: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) percentile interval over the resamples, per element; NaN where every replicate is NaN."""
    tail = (1.0 - level) / 2 * 100
    with np.errstate(invalid="ignore"):
        valid = ~np.all(np.isnan(replicates_r), axis=0)
        filled = np.where(valid, replicates_r, 0.0)
        lo, hi = np.nanpercentile(filled, [tail, 100 - tail], axis=0)
    return np.where(valid, lo, np.nan), np.where(valid, hi, np.nan)


def bootstrap_ci(values, denominator=None, resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
                 level: float = LEVEL, counts_re: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) 95% percentile interval of the mean over examples (or of the ratio of sums) of values [E, ...].

    Pass counts_re (from `resample_counts`) to share resamples between statistics; otherwise they are
    drawn from seed.
    """
    values = np.asarray(values, np.float64)
    if counts_re is None:
        counts_re = resample_counts(len(values), resamples, seed)
    elif counts_re.shape[1] != len(values):
        raise ValueError(f"counts_re is for {counts_re.shape[1]} examples, values have {len(values)}")
    return interval(replicates(values, counts_re, denominator), level)


def point_and_ci(values, denominator=None, scale: float = 1.0, **kwargs) -> dict:
    """{"value": v, "ci95": [lo, hi]} (JSON-ready, multiplied by scale, e.g. 100 for percent); lists for arrays."""
    values = np.asarray(values, np.float64)
    counts = np.ones((1, len(values)))
    point = replicates(values, counts, denominator)[0]
    lo, hi = bootstrap_ci(values, denominator, **kwargs)
    return {"value": _plain(point * scale), "ci95": [_plain(lo * scale), _plain(hi * scale)]}


def _plain(x):
    """float / nested list with None for NaN (JSON has no NaN)."""
    x = np.asarray(x, np.float64)
    if x.ndim == 0:
        return float(x) if np.isfinite(x) else None
    return [_plain(v) for v in x]


def estimate(values, denominator=None, counts=None, scale: float = 100.0) -> dict:
    """{"value", "ci95"} (x scale, percent by default) of the mean over examples of values [E, ...] (or the
    ratio of sums with a denominator), ci95 from the resamples `counts` [R, E]; None without them."""
    if counts is None:
        point = replicates(values, np.ones((1, len(values))), denominator)[0] * scale
        return {"value": point.tolist() if point.ndim else finite(point[None])[0], "ci95": None}
    return point_and_ci(values, denominator, scale=scale, counts_re=counts)


MIN_DISCORDANT = 10  # fewer examples that differ: the sign test cannot reach small p-values, say so
CRITERION = ("primary: the 95% paired bootstrap interval of the difference excludes 0; secondary: the exact sign "
             "test over the examples that differ (one-sided where the direction is fixed in advance)")


def paired_test(shared: dict, control: dict, counts) -> dict:
    """A condition against a control, per example (mean over languages) for the keys "correct" (percentage
    points) and "gold_logprob" (nats): control minus condition, each with a paired bootstrap interval (the
    primary criterion: `significant` when it excludes 0), and the exact sign test over the examples where they
    differ, two-sided and one-sided for "control higher" (the direction fixed in advance: the condition lowers
    the score more), with `few_discordant` when fewer than MIN_DISCORDANT examples differ."""
    out = {}
    for key, scale in (("correct", 100.0), ("gold_logprob", 1.0)):
        diff_e = (control[key] - shared[key]).mean(-1)
        higher, lower = int((diff_e > 0).sum()), int((diff_e < 0).sum())
        difference = estimate(diff_e, counts=counts, scale=scale)
        out[key] = {"difference": difference, "control_higher": higher, "control_lower": lower,
                    "sign_test_p": sign_test(higher, lower),
                    "sign_test_p_one_sided": sign_test(higher, lower, alternative="greater"),
                    "discordant": higher + lower, "few_discordant": higher + lower < MIN_DISCORDANT,
                    "significant": excludes_zero(difference)}
    return out


def excludes_zero(stat: dict) -> bool | None:
    """Whether an estimate's 95% interval lies wholly above or below 0 (None without an interval)."""
    ci = stat.get("ci95")
    if not ci or ci[0] is None or ci[1] is None:
        return None
    return bool(ci[0] > 0 or ci[1] < 0)


def sign_test(higher: int, lower: int, alternative: str = "two-sided") -> float:
    """Exact sign test over the nonzero differences (each +/- with p = 1/2 under the null): "two-sided",
    P(a split at least this uneven); "greater", P(at least `higher` positive differences)."""
    m = higher + lower
    if m == 0:
        return 1.0
    if alternative == "greater":
        return float(sum(math.comb(m, i) for i in range(higher, m + 1)) / 2.0 ** m)
    if alternative != "two-sided":
        raise ValueError(f"sign_test: alternative must be 'two-sided' or 'greater', got {alternative!r}")
    tail = sum(math.comb(m, i) for i in range(min(higher, lower) + 1)) / 2.0 ** m
    return float(min(1.0, 2.0 * tail))


def spread(values) -> dict:
    """min, max and sample sd (ddof 1; None for one value) of per-seed values, NaN/None left out."""
    v = np.array([np.nan if x is None else x for x in values], np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"min": None, "max": None, "sd": None, "seeds": 0}
    return {"min": float(v.min()), "max": float(v.max()), "sd": float(v.std(ddof=1)) if len(v) > 1 else None,
            "seeds": int(len(v))}


def finite(values) -> list:
    """floats, None where not finite (JSON has no NaN)."""
    return [float(v) if np.isfinite(v) else None for v in values]
