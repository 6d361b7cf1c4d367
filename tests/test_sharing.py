"""Sharing analysis against plain NumPy references written independently of the code under test."""

import json
import os

import numpy as np
import pytest

from jaxneurons.analysis import (
    CATEGORIES,
    INCONSISTENT,
    atomic_path,
    categorize,
    consistent_category_map,
    example_statistics,
    overlap_init,
    overlap_result,
    overlap_update,
    plot_all,
    summarize,
    write_json_atomic,
    write_report,
)

# ---------------------------------------------------------------- plain references


def ref_code(activations_n, tau):
    """Category code of one neuron from its activations in the N languages (loops, as in the paper)."""
    n = len(activations_n)
    shared = sum(1 for a in activations_n if a > tau)
    if shared == n:  # with n == 1 an activated neuron is all-shared
        return 0
    if shared >= 2:
        return 1
    if shared == 1:
        return 2
    return 3


def ref_codes_lf(acts_nlf, tau):
    _, num_layers, num_neurons = acts_nlf.shape
    out = np.zeros((num_layers, num_neurons), dtype=np.int64)
    for layer in range(num_layers):
        for j in range(num_neurons):
            out[layer, j] = ref_code(acts_nlf[:, layer, j], tau)
    return out


def ref_example_statistics(acts_bnlf, thresholds):
    b, n, num_layers, _ = acts_bnlf.shape
    counts = np.zeros((b, len(thresholds), num_layers, 4), dtype=np.int64)
    activated = np.zeros((b, len(thresholds), n, num_layers), dtype=np.int64)
    for i in range(b):
        for k, tau in enumerate(thresholds):
            codes = ref_codes_lf(acts_bnlf[i], tau)
            for layer in range(num_layers):
                for c in range(4):
                    counts[i, k, layer, c] = np.count_nonzero(codes[layer] == c)
                for p in range(n):
                    activated[i, k, p, layer] = np.count_nonzero(acts_bnlf[i, p, layer] > tau)
    return counts, activated


def ref_overlap_percent_kcl(acts_list, thresholds):
    """% of neurons per layer in the same category for every example of a list of [N, L, F] arrays."""
    _, num_layers, num_neurons = acts_list[0].shape
    out = np.zeros((len(thresholds), 4, num_layers))
    for k, tau in enumerate(thresholds):
        codes = np.stack([ref_codes_lf(a, tau) for a in acts_list])  # [E, L, F]
        for layer in range(num_layers):
            for j in range(num_neurons):
                column = codes[:, layer, j]
                if np.all(column == column[0]):
                    out[k, column[0], layer] += 100.0 / num_neurons
    return out


# ---------------------------------------------------------------- categories


def test_categorize_covers_every_category_and_ties_at_threshold():
    # 3 languages, 1 layer, 6 neurons: all, partial, specific, none, tie (0.0 not > 0), tie in one language.
    acts_nlf = np.array(
        [
            [[1.0, 1.0, 1.0, -1.0, 0.0, 0.0]],
            [[2.0, 0.5, -1.0, -2.0, 0.0, 3.0]],
            [[0.1, -0.5, 0.0, 0.0, 0.0, 3.0]],
        ],
        dtype=np.float32,
    )
    got = np.asarray(categorize(acts_nlf > 0.0))
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, [[0, 1, 2, 3, 3, 1]])
    np.testing.assert_array_equal(got, ref_codes_lf(acts_nlf, 0.0))


def test_value_equal_to_threshold_is_not_activated():
    acts_bnlf = np.full((1, 2, 1, 3), 0.25, dtype=np.float32)
    acts_bnlf[0, 0, 0, 1] = 0.2500001
    counts, activated = example_statistics(acts_bnlf, np.array([0.25], np.float32))
    np.testing.assert_array_equal(np.asarray(counts)[0, 0, 0], [0, 0, 1, 2])  # one specific, two none
    np.testing.assert_array_equal(np.asarray(activated)[0, 0, :, 0], [1, 0])


def test_one_language_activated_is_all_shared():
    acts_nlf = np.array([[[0.5, -0.5, 0.0]]], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(categorize(acts_nlf > 0.0)), [[0, 3, 3]])


def test_two_languages():
    acts_nlf = np.array([[[1.0, 1.0, -1.0, -1.0]], [[1.0, -1.0, 1.0, -1.0]]], dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(categorize(acts_nlf > 0.0)), [[0, 2, 2, 3]])


