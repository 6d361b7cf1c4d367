"""The sharing pipeline against plain NumPy recomputations, on a tiny random model (and SmolLM2 when installed)."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxneurons.lm import pad_rows
from jaxneurons.pipeline import (
    EXAMPLES_FILE,
    SHARING_FILE,
    STATE_FILE,
    PipelineInputError,
    ResumeMismatchError,
    SharingConfig,
    bucket_length,
    plan_batches,
    run_sharing_analysis,
    tokenize_examples,
)
from jaxneurons.tasks import get_task
from tests.fixtures import FIXED_LENGTH, LANGS, direct_acts, split_config, tiny_lm

THRESHOLDS = (0.0, 0.1, 0.5)
NUM_EXAMPLES = 5

# ---------------------------------------------------------------- a tiny model and tokenizer


@pytest.fixture(scope="module")
def lm():
    return tiny_lm()


@pytest.fixture(scope="module")
def nli():
    task = get_task("builtin_nli")  # the paper's prompt: these tests read the neurons at the prompt's end
    return task, task.load(LANGS, num_examples=NUM_EXAMPLES, prompt_format="paper").examples


def run(lm, task, examples, out, **kwargs):
    kwargs = {"batch_size": 2, "thresholds": THRESHOLDS, "progress": False, "figures": False, **kwargs}
    config, rest = split_config(SharingConfig, kwargs)
    sharing = run_sharing_analysis(lm, task, examples, LANGS, out, config, **rest)
    with np.load(os.path.join(out, EXAMPLES_FILE)) as data:
        return sharing, {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def last_run(lm, nli, tmp_path_factory):
    task, examples = nli
    out = str(tmp_path_factory.mktemp("last"))
    return (out, *run(lm, task, examples, out))


# ---------------------------------------------------------------- plain references


def ref_counts(acts_nlf: np.ndarray, thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Category counts [K, L, 4] and activated per language [K, N, L] of one example, by the paper's rule."""
    n = acts_nlf.shape[0]
    counts, activated = [], []
    for tau in thresholds:
        active_nlf = acts_nlf > tau
        shared_lf = active_nlf.sum(axis=0)
        code_lf = np.where(shared_lf == n, 0, np.where(shared_lf >= 2, 1, np.where(shared_lf == 1, 2, 3)))
        counts.append([[np.sum(code_lf[l] == c) for c in range(4)] for l in range(code_lf.shape[0])])
        activated.append(active_nlf.sum(axis=-1))
    return np.array(counts), np.array(activated)


def direct_logprob(lm, prompt: str, continuation: str) -> tuple[float, bool]:
    """Summed log-prob of the continuation after the prompt, and whether each of its tokens is the argmax."""
    prompt_ids = lm.tokenizer(prompt)["input_ids"]
    cont_ids = lm.tokenizer(continuation, add_special_tokens=False)["input_ids"]
    ids = prompt_ids + cont_ids
    logits = np.asarray(lm.logits(*pad_rows([ids], lm.pad_id, length=FIXED_LENGTH)))[0, :len(ids)]
    logprobs = jax.nn.log_softmax(jnp.asarray(logits[len(prompt_ids) - 1:-1]), axis=-1)
    picked = [float(logprobs[j, t]) for j, t in enumerate(cont_ids)]
    return sum(picked), all(int(np.argmax(logits[len(prompt_ids) - 1 + j])) == t for j, t in enumerate(cont_ids))


# ---------------------------------------------------------------- statistics


def test_counts_match_numpy_over_direct_neurons(lm, nli, last_run):
    task, examples = nli
    _, _, npz = last_run
    for e, example in enumerate(examples):
        counts, activated = ref_counts(direct_acts(lm, example, LANGS), THRESHOLDS)
        np.testing.assert_array_equal(npz["category_counts"][e], counts, err_msg=example.id)
        np.testing.assert_array_equal(npz["activated"][e], activated, err_msg=example.id)


def test_any_token_is_max_over_prompt_tokens(lm, nli, last_run, tmp_path):
    task, examples = nli
    _, npz = run(lm, task, examples, str(tmp_path), neuron_position="any_token")
    for e, example in enumerate(examples[:3]):
        acts = direct_acts(lm, example, LANGS, at="max")
        counts, activated = ref_counts(acts, THRESHOLDS)
        np.testing.assert_array_equal(npz["category_counts"][e], counts)
        np.testing.assert_array_equal(npz["activated"][e], activated)
    # the activations at any token include the last one: at least as many neurons activated
    assert np.all(npz["activated"] >= last_run[2]["activated"])
    # the answers are scored the same way whichever neurons are recorded
    np.testing.assert_allclose(npz["option_logprobs"], last_run[2]["option_logprobs"], rtol=1e-5, atol=1e-5)


