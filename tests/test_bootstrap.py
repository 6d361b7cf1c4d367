"""The bootstrap intervals: they cover the value, shrink with more examples, agree with a plain resampling
loop and with the normal approximation of a proportion."""

import numpy as np
import pytest

from jaxneurons.analysis.bootstrap import bootstrap_ci, point_and_ci, replicates, resample_counts


def test_counts_are_resamples_with_replacement():
    counts = resample_counts(7, resamples=50, seed=3)
    assert counts.shape == (50, 7)
    assert np.all(counts.sum(1) == 7) and np.all(counts >= 0)
    assert np.array_equal(counts, resample_counts(7, resamples=50, seed=3))


def test_replicates_equal_a_plain_resampling_loop():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(30, 4, 2))
    den = rng.uniform(1, 2, size=(30, 4, 2))
    counts = resample_counts(30, resamples=20, seed=1)
    plain_mean, plain_ratio = [], []
    for row in counts:
        drawn = np.repeat(np.arange(30), row.astype(int))  # the resample as a list of example indices
        plain_mean.append(values[drawn].mean(0))
        plain_ratio.append(values[drawn].sum(0) / den[drawn].sum(0))
    np.testing.assert_allclose(replicates(values, counts), plain_mean, rtol=1e-12)
    np.testing.assert_allclose(replicates(values, counts, den), plain_ratio, rtol=1e-12)


def test_nan_examples_are_skipped_per_element():
    values = np.array([[1.0, np.nan], [3.0, 2.0], [np.nan, np.nan]])
    point = replicates(values, np.ones((1, 3)))[0]
    np.testing.assert_allclose(point, [2.0, 2.0])
    lo, hi = bootstrap_ci(np.full((5, 1), np.nan))
    assert np.isnan(lo).all() and np.isnan(hi).all()


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_interval_of_a_proportion_matches_the_normal_approximation(p):
    n = 400
    rng = np.random.default_rng(1)
    correct = (rng.uniform(size=n) < p).astype(float)
    result = point_and_ci(correct, scale=100, resamples=2000, seed=0)
    mean = correct.mean()
    half = 1.96 * np.sqrt(mean * (1 - mean) / n) * 100
    lo, hi = result["ci95"]
    assert lo < result["value"] < hi
    assert result["value"] == pytest.approx(mean * 100)
    assert (hi - lo) == pytest.approx(2 * half, rel=0.15)


def test_interval_covers_the_value_and_shrinks_with_more_examples():
    rng = np.random.default_rng(2)
    widths = []
    for n in (25, 100, 400):
        values = rng.normal(loc=3.0, size=(n, 3))
        lo, hi = bootstrap_ci(values, seed=0)
        mean = values.mean(0)
        assert np.all(lo <= mean) and np.all(mean <= hi)
        widths.append(float(np.mean(hi - lo)))
    assert widths[0] > 1.6 * widths[1] and widths[1] > 1.6 * widths[2]  # ~2x per 4x examples


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="at least one example"):
        resample_counts(0)
    with pytest.raises(ValueError, match="counts_re is for 3 examples"):
        bootstrap_ci(np.zeros(4), counts_re=resample_counts(3, 5))
