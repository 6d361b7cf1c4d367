"""The benchmark's PyTorch baselines compute what jaxneurons computes (tiny random Llama, float32)."""

import numpy as np
import pytest

from benchmarks import baselines, flops
from benchmarks.weights import build, without_eos

import jaxneurons as jn
from jaxneurons.lm import pad_rows


@pytest.fixture(scope="module")
def models():
    return build("tiny", "float32", "cpu")


def test_weights_are_the_same_on_both_sides(models):
    model, lm = models
    ids = np.random.default_rng(0).integers(3, 1000, (2, 12))
    import torch

    with torch.no_grad():
        theirs = model(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(lm.logits(ids)), theirs, atol=1e-4, rtol=1e-4)


def test_categorisation_baselines_agree(models):
    model, _ = models
    rng = np.random.default_rng(0)
    rows = [[rng.integers(3, 1000, int(rng.integers(5, 20))).tolist() for _ in range(3)] for _ in range(5)]
    paper = baselines.paper_loop(model, rows, "cpu")
    batched, batched_real = baselines.batched(model, rows, 2, "cpu")
    ordered, ordered_real = baselines.length_sorted(model, rows, 2, "cpu")
    np.testing.assert_array_equal(batched, paper)
    np.testing.assert_array_equal(ordered, paper)
    assert paper.sum(-1).max() == paper.sum(-1).min() == model.config.intermediate_size
    assert ordered_real >= batched_real


def test_ig_baselines_equal_jaxneurons(models):
    model, lm = models
    prompt, layers = np.random.default_rng(1).integers(3, 1000, 16).tolist(), [0, 2, 3]
    naive = baselines.naive_ig(model, prompt, 7, layers, 5, "cpu")
    replay = baselines.replay_ig(model, prompt, 7, layers, 5, "cpu")
    ours = jn.integrated_gradients(lm, np.array([prompt]), [7], steps=5, layers=layers,
                                   rule="left").attributions[0, layers]  # the baselines' alphas k/n
    scale = np.abs(naive).max()
    assert np.abs(replay - naive).max() <= 1e-5 * scale
    assert np.abs(ours - naive).max() <= 1e-5 * scale


def test_generation_baseline_equals_jaxneurons(models):
    model, lm = models
    lm = without_eos(lm)
    rng = np.random.default_rng(2)
    prompts = [rng.integers(3, 1000, n).tolist() for n in (9, 4, 14, 6)]
    neurons = {0: list(range(0, 176, 4)), 3: list(range(1, 176, 4))}
    theirs = baselines.generate_zeroed(model, prompts, neurons, 6, 2, "cpu")
    ids, mask = pad_rows(prompts, 0, "left")
    ours = lm.generate(ids, attention_mask=mask, max_new_tokens=6, intervention=jn.Intervention.zero(lm, neurons),
                       batch_size=2)
    np.testing.assert_array_equal(ours.token_ids, theirs)
    assert (ours.lengths == 6).all() and lm.config.eos_token_id is None
    assert not np.array_equal(theirs, baselines.generate_zeroed(model, prompts, {}, 6, 2, "cpu")), \
        "the zeroed neurons change nothing: the test would not see a hook that does not act"


def test_ig_flops_count_the_layers_replayed(models):
    _, lm = models
    counts = flops.replay_layer_counts(lm.config, [0, 3])
    assert counts["triangular"] == [4, 1]
    assert flops.replay_ig(lm.config, 16, 5, counts["triangular"]) < flops.replay_ig(lm.config, 16, 5, [4, 4])
    assert flops.naive_ig(lm.config, 16, 5, [0, 3]) > flops.replay_ig(lm.config, 16, 5, [4, 4])
