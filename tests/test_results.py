"""The library calls jn.sharing / jn.attribution / jn.deactivation and their results: tidy frames against the
JSON, figures as Figures, save / load_result, the HTML summary, runs in memory, and analyze.py's equality with
jn.sharing (tiny random model, builtin_nli)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

import jaxneurons as jn
from jaxneurons.analyses import ExamplesTask
from jaxneurons.pipeline import PipelineInputError
from jaxneurons.pipeline.outputs import SCHEMA_VERSION
from jaxneurons.tasks import get_task
from jaxneurons.tasks.base import ParallelExample
from tests.fixtures import LANGS, tiny_lm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM = 3
SHARING = dict(batch_size=2, thresholds=(0.0, 0.5), bootstrap=50)
ATTRIBUTION = dict(methods=("contribution",), top_k=4, seeds=1, bootstrap=20)
DEACTIVATION = dict(kinds=("all_shared", "random"), seeds=1, bootstrap=20)
CLI_FILES = {"sharing.json", "examples.npz", "report.md", "figures", "sections"}
# what differs between two runs of the same settings: timing, and the figure paths of a run that wrote files
VOLATILE = {"examples_per_second", "figures"}


@pytest.fixture(scope="module")
def lm():
    return tiny_lm(seed=3)


@pytest.fixture(scope="module")
def data():
    task = get_task("builtin_nli")
    return task, task.load(LANGS, num_examples=NUM, prompt_format="paper").examples


@pytest.fixture(scope="module")
def on_disk(lm, data, tmp_path_factory):
    """(folder, result) of a sharing run that wrote its files."""
    task, examples = data
    out = tmp_path_factory.mktemp("sharing")
    return out, jn.sharing(lm, examples, task=task, output_dir=out, progress=False, **SHARING)


@pytest.fixture(scope="module")
def in_memory(lm, data, tmp_path_factory):
    """(the folder it ran in, result, files there afterwards) of the same run with output_dir=None."""
    task, examples = data
    cwd, here = os.getcwd(), tmp_path_factory.mktemp("cwd")
    os.chdir(here)
    try:
        result = jn.sharing(lm, examples, task=task, progress=False, **SHARING)
    finally:
        os.chdir(cwd)
    return here, result, os.listdir(here)


@pytest.fixture(scope="module")
def attribution(lm, data):
    task, examples = data
    return jn.attribution(lm, examples, task=task, progress=False, **ATTRIBUTION)


@pytest.fixture(scope="module")
def deactivation(lm, data):
    task, examples = data
    return jn.deactivation(lm, examples, task=task, progress=False, **DEACTIVATION)


def numbers(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def same(a, b) -> bool:
    """Equal as JSON (tuples as lists, NaN as null)."""
    from jaxneurons.analysis import to_jsonable

    return json.dumps(to_jsonable(a), sort_keys=True) == json.dumps(to_jsonable(b), sort_keys=True)


# ---------------------------------------------------------------- sharing


def test_sharing_frame_holds_the_json_numbers(on_disk):
    out, result = on_disk
    saved = json.loads((out / "sharing.json").read_text())
    frame = result.to_pandas()
    assert list(frame.columns) == ["threshold", "layer", "category", "value", "ci_low", "ci_high"]
    assert len(frame) == 2 * 2 * 4  # thresholds x layers x categories
    for row in frame.itertuples():
        key = "0" if row.threshold == 0 else f"{row.threshold:g}"
        assert row.value == saved["threshold_sweep"][key][row.category][row.layer]
        if row.threshold == 0:  # sharing.json's interval, from the same resamples
            assert [row.ci_low, row.ci_high] == saved["per_layer_ci95"][row.category][row.layer]
        assert row.ci_low <= row.value + 1e-9 and row.value <= row.ci_high + 1e-9  # every threshold has one
    accuracy = result.accuracy_frame().set_index("language")
    for lang, d in saved["accuracy_detail"].items():
        assert accuracy.loc[lang, "accuracy"] == d["value"] and accuracy.loc[lang, "n"] == NUM
        assert [accuracy.loc[lang, "ci_low"], accuracy.loc[lang, "ci_high"]] == d["ci95"]
        assert accuracy.loc[lang, "chance"] == pytest.approx(1 / 3)
    assert result.per_layer.shape == (2, 4) and result.threshold_sweep.shape == (2, 2, 4)


def test_sharing_plot_returns_the_cli_figures(on_disk):
    out, result = on_disk
    assert result.figure_names == ["categories_per_layer", "activated_per_language", "threshold_sweep", "overlap",
                                   "similarity", "overlap_frequency"]
    assert {f"{name}.png" for name in result.figure_names} == set(os.listdir(out / "figures"))
    fig = result.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xlabel() == "layer" and ax.get_ylabel() == "% of the layer's neurons"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == list(result.categories) + ["all_shared, non-parallel control", "all_shared, same-language control"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), result.per_layer[:, 0])
    controls = result.controls_to_pandas().set_index(["measure", "grouping", "layer"])
    assert ax.get_lines()[4].get_linestyle() == "--"
    np.testing.assert_allclose(ax.get_lines()[4].get_ydata(), controls.loc[("all_shared", "non_parallel"), "value"])
    saved = json.loads((out / "sharing.json").read_text())["controls"]
    for (measure, grouping), stat in [(("cosine", "parallel_excess"), saved["cosine"]["parallel_excess"]),
                                      (("specific", "same_language"), saved["categories"]["same_language"]["specific"])]:
        rows = controls.loc[(measure, grouping)]
        assert rows["value"].tolist() == stat["per_layer"]["value"]
        assert rows["ci_low"].tolist() == stat["per_layer"]["ci95"][0]
        means = result.controls_to_pandas(mean=True).set_index(["measure", "grouping"]).loc[(measure, grouping)]
        assert [means["value"], means["ci_low"]] == [stat["mean_over_layers"]["value"],
                                                     stat["mean_over_layers"]["ci95"][0]]
    frequency = result.overlap_frequency_to_pandas()
    assert frequency["every"].tolist() == result.summary["overlap_frequency"]["every"]["per_layer"]["value"]
    assert len(result.plot("overlap_frequency").axes) == 2
    report = (out / "report.md").read_text()
    assert "## Grouping controls" in report and "the parallel excess is" in report and "## How often each" in report
    assert len(result.plot("threshold_sweep").axes) == 4
    with pytest.raises(ValueError, match="no figure 'nope'; choose from categories_per_layer"):
        result.plot("nope")


def test_in_memory_run_writes_nothing_and_equals_the_run_on_disk(on_disk, in_memory):
    _, disk = on_disk
    _, memory, files = in_memory
    assert files == []
    assert same(numbers(memory.summary), numbers(disk.summary))
    for name, array in disk.arrays.items():
        np.testing.assert_array_equal(memory.arrays[name], array)


def test_save_and_load_result_round_trip(in_memory, tmp_path):
    _, result, _ = in_memory
    result.save(tmp_path)
    assert set(os.listdir(tmp_path)) == CLI_FILES
    loaded = jn.load_result(tmp_path)
    assert isinstance(loaded, jn.SharingResult)
    assert same(numbers(loaded.summary), numbers(result.summary))
    assert loaded.to_pandas().equals(result.to_pandas())
    assert loaded.accuracy_frame().equals(result.accuracy_frame())
    for name, array in result.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array)


def test_results_json_carry_schema_versions_and_device(on_disk, attribution, deactivation, tmp_path):
    out, _ = on_disk
    attribution.save(tmp_path)
    deactivation.save(tmp_path)
    for path in (out / "sharing.json", tmp_path / "attribution.json", tmp_path / "interventions.json"):
        saved = json.loads(path.read_text())
        assert saved["schema_version"] == SCHEMA_VERSION == 3
        assert set(saved["versions"]) == {"jax", "flax", "transformers", "jaxneurons"}
        assert saved["versions"]["jaxneurons"] == jn.__version__ and saved["versions"]["jax"]
        assert saved["device_kind"] == __import__("jax").devices()[0].device_kind


def test_repr_html_says_what_ran_n_headline_and_warnings(on_disk):
    _, result = on_disk
    page = result._repr_html_()
    all_shared = result.summary["mean_over_layers"]["all_shared"]
    low, high = result.summary["mean_over_layers_ci95"]["all_shared"]
    assert "n <b>3</b>" in page and "task <b>builtin_nli</b>" in page and "en, de, ru" in page
    assert f"all-shared {all_shared:.1f}% [{low:.1f}, {high:.1f}]" in page
    warned = result.summary["accuracy_warnings"]
    assert warned  # the random model answers at chance
    assert "Warning" in page and "not above chance" in page


# ---------------------------------------------------------------- attribution and deactivation


def test_attribution_result_frame_plot_save_load(attribution, tmp_path):
    frame = attribution.to_pandas()
    assert list(frame.columns) == ["language", "method", "layer", "category", "value", "ci_low", "ci_high"]
    entry = attribution.summary["per_language"]["de"]["contribution"]
    for category, stat in [("all_shared", entry["top_k_share"]["all_shared"]["per_layer"]),
                           ("null", entry["null"]["top_k_share"]["per_layer"])]:
        rows = frame[(frame.language == "de") & (frame.category == category)].sort_values("layer")
        assert rows.value.tolist() == stat["value"] and rows.ci_low.tolist() == stat["ci95"][0]
    assert set(frame.category) == {"all_shared", "partial_shared", "specific", "non_activated", "null", "null_any"}
    fig = attribution.plot()
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "contribution: top-4 neurons (de)"
    assert isinstance(attribution.plot("attribution_share"), Figure)
    attribution.save(tmp_path)
    assert {"attribution_top_share.png", "attribution_share.png"} == set(os.listdir(tmp_path / "figures"))
    loaded = jn.load_result(tmp_path)
    assert isinstance(loaded, jn.AttributionResult) and loaded.to_pandas().equals(frame)
    assert same(loaded.summary, attribution.summary)
    page = attribution._repr_html_()
    headline = attribution.summary["headline"]["all_shared_top_k_share"]["contribution"]["value"]
    assert "n <b>3</b>" in page and f"{headline:.1f}%" in page and "model <b>tiny-llama</b>" in page


def test_deactivation_result_frames_plot_save_load(deactivation, tmp_path):
    frame = deactivation.to_pandas()
    sets = deactivation.summary["sets"]
    row = frame[(frame.set == "all_shared") & (frame.language == "en") & (frame.statistic == "accuracy")].iloc[0]
    assert [row.value, row.ci_low, row.ci_high] == [sets["all_shared"]["accuracy"]["en"]["value"],
                                                  *sets["all_shared"]["accuracy"]["en"]["ci95"]]
    assert set(frame.set) == {"clean", "all_shared", "random"} and set(frame.language) == {*LANGS, "mean"}
    tests = deactivation.paired_tests_frame()
    assert tests.control.tolist() == ["random", "random"]
    assert tests.sign_test_p.tolist() == [deactivation.summary["paired_tests"]["random"][m]["sign_test_p"]
                                          for m in ("correct", "gold_logprob")]
    fig = deactivation.plot()
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["clean", "all_shared", "random"]
    deactivation.save(tmp_path)
    loaded = jn.load_result(tmp_path, "deactivation")
    assert loaded.to_pandas().equals(frame) and loaded.languages == LANGS
    assert "n <b>3</b>" in deactivation._repr_html_()


def test_load_result_needs_the_pass_when_a_folder_holds_several(on_disk, attribution, tmp_path):
    out, sharing = on_disk
    sharing.save(tmp_path)
    attribution.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="holds sharing, attribution; pass pass_name="):
        jn.load_result(tmp_path)
    assert isinstance(jn.load_result(tmp_path, "attribution"), jn.AttributionResult)
    with pytest.raises(FileNotFoundError, match="no .*interventions.json"):
        jn.load_result(tmp_path, "deactivation")
    newer = json.loads((tmp_path / "sharing.json").read_text())
    (tmp_path / "sharing.json").write_text(json.dumps({**newer, "schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(ValueError, match="newer than this jaxneurons reads"):
        jn.load_result(tmp_path, "sharing")


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize("call, config", [(jn.sharing, "SharingConfig"), (jn.attribution, "AttributionConfig"),
                                          (jn.deactivation, "InterventionsConfig")])
def test_unknown_setting_is_refused_with_the_accepted_ones(lm, data, call, config):
    _, examples = data
    with pytest.raises(ValueError, match=f"unknown setting.s. batch_sise; accepted: .*{config} fields .*batch_size"):
        call(lm, examples, batch_sise=2)


def test_resume_needs_an_output_dir(lm, data):
    with pytest.raises(PipelineInputError, match="resume=True needs output_dir"):
        jn.sharing(lm, data[1], resume=True, progress=False, **SHARING)


def test_default_task_and_languages_come_from_the_examples(data):
    _, examples = data
    task = ExamplesTask(examples)
    assert (task.name, task.scoring, task.languages) == ("custom", "options", tuple(LANGS))
    open_answer = ParallelExample("q", {"en": "2+2=", "de": "2+2="}, None, {"en": 0, "de": 0},
                                  {"en": " 4", "de": " 4"})
    assert ExamplesTask([open_answer]).scoring == "greedy"
    with pytest.raises(ValueError, match="some have options and some do not"):
        ExamplesTask([examples[0], open_answer])
    from jaxneurons.analyses import _inputs

    only_en = ParallelExample("e", {"en": "x"}, None, {"en": 0}, {"en": " y"})
    assert _inputs([open_answer, only_en], None, None, None)[2] == ["en"]
    with pytest.raises(ValueError, match="languages: some examples lack de"):
        _inputs([open_answer, only_en], None, ["en", "de"], None)


# ---------------------------------------------------------------- the launcher


def test_analyze_py_equals_jn_sharing(lm, data, tmp_path):
    """The launcher maps flags to jn.sharing's settings: the same numbers from a subprocess run of analyze.py on
    the tiny model (exported as an HF folder) as from jn.sharing on the same model, examples and settings."""
    task, examples = data
    model = tmp_path / "model"
    jn.export_hf(lm, str(model))
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, os.path.join(REPO, "launchers", "analyze.py"), f"--model={model}",
                          "--task=builtin_nli", f"--languages={','.join(LANGS)}", "--prompt_format=paper",
                          f"--num_examples={NUM}", "--batch_size=2", "--thresholds=0,0.5", "--bootstrap=50",
                          f"--output_dir={out}", "--noprogress"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    from_cli = jn.load_result(out)
    assert (out / "flags.txt").exists() and (out / "run.json").exists()
    library = jn.sharing(jn.load_model(str(model)), examples, task=task, prompt_format="paper", progress=False,
                         **SHARING)
    assert same(numbers(from_cli.summary), numbers(library.summary))
    assert from_cli.to_pandas().equals(library.to_pandas())
    for name, array in library.arrays.items():
        np.testing.assert_array_equal(from_cli.arrays[name], array)


def test_jn_attribution_is_the_analysis_and_the_subpackage_stays_importable():
    import importlib

    importlib.import_module("jaxneurons.attribution.matched")
    from jaxneurons.attribution import integrated_gradients

    assert callable(jn.attribution) and jn.attribution.__module__ == "jaxneurons.analyses"
    assert integrated_gradients is jn.integrated_gradients
