"""attribution.json and interventions.json against direct per-example computations (tiny model, float32)."""

import dataclasses
import json
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.pipeline import attribution as attribution_module, interventions as interventions_module
from jaxneurons.pipeline import PipelineInputError, ResumeMismatchError
from jaxneurons.pipeline.attribution import AttributionConfig, run_attribution_analysis
from jaxneurons.pipeline.interventions import MATCHED, InterventionsConfig, run_interventions
from jaxneurons.attribution.matched import off_by_more
from jaxneurons.tasks import get_task
from tests.fixtures import LANGS, direct_acts, tiny_lm

NUM = 3


@pytest.fixture(scope="module")
def setup():
    lm = tiny_lm(seed=3)
    task = get_task("builtin_nli")
    return lm, task, task.load(LANGS, num_examples=NUM, prompt_format="paper").examples


def _codes(acts_nlf):
    s = (acts_nlf > 0).sum(0)
    n = acts_nlf.shape[0]
    return np.where(s == n, 0, np.where(s >= 2, 1, np.where(s == 1, 2, 3)))


def _prompt(lm, text):
    return np.array([lm.tokenizer(text)["input_ids"]])


def _target(lm, example, lang):
    return lm.tokenizer(example.answers[lang], add_special_tokens=False)["input_ids"][0]