def test_many_languages_random_against_reference():
    rng = np.random.default_rng(1)
    acts_nlf = rng.normal(size=(9, 3, 40)).astype(np.float32)
    for tau in (0.0, 0.3, 1.0):
        np.testing.assert_array_equal(np.asarray(categorize(acts_nlf > tau)), ref_codes_lf(acts_nlf, tau))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_example_statistics_matches_reference(seed):
    rng = np.random.default_rng(seed)
    b, n, num_layers, f = rng.integers(1, 5), rng.integers(1, 6), rng.integers(1, 4), rng.integers(1, 13)
    acts = rng.normal(size=(b, n, num_layers, f)).astype(np.float32)
    acts[rng.random(acts.shape) < 0.2] = 0.1  # exact ties at one of the thresholds
    thresholds = np.array([0.0, 0.1, 0.5], dtype=np.float32)
    counts, activated = example_statistics(acts, thresholds)
    want_counts, want_activated = ref_example_statistics(acts, thresholds)
    assert counts.shape == (b, 3, num_layers, 4) and counts.dtype == np.int32
    assert activated.shape == (b, 3, n, num_layers) and activated.dtype == np.int32
    np.testing.assert_array_equal(np.asarray(counts), want_counts)
    np.testing.assert_array_equal(np.asarray(activated), want_activated)
    np.testing.assert_array_equal(np.asarray(counts).sum(-1), f)


# ---------------------------------------------------------------- overlap


def test_overlap_across_updates_ignores_padding():
    rng = np.random.default_rng(3)
    n, num_layers, f = 3, 2, 50
    thresholds = np.array([0.0, 0.4], dtype=np.float32)
    # Low variance around a per-neuron offset so that some neurons keep their category.
    offset = rng.normal(size=(n, num_layers, f)) * 2

    def batch(size):
        return (offset + 0.3 * rng.normal(size=(size, n, num_layers, f))).astype(np.float32)

    state = overlap_init(2, num_layers, f)
    valid_examples = []
    batches = [
        (batch(4), np.array([False, True, True, False])),  # padding first: the reference must not come from it
        (batch(3), np.array([False, False, False])),  # all padding: nothing changes
        (batch(2), np.array([True, True])),
    ]
    for acts, valid in batches:
        acts[~valid] = rng.normal(size=acts[~valid].shape) * 10  # padding rows hold garbage
        state = overlap_update(state, acts, thresholds, valid)
        valid_examples += list(acts[valid])

    assert int(state.seen) == 4
    want = ref_overlap_percent_kcl(valid_examples, thresholds)
    got = np.asarray(overlap_result(state))
    assert got.shape == (2, 4, num_layers)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert want[0].sum() > 0  # the data keep some neurons in one category, so the test can fail

    codes = np.asarray(consistent_category_map(state))
    ref0 = ref_codes_lf(valid_examples[0], 0.0)
    stable = np.all([ref_codes_lf(a, 0.0) == ref0 for a in valid_examples], axis=0)
    np.testing.assert_array_equal(codes[0], np.where(stable, ref0, INCONSISTENT))


def test_overlap_all_padding_state_unchanged_and_empty_result_zero():
    state = overlap_init(1, 2, 3)
    acts = np.ones((2, 2, 2, 3), np.float32)
    new = overlap_update(state, acts, np.array([0.0], np.float32), np.array([False, False]))
    for old_leaf, new_leaf in zip(state, new):
        np.testing.assert_array_equal(np.asarray(old_leaf), np.asarray(new_leaf))
    np.testing.assert_array_equal(np.asarray(overlap_result(new)), 0.0)


# ---------------------------------------------------------------- summary


def _random_counts(rng, b=5, thresholds=(0.0, 0.2), languages=("en", "de", "zh"), num_layers=4, f=20):
    acts = rng.normal(size=(b, len(languages), num_layers, f)).astype(np.float32)
    counts, activated = example_statistics(acts, np.array(thresholds, np.float32))
    return acts, np.asarray(counts), np.asarray(activated)


