"""Matched neuron sets, the sign test, IG completeness and the summaries' intervals, against plain NumPy."""

import numpy as np
import pytest
from scipy import stats

from jaxneurons.analysis import ALL_SHARED, PARTIAL_SHARED, SPECIFIC
from jaxneurons.attribution.matched import (count_matched, magnitude_matched, mass_matched, match_ratios,
                                            off_by_more, top_magnitude)
from jaxneurons.pipeline.attribution import ig_completeness, matched_nulls, null_sets
from jaxneurons.analysis.bootstrap import paired_test, sign_test
from jaxneurons.pipeline.interventions import off_mask


def _population(seed=0, rows=40, width=400):
    """|m| [rows, F]; a strongly activated target (~10%) and an active pool (~50%) whose wider |m| spread
    covers the target's range."""
    rng = np.random.default_rng(seed)
    abs_m = rng.lognormal(0.0, 1.5, (rows, width))
    target = rng.random((rows, width)) < 0.1
    abs_m[target] = rng.lognormal(1.0, 0.6, target.sum())
    pool = ~target & (rng.random((rows, width)) < 0.5)
    return abs_m, target, pool


def test_magnitude_matched_has_the_targets_count_and_magnitude():
    abs_m, target, pool = _population()
    null = magnitude_matched(abs_m, target, pool, np.random.default_rng(1))
    np.testing.assert_array_equal(null.sum(-1), target.sum(-1))
    assert not (null & ~pool).any() and not (null & target).any()
    assert abs(abs_m[null].mean() / abs_m[target].mean() - 1) < 0.1
    for q in (0.25, 0.5, 0.75):  # the distribution, not only the mean
        assert abs(np.quantile(abs_m[null], q) / np.quantile(abs_m[target], q) - 1) < 0.15
    assert stats.ks_2samp(abs_m[null], abs_m[target]).statistic < 0.05
    uniform = count_matched(target.sum(-1), pool, np.random.default_rng(1))  # the unmatched draw is far off
    assert stats.ks_2samp(abs_m[uniform], abs_m[target]).statistic > 0.2


