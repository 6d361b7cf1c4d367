"""LAPE (Tang et al., ACL 2024): activation counts against PyTorch forward hooks, the selection against a NumPy
transcription of the published identify.py, LAPE's .pth format, masked perplexity and the category relation."""

import os

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.lape import corpus as lape_corpus
from jaxneurons.lape.select import kth_smallest

torch = pytest.importorskip("torch")
hf_reference = pytest.importorskip("tests.hf_reference")


def hook_counts(model, rows_by_lang):
    """{lang: (over_zero [L, F], n)} from forward hooks on each layer's act_fn, LAPE's way (batched rows)."""
    out = {}
    for lang, rows in rows_by_lang.items():
        seen = {}

        def keep(k):
            return lambda m, i, o: seen.__setitem__(k, seen.get(k, 0) + (o > 0).sum((0, 1)).numpy())
        base = model.model
        handles = [layer.mlp.act_fn.register_forward_hook(keep(k)) for k, layer in enumerate(base.layers)]
        with torch.inference_mode():
            model(torch.tensor(rows, dtype=torch.long))
        for h in handles:
            h.remove()
        out[lang] = (np.stack([seen[k] for k in range(len(base.layers))]), rows.size)
    return out


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    return hf_reference.saved_pair("llama_gqa_tied", tmp_path_factory.mktemp("lape_tiny"))


def test_activation_counts_equal_pytorch_hooks_on_a_tiny_llama(tiny_pair):
    model, lm = tiny_pair
    rng = np.random.default_rng(0)
    corpus = {"aa": rng.integers(1, 97, 5 * 16 + 7), "bb": rng.integers(1, 97, 3 * 16)}
    stats = jn.activation_stats(lm, corpus, max_length=16, batch_size=2, progress=False)
    rows = {lang: lape_corpus.cut_rows(ids, 16) for lang, ids in corpus.items()}
    assert rows["aa"].shape == (5, 16)  # the partial row dropped
    reference = hook_counts(model, rows)
    for i, lang in enumerate(stats.languages):
        np.testing.assert_array_equal(stats.over_zero[i], reference[lang][0])
        assert stats.n[i] == reference[lang][1]
    acts = np.asarray(lm.neurons(rows["aa"], at="every"))  # [B, T, L, F]
    np.testing.assert_allclose(stats.mean[0], acts.mean((0, 1)), atol=1e-5)
    np.testing.assert_allclose(stats.variance[0], acts.var((0, 1)), atol=1e-5)


def test_activation_counts_equal_pytorch_hooks_on_smollm2(zoo_lm):
    transformers = pytest.importorskip("transformers")
    from jaxneurons.loading import zoo

    lm = zoo_lm("smollm2-135m")
    corpus = {"en": ["The cat sat on the mat and looked at the door.", "It rained all day in the city."],
              "de": ["Die Katze saß auf der Matte und sah zur Tür.", "Es regnete den ganzen Tag in der Stadt."]}
    stats = jn.activation_stats(lm, corpus, max_length=8, batch_size=4, progress=False)
    directory, basename = os.path.split(zoo.resolve_zoo("smollm2-135m"))
    model = transformers.AutoModelForCausalLM.from_pretrained(directory, gguf_file=basename,
                                                              dtype=torch.float32).eval()
    rows = lape_corpus.corpus_rows(lm.tokenizer, corpus, 8)
    reference = hook_counts(model, rows)
    for i, lang in enumerate(stats.languages):
        # float32 on both sides: a neuron within rounding of 0 may flip; allow a handful in 30 x 1536 x 16 tokens
        assert np.abs(stats.over_zero[i] - reference[lang][0]).sum() <= 5
        assert stats.n[i] == reference[lang][1]


# ---------------------------------------------------------------- the selection


def published_identify(probs_lfn, top_rate, filter_rate, bar_ratio):
    """identify.py, line for line in NumPy (stable order for ties; every language kept)."""
    L, F, N = probs_lfn.shape
    with np.errstate(invalid="ignore"):
        normed = probs_lfn / probs_lfn.sum(-1, keepdims=True)
    normed[np.isnan(normed)] = 0
    log_probs = np.where(normed > 0, np.log(np.where(normed > 0, normed, 1)), 0)
    entropy = -np.sum(normed * log_probs, -1)
    flattened = probs_lfn.flatten()
    top_prob_value = np.sort(flattened)[round(len(flattened) * filter_rate) - 1]
    top_position = (probs_lfn > top_prob_value).sum(-1)
    entropy[top_position == 0] = np.inf
    index = np.argsort(entropy.flatten(), kind="stable")[:round(entropy.size * top_rate)]
    row_index, col_index = index // F, index % F
    selected = probs_lfn[row_index, col_index].T  # lang x n
    bar = np.sort(flattened)[round(len(flattened) * bar_ratio) - 1]
    out = []
    for lang in range(N):
        pairs = sorted(zip(row_index[selected[lang] > bar].tolist(), col_index[selected[lang] > bar].tolist()))
        out.append({l: [h for ll, h in pairs if ll == l] for l in range(L)})
    return out