def test_sharing_json_matches_numpy_over_examples_npz(last_run, lm):
    out, sharing, npz = last_run
    with open(os.path.join(out, SHARING_FILE)) as f:
        on_disk = json.load(f)
    assert on_disk["per_layer"].keys() == sharing["per_layer"].keys()
    for name, values in sharing["per_layer"].items():  # pytest >= 9.2 refuses approx of nested dicts
        assert on_disk["per_layer"][name] == pytest.approx(values), name
    percent_ekl4 = 100.0 * npz["category_counts"] / lm.config.intermediate_size
    for c, name in enumerate(on_disk["categories"]):
        np.testing.assert_allclose(on_disk["per_layer"][name], percent_ekl4[:, 0, :, c].mean(axis=0))
        np.testing.assert_allclose(on_disk["per_layer_min"][name], percent_ekl4[:, 0, :, c].min(axis=0))
        for k, tau in enumerate(THRESHOLDS):
            np.testing.assert_allclose(on_disk["threshold_sweep"][f"{tau:g}"][name], percent_ekl4[:, k, :, c].mean(0))
    for n, lang in enumerate(LANGS):
        np.testing.assert_allclose(on_disk["activated_per_language"][lang], npz["activated"][:, 0, n].mean(axis=0))
    np.testing.assert_allclose(npz["category_counts"].sum(-1), lm.config.intermediate_size)
    assert on_disk["num_examples"] == NUM_EXAMPLES and on_disk["languages"] == LANGS
    assert on_disk["num_layers"] == lm.config.num_layers
    assert list(npz["ids"]) == [f"builtin_nli-{ex}" for ex in _builtin_ids()[:NUM_EXAMPLES]]


def _builtin_ids():
    return [ex.id.removeprefix("builtin_nli-") for ex in get_task("builtin_nli").load(["en"]).examples]


def test_overlap_matches_numpy_over_direct_neurons(lm, nli, last_run):
    task, examples = nli
    _, sharing, _ = last_run
    codes = []
    for example in examples:
        acts_nlf = direct_acts(lm, example, LANGS)
        shared_lf = (acts_nlf > 0).sum(axis=0)
        n = len(LANGS)
        codes.append(np.where(shared_lf == n, 0, np.where(shared_lf >= 2, 1, np.where(shared_lf == 1, 2, 3))))
    codes = np.stack(codes)
    same_lf = np.all(codes == codes[0], axis=0)
    for c, name in enumerate(sharing["categories"]):
        expected_l = 100.0 * np.mean(same_lf & (codes[0] == c), axis=-1)
        np.testing.assert_allclose(sharing["overlap"][name], expected_l, atol=1e-4)


def test_controls_match_numpy_over_direct_neurons(lm, nli, last_run):
    from jaxneurons.analysis.controls import window_groups
    from tests.test_controls import ref_grouping

    task, examples = nli
    _, sharing, _ = last_run
    acts_enlf = np.stack([direct_acts(lm, example, LANGS) for example in examples])
    controls = sharing["controls"]
    assert (controls["num_items"], controls["draws"], controls["group_size"]) == (NUM_EXAMPLES, 5, len(LANGS))
    items_dgn = window_groups(NUM_EXAMPLES, len(LANGS), controls["draws"], controls["seed"])
    for grouping in ("parallel", "non_parallel", "same_language"):
        percent, cosine = ref_grouping(acts_enlf, grouping, items_dgn)
        got = controls["categories"][grouping]["all_shared"]["per_layer"]["value"]
        np.testing.assert_allclose(got, percent[..., 0].mean(0), atol=1e-9, err_msg=grouping)
        np.testing.assert_allclose(controls["cosine"][grouping]["per_layer"]["value"], cosine.mean(0), atol=2e-3)
    assert controls["categories"]["parallel"]["all_shared"]["per_layer"]["value"] == \
        pytest.approx(sharing["per_layer"]["all_shared"])
    every_lf = (acts_enlf > 0).all(axis=1).all(axis=0)
    ever_lf = (acts_enlf > 0).all(axis=1).any(axis=0)
    np.testing.assert_allclose(sharing["overlap_frequency"]["every"]["per_layer"]["value"],
                               100.0 * every_lf.sum(-1) / ever_lf.sum(-1))