def test_attribution_json_matches_direct_computation(setup, tmp_path):
    lm, task, examples = setup
    got = run_attribution_analysis(lm, task, examples, LANGS, str(tmp_path),
                                   AttributionConfig(top_k=4, batch_size=2, ig_steps=3, bootstrap=200),
                                   progress=False)
    assert json.load(open(tmp_path / "attribution.json"))["top_k"] == 4
    top = {m: np.zeros((len(LANGS), lm.config.num_layers, 4)) for m in ("contribution", "ig")}
    positive = {m: np.zeros((len(LANGS), 4)) for m in top}
    values = {}  # (language, layer, category) -> per example, the contribution scores of the category's neurons
    ig_sum, ig_change = np.zeros((NUM, len(LANGS), lm.config.num_layers)), np.zeros((NUM, len(LANGS), lm.config.num_layers))
    down_norm = np.linalg.norm(np.asarray(lm.params["layers"]["mlp"]["down"]["kernel"]), axis=-1)
    # IG of every (example, language) row in one call, left-padded to one length: one compile, not one per row
    ids_all, mask_all = lm.encode([ex.prompts[lang] for ex in examples for lang in LANGS], padding_side="left")
    ig_all = jn.integrated_gradients(lm, ids_all, [_target(lm, ex, lang) for ex in examples for lang in LANGS],
                                     mask_all, steps=3)
    active = np.zeros((len(LANGS), 2))  # per language: all-shared neurons, active neurons (summed)
    active_top = {m: np.zeros((len(LANGS), 2)) for m in top}  # the same among the top-k
    for e, ex in enumerate(examples):
        acts = direct_acts(lm, ex, LANGS)
        codes = _codes(acts)  # [L, F]
        for n, lang in enumerate(LANGS):
            active[n] += [(codes == 0).sum(), (acts[n] > 0).sum()]
            ids, row = _prompt(lm, ex.prompts[lang]), e * len(LANGS) + n
            m = np.asarray(lm.neurons(ids, quantity="ffn_hidden"))[0]
            attributions = np.asarray(ig_all.attributions[row])
            ig_sum[e, n] = attributions.sum(-1)
            ig_change[e, n] = ig_all.target_prob[row] - ig_all.zeroed_prob[row]
            scores = {"contribution": np.abs(m) * down_norm, "ig": attributions}
            for method, s in scores.items():
                for layer in range(lm.config.num_layers):
                    best = np.argsort(-s[layer], kind="stable")[:4]
                    top[method][n, layer] += np.bincount(codes[layer, best], minlength=4)
                    active_top[method][n] += [(codes[layer, best] == 0).sum(), (acts[n, layer, best] > 0).sum()]
                    for c in range(4):
                        positive[method][n, c] += np.clip(s[layer][codes[layer] == c], 0, None).sum()
                        if method == "contribution":
                            values.setdefault((n, layer, c), []).append(s[layer][codes[layer] == c])
    for method in top:
        for n, lang in enumerate(LANGS):
            entry = got["per_language"][lang][method]
            share = np.array([entry["top_share"][c] for c in ("all_shared", "partial_shared", "specific",
                                                               "non_activated")]).T
            np.testing.assert_allclose(share, top[method][n] / (NUM * 4) * 100, atol=1e-6)
            expected = positive[method][n] / positive[method][n].sum() * 100
            np.testing.assert_allclose([entry["attribution_share"][c] for c in ("all_shared", "partial_shared",
                                                                                 "specific", "non_activated")],
                                       expected, atol=1e-3)
            for c, name in enumerate(("all_shared", "partial_shared", "specific", "non_activated")):
                layer_share = top[method][n, :, c] / (NUM * 4) * 100  # the notebook's statistic
                stat = entry["top_k_share"][name]
                np.testing.assert_allclose(stat["per_layer"]["value"], layer_share, atol=1e-6)
                assert stat["mean"]["value"] == pytest.approx(layer_share.mean())
                assert entry["pooled_positive_share"][name]["value"] == pytest.approx(expected[c], abs=1e-3)
                _assert_covers(stat["mean"])
                _assert_covers(entry["pooled_positive_share"][name])
    for (n, layer, c), per_example in values.items():  # the score table: max, min, mean, sum per example
        table = got["per_language"][LANGS[n]]["contribution"]["score"][("all_shared", "partial_shared", "specific",
                                                                         "non_activated")[c]]
        found = [v for v in per_example if v.size]
        if not found:
            assert table["max"][layer] is None and table["min"][layer] is None
            continue
        assert table["max"][layer] == pytest.approx(max(v.max() for v in found), rel=1e-3, abs=1e-6)
        assert table["min"][layer] == pytest.approx(min(v.min() for v in found), rel=1e-3, abs=1e-6)
        assert table["mean"][layer] == pytest.approx(np.mean([v.mean() for v in found]), rel=1e-3, abs=1e-6)
        assert table["sum"][layer] == pytest.approx(sum(v.sum() for v in per_example) / NUM, rel=1e-3, abs=1e-6)
    for n, lang in enumerate(LANGS):  # base rates: all-shared's share of the active neurons and of the active top-k
        rates = got["per_language"][lang]["base_rates"]
        assert rates["all_shared_pct_of_active"]["value"] == pytest.approx(active[n, 0] / active[n, 1] * 100)
        for method in top:
            stat = got["per_language"][lang][method]["all_shared_pct_of_active_top_k"]
            assert stat["value"] == pytest.approx(active_top[method][n, 0] / active_top[method][n, 1] * 100)
            _assert_covers(stat)
    head = got["headline"]
    assert head["all_shared_active_pct"] == got["per_language"]["de"]["base_rates"]["all_shared_pct_of_active"]
    assert head["all_shared_top_k_share"]["ig"] == got["per_language"]["de"]["ig"]["top_k_share"]["all_shared"]["mean"]
    for stat in (head["null_top_k_share"]["contribution"], head["null_pooled_positive_share"]["ig"]):
        _assert_covers(stat)
    gap = (ig_sum - ig_change).reshape(-1, lm.config.num_layers)
    expected_error = np.abs(gap.sum(0)) / np.abs(ig_change.reshape(-1, lm.config.num_layers)).sum(0)
    np.testing.assert_allclose(got["ig"]["completeness"]["error_per_layer"], expected_error, atol=1e-3)  # float32 sums


def _assert_covers(stat):
    """A 95% interval is present and holds its point value."""
    lo, hi = stat["ci95"]
    assert lo - 1e-9 <= stat["value"] <= hi + 1e-9


@pytest.mark.parametrize("change", [{"top_k": 2}, {"seeds": 1}, {"batch_size": 1}])
def test_attribution_resume_refuses_another_config(setup, tmp_path, change):
    """A checkpoint of other settings is refused with the field that differs (it used to start over silently)."""
    lm, task, examples = setup
    config = AttributionConfig(methods=["contribution"], top_k=3, batch_size=2, seeds=2, bootstrap=0)
    run_attribution_analysis(lm, task, examples[:2], LANGS, str(tmp_path), config, progress=False)
    field = next(iter(change))
    with pytest.raises(ResumeMismatchError, match=f"config.{field}"):
        run_attribution_analysis(lm, task, examples[:2], LANGS, str(tmp_path), dataclasses.replace(config, **change),
                                 resume=True, progress=False)