def random_probs(seed, L=3, F=50, N=4):
    rng = np.random.default_rng(seed)
    n = rng.integers(200, 400, N)
    over_zero = (rng.beta(0.5, 2.0, (N, L, F)) * n[:, None, None]).astype(np.int64)
    over_zero[:, 0, 0] = 0  # never fires
    over_zero[:, 1, :5] = over_zero[0, 1, 0]  # ties
    over_zero[2, 2, 7] = n[2]  # fires always in one language
    return over_zero, n


@pytest.mark.parametrize("seed,rates", [(0, (0.01, 0.95, 0.95)), (1, (0.05, 0.9, 0.8)), (2, (0.2, 0.5, 0.99))])
def test_selection_equals_the_published_algorithm(seed, rates):
    over_zero, n = random_probs(seed)
    languages = ("en", "de", "fr", "zh")
    stats = jn.ActivationStats(languages, over_zero, n)
    ours = jn.lape_neurons(stats, *rates)
    theirs = published_identify(np.moveaxis(over_zero / n[:, None, None], 0, -1), *rates)
    assert list(ours) == list(languages)
    for i, lang in enumerate(languages):
        assert ours[lang] == theirs[i]
    assert all(0 not in ours[lang][0] for lang in languages)  # the never-firing neuron is filtered out


def test_a_language_with_no_neuron_above_the_bar_keeps_an_empty_entry():
    over_zero, n = random_probs(3)
    over_zero[3] = 1  # the last language barely fires: nothing above the bar
    stats = jn.ActivationStats(("en", "de", "fr", "zh"), over_zero, n)
    neurons = jn.lape_neurons(stats, 0.1, 0.9, 0.9)
    assert list(neurons) == ["en", "de", "fr", "zh"] and all(v == [] for v in neurons["zh"].values())
    assert sum(map(len, neurons["en"].values())) > 0


def test_kth_smallest_is_torch_kthvalue_and_bad_rates_are_refused():
    values = np.random.default_rng(0).random(101)
    assert kth_smallest(values, 0.95, "r") == torch.tensor(values).kthvalue(round(101 * 0.95)).values.item()
    with pytest.raises(ValueError, match="top_rate"):
        jn.lape_neurons(jn.ActivationStats(("a", "b"), np.ones((2, 1, 10), np.int64), np.array([5, 5])), 0.01)


def test_pth_and_json_round_trips(tmp_path):
    over_zero, n = random_probs(0)
    neurons = jn.lape_neurons(jn.ActivationStats(("en", "de", "fr", "zh"), over_zero, n), 0.1, 0.9, 0.9)
    order = jn.write_lape_masks(tmp_path / "x.neuron.pth", neurons, num_layers=3)
    raw = torch.load(tmp_path / "x.neuron.pth", weights_only=True)
    assert len(raw) == 4 and len(raw[0]) == 3 and raw[0][1].dtype == torch.long
    assert jn.read_lape_masks(tmp_path / "x.neuron.pth", languages=order) == neurons
    with pytest.raises(ValueError, match="languages= names 2"):
        jn.read_lape_masks(tmp_path / "x.neuron.pth", languages=["en", "de"])
    jn.save_lape_neurons(tmp_path / "n.json", neurons, top_rate=0.1)
    assert jn.load_lape_neurons(tmp_path / "n.json") == neurons


def test_corpus_rows_cut_like_lape(tiny_pair):
    rows = lape_corpus.cut_rows(np.arange(23), 5)
    np.testing.assert_array_equal(rows, np.arange(20).reshape(4, 5))
    with pytest.raises(ValueError, match="fewer than max_length"):
        lape_corpus.corpus_rows(None, {"en": np.arange(3)}, 5)


def test_xnli_corpus_is_deduplicated_premises_and_hypotheses():
    corpus = lape_corpus.xnli_corpus(["en"], ["dev"])["en"]
    assert len(corpus) == len(set(corpus))
    assert 2490 < len(corpus) < 2 * 2490  # each premise once, beside its hypotheses


# ---------------------------------------------------------------- perplexity under masks


