"""The alignment run end to end on the tiny random llama: resume extends the training and re-evaluates, and a
resume with another config or other weights is refused before anything runs."""

import dataclasses
import shutil

import jax
import pytest

from jaxneurons.alignment.experiment import evaluate, run_alignment
from jaxneurons.alignment.train import TrainConfig
from jaxneurons.pipeline import ResumeMismatchError
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