def test_interventions_resume_refuses_other_weights_or_examples(setup, tmp_path):
    lm, task, examples = setup
    config = InterventionsConfig(kinds=["all_shared"], batch_size=2, seeds=1, bootstrap=0)
    run_interventions(lm, task, examples[:2], LANGS, str(tmp_path), config, progress=False)
    other = dataclasses.replace(lm, params=jax.tree.map(lambda x: x * 1.001, lm.params))
    with pytest.raises(ResumeMismatchError, match="weights"):
        run_interventions(other, task, examples[:2], LANGS, str(tmp_path), config, resume=True, progress=False)
    with pytest.raises(ResumeMismatchError, match="examples"):
        run_interventions(lm, task, examples[1:], LANGS, str(tmp_path), config, resume=True, progress=False)


def test_resume_may_change_what_does_not_change_results(setup, tmp_path):
    """IG's chunking is memory, not results: a resume after an out-of-memory error may lower it."""
    lm, task, examples = setup
    config = AttributionConfig(methods=["ig"], top_k=3, batch_size=2, ig_steps=2, seeds=1, bootstrap=0)
    first = run_attribution_analysis(lm, task, examples[:2], LANGS, str(tmp_path), config, progress=False)
    again = run_attribution_analysis(lm, task, examples[:2], LANGS, str(tmp_path),
                                     dataclasses.replace(config, ig_chunk_size=1), resume=True, progress=False)
    assert again == first


def _stop_after_first_save(monkeypatch, module):
    """Make the run die right after its first saved batch, as a killed job would."""
    real = module.save_checkpoint

    def save_then_stop(*args):
        real(*args)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_checkpoint", save_then_stop)


def test_attribution_interrupted_then_resumed_equals_uninterrupted(setup, tmp_path, monkeypatch):
    config = AttributionConfig(methods=["contribution"], top_k=3, batch_size=1, seeds=2, bootstrap=50)
    _assert_resume_equals_uninterrupted(run_attribution_analysis, attribution_module, setup, tmp_path, monkeypatch,
                                        config)


def test_interventions_interrupted_then_resumed_equals_uninterrupted(setup, tmp_path, monkeypatch):
    config = InterventionsConfig(kinds=["all_shared", "specific", "magnitude"], batch_size=1, seeds=2, bootstrap=50)
    _assert_resume_equals_uninterrupted(run_interventions, interventions_module, setup, tmp_path, monkeypatch, config)


def _assert_resume_equals_uninterrupted(run, module, setup, tmp_path, monkeypatch, config):
    """A pass killed after its first save, then resumed, writes exactly what an uninterrupted pass writes."""
    lm, task, examples = setup
    whole = run(lm, task, examples, LANGS, str(tmp_path / "a"), config, progress=False)
    with monkeypatch.context() as patch:
        _stop_after_first_save(patch, module)
        with pytest.raises(KeyboardInterrupt):
            run(lm, task, examples, LANGS, str(tmp_path / "b"), config, progress=False)
    resumed = run(lm, task, examples, LANGS, str(tmp_path / "b"), config, resume=True, progress=False)
    assert resumed == whole


@pytest.mark.parametrize("run, config, name", [
    (run_interventions, InterventionsConfig(kinds=["all_shared", "random", "non_parallel"], batch_size=1, seeds=2,
                                            bootstrap=50),
     "interventions"),
    (run_attribution_analysis, AttributionConfig(top_k=4, batch_size=1, ig_steps=2, seeds=2, bootstrap=50),
     "attribution")])
def test_two_processes_equal_one(setup, tmp_path, run, config, name):
    """Processes 0 and 1 of 2 (merging through files, as two threads): each runs its share of the batches; both
    return, and process 0 alone writes, exactly the one-process result."""
    lm, task, examples = setup
    one = run(lm, task, examples, LANGS, str(tmp_path / "one"), config, progress=False)
    out, results = tmp_path / "two", [None, None]

    def process(k):
        results[k] = run(lm, task, examples, LANGS, str(out), config, progress=False, process_index=k,
                         process_count=2)

    thread = threading.Thread(target=process, args=(1,))
    thread.start()
    process(0)
    thread.join(timeout=120)
    assert results == [one, one]
    assert json.loads((out / f"{name}.json").read_text()) == json.loads((tmp_path / "one" / f"{name}.json").read_text())
    assert (out / "process_1_of_2" / f"{name}_state.npz").exists()


