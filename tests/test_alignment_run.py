"""The alignment run end to end on the tiny random llama: resume extends the training and re-evaluates, and a
resume with another config or other weights is refused before anything runs."""

import dataclasses
import os
import shutil

import jax
import numpy as np
import pytest

from jaxneurons.alignment.experiment import evaluate, run_alignment
from jaxneurons.alignment.train import TrainConfig
from jaxneurons.analysis.figures import plot_alignment_per_layer
from jaxneurons.pipeline import ResumeMismatchError, SharingConfig, run_sharing_analysis
from jaxneurons.pipeline.identity import weights_fingerprint
from jaxneurons.tasks import get_task
from tests.fixtures import LANGS, tiny_lm

CONFIG = TrainConfig(lr=1e-2, warmup=1, steps=2, batch_size=2, save_every=1)


@pytest.fixture(scope="module")
def setup():
    task = get_task("builtin_nli")
    examples = task.load(LANGS, num_examples=4, prompt_format="paper").examples
    return tiny_lm(seed=5), task, examples[:2], examples[2:]


@pytest.fixture(scope="module")
def finished(setup, tmp_path_factory):
    """A finished 2-step run: (its folder, alignment.json)."""
    lm, task, train_ex, eval_ex = setup
    out = str(tmp_path_factory.mktemp("align"))
    return out, run_alignment(lm, task, train_ex, eval_ex, LANGS, CONFIG, out, eval_batch_size=2)


def test_resume_with_more_steps_continues_and_reevaluates(setup, finished, tmp_path):
    """2 steps, then --resume with 3: training continues at step 3, and after / control_after are those of the
    new weights (they used to be the stale 2-step numbers)."""
    import orbax.checkpoint as ocp

    lm, task, train_ex, eval_ex = setup
    out = str(tmp_path / "run")
    shutil.copytree(finished[0], out)
    longer = run_alignment(lm, task, train_ex, eval_ex, LANGS, dataclasses.replace(CONFIG, steps=3), out,
                           resume=True, eval_batch_size=2)
    assert longer["history_last"]["step"] == 3 and longer["control_history_last"]["step"] == 3
    assert longer["before"] == finished[1]["before"]
    for key in ("after", "control_after"):
        assert longer[key]["weights"] != finished[1][key]["weights"], key
    trained = ocp.StandardCheckpointer().restore(f"{out}/model/params")
    assert weights_fingerprint(trained) == longer["after"]["weights"]
    fresh = evaluate(lm, trained, task, eval_ex, LANGS, str(tmp_path / "fresh"), batch_size=2)
    assert fresh == longer["after"]


def test_evaluation_is_the_sharing_pipelines_on_the_trained_params(setup, finished, tmp_path):
    """after = what the sharing run (analyze.py's pass, its default settings) reports for the trained weights on
    the eval examples: the same accuracy per language and % all-shared per layer at tau = 0."""
    import orbax.checkpoint as ocp

    lm, task, _, eval_ex = setup
    trained = ocp.StandardCheckpointer().restore(f"{finished[0]}/model/params")
    assert finished[1]["after"]["weights"] == weights_fingerprint(trained) != weights_fingerprint(lm.params)
    sharing = run_sharing_analysis(dataclasses.replace(lm, params=trained), task, eval_ex, LANGS,
                                   str(tmp_path / "sharing"), SharingConfig(batch_size=2), progress=False,
                                   figures=False)
    assert finished[1]["after"]["accuracy"] == sharing["accuracy"]
    assert finished[1]["after"]["all_shared_per_layer"] == sharing["per_layer"]["all_shared"]
    base = run_sharing_analysis(lm, task, eval_ex, LANGS, str(tmp_path / "base"), SharingConfig(batch_size=2),
                                progress=False, figures=False)
    assert finished[1]["before"]["accuracy"] == base["accuracy"]
    assert finished[1]["before"]["all_shared_per_layer"] == base["per_layer"]["all_shared"]