# ---------------------------------------------------------------- scoring


def test_option_scores_match_direct_logprobs(lm, nli, last_run):
    task, examples = nli
    _, sharing, npz = last_run
    for e in (0, 3):
        example = examples[e]
        for n, lang in enumerate(LANGS):
            direct = [direct_logprob(lm, example.prompts[lang], option)[0] for option in example.options[lang]]
            np.testing.assert_allclose(npz["option_logprobs"][e, n, :3], direct, rtol=1e-4, atol=1e-4)
            assert npz["gold_logprob"][e, n] == pytest.approx(direct[example.gold[lang]], abs=1e-4)
            assert npz["correct"][e, n] == (int(np.argmax(direct)) == example.gold[lang])
    for n, lang in enumerate(LANGS):
        assert sharing["accuracy"][lang] == pytest.approx(npz["correct"][:, n].mean())


def test_greedy_task_scores_match_direct_computation(lm, tmp_path):
    task = get_task("builtin_facts")
    examples = task.load(LANGS, num_examples=3).examples
    _, npz = run(lm, task, examples, str(tmp_path))
    for e, example in enumerate(examples):
        for n, lang in enumerate(LANGS):
            logprob, greedy = direct_logprob(lm, example.prompts[lang], example.answers[lang])
            assert npz["gold_logprob"][e, n] == pytest.approx(logprob, abs=1e-4)
            assert npz["greedy_match"][e, n] == greedy == npz["correct"][e, n]


# ---------------------------------------------------------------- invariances and resume


def test_packing_padding_side_and_batch_size_do_not_change_results(lm, nli, last_run, tmp_path):
    task, examples = nli
    _, sharing, npz = last_run
    # the fixture's run packs its rows into bins; this one pads each row, on the left, with other batches
    other_sharing, other = run(lm, task, examples, str(tmp_path), batch_size=3, padding_side="left", pack=False)
    for key in ("category_counts", "activated", "correct", "greedy_match", "ids"):
        np.testing.assert_array_equal(other[key], npz[key], err_msg=key)
    np.testing.assert_allclose(other["option_logprobs"], npz["option_logprobs"], rtol=1e-5, atol=1e-5)
    for key in ("overlap", "overlap_frequency"):
        assert other_sharing[key] == sharing[key], key
    controls, other_controls = sharing["controls"], other_sharing["controls"]  # regrouped over the whole run
    assert other_controls["categories"] == controls["categories"]
    for grouping, stat in controls["cosine"].items():  # float16 vectors of activations equal to float32 rounding
        np.testing.assert_allclose(other_controls["cosine"][grouping]["per_layer"]["value"],
                                   stat["per_layer"]["value"], atol=1e-5)


def test_resume_after_interruption_equals_uninterrupted_run(lm, nli, last_run, tmp_path):
    task, examples = nli
    full_dir, full_sharing, full = last_run  # batch_size 2: three batches

    class Interrupt(Exception):
        pass

    def interrupt_after_two_batches(index, num_batches):
        if index == 1:
            raise Interrupt

    out = str(tmp_path)
    with pytest.raises(Interrupt):
        run(lm, task, examples, out, checkpoint_every=1, on_batch_end=interrupt_after_two_batches)
    assert os.path.exists(os.path.join(out, STATE_FILE)) and not os.path.exists(os.path.join(out, SHARING_FILE))
    seen = []
    sharing, resumed = run(lm, task, examples, out, checkpoint_every=1, resume=True,
                           on_batch_end=lambda i, n: seen.append(i))
    assert seen == [2]  # continued after the two saved batches
    for key, value in full.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    for key in ("per_layer", "per_layer_min", "per_layer_max", "threshold_sweep", "overlap", "accuracy",
                "padding_ratio", "by_correctness", "controls", "overlap_frequency"):
        assert sharing[key] == full_sharing[key], key
    with np.load(os.path.join(full_dir, STATE_FILE)) as a, np.load(os.path.join(out, STATE_FILE)) as b:
        for key in set(a.files) - {"elapsed_s"}:  # overlap state, position, token counts, identity
            np.testing.assert_array_equal(b[key], a[key], err_msg=key)
    # resuming a finished run recomputes nothing and writes the same results
    seen.clear()
    again, _ = run(lm, task, examples, out, checkpoint_every=1, resume=True, on_batch_end=lambda i, n: seen.append(i))
    assert seen == [] and again["per_layer"] == full_sharing["per_layer"]


