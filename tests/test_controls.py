"""Grouping controls and the all-shared frequency against plain NumPy recomputations of their definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxneurons.analysis.bootstrap import interval, resample_counts
from jaxneurons.analysis.controls import GROUPINGS, control_readout, control_summary, window_groups
from jaxneurons.analysis.frequency import all_shared_bits, frequency_summary
from tests.test_pipeline import ref_counts

# ---------------------------------------------------------------- plain references


def ref_groups(grouping, items_dgn, num_languages):
    """[(items [N], languages [N])] of every group of a grouping, from the window groups."""
    if grouping == "parallel":
        return [([e] * num_languages, list(range(num_languages))) for e in range(items_dgn.shape[1])]
    out = []
    for groups in items_dgn:
        for items in groups:
            if grouping == "non_parallel":
                out.append((list(items), list(range(num_languages))))
            else:
                out += [(list(items), [m] * num_languages) for m in range(num_languages)]
    return out


def ref_grouping(acts_enlf, grouping, items_dgn):
    """Per item: (% per category [E, L, 4] by the paper's rule at tau = 0, mean pair cosine [E, L]), each the mean
    over every (group, slot) the item fills."""
    e, n, num_layers, f = acts_enlf.shape
    percent, cosine, count = np.zeros((e, num_layers, 4)), np.zeros((e, num_layers)), np.zeros(e)
    for items, langs in ref_groups(grouping, items_dgn, n):
        rows = np.stack([acts_enlf[i, m] for i, m in zip(items, langs)]).astype(np.float64)  # [N, L, F]
        counts, _ = ref_counts(rows, [0.0])
        unit = rows / np.linalg.norm(rows, axis=-1, keepdims=True)
        pairs = [np.sum(unit[a] * unit[b], axis=-1) for a in range(n) for b in range(n) if a != b]
        for i in items:
            percent[i] += 100.0 * counts[0] / f
            cosine[i] += np.mean(pairs, axis=0)
            count[i] += 1
    return percent / count[:, None, None], cosine / count[:, None]


def readout(acts_enlf):
    out = control_readout(jnp.asarray(acts_enlf))
    return np.asarray(out["active_bits"]), np.asarray(out["unit"])


# ---------------------------------------------------------------- groupings


def test_window_groups_are_derangements_of_distinct_items_and_seeded():
    groups = window_groups(7, 3, draws=4, seed=1)
    assert groups.shape == (4, 7, 3)
    for draw in groups:
        for n in range(3):  # every item fills every slot once a draw
            assert sorted(draw[:, n]) == list(range(7))
        assert all(len(set(g)) == 3 for g in draw)  # a group's items are distinct ...
        for n in range(1, 3):  # ... so each slot's map from slot 0's item has no fixed point
            assert np.all(draw[:, n] != draw[:, 0])
    np.testing.assert_array_equal(groups, window_groups(7, 3, draws=4, seed=1))
    assert not np.array_equal(groups, window_groups(7, 3, draws=4, seed=2))
    with pytest.raises(ValueError, match="at least 3 items"):
        window_groups(2, 3, 1, 0)


def test_controls_match_numpy_on_regrouped_activations():
    rng = np.random.default_rng(0)
    acts = rng.normal(0.3, 1.0, (6, 3, 2, 20)).astype(np.float32)  # E, N, L, F
    acts[:, :, 1] += rng.normal(0, 2.0, (6, 1, 20))  # a shared pattern per item in layer 1: cosine differs
    bits, unit = readout(acts)
    summary = control_summary(bits, unit, draws=3, seed=5, bootstrap=0)
    items_dgn = window_groups(6, 3, 3, 5)
    expected = {g: ref_grouping(acts, g, items_dgn) for g in GROUPINGS}
    for g, (percent, cosine) in expected.items():
        for c, name in enumerate(("all_shared", "partial_shared", "specific", "non_activated")):
            got = summary["categories"][g][name]
            np.testing.assert_allclose(got["per_layer"]["value"], percent[..., c].mean(0), err_msg=f"{g} {name}")
            assert got["mean_over_layers"]["value"] == pytest.approx(percent[..., c].mean())
        np.testing.assert_allclose(summary["cosine"][g]["per_layer"]["value"], cosine.mean(0), atol=2e-3)
    excess = np.asarray(summary["categories"]["parallel_excess"]["all_shared"]["per_layer"]["value"])
    np.testing.assert_allclose(excess, (expected["parallel"][0] - expected["non_parallel"][0])[..., 0].mean(0),
                               atol=1e-9)
    assert summary["cosine"]["parallel_excess"]["mean_over_layers"]["value"] > 0.1  # layer 1's shared pattern


def test_control_intervals_are_paired_over_items_and_reproducible():
    rng = np.random.default_rng(1)
    acts = rng.normal(0.2, 1.0, (8, 3, 2, 16)).astype(np.float32)
    bits, unit = readout(acts)
    first = control_summary(bits, unit, draws=2, seed=3, bootstrap=200)
    assert first == control_summary(bits, unit, draws=2, seed=3, bootstrap=200)
    assert first["categories"]["non_parallel"] != control_summary(bits, unit, draws=2, seed=4, bootstrap=200
                                                                  )["categories"]["non_parallel"]
    # paired: the interval of the excess comes from per-item differences on the run's resamples
    items_dgn = window_groups(8, 3, 2, 3)
    diff_e = (ref_grouping(acts, "parallel", items_dgn)[0] - ref_grouping(acts, "non_parallel", items_dgn)[0]
              )[..., 0].mean(-1)
    counts = resample_counts(8, 200)
    lo, hi = interval(counts @ diff_e / 8)
    assert first["categories"]["parallel_excess"]["all_shared"]["mean_over_layers"]["ci95"] == \
        pytest.approx([float(lo), float(hi)])
    assert control_summary(bits[:2], unit[:2])["categories"] is None  # fewer items than languages: a note


# ---------------------------------------------------------------- frequency across items


def ref_frequency(flags_elf):
    """Per layer: % of the ever-all-shared neurons all-shared in every item / in at least half of them."""
    frequency_lf = flags_elf.mean(axis=0)
    ever = frequency_lf > 0
    return {name: np.array([100.0 * np.sum(frequency_lf[l][ever[l]] >= share) / ever[l].sum() if ever[l].any()
                            else np.nan for l in range(flags_elf.shape[1])])
            for name, share in (("every", 1.0), ("half", 0.5))}


def test_frequency_matches_numpy_with_item_jackknife():
    rng = np.random.default_rng(2)
    flags = rng.random((9, 3, 40)) < np.linspace(0.05, 0.95, 40)  # E, L, F: neurons from rare to frequent
    flags[:, :, :5] = True
    packed = np.packbits(flags, axis=-1)
    got = frequency_summary(packed, 40)
    point = ref_frequency(flags)
    for name in ("every", "half"):
        np.testing.assert_allclose(got[name]["per_layer"]["value"], point[name])
        loo = np.stack([ref_frequency(np.delete(flags, i, axis=0))[name] for i in range(9)])  # [E, L]
        for values, value, ci in ((loo, point[name], got[name]["per_layer"]["ci95"]),
                                  (loo.mean(1), point[name].mean(), got[name]["mean_over_layers"]["ci95"])):
            se = np.sqrt(8 / 9 * np.sum((values - values.mean(0)) ** 2, axis=0))
            np.testing.assert_allclose(ci, [value - 1.959964 * se, value + 1.959964 * se], rtol=1e-6)
    assert frequency_summary(packed, 40, intervals=False)["every"]["per_layer"]["ci95"] is None
    np.testing.assert_allclose(got["ever_per_layer"], 100.0 * flags.any(0).mean(-1))
    frequency = flags.mean(0)
    np.testing.assert_allclose(got["histogram"]["per_layer"][0], 100.0 * np.histogram(
        frequency[0][frequency[0] > 0], bins=np.linspace(0, 1, 11))[0] / (frequency[0] > 0).sum())
    acts = rng.normal(size=(4, 3, 2, 16))
    np.testing.assert_array_equal(np.unpackbits(all_shared_bits(readout(acts)[0]), axis=-1, count=16),
                                  (acts > 0).all(axis=1))
