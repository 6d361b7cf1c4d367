"""`launchers/analyze.py` as a user runs it: a subprocess on SmolLM2 and real XNLI, and its bad-input errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launchers", "analyze.py")
DATA_DIR = os.environ.get("JAXNEURONS_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")
SHARING_KEYS = {
    "model", "task", "languages", "num_examples", "num_layers", "neurons_per_layer", "neuron_position", "accuracy",
    "skipped", "padding_ratio", "examples_per_second", "per_layer", "per_layer_min", "per_layer_max",
    "threshold_sweep", "activated_per_language", "overlap", "by_correctness", "mean_over_layers", "thresholds",
    "controls", "overlap_frequency",
}
FIGURES = {"categories_per_layer.png", "activated_per_language.png", "threshold_sweep.png", "overlap.png",
           "overlap_frequency.png"}


def analyze(*flags: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, LAUNCHER, *flags], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def smollm_installed() -> bool:
    try:
        from jaxneurons.loading import zoo

        zoo.resolve_zoo("smollm2-135m")
        return True
    except Exception:  # noqa: BLE001 - any failure to locate it means: not installed here
        return False


@pytest.mark.skipif(not smollm_installed(), reason="zoo model smollm2-135m not installed")
@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA_DIR, "xnli")), reason=f"no XNLI data in {DATA_DIR}")
def test_xnli_on_smollm_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = analyze("--model=smollm2-135m", "--task=xnli", "--languages=en,de,fr", "--num_examples=3",
                     "--batch_size=2", "--thresholds=0,0.5", f"--data_dir={DATA_DIR}", f"--output_dir={out}",
                     "--noprogress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert str(out) in result.stdout

    sharing = json.loads((out / "sharing.json").read_text())
    assert SHARING_KEYS <= set(sharing), SHARING_KEYS - set(sharing)
    assert sharing["model"] == "smollm2-135m" and sharing["task"] == "xnli"
    assert sharing["languages"] == ["en", "de", "fr"] and sharing["num_examples"] == 3
    assert sharing["num_layers"] == 30 and sharing["neurons_per_layer"] == 1536
    assert set(sharing["accuracy"]) == {"en", "de", "fr"} and sharing["neuron_position"] == "last"
    assert 0 < sharing["padding_ratio"] <= 1 and sharing["examples_per_second"] > 0

    with np.load(out / "examples.npz") as npz:
        assert npz["category_counts"].shape == (3, 2, 30, 4)
        assert npz["activated"].shape == (3, 2, 3, 30)
        assert npz["correct"].shape == (3, 3)
        assert list(npz["ids"]) == ["xnli-test-0", "xnli-test-1", "xnli-test-2"]
        assert list(npz["languages"]) == ["en", "de", "fr"] and npz["thresholds"].tolist() == [0.0, 0.5]
        assert (npz["category_counts"].sum(-1) == 1536).all()

    assert FIGURES <= set(os.listdir(out / "figures"))
    report = (out / "report.md").read_text()
    assert "smollm2-135m" in report and "figures/categories_per_layer.png" in report
    flags = (out / "flags.txt").read_text().splitlines()
    assert "--task=xnli" in flags and "--num_examples=3" in flags and "--languages=en,de,fr" in flags


@pytest.mark.parametrize("flag, message", [
    ("--task=nope", "unknown task 'nope'"),
    ("--languages=en,xx", "does not support language(s) ['xx']"),
    ("--split=train", "has no split 'train'"),
    ("--thresholds=0,abc", "--thresholds must be numbers"),
])
def test_bad_input_gives_one_clear_line(tmp_path, flag, message):
    result = analyze("--task=xnli", f"--data_dir={DATA_DIR}", f"--output_dir={tmp_path}", flag, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert message in result.stderr


def test_missing_data_dir_names_the_flag(tmp_path):
    result = analyze("--task=xnli", "--data_dir=/nonexistent/data", f"--output_dir={tmp_path}", timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "--data_dir" in result.stderr