def test_figure_draws_every_evaluation(finished, tmp_path):
    """figures/all_shared_per_layer.png is written; the Figure has one line per evaluation with its per-layer %."""
    out, result = finished
    assert os.path.getsize(os.path.join(out, "figures", "all_shared_per_layer.png")) > 0
    fig = plot_alignment_per_layer(result, tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 0
    lines = fig.axes[0].get_lines()
    assert [line.get_label().split(" ")[0] for line in lines] == ["before", "after", "control_after"]
    for line, key in zip(lines, ("before", "after", "control_after")):
        np.testing.assert_array_equal(line.get_ydata(), result[key]["all_shared_per_layer"])
    assert plot_alignment_per_layer(result).axes  # no path: nothing written, the Figure returned


@pytest.mark.parametrize("change", [{"lr": 2e-2}, {"lambda_sharing": 0.5}, {"seed": 1}, {"layers": (0,)}])
def test_resume_with_another_config_is_refused(setup, finished, change):
    lm, task, train_ex, eval_ex = setup
    with pytest.raises(ResumeMismatchError, match=f"config.{next(iter(change))}"):
        run_alignment(lm, task, train_ex, eval_ex, LANGS, dataclasses.replace(CONFIG, **change), finished[0],
                      resume=True, eval_batch_size=2)


def test_resume_with_other_weights_is_refused(setup, finished):
    lm, task, train_ex, eval_ex = setup
    other = dataclasses.replace(lm, params=jax.tree.map(lambda x: x * 1.001, lm.params))
    with pytest.raises(ResumeMismatchError, match=r"differs in: weights\)"):
        run_alignment(other, task, train_ex, eval_ex, LANGS, CONFIG, finished[0], resume=True, eval_batch_size=2)


def test_resume_cannot_shorten_the_training(setup, finished, tmp_path):
    lm, task, train_ex, eval_ex = setup
    out = str(tmp_path / "run")
    shutil.copytree(finished[0], out)
    with pytest.raises(ValueError, match="past steps=1"):
        run_alignment(lm, task, train_ex, eval_ex, LANGS, dataclasses.replace(CONFIG, steps=1), out, resume=True,
                      eval_batch_size=2)


def test_sweep_summary_is_the_spread_of_each_runs_effects(setup, finished, tmp_path):
    """Two seeds of the same run: each run's effects from its alignment.json, per lambda their mean, sd and t
    interval over seeds (checked against NumPy / SciPy)."""
    from jaxneurons.alignment.sweep import effects, sweep_summary, write_sweep

    stats = pytest.importorskip("scipy.stats")
    lm, task, train_ex, eval_ex = setup
    other = run_alignment(lm, task, train_ex, eval_ex, LANGS, dataclasses.replace(CONFIG, seed=1), str(tmp_path),
                          eval_batch_size=2)
    results = {(1.0, 0): finished[1], (1.0, 1): other}
    summary = sweep_summary(results)
    for r, name in ((finished[1], "lambda1_seed0"), (other, "lambda1_seed1")):
        acc = {k: 100 * np.mean(list(r[k]["accuracy"].values())) for k in ("before", "after", "control_after")}
        np.testing.assert_allclose(
            [summary["runs"][name][k] for k in ("sharing_vs_control", "accuracy_vs_control", "sharing_vs_before")],
            [r["after"]["all_shared_pct"] - r["control_after"]["all_shared_pct"], acc["after"] - acc["control_after"],
             r["after"]["all_shared_pct"] - r["before"]["all_shared_pct"]])
    values = np.array([effects(r)["sharing_vs_control"] for r in results.values()])
    spread = summary["per_lambda"]["1"]["sharing_vs_control"]
    half = stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)
    np.testing.assert_allclose([spread["mean"], spread["sd"]], [values.mean(), values.std(ddof=1)])
    np.testing.assert_allclose(spread["ci95_between"], [values.mean() - half, values.mean() + half], rtol=1e-3)
    assert summary["per_lambda"]["1"]["seeds"] == [0, 1]
    assert "lambda = 1" in open(write_sweep(str(tmp_path), summary)).read()


def test_align_launcher_sweeps_seeds_into_one_folder_each(tmp_path):
    """launchers/align.py --seeds=0,1: one run per seed in lambda<L>_seed<S>/ (each with its own seed), then
    alignment_sweep.json from their alignment.json files."""
    import json
    import subprocess
    import sys

    from jaxneurons.alignment.sweep import sweep_summary
    from jaxneurons.loading.export import export_hf

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    export_hf(tiny_lm(seed=5), str(tmp_path / "model"))
    out = tmp_path / "sweep"
    done = subprocess.run(
        [sys.executable, os.path.join(repo, "launchers", "align.py"), f"--model={tmp_path / 'model'}",
         "--task=builtin_nli", "--languages=en,de", "--prompt_format=paper", "--train_split=test",
         "--eval_split=test", "--num_train=2", "--num_eval=2", "--steps=1", "--batch_size=2", "--warmup=0",
         "--seeds=0,1", f"--output_dir={out}"], cwd=repo, env={**os.environ, "PYTHONPATH": repo},
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    for seed in (0, 1):
        result = json.loads((out / f"lambda1_seed{seed}" / "alignment.json").read_text())
        assert result["config"]["seed"] == seed and result["config"]["lambda_sharing"] == 1.0
        results[(1.0, seed)] = result
    assert json.loads((out / "alignment_sweep.json").read_text()) == json.loads(json.dumps(sweep_summary(results)))
