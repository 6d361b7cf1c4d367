"""Template sweeps: the templates of each formulation, the spread over templates against NumPy / SciPy, and
analyze.py sweeping several --prompt_format into one folder per template."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import jaxneurons as jn
from jaxneurons.analysis.templates import template_summary
from jaxneurons.tasks import get_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_DIR = os.environ.get("JAXNEURONS_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")


def _sharing(rng, layers=4, controls=True):
    """A sharing.json's headline keys with random numbers."""
    per_layer = rng.uniform(10, 40, layers)
    mean = float(per_layer.mean())
    half = float(rng.uniform(0.2, 2.0))
    excess = float(rng.normal(1, 0.5))
    summary = {"model": "m", "task": "t", "languages": ["en", "de"], "num_examples": int(rng.integers(50, 60)),
               "per_layer": {"all_shared": per_layer.tolist()}, "mean_over_layers": {"all_shared": mean},
               "mean_over_layers_ci95": {"all_shared": [mean - half, mean + half]},
               "accuracy": {"en": 0.5, "de": 0.4}}
    if controls:
        summary["controls"] = {"categories": {"parallel_excess": {"all_shared": {"mean_over_layers": {
            "value": excess, "ci95": [excess - 0.3, excess + 0.5]}}}}}
    return summary


def test_spread_matches_numpy_and_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    runs = {name: _sharing(rng) for name in ("a", "b", "c", "d", "e")}
    groups = {"a": "english", "b": "english", "c": "english", "d": "own", "e": "own"}
    summary = template_summary(runs, groups)
    for group, names in (("english", "abc"), ("own", "de"), ("all templates", "abcde")):
        spread = summary["formulations"][group]
        values = np.array([runs[n]["mean_over_layers"]["all_shared"] for n in names])
        k, sd = len(values), values.std(ddof=1)
        half = stats.t.ppf(0.975, k - 1) * sd / np.sqrt(k)
        s = spread["all_shared"]
        assert s["k"] == k and spread["templates"] == list(names)
        np.testing.assert_allclose([s["mean"], s["sd"], s["range"]], [values.mean(), sd, np.ptp(values)])
        np.testing.assert_allclose(s["ci95_between"], [values.mean() - half, values.mean() + half], rtol=1e-3)
        widths = [np.diff(runs[n]["mean_over_layers_ci95"]["all_shared"])[0] / 2 for n in names]
        np.testing.assert_allclose(s["item_half_width"], np.mean(widths))
        per_layer = np.array([runs[n]["per_layer"]["all_shared"] for n in names])
        np.testing.assert_allclose(spread["all_shared_sd_per_layer"], per_layer.std(0, ddof=1))
        excess = [runs[n]["controls"]["categories"]["parallel_excess"]["all_shared"]["mean_over_layers"]["value"]
                  for n in names]
        np.testing.assert_allclose(spread["parallel_excess"]["sd"], np.std(excess, ddof=1))
    # a run without controls: no excess spread where it takes part, the all-shared spread still there
    runs["e"] = _sharing(rng, controls=False)
    summary = template_summary(runs, groups)
    assert summary["formulations"]["own"]["parallel_excess"] is None
    assert summary["formulations"]["english"]["parallel_excess"] is not None
    result = jn.TemplateResult(summary)
    assert len(result.to_pandas()) == 10 and len(result.spread_to_pandas()) == 6
    assert result.plot().axes


def test_formulations_end_alike_or_in_each_language():
    task = get_task("builtin_nli")
    langs = ["en", "de", "ru"]
    for fmt in task.formulations["ends_english"]:
        prompts = task.load(langs, num_examples=3, prompt_format=fmt).examples[0].prompts
        endings = {p[-8:] for p in prompts.values()}
        assert len(endings) == 1, (fmt, endings)  # the same English words in every language
    for fmt in task.formulations["ends_in_language"]:
        ex = task.load(langs, num_examples=3, prompt_format=fmt).examples[0]
        endings = {lang: p[-6:] for lang, p in ex.prompts.items()}
        assert len(set(endings.values())) == len(langs), (fmt, endings)
        assert all(p[-1].isalnum() for p in ex.prompts.values()), (fmt, endings)  # a word, not punctuation
    assert task.template_sweep(["ends_english", "paper_cut"]) == {
        "paper": "ends_english", "qa": "ends_english", "labeled_answer": "ends_english",
        "paper_cut": "ends_in_language"}
    with pytest.raises(ValueError, match="template sweeps: ends_english, ends_in_language"):
        task.template_sweep(["nope"])


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA_DIR, "mpararel")), reason=f"no mParaRel in {DATA_DIR}")
def test_mpararel_templates_take_the_kth_pattern_or_an_english_cue():
    task = get_task("mpararel")
    first = task.load(["en", "de"], num_examples=20, data_dir=DATA_DIR).examples
    cue = task.load(["en", "de"], num_examples=20, data_dir=DATA_DIR, prompt_format="answer_is").examples
    assert [ex.id for ex in cue] == [ex.id for ex in first]
    assert all(c.prompts[lang] == f.prompts[lang] + "\nThe answer is" and c.answers == f.answers
               for c, f in zip(cue, first) for lang in ("en", "de"))
    second = {ex.id: ex for ex in task.load(["en", "de"], data_dir=DATA_DIR, prompt_format="pattern2").examples}
    shared = [ex for ex in first if ex.id in second]
    assert shared and all(second[ex.id].prompts["en"] != ex.prompts["en"] for ex in shared)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.fixtures import tiny_lm

    folder = tmp_path_factory.mktemp("model") / "tiny"
    jn.export_hf(tiny_lm(), str(folder))
    return str(folder)


def test_analyze_sweeps_templates_into_one_folder_each(tiny_model, tmp_path):
    out = tmp_path / "sweep"
    base = [sys.executable, os.path.join(REPO, "launchers", "analyze.py"), f"--model={tiny_model}",
            "--task=builtin_nli", "--languages=en,de", "--num_examples=4", "--batch_size=2", "--thresholds=0",
            "--bootstrap=20", "--control_items=4", "--control_draws=2", "--noprogress", f"--output_dir={out}"]
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run(base + ["--prompt_format=paper,qa"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert {"paper", "qa", "templates.json", "templates.md", "figures"} <= set(os.listdir(out))
    runs = {}
    for fmt in ("paper", "qa"):
        runs[fmt] = jn.load_result(out / fmt, "sharing")
        assert runs[fmt].summary["prompt_format"] == fmt
        assert f"--prompt_format={fmt}\n" in (out / fmt / "flags.txt").read_text()
    written = json.loads((out / "templates.json").read_text())
    expected = jn.template_spread(runs, task=get_task("builtin_nli")).summary
    assert written["templates"] == json.loads(json.dumps(expected["templates"]))
    assert written["formulations"] == json.loads(json.dumps(expected["formulations"]))
    assert written["formulations"]["ends_english"]["templates"] == ["paper", "qa"]
    assert jn.load_result(out).PASS == "templates"
    again = subprocess.run(base[:-1] + [f"--output_dir={out / 'paper'}", "--prompt_format=paper,qa"], cwd=REPO,
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "holds a single run" in again.stderr