def _previous_draw(abs_m, target, pool, rng, bins=50):
    """The draw before issue 26, one row at a time: closed bins of the target's sorted |m|, a bin's shortfall passed
    down as extra quota drawn uniformly within the lower bins (what the lowest cannot take goes back up)."""
    out = np.zeros(abs_m.shape, bool)
    for x in range(len(abs_m)):
        t = np.sort(abs_m[x][target[x]])
        w = -(-len(t) // bins)
        starts = t[::w]
        cand = np.flatnonzero(pool[x] & ~target[x] & (abs_m[x] >= t[0]) & (abs_m[x] <= t[-1]))
        g_of = np.maximum(np.searchsorted(starts, abs_m[x][cand], side="left") - 1, 0)
        quota = [min(w, len(t) - g * w) for g in range(len(starts))]
        avail = [rng.permutation(cand[g_of == g]) for g in range(len(starts))]
        take, carry = np.zeros(len(starts), int), 0
        for g in range(len(starts) - 1, -1, -1):
            take[g] = min(quota[g] + carry, len(avail[g]))
            carry = quota[g] + carry - take[g]
        for g in range(len(starts)):
            extra = min(carry, len(avail[g]) - take[g])
            take[g], carry = take[g] + extra, carry - extra
        for g in range(len(starts)):
            out[x, avail[g][:take[g]]] = True
    return out


def _thin_top(seed=0, rows=30):
    """Per row 100 targets (90 in [1, 2], 10 strong ones in [5, 10]); a pool dense below 3, with only 10 neurons
    in [4, 10]: the top bins fall short, and the lower bin they pass down to is dense with weak neurons."""
    rng = np.random.default_rng(seed)
    targets = np.concatenate([rng.uniform(1, 2, (rows, 90)), rng.uniform(5, 10, (rows, 10))], 1)
    pool = np.concatenate([rng.uniform(0, 2, (rows, 800)), rng.uniform(2, 3, (rows, 300)),
                           rng.uniform(4, 5, (rows, 5)), rng.uniform(5, 10, (rows, 5))], 1)
    abs_m = np.concatenate([targets, pool], 1)
    perm = np.argsort(rng.random(abs_m.shape), -1)  # each row in its own order
    target = np.take_along_axis(np.arange(abs_m.shape[1])[None] < 100, perm, -1)
    return np.take_along_axis(abs_m, perm, -1), target, ~target


def test_magnitude_matched_fills_a_short_top_bin_with_the_nearest_neurons():
    abs_m, target, pool = _thin_top()
    before = match_ratios(abs_m, _previous_draw(abs_m, target, pool, np.random.default_rng(1)), target)
    null = magnitude_matched(abs_m, target, pool, np.random.default_rng(1))
    after = match_ratios(abs_m, null, target)
    assert off_by_more(before["mean_abs_m_ratio"]) and off_by_more(before["mass_ratio"])  # 0.86: the top under-filled
    assert not off_by_more(after["mean_abs_m_ratio"]) and not off_by_more(after["mass_ratio"])
    np.testing.assert_array_equal(null.sum(-1), target.sum(-1))
    assert not (null & ~pool).any() and not (null & target).any()
    assert (null & (abs_m >= 4)).sum(-1).min() >= 9  # the strong pool neurons serve the strong targets
    np.testing.assert_array_equal(null, magnitude_matched(abs_m, target, pool, np.random.default_rng(1)))


def test_magnitude_matched_with_no_pool_in_range_is_the_greedy_nearest_match():
    rng = np.random.default_rng(5)
    abs_m = np.concatenate([rng.uniform(5, 9, (6, 8)), rng.uniform(0, 4, (6, 30)), rng.uniform(9.5, 12, (6, 4))], 1)
    target = np.arange(42)[None].repeat(6, 0) < 8
    null = magnitude_matched(abs_m, target, ~target, np.random.default_rng(0))
    for x in range(6):  # every target unserved in its bin: largest first, the free neuron nearest in |m|
        free, expected = set(range(8, 42)), set()
        for value in sorted(abs_m[x, :8], reverse=True):
            pick = min(sorted(free), key=lambda f: abs(abs_m[x, f] - value))
            expected.add(pick)
            free.remove(pick)
        assert set(np.flatnonzero(null[x])) == expected
    small = magnitude_matched(abs_m[:, :12], target[:, :12], ~target[:, :12], np.random.default_rng(0))
    np.testing.assert_array_equal(small, ~target[:, :12])  # a pool smaller than the target: taken whole


def test_top_magnitude_and_mass_matched_against_plain_numpy():
    rng = np.random.default_rng(0)
    value = rng.lognormal(0, 1, (7, 90))
    pool = rng.random((7, 90)) < 0.6
    count = rng.integers(0, 30, 7)
    top = top_magnitude(value, count, pool)
    for x in range(7):
        ranked = sorted(np.flatnonzero(pool[x]), key=lambda f: -value[x, f])[:count[x]]
        assert set(np.flatnonzero(top[x])) == set(ranked)
    target = rng.uniform(20, 60, 7)
    target[0] = 1e6  # more than the whole pool holds
    drawn = mass_matched(value, target, pool, np.random.default_rng(1))
    assert not (drawn & ~pool).any()
    assert drawn[0].sum() == pool[0].sum()
    got = (value * drawn).sum(-1)[1:]
    assert (np.abs(got - target[1:]) <= value.max(-1)[1:] / 2 + 1e-12).all()  # within half a neuron
    assert np.abs(got / target[1:] - 1).max() < 0.1
    assert not np.array_equal(drawn, mass_matched(value, target, pool, np.random.default_rng(2)))


def test_match_ratios_is_the_plain_ratio():
    rng = np.random.default_rng(3)
    abs_m, contribution = rng.random((4, 50)), rng.random((4, 50))
    a, b = rng.random((4, 50)) < 0.3, rng.random((4, 50)) < 0.2
    got = match_ratios(abs_m, a, b, contribution)
    assert got["count_ratio"] == pytest.approx(a.sum() / b.sum())
    assert got["mean_abs_m_ratio"] == pytest.approx(abs_m[a].mean() / abs_m[b].mean())
    assert got["mass_ratio"] == pytest.approx(contribution[a].sum() / contribution[b].sum())
    assert match_ratios(abs_m, a, np.zeros_like(b))["mass_ratio"] is None


def test_count_matched_draws_within_the_pool():
    rng = np.random.default_rng(0)
    pool = rng.random((5, 7, 50)) < 0.3
    count = rng.integers(0, 20, (5, 7))
    drawn = count_matched(count, pool, np.random.default_rng(1))
    np.testing.assert_array_equal(drawn.sum(-1), np.minimum(count, pool.sum(-1)))
    assert not (drawn & ~pool).any()


def _codes_and_m(seed=0, b=3, n=4, layers=2, width=600):
    rng = np.random.default_rng(seed)
    codes = rng.choice(4, (b, layers, width), p=[0.1, 0.4, 0.3, 0.2])
    abs_m = rng.lognormal(0.0, 1.5, (b, n, layers, width))
    shared = np.broadcast_to((codes == ALL_SHARED)[:, None], abs_m.shape)
    abs_m[shared] = rng.lognormal(1.0, 0.6, shared.sum())
    return codes, abs_m


@pytest.mark.parametrize("run", ["partial_shared_count/0", "specific_count/1", "random/0", "magnitude/2"])
def test_deactivation_sets_are_count_matched_to_all_shared(run):
    codes, abs_m = _codes_and_m()
    off = off_mask(run, codes, abs_m, batch_index=5)
    shared = codes == ALL_SHARED
    np.testing.assert_array_equal(off.sum(-1), shared.sum(-1))  # per example and layer
    if run.startswith("partial"):
        assert (codes[off] == PARTIAL_SHARED).all()
    if run.startswith("specific"):
        assert (codes[off] == SPECIFIC).all()
    if run.startswith("magnitude"):
        assert np.isin(codes[off], [PARTIAL_SHARED, SPECIFIC]).all()
        mean_m = abs_m.mean(1)
        assert abs(mean_m[off].mean() / mean_m[shared].mean() - 1) < 0.1
    np.testing.assert_array_equal(off, off_mask(run, codes, abs_m, batch_index=5))  # seeded: resume redraws it


def test_new_controls_and_dose_sets_against_plain_numpy():
    codes, abs_m = _codes_and_m()
    contribution = abs_m * np.random.default_rng(7).uniform(0.5, 2.0, abs_m.shape[-1])
    shared, count = codes == ALL_SHARED, (codes == ALL_SHARED).sum(-1)
    mean_m = abs_m.mean(1)
    top = off_mask("top_magnitude", codes, abs_m, 0, contribution)
    ranked = off_mask("ranked@0.5", codes, abs_m, 0, contribution)
    for b, layer in np.ndindex(count.shape):
        order = np.argsort(-np.where(shared[b, layer], -np.inf, mean_m[b, layer]), kind="stable")
        assert set(np.flatnonzero(top[b, layer])) == set(order[:count[b, layer]])
        half = int(np.round(0.5 * count[b, layer]))
        assert set(np.flatnonzero(ranked[b, layer])) == set(np.argsort(-mean_m[b, layer], kind="stable")[:half])
    mass = off_mask("mass/0", codes, abs_m, 3, contribution)
    per_layer = contribution.mean(1)
    assert not (mass & shared).any()
    got, want = (per_layer * mass).sum(-1), (per_layer * shared).sum(-1)
    assert np.abs(got / want - 1).max() < 0.05  # many small neurons: within a few percent per example and layer
    for name, pool in (("random", np.ones_like(shared)), ("all_shared", shared)):
        half, whole = off_mask(f"{name}@0.5/1", codes, abs_m, 2), off_mask(f"{name}@1/1", codes, abs_m, 2)
        np.testing.assert_array_equal(half.sum(-1), np.round(0.5 * count))
        assert not (half & ~whole).any() and not (half & ~pool).any()  # nested across sizes, within its pool
    np.testing.assert_array_equal(off_mask("random@1/1", codes, abs_m, 2), off_mask("random/1", codes, abs_m, 2))
    double = off_mask("random@2/0", codes, abs_m, 0)
    np.testing.assert_array_equal(double.sum(-1), np.minimum(2 * count, codes.shape[-1]))


def _curve_value(points, mass):
    """Plain Python: the curve through (0, 0) and points [(mass, change)] at mass, linear on the segment holding
    it; None beyond the largest mass."""
    xs, zs = zip(*sorted([(0.0, 0.0)] + list(points)))
    if mass > xs[-1]:
        return None
    for x0, x1, z0, z1 in zip(xs, xs[1:], zs, zs[1:]):
        if x0 <= mass <= x1:
            return z0 if x1 == x0 else z0 + (mass - x0) / (x1 - x0) * (z1 - z0)
    return zs[0]  # mass at or below 0


def test_at_equal_mass_against_a_plain_loop():
    """The pass's equal-mass comparison from per-example group values: each control read against the all-shared
    dose curve at its own mass, 'ranked' against all-shared's mass, examples beyond the curve left out."""
    from jaxneurons.analysis.bootstrap import point_and_ci
    from jaxneurons.pipeline.interventions import at_equal_mass

    rng = np.random.default_rng(3)
    e, n, fractions = 30, 3, (0.5, 1, 2)
    clean = rng.normal(-5, 1, (e, n))
    groups = {"clean": {"mass": np.zeros((e, n)), "gold_logprob": clean}}
    scale = {"all_shared@0.5": 0.1, "all_shared": 0.2, "random": 0.05, "random@0.5": 0.03, "random@2": 0.1,
             "ranked@0.5": 0.12, "ranked@1": 0.22, "ranked@2": 0.3, "magnitude": 0.18, "mass": 0.25}
    for g, m in scale.items():  # per-example masses around the scale; the effect grows with the mass
        mass = m * rng.uniform(0.7, 1.3, (e, n))
        groups[g] = {"mass": mass, "gold_logprob": clean - 20 * mass * rng.uniform(0.5, 1.5, (e, n))}
    got = at_equal_mass(groups, fractions, resamples=200)["sets"]
    assert set(got) == {"random", "magnitude", "mass", "ranked"}

    def item(g, i):
        return 100 * groups[g]["mass"][i].mean(), (groups[g]["gold_logprob"][i] - clean[i]).mean()

    for name in got:
        diffs, masses = [], []
        for i in range(e):
            if name == "ranked":
                mass, shared = item("all_shared", i)
                other = _curve_value([item(g, i) for g in ("ranked@0.5", "ranked@1", "ranked@2")], mass)
                if other is None:
                    continue
            else:
                mass, other = item(name, i)
                shared = _curve_value([item(g, i) for g in ("all_shared@0.5", "all_shared")], mass)
                if shared is None:
                    continue
            diffs.append(shared - other)
            masses.append(mass)
        assert got[name]["n"] == len(diffs) and got[name]["n"] + got[name]["left_out"] == e
        if diffs:
            assert got[name]["difference"]["value"] == pytest.approx(np.mean(diffs), abs=1e-9)
            assert got[name]["mass"] == pytest.approx(np.mean(masses))
            want = point_and_ci(np.array(diffs), resamples=200)
            assert got[name]["difference"]["ci95"] == pytest.approx(want["ci95"])
    assert 0 < got["mass"]["left_out"] < e and got["random"]["left_out"] == 0  # both cases occur


def test_condition_names_with_seed_lists_and_doses():
    from jaxneurons.pipeline.interventions import InterventionsConfig, condition_names

    names = condition_names(["all_shared", "magnitude", "top_magnitude"], (4, 9), (0.5, 1, 2))
    assert names[:3] == ["clean", "all_shared", "top_magnitude"]
    assert {"magnitude/4", "magnitude/9", "random/4", "random/9", "random@0.5/4", "random@2/9", "ranked@1",
            "ranked@2", "all_shared@0.5/9"} <= set(names)
    assert not any(n.startswith("all_shared@2") or n.startswith("all_shared@1") for n in names)
    assert len(names) == len(set(names))
    assert InterventionsConfig(seeds=[0, 1, 2]).seeds == 3  # the same identity as seeds=3
    assert InterventionsConfig(seeds="4,7".split(",")).seeds == (4, 7)
    for bad in ([], [1, 1], [-1], 0, ["x"]):
        with pytest.raises(ValueError, match="seeds"):
            InterventionsConfig(seeds=bad)
    with pytest.raises(ValueError, match="dose_fractions"):
        InterventionsConfig(dose_fractions=(0.5, 0))


def test_full_category_runs_take_the_whole_category():
    codes, abs_m = _codes_and_m()
    np.testing.assert_array_equal(off_mask("specific", codes, abs_m, 0), codes == SPECIFIC)
    assert not off_mask("clean", codes, abs_m, 0).any()


def test_attribution_null_is_active_in_its_language_and_matches_all_shared():
    codes, abs_m = _codes_and_m(seed=1)
    rng = np.random.default_rng(2)
    act = np.where(rng.random(abs_m.shape) < 0.6, 1.0, -1.0)
    act[np.broadcast_to((codes == ALL_SHARED)[:, None], act.shape)] = 1.0
    m = abs_m * rng.choice([-1, 1], abs_m.shape)
    nulls = matched_nulls(act, m, codes, seeds=2, batch_index=0)  # [S, B, N, L, F]
    shared = np.broadcast_to((codes == ALL_SHARED)[:, None], act.shape)
    assert not (nulls & ~(act > 0)).any() and not (nulls & shared).any()
    np.testing.assert_array_equal(nulls.sum(-1), np.broadcast_to(shared.sum(-1), nulls.shape[:-1]))
    assert abs(abs_m[nulls[0]].mean() / abs_m[shared].mean() - 1) < 0.1
    assert not np.array_equal(nulls[0], nulls[1])
    anywhere = matched_nulls(act, m, codes, seeds=1, batch_index=0, active_only=False)[0]
    assert not (anywhere & shared).any() and (anywhere & (act <= 0)).any()  # inactive neurons may be drawn
    np.testing.assert_array_equal(anywhere.sum(-1), shared.sum(-1))


def test_attribution_top_and_mass_nulls_against_plain_numpy():
    codes, abs_m = _codes_and_m(seed=4, width=200)
    rng = np.random.default_rng(1)
    act = np.where(rng.random(abs_m.shape) < 0.6, 1.0, -1.0)
    nulls = null_sets(act, abs_m * rng.choice([-1, 1], abs_m.shape), codes, seeds=(3, 5), batch_index=1)
    shared = np.broadcast_to((codes == ALL_SHARED)[:, None], abs_m.shape)
    for index in np.ndindex(abs_m.shape[:-1]):
        order = np.argsort(-np.where(shared[index], -np.inf, abs_m[index]), kind="stable")
        assert set(np.flatnonzero(nulls["null_top"][(0,) + index])) == set(order[:shared[index].sum()])
    got, want = (abs_m * nulls["null_mass"]).sum(-1), (abs_m * shared).sum(-1)  # [S, B, N, L]
    assert (np.abs(got - want) <= np.where(shared, 0, abs_m).max(-1) / 2 + 1e-9).all()  # within half a neuron
    assert abs(np.median(got / want) - 1) < 0.02 and not (nulls["null_mass"] & shared).any()
    assert not np.array_equal(nulls["null_mass"][0], nulls["null_mass"][1])  # the seeds 3 and 5 differ


@pytest.mark.parametrize("higher,lower", [(0, 0), (3, 0), (7, 2), (5, 5), (1, 12), (4, 0)])
def test_sign_test_is_the_exact_binomial_test(higher, lower):
    expected = 1.0 if higher + lower == 0 else stats.binomtest(higher, higher + lower, 0.5).pvalue
    assert sign_test(higher, lower) == pytest.approx(expected, rel=1e-9)
    greater = 1.0 if higher + lower == 0 else stats.binomtest(higher, higher + lower, 0.5, "greater").pvalue
    assert sign_test(higher, lower, alternative="greater") == pytest.approx(greater, rel=1e-9)
    # by hand: P(X >= higher), X ~ Binomial(higher + lower, 1/2)
    m = higher + lower
    assert sign_test(higher, lower, "greater") == pytest.approx(sum(stats.binom.pmf(range(higher, m + 1), m, 0.5))
                                                                if m else 1.0)


def test_paired_test_against_a_plain_computation():
    rng = np.random.default_rng(0)
    shared = {"correct": rng.integers(0, 2, (30, 3)).astype(float), "gold_logprob": rng.normal(-3, 1, (30, 3))}
    control = {"correct": rng.integers(0, 2, (30, 3)).astype(float), "gold_logprob": rng.normal(-2.5, 1, (30, 3))}
    from jaxneurons.analysis.bootstrap import resample_counts

    counts = resample_counts(30, 500, seed=0)
    got = paired_test(shared, control, counts)
    for key, scale in (("correct", 100.0), ("gold_logprob", 1.0)):
        diff = (control[key] - shared[key]).mean(-1)
        entry = got[key]
        assert entry["difference"]["value"] == pytest.approx(diff.mean() * scale)
        assert (entry["control_higher"], entry["control_lower"]) == ((diff > 0).sum(), (diff < 0).sum())
        boot = np.array([(diff * c).sum() / c.sum() for c in counts]) * scale  # paired: one resample, both arms
        np.testing.assert_allclose(entry["difference"]["ci95"], np.percentile(boot, [2.5, 97.5]), rtol=1e-9)
        lo, hi = entry["difference"]["ci95"]
        assert lo <= entry["difference"]["value"] <= hi
        assert entry["significant"] == (lo > 0 or hi < 0)  # the primary criterion
        higher, lower = (diff > 0).sum(), (diff < 0).sum()
        assert entry["sign_test_p_one_sided"] == pytest.approx(stats.binomtest(higher, higher + lower, 0.5,
                                                                               "greater").pvalue)
        assert entry["discordant"] == higher + lower and entry["few_discordant"] == (higher + lower < 10)
    few = paired_test({k: v[:6] for k, v in shared.items()}, {k: v[:6] for k, v in control.items()},
                      resample_counts(6, 50, seed=0))
    assert few["correct"]["few_discordant"]


def test_ig_completeness_against_a_plain_computation():
    rng = np.random.default_rng(0)
    change = rng.normal(0.1, 0.05, (6, 2, 3))
    total = change * np.array([1.0, 1.02, 3.0])  # layer 2 sums to three times the change
    got = ig_completeness({"ig/sum_e": total, "ig/change_e": change})
    gap = (total - change).reshape(-1, 3)
    expected = np.abs(gap.sum(0)) / np.abs(change.reshape(-1, 3)).sum(0)
    np.testing.assert_allclose(got["error_per_layer"], expected)
    np.testing.assert_allclose(got["median_row_relative_error"],
                               np.median(np.abs(gap) / np.abs(change.reshape(-1, 3)), 0))
    assert not got["satisfied"] and got["max_error"] == pytest.approx(2.0)
    assert ig_completeness({"ig/sum_e": change, "ig/change_e": change})["satisfied"]