def _accuracy_with(lm, task, examples, scale_fn):
    """Option log-likelihood accuracy per language, m <- m * scale_fn(codes, example index) at the prompt's last
    token, one row at a time."""
    correct = np.zeros((len(examples), len(LANGS)), bool)
    for e, ex in enumerate(examples):
        codes = _codes(direct_acts(lm, ex, LANGS))
        for n, lang in enumerate(LANGS):
            prompt = lm.tokenizer(ex.prompts[lang])["input_ids"]
            scores = []
            for option in ex.options[lang]:
                cont = lm.tokenizer(option, add_special_tokens=False)["input_ids"]
                ids = np.array([prompt + cont])
                where = np.zeros(ids.shape, bool)
                where[0, len(prompt) - 1] = True
                scale = jnp.asarray(scale_fn(codes, e))[None]
                change = jn.Intervention(scale, jnp.zeros_like(scale), jnp.asarray(where))
                logp = jax.nn.log_softmax(np.asarray(lm.logits(ids, intervention=change))[0], -1)
                scores.append(sum(logp[len(prompt) - 1 + k, t] for k, t in enumerate(cont)))
            correct[e, n] = task.is_correct(np.array(scores), None, ex.gold[lang])
    return {lang: float(correct[:, n].mean()) for n, lang in enumerate(LANGS)}


def test_interventions_match_direct_computation(setup, tmp_path):
    lm, task, examples = setup
    got = run_interventions(lm, task, examples, LANGS, str(tmp_path),
                            InterventionsConfig(kinds=["all_shared", "specific", "random"], batch_size=2, seeds=2),
                            progress=False)
    assert set(got) == {"clean", "all_shared", "specific", "specific_count", "random", "sets", "paired_tests",
                        "paired_tests_vs_clean", "warnings", "meta"}
    assert got["clean"] == _accuracy_with(lm, task, examples, lambda codes, e: np.ones(codes.shape))
    assert got["all_shared"] == _accuracy_with(lm, task, examples, lambda codes, e: (codes != 0).astype(np.float32))
    deactivated = np.array(got["meta"]["mean_deactivated_per_layer"]["all_shared"])
    assert deactivated.sum() > 0
    mass, matched = np.zeros((NUM, len(LANGS))), np.zeros((NUM, lm.config.num_layers))
    down_norm = np.linalg.norm(np.asarray(lm.params["layers"]["mlp"]["down"]["kernel"]), axis=-1)
    for e, ex in enumerate(examples):
        codes = _codes(direct_acts(lm, ex, LANGS))
        matched[e] = np.minimum((codes == 0).sum(-1), (codes == 2).sum(-1))  # specific, as many as all-shared
        for n, lang in enumerate(LANGS):
            contribution = np.abs(np.asarray(lm.neurons(_prompt(lm, ex.prompts[lang]), quantity="ffn_hidden"))[0])
            contribution *= down_norm
            mass[e, n] = contribution[codes == 0].sum() / contribution.sum()
    sets = got["sets"]
    assert sets["all_shared"]["removed_mass"]["value"] == pytest.approx(mass.mean() * 100, rel=1e-3, abs=1e-6)
    np.testing.assert_allclose(got["meta"]["mean_deactivated_per_layer"]["specific_count"], matched.mean(0))
    np.testing.assert_allclose(got["meta"]["mean_deactivated_per_layer"]["random"], deactivated)
    for name in ("all_shared", "specific_count", "random"):
        _assert_covers(sets[name]["removed_mass"])
        _assert_covers(sets[name]["accuracy"]["mean"])
        _assert_covers(sets[name]["delta"]["de"])
    clean, off = sets["clean"]["accuracy"]["en"]["value"], sets["all_shared"]["accuracy"]["en"]["value"]
    assert sets["all_shared"]["delta"]["en"]["value"] == pytest.approx(off - clean)
    assert set(got["paired_tests"]) == {"specific", "specific_count", "random"}
    assert os.path.exists(tmp_path / "interventions.json")