def test_resume_refuses_another_runs_state(lm, nli, tmp_path):
    task, examples = nli
    run(lm, task, examples[:2], str(tmp_path))
    with pytest.raises(ResumeMismatchError, match="config.batch_size"):
        run(lm, task, examples[:2], str(tmp_path), batch_size=1, resume=True)


def test_resume_refuses_other_weights_under_the_same_name(lm, nli, tmp_path):
    """Same model name, shapes and settings, different weights: refused (the identity used to hold shapes only)."""
    task, examples = nli
    run(lm, task, examples[:2], str(tmp_path))
    retrained = dataclasses.replace(lm, params=jax.tree.map(lambda x: x + 1e-3, lm.params))
    with pytest.raises(ResumeMismatchError, match=r"differs in: weights\)"):
        run(retrained, task, examples[:2], str(tmp_path), resume=True)


# ---------------------------------------------------------------- batching


def test_batches_keep_languages_together_and_pad_the_last(lm, nli):
    task, examples = nli
    rows = tokenize_examples(lm.tokenizer, examples, LANGS, task.scoring)
    plan = plan_batches(rows, batch_size=2, neuron_position="last", padding_side="right", pad_id=lm.pad_id)
    longest = [max(r.longest for r in rows[e]) for e in plan.order]
    assert longest == sorted(longest, reverse=True) and sorted(plan.order) == list(range(NUM_EXAMPLES))
    last = plan.batch(plan.num_batches - 1)
    assert last.valid_b.tolist() == [True, False]
    for batch in (plan.batch(i) for i in range(plan.num_batches)):
        ids_rt = batch.neuron_inputs.ids_rt
        assert ids_rt.shape[0] == 2 * len(LANGS) and ids_rt.shape[1] == bucket_length(ids_rt.shape[1])
        first = batch.example_index_b[0]
        expected = rows[first][0].prompt + rows[first][0].continuations[0]
        assert ids_rt[0, :len(expected)].tolist() == list(expected)  # example-major: row 0 = example 0, lang 0
        assert batch.scoring_slots == (1,)  # " inconclusive" is many bytes; " true"/" false" one token


def test_packed_batches_hold_every_row_once_in_one_shape(lm, nli):
    task, examples = nli
    rows = tokenize_examples(lm.tokenizer, examples, LANGS, task.scoring)
    plan = plan_batches(rows, batch_size=2, neuron_position="last", padding_side="right", pad_id=lm.pad_id, pack=True)
    packing, seen = plan.packing, []
    for batch in (plan.batch(i) for i in range(plan.num_batches)):
        batch_rows = [row for e in batch.example_index_b for row in rows[e]]
        valid_r = np.repeat(batch.valid_b, len(LANGS))
        for slot, forward in zip((0, *batch.scoring_slots), batch.all_inputs):
            assert forward.ids_rt.shape == (packing.bins, packing.length)
            assert forward.record_index_r.shape == (packing.bins, packing.segments)
            assert forward.real_tokens == int((forward.mask_rt != 0).sum())
            for row, valid, where in zip(batch_rows, valid_r, forward.row_slot_r):
                if not valid:
                    continue
                b, j = divmod(int(where), packing.segments)
                span = np.flatnonzero(forward.mask_rt[b] == j + 1)
                assert forward.ids_rt[b, span].tolist() == list(row.prompt + row.continuations[slot])
                assert forward.record_index_r[b, j] == span[0] + len(row.prompt) - 1
        seen.extend(batch.example_index_b[batch.valid_b].tolist())
    assert sorted(seen) == list(range(NUM_EXAMPLES))
    with pytest.raises(PipelineInputError, match="neuron_position='last'"):
        plan_batches(rows, batch_size=2, neuron_position="any_token", padding_side="right", pad_id=lm.pad_id,
                     pack=True)


def test_bucket_length_is_a_few_shapes():
    assert [bucket_length(n) for n in (1, 16, 17, 25, 33, 49, 65, 97, 129, 200)] == \
        [16, 16, 24, 32, 48, 64, 96, 128, 192, 256]
    assert [bucket_length(n, minimum=1) for n in (1, 2, 3, 5)] == [1, 2, 3, 6]