def torch_row_nll(model, rows, neurons_of_lang):
    """[R] mean next-token NLL with act_fn's output zeroed at the neurons (ppl.py's index_fill), in PyTorch."""
    handles = []
    for k, layer in enumerate(model.model.layers):
        index = torch.tensor(neurons_of_lang.get(k, []), dtype=torch.long)
        handles.append(layer.mlp.act_fn.register_forward_hook(lambda m, i, o, index=index: o.index_fill(2, index, 0)))
    with torch.inference_mode():
        ids = torch.tensor(rows, dtype=torch.long)
        logprobs = torch.log_softmax(model(ids).logits.double(), -1)[:, :-1]
    for h in handles:
        h.remove()
    return -logprobs.gather(-1, ids[:, 1:, None])[..., 0].mean(-1).numpy()


def test_masked_perplexity_equals_pytorch_with_zeroed_activations(tiny_pair):
    from jaxneurons.lape.perplexity import masked_perplexity

    model, lm = tiny_pair
    rng = np.random.default_rng(1)
    rows = {"aa": rng.integers(1, 97, (5, 12)), "bb": rng.integers(1, 97, (3, 12))}
    neurons = {"aa": {0: [1, 5, 7], 1: [], 2: [0, 39]}, "bb": {0: [], 1: list(range(20)), 2: []}}
    result = masked_perplexity(lm, rows, neurons, batch_size=2, bootstrap=200, progress=False)
    assert result.conditions == ["none", "aa", "bb", "random(aa)", "random(bb)"]
    assert result.neurons_zeroed["random(bb)"] == 20
    for condition, per in (("none", {}), ("aa", neurons["aa"]), ("bb", neurons["bb"])):
        for lang, r in rows.items():
            np.testing.assert_allclose(result.nll[condition][lang], torch_row_nll(model, r, per), atol=2e-5)
    assert not np.allclose(result.nll["bb"]["aa"], result.nll["none"]["aa"])  # the mask changes something
    table = result.to_pandas()
    entry = table[(table.condition == "bb") & (table.language == "aa")].iloc[0]
    assert entry.nll_ci_low <= entry.nll <= entry.nll_ci_high and entry.rows == 5
    assert np.isclose(entry.delta_nll, (result.nll["bb"]["aa"] - result.nll["none"]["aa"]).mean())
    assert result.plot().axes


# ---------------------------------------------------------------- relation to the paper's categories


def test_neuron_categories_equal_numpy_and_the_sharing_run():
    from jaxneurons.analysis.sharing import CATEGORIES
    from jaxneurons.lape.relation import check_against_sharing, neuron_categories, relation_summary
    from jaxneurons.tasks import get_task
    from tests.fixtures import LANGS, direct_acts, tiny_lm

    lm, task = tiny_lm(seed=3), get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=6, prompt_format="paper").examples
    neurons = {"en": {0: [1, 2, 3], 1: [4]}, "de": {0: [], 1: [0, 5, 23]}, "ru": {0: [], 1: []}}
    cats = neuron_categories(lm, task, examples, LANGS, neurons, batch_size=4, progress=False)
    active_enlf = np.stack([direct_acts(lm, ex, LANGS) for ex in examples]) > 0
    s_elf = active_enlf.sum(1)
    code_elf = np.select([s_elf == 3, s_elf >= 2, s_elf == 1], [0, 1, 2], 3)
    np.testing.assert_array_equal(cats.per_neuron, np.stack([(code_elf == c).sum(0) for c in range(4)], -1))
    np.testing.assert_array_equal(cats.specific_to, (active_enlf & (code_elf == 2)[:, None]).sum(0))
    en = np.array([[code_elf[e, l, j] for l, per in neurons["en"].items() for j in per] for e in range(6)])
    np.testing.assert_array_equal(cats.per_set[:, cats.set_names.index("en")],
                                  np.stack([(en == c).sum(1) for c in range(4)], -1))
    sharing = jn.sharing(lm, examples, task=task, languages=LANGS, progress=False, bootstrap=0)
    check_against_sharing(cats, sharing)
    summary = relation_summary(cats, neurons, bootstrap=100)
    assert "ru" not in summary["distribution"] and summary["distribution"]["en"]["neurons"] == 4
    assert np.isclose(sum(summary["distribution"]["en"][c]["value"] for c in CATEGORIES), 100.0)
    overlap = summary["overlap"]["de"]
    assert overlap["lape"] == 3 and 0 <= overlap["jaccard"] <= 1


def test_launcher_refuses_held_out_text_that_is_identification_text(tmp_path):
    import subprocess
    import sys

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, os.path.join(repo, "launchers", "lape.py"), "--corpus_splits=test,dev",
                           "--heldout_split=dev", f"--output_dir={tmp_path / 'out'}"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": repo}, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("error: --heldout_split=dev is also in --corpus_splits")
    assert not os.path.exists(tmp_path / "out")  # refused before the output folder is claimed