def test_non_parallel_sets_match_direct_computation(setup):
    """non_parallel/<seed>: per example, the neurons active in every slot of its non-parallel group (its own prompt
    in the first language, in language n the example n places after it in the seed's order), recomputed from each
    prompt alone, and the accuracy with them zeroed row by row."""
    lm, task, _ = setup
    examples = task.load(LANGS, num_examples=6, prompt_format="paper").examples  # rows 3-5 differ from 0-2 in ru
    num = len(examples)
    config = InterventionsConfig(kinds=["all_shared", "non_parallel"], batch_size=2, seeds=(0, 3), bootstrap=20)
    got = run_interventions(lm, task, examples, LANGS, None, config, progress=False)
    active = np.stack([direct_acts(lm, ex, LANGS) > 0 for ex in examples])  # [E, N, L, F]
    down_norm = np.linalg.norm(np.asarray(lm.params["layers"]["mlp"]["down"]["kernel"]), axis=-1)
    contribution = np.stack([[np.abs(np.asarray(lm.neurons(_prompt(lm, ex.prompts[lang]), quantity="ffn_hidden"))[0])
                              * down_norm for lang in LANGS] for ex in examples])  # [E, N, L, F]
    shared_mass = sum(contribution[e][:, active[e].all(0)].sum() for e in range(num))
    accuracy, counts, mass_ratio = [], [], []
    for seed in (0, 3):
        order = list(np.random.default_rng(seed).permutation(num))  # window_groups' one draw
        groups = [[order[(order.index(e) + n) % num] for n in range(len(LANGS))] for e in range(num)]
        off = [np.logical_and.reduce([active[g[n], n] for n in range(len(LANGS))]) for g in groups]
        counts.append(np.mean([o.sum(-1) for o in off], 0))
        mass_ratio.append(sum(contribution[e][:, off[e]].sum() for e in range(num)) / shared_mass)  # the pairing
        accuracy.append(_accuracy_with(lm, task, examples, lambda codes, e, off=off: (~off[e]).astype(np.float32)))
    np.testing.assert_allclose(got["meta"]["mean_deactivated_per_layer"]["non_parallel"], np.mean(counts, 0))
    per_seed = got["sets"]["non_parallel"]["per_seed"]
    assert per_seed["seeds"] == ["0", "3"]
    for got_accuracy, want in zip(per_seed["accuracy"], accuracy):
        assert got_accuracy == pytest.approx(np.mean(list(want.values())) * 100)
    np.testing.assert_allclose(per_seed["mass_ratio"], mass_ratio, rtol=1e-4)
    with pytest.raises(PipelineInputError, match="as many examples as languages"):
        run_interventions(lm, task, examples[:2], LANGS, None, config, progress=False)


def test_dose_response_and_controls_match_direct_computation(setup, tmp_path):
    """ranked@0.5's accuracy and removed mass recomputed row by row; the new controls' fields; seeds as a list."""
    lm, task, examples = setup
    config = InterventionsConfig(kinds=["all_shared", "magnitude", "top_magnitude", "mass"], batch_size=4,
                                 seeds=(0, 2), bootstrap=50, dose_fractions=(0.5,))
    got = run_interventions(lm, task, examples, LANGS, str(tmp_path), config, progress=False)
    curves = got["dose_response"]["curves"]
    assert curves["ranked"]["set"] == ["ranked@0.5"] and curves["random"]["set"] == ["random@0.5"]
    down_norm = np.linalg.norm(np.asarray(lm.params["layers"]["mlp"]["down"]["kernel"]), axis=-1)
    ranked, mass, sizes = [], np.zeros((NUM, len(LANGS))), np.zeros(2)
    for e, ex in enumerate(examples):
        codes = _codes(direct_acts(lm, ex, LANGS))
        count = (codes == 0).sum(-1)
        sizes += [np.minimum(count, codes.shape[-1] - count).sum(), count.sum()]  # top_magnitude: capped by its pool
        abs_m = np.abs(np.stack([np.asarray(lm.neurons(_prompt(lm, ex.prompts[lang]), quantity="ffn_hidden"))[0]
                                 for lang in LANGS]))  # [N, L, F]
        half = np.round(0.5 * (codes == 0).sum(-1)).astype(int)
        order = np.argsort(-abs_m.mean(0), -1, kind="stable")
        ranked.append(np.argsort(order, -1) < half[:, None])  # the half-count largest mean |m| per layer
        contribution = abs_m * down_norm
        mass[e] = (contribution * ranked[-1]).sum((-1, -2)) / contribution.sum((-1, -2))
    accuracy = _accuracy_with(lm, task, examples, lambda codes, e: (~ranked[e]).astype(np.float32))
    assert curves["ranked"]["accuracy"][0]["value"] == pytest.approx(np.mean(list(accuracy.values())) * 100)
    assert curves["ranked"]["removed_mass"][0]["value"] == pytest.approx(mass.mean() * 100, rel=1e-3)
    sets = got["sets"]
    assert sets["magnitude"]["per_seed"]["seeds"] == ["0", "2"] and got["meta"]["seeds"] == [0, 2]
    spread = sets["magnitude"]["seed_spread"]["accuracy"]
    assert spread["min"] <= sets["magnitude"]["accuracy"]["mean"]["value"] <= spread["max"]
    assert set(sets["mass"]["match"]) == {"count_ratio", "mean_abs_m_ratio", "mass_ratio"}
    assert sets["top_magnitude"]["match"]["count_ratio"] == pytest.approx(sizes[0] / sizes[1])
    for name in ("magnitude", "mass"):  # a random tiny model: all-shared holds most of the |m|; said, not hidden
        if any(off_by_more(sets[name]["match"][k]) for k in MATCHED[name]):
            assert any(w.startswith(f"the {name} control is not matched") for w in got["warnings"])
            assert f"| {name} (NOT matched) |" in (tmp_path / "report.md").read_text()
    assert {"all_shared", "magnitude", "ranked@0.5"} <= set(got["paired_tests_vs_clean"])
    result = jn.load_result(tmp_path, "deactivation")
    assert len(result.dose_response_frame()) == 3 and result.warnings() == got["warnings"]
    assert "dose_response" in result.figure_names and result.plot("dose_response").axes
    report = (tmp_path / "report.md").read_text()
    assert "Dose-response" in report and (tmp_path / "figures" / "dose_response.png").exists()
    equal = got["at_equal_mass"]["sets"]  # the definition is checked against a plain loop in test_matched_controls
    assert set(equal) == {"magnitude", "top_magnitude", "mass", "ranked"}
    for name, r in equal.items():
        assert r["n"] + r["left_out"] == NUM
        if r["n"] == NUM and name != "ranked":  # every example inside: the other set's own mean change
            assert r["other"] == pytest.approx(sets[name]["gold_logprob_change"]["value"], abs=1e-9)
    frame = result.equal_mass_frame()
    assert list(frame["set"]) == list(equal) and "At equal mass removed" in report