@pytest.mark.parametrize("kwargs, message", [
    ({"thresholds": (0.1, 0.2)}, "must include 0"),
    ({"batch_size": 0}, "batch_size"),
    ({"neuron_position": "first"}, "neuron_position"),
    ({"neuron_position": "all"}, "'all' is now 'any_token'"),
])
def test_bad_settings_raise_clear_errors(lm, nli, tmp_path, kwargs, message):
    task, examples = nli
    with pytest.raises(PipelineInputError, match=message):
        run(lm, task, examples[:1], str(tmp_path), **kwargs)


def test_missing_language_raises(lm, nli, tmp_path):
    task, examples = nli
    with pytest.raises(PipelineInputError, match="no prompt"):
        run_sharing_analysis(lm, task, examples[:1], ["en", "zh"], str(tmp_path), progress=False)


# ---------------------------------------------------------------- a real model


@pytest.fixture(scope="module")
def smollm(zoo_lm):
    return zoo_lm("smollm2-135m")


def test_real_model_counts_match_direct_neurons(smollm, tmp_path):
    task = get_task("builtin_nli")
    languages = ["en", "de", "zh"]
    examples = task.load(languages, num_examples=2, prompt_format="paper").examples
    sharing = run_sharing_analysis(smollm, task, examples, languages, str(tmp_path),
                                   SharingConfig(batch_size=2, thresholds=THRESHOLDS), progress=False)
    with np.load(tmp_path / EXAMPLES_FILE) as npz:
        for e, example in enumerate(examples):
            counts, activated = ref_counts(direct_acts(smollm, example, languages), THRESHOLDS)
            # batched vs single-prompt forwards may differ in the last float bits: allow a flip or two
            assert np.abs(npz["category_counts"][e] - counts).max() <= 2
            assert np.abs(npz["activated"][e] - activated).max() <= 2
    assert sharing["num_layers"] == 30 and sharing["neurons_per_layer"] == 1536


# ---------------------------------------------------------------- read-out at the gold answer's end (harness)


@pytest.mark.parametrize("pack", [True, False])
def test_harness_reads_neurons_at_the_gold_answers_end(lm, tmp_path, pack):
    """With --prompt_format=harness the neurons are those of the row "prompt + gold answer" at its last token
    (a plain per-row computation), and the answers are still scored from the prompt's end."""
    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=3, prompt_format="harness").examples
    assert all(ex.readout == "answer" for ex in examples)
    sharing, npz = run(lm, task, examples, str(tmp_path), pack=pack)
    for e, example in enumerate(examples):
        acts = []
        for lang in LANGS:
            ids = lm.tokenizer(example.prompts[lang])["input_ids"] + lm.tokenizer(
                example.answers[lang], add_special_tokens=False)["input_ids"]
            acts.append(np.asarray(lm.neurons(*pad_rows([ids], lm.pad_id, length=FIXED_LENGTH)))[0])
        counts, activated = ref_counts(np.stack(acts), THRESHOLDS)
        np.testing.assert_array_equal(npz["category_counts"][e], counts, err_msg=example.id)
        np.testing.assert_array_equal(npz["activated"][e], activated, err_msg=example.id)
    for e, example in enumerate(examples[:2]):  # scoring: whole options after the prompt, as before
        scores = [direct_logprob(lm, example.prompts["en"], option)[0] for option in example.options["en"]]
        assert bool(npz["correct"][e, 0]) == (int(np.argmax(scores)) == example.gold["en"])


def test_answer_end_readout_is_refused_where_it_cannot_work(lm, tmp_path):
    from jaxneurons.pipeline.attribution import AttributionConfig, run_attribution_analysis
    from jaxneurons.pipeline.errors import PipelineInputError
    from jaxneurons.pipeline.interventions import InterventionsConfig, run_interventions

    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=2, prompt_format="harness").examples
    with pytest.raises(PipelineInputError, match="neuron_position='last'"):
        run(lm, task, examples, str(tmp_path), neuron_position="any_token")
    with pytest.raises(PipelineInputError, match="prompt-end format"):
        run_attribution_analysis(lm, task, examples, LANGS, str(tmp_path), AttributionConfig(["contribution"]),
                                 progress=False)
    with pytest.raises(PipelineInputError, match="prompt-end format"):
        run_interventions(lm, task, examples, LANGS, str(tmp_path), InterventionsConfig(["all_shared"]),
                          progress=False)