def test_summarize_matches_numpy():
    rng = np.random.default_rng(4)
    thresholds, languages, f = (0.2, 0.0), ("en", "de", "zh"), 20
    _, counts, activated = _random_counts(rng, thresholds=thresholds, languages=languages, f=f)
    correct = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=bool)
    overlap = rng.random((2, 4, 4)) * 10
    s = summarize(counts, activated, thresholds, languages, f, correct, overlap)
    k0 = 1  # where tau = 0 sits
    for c, name in enumerate(CATEGORIES):
        pct = counts[:, k0, :, c] * 100.0 / f
        np.testing.assert_allclose(s["per_layer"][name], pct.mean(0))
        np.testing.assert_allclose(s["per_layer_min"][name], pct.min(0))
        np.testing.assert_allclose(s["per_layer_max"][name], pct.max(0))
        np.testing.assert_allclose(s["threshold_sweep"]["0.2"][name], (counts[:, 0, :, c] * 100.0 / f).mean(0))
        np.testing.assert_allclose(s["overlap"][name], overlap[k0, c])
        np.testing.assert_allclose(s["mean_over_layers"][name], pct.mean())
        np.testing.assert_allclose(
            s["by_correctness"]["all_correct"]["per_layer"][name], pct[[0, 2]].mean(0)
        )
        np.testing.assert_allclose(
            s["by_correctness"]["not_all_correct"]["per_layer"][name], pct[[1, 3, 4]].mean(0)
        )
    for p, lang in enumerate(languages):
        np.testing.assert_allclose(s["activated_per_language"][lang], activated[:, k0, p].mean(0))
    assert s["by_correctness"]["all_correct"]["num_examples"] == 2
    assert s["by_correctness"]["not_all_correct"]["num_examples"] == 3
    json.dumps(s, allow_nan=False)  # JSON-ready as is


def test_summarize_requires_threshold_zero_and_omits_optional_parts():
    rng = np.random.default_rng(5)
    _, counts, activated = _random_counts(rng)
    with pytest.raises(ValueError, match="threshold 0.0"):
        summarize(counts, activated, (0.1, 0.2), ("en", "de", "zh"), 20)
    s = summarize(counts, activated, (0.0, 0.2), ("en", "de", "zh"), 20)
    assert s["overlap"] is None and "by_correctness" not in s
    with pytest.raises(ValueError, match="activated"):
        summarize(counts, activated, (0.0, 0.2), ("en", "de"), 20)


# ---------------------------------------------------------------- figures, report, files


def _full_summary(rng):
    thresholds = (0.0, 0.2)
    acts, counts, activated = _random_counts(rng, thresholds=thresholds)
    state = overlap_update(overlap_init(2, 4, 20), acts, np.array(thresholds, np.float32), np.ones(5, bool))
    correct = rng.random((5, 3)) > 0.3
    s = summarize(counts, activated, thresholds, ("en", "de", "zh"), 20, correct, overlap_result(state))
    s.update(
        model="tiny-bloom",
        task="xnli",
        languages=["en", "de", "zh"],
        num_examples=5,
        num_layers=4,
        neurons_per_layer=20,
        neuron_position="last",
        accuracy={"en": 0.8, "de": 0.6, "zh": 0.4},
    )
    return s


def test_figures_and_report_are_written(tmp_path):
    s = _full_summary(np.random.default_rng(6))
    figures = plot_all(s, tmp_path / "figures")
    assert set(figures) == {"categories_per_layer", "activated_per_language", "threshold_sweep", "overlap"}
    for path in figures.values():
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        assert os.path.getsize(path) > 1000
    report = write_report(tmp_path, s, figures, ["## Attribution\n\nSome attribution text."])
    text = open(report, encoding="utf-8").read()
    assert os.path.basename(report) == "report.md"
    assert "| layer | all_shared % | partial_shared % | specific % | non_activated %" in text
    assert "| language | accuracy |" in text and "| de | 0.600 |" in text
    assert "](figures/categories_per_layer.png)" in text
    assert "tiny-bloom" in text and "xnli" in text
    assert "## Reading" in text and "## Attribution" in text
    assert text.count("\n| ") >= 4 + 1  # one row per layer plus the mean row
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_write_json_atomic_round_trip_no_temp_files(tmp_path):
    path = tmp_path / "out" / "sharing.json"
    obj = {"a": np.arange(3), "b": np.float32(0.5), "c": [float("nan"), 1.0], "d": (1, 2)}
    write_json_atomic(path, obj)
    write_json_atomic(path, {"a": [1]})  # overwrite in place
    assert json.loads(path.read_text()) == {"a": [1]}
    write_json_atomic(path, obj)
    assert json.loads(path.read_text()) == {"a": [0, 1, 2], "b": 0.5, "c": [None, 1.0], "d": [1, 2]}
    assert os.listdir(path.parent) == ["sharing.json"]


def test_write_json_atomic_failure_keeps_old_file(tmp_path):
    path = tmp_path / "sharing.json"
    write_json_atomic(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"bad": object()})
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:  # crash halfway through a write
        with open(tmp, "w") as f:
            f.write('{"half": ')
        raise RuntimeError("crash")
    assert json.loads(path.read_text()) == {"ok": True}
    assert os.listdir(tmp_path) == ["sharing.json"]