def test_each_pass_writes_its_own_files_and_report_section(setup, tmp_path):
    """A library caller gets what the launcher gets: each pass writes its JSON, its figures and its section of
    report.md, which holds every section written so far in a fixed order (sharing, attribution, deactivation)."""
    from jaxneurons.pipeline import SharingConfig, run_sharing_analysis

    lm, task, examples = setup
    out = str(tmp_path)
    run_interventions(lm, task, examples[:2], LANGS, out, InterventionsConfig(kinds=["all_shared"], seeds=1,
                                                                              bootstrap=0), progress=False)
    run_attribution_analysis(lm, task, examples[:2], LANGS, out, AttributionConfig(
        methods=("contribution",), top_k=4, seeds=1, bootstrap=0), progress=False)
    run_sharing_analysis(lm, task, examples[:2], LANGS, out, SharingConfig(bootstrap=0), progress=False)
    figures = sorted(os.listdir(tmp_path / "figures"))
    assert {"attribution_top_share.png", "attribution_share.png", "interventions.png"} <= set(figures)
    assert sorted(os.listdir(tmp_path / "sections")) == ["attribution.md", "deactivation.md", "sharing.md"]
    report = (tmp_path / "report.md").read_text()
    starts = [report.index(h) for h in ("# Neuron sharing across languages", "## Attribution", "## Deactivation")]
    assert starts == sorted(starts)
    assert "![top_share](figures/attribution_top_share.png)" in report


def test_a_files_neuron_sets_are_deactivated_as_sets(setup, tmp_path):
    """--deactivate_sets: each language's set of the file (here a LAPE selection) zeroed in every row, accuracy
    as recomputed row by row."""
    from jaxneurons.lape.select import save_lape_neurons

    lm, task, examples = setup
    neurons = {"en": {0: [1, 2, 5], 1: [0]}, "de": {1: [3, 4, 7, 8]}, "ru": {0: [9]}}
    save_lape_neurons(tmp_path / "lape_neurons.json", neurons, model="tiny")
    config = InterventionsConfig(kinds=["all_shared"], batch_size=2, seeds=1, bootstrap=20,
                                 neuron_sets=str(tmp_path / "lape_neurons.json"))
    got = run_interventions(lm, task, examples, LANGS, None, config, progress=False)
    for lang, sets in neurons.items():
        off = np.ones((lm.config.num_layers, lm.config.intermediate_size), np.float32)
        for layer, index in sets.items():
            off[layer, index] = 0.0
        assert got[f"set:{lang}"] == _accuracy_with(lm, task, examples, lambda codes, e, off=off: off)
        assert got["sets"][f"set:{lang}"]["neurons_per_layer"] == pytest.approx(
            sum(map(len, sets.values())) / lm.config.num_layers)
