"""Every bad input to analyze.py and align.py ends with one line naming the flag or file and how to fix it,
before the model loads; quotes a flagfile keeps are dropped; examples longer than the model's context are
refused (or dropped); the output folder policy; result files are 0644.

The launchers' cases run in one subprocess per launcher (this file as a script), each case through absl's flag
parsing and the launcher's main, with the model load replaced by an error: a case that reaches it fails.
"""

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from jaxneurons.analysis import write_json_atomic
from jaxneurons.pipeline import PipelineInputError, ResumeMismatchError
from jaxneurons.pipeline.output_dir import RUN_FILE, claim_output_dir, wait_for_claim

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_LOADED = "the model was loaded"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    """(a 2-layer HF checkpoint folder with its tokenizer, the same without tokenizer files)."""
    sys.path.insert(0, REPO)
    from jaxneurons.loading.export import export_hf
    from tests.fixtures import tiny_lm

    root = tmp_path_factory.mktemp("models")
    export_hf(tiny_lm(), str(root / "model"))
    os.makedirs(root / "no_tokenizer")
    for name in ("config.json", "model.safetensors"):
        os.link(root / "model" / name, root / "no_tokenizer" / name)
    return str(root / "model"), str(root / "no_tokenizer")


@pytest.fixture(scope="module")
def short_context_model(tiny_dirs, tmp_path_factory):
    """The tiny model with a context of SHORT_CONTEXT tokens: some builtin_nli examples fit, some do not."""
    model, _ = tiny_dirs
    short = tmp_path_factory.mktemp("short_context")
    for name in os.listdir(model):
        if name != "config.json":
            os.link(os.path.join(model, name), short / name)
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    (short / "config.json").write_text(json.dumps({**config, "max_position_embeddings": SHORT_CONTEXT}))
    return str(short)


SHORT_CONTEXT = 200  # bytes = tokens of the tiny model's tokenizer; builtin_nli's en/de rows have 163-233


def run_cases(launcher: str, base: list[str], cases: list[list[str]]) -> list[str]:
    """The error line of each case (see the module docstring)."""
    env = {**os.environ, "PYTHONPATH": REPO, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, os.path.abspath(__file__), launcher, json.dumps([base, cases])], cwd=REPO,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_analyze_bad_inputs_end_with_one_line_before_the_model_loads(tiny_dirs, short_context_model, tmp_path):
    model, no_tokenizer = tiny_dirs
    used = tmp_path / "used"
    used.mkdir()
    (used / "sharing.json").write_text("{}")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    os.makedirs(tmp_path / "empty" / "xnli")
    os.makedirs(tmp_path / "malformed" / "xnli")
    for name in ("test-en.tsv", "test-de.tsv", "test-labels.txt"):  # XNLI's files, without a line / malformed
        (tmp_path / "empty" / "xnli" / name).write_text("")
        (tmp_path / "malformed" / "xnli" / name).write_text("one column\n")
    base = [f"--model={model}", "--task=builtin_nli", "--languages=en,de", "--prompt_format=paper",
            f"--output_dir={tmp_path / 'out'}"]
    cases = {
        "--ig_steps=0": "--ig_steps=0", "--ig_steps=-3": "--ig_steps=-3",
        "--attribution_batch_size=0": "--attribution_batch_size=0", "--batch_size=0": "--batch_size=0",
        "--top_k=0": "--top_k=0", "--random_seeds=0": "--random_seeds=0", "--num_examples=0": "--num_examples=0",
        "--thresholds=0,-0.1": "--thresholds: thresholds must be >= 0",
        "--attribution=contribution,bogus": "--attribution: methods: unknown bogus; choose from",
        "--interventions=bogus": "--interventions: kinds: unknown bogus; choose from",
        "--interventions=all_shared --seeds=1,1": "--seeds: seeds must be distinct ints >= 0",
        "--interventions=all_shared --seeds=0,x": "--seeds must be ints, e.g. --seeds=0,1,2",
        "--attribution=contribution --seeds=0,1 --random_seeds=2": "--seeds and --random_seeds both given",
        "--interventions=all_shared --dose_fractions=0.5,x": "--dose_fractions must be numbers",
        "--interventions=all_shared --dose_fractions=0": "--dose_fractions: dose_fractions must be finite numbers > 0",
        "--languages=en,xx": "does not support language(s) ['xx']",
        "--interventions=non_parallel --num_examples=1": "--interventions=non_parallel groups 2 different examples",
        f"--model={no_tokenizer}": "has no tokenizer files (tokenizer.json, tokenizer_config.json, tokenizer.model): "
                                   "pass --tokenizer=",
        f"--output_dir={a_file}": f"--output_dir={a_file} is not writable",
        f"--output_dir={used}": f"--output_dir={used} holds another run's results (sharing.json); pass --resume",
        f"--task=xnli --data_dir={tmp_path / 'empty'}": "no examples of --task=xnli --split=test in --data_dir=",
        f"--task=xnli --data_dir={tmp_path / 'malformed'}": "(pass --on_error=skip to skip such items)",
        "--ig_memory_gb=nan": "--ig_memory_gb=nan must be a finite number > 0",
        "--ig_memory_gb=inf": "--ig_memory_gb=inf must be a finite number > 0",
        f"--model={short_context_model}": "example 'builtin_nli-p02-c' (en) is 202 tokens long (prompt and longest "
                                          "answer), longer than the 200 tokens of --model="
                                          f"{short_context_model}'s context; pass --on_error=skip",
    }
    extra = [[f"--model={no_tokenizer}", f"--tokenizer={model}"], [f"--model={no_tokenizer}", "--debug"]]
    *lines, with_tokenizer, debug = run_cases("analyze", base, [c.split(" ") for c in cases] + extra)
    for (case, expected), line in zip(cases.items(), lines):
        assert expected in line, (case, line)
        assert "\n" not in line.strip() and MODEL_LOADED not in line and "Traceback" not in line, (case, line)
    assert with_tokenizer == MODEL_LOADED  # --tokenizer lets a checkpoint without tokenizer files through
    assert debug == "Traceback: FileNotFoundError"  # --debug: the traceback instead of the line


def test_align_bad_inputs_end_with_one_line_before_the_model_loads(tiny_dirs, short_context_model, tmp_path):
    model, no_tokenizer = tiny_dirs
    used = tmp_path / "used"
    used.mkdir()
    (used / "alignment.json").write_text("{}")
    base = [f"--model={model}", "--task=builtin_nli", "--languages=en,de", "--prompt_format=paper",
            "--train_split=test", "--eval_split=test", "--num_train=2", "--num_eval=2",
            f"--output_dir={tmp_path / 'out'}"]
    cases = {
        "--task=nope": "unknown task 'nope'", "--model=nope": "'nope' is neither a zoo model",
        "--layers=5": "--layers: layers [5] out of range: the model has layers 0..1",
        "--layers=a": "--layers must be layer indices", "--lr=-1": "--lr=-1 must be a finite number > 0",
        "--lambda_sharing=-1": "--lambda_sharing=-1 must be a finite number >= 0",
        "--rho=2": "--rho=2 must be a finite number in (0, 1]", "--rho=0": "--rho=0 must be a finite number in (0, 1]",
        "--lambda_sharing=nan": "--lambda_sharing=nan must be a finite number >= 0",
        "--weight_decay=nan": "--weight_decay=nan must be a finite number >= 0",
        "--margin=nan": "--margin=nan must be a finite number >= 0", "--lr=inf": "--lr=inf must be a finite number",
        "--clip=nan": "--clip=nan must be a finite number > 0", "--seed=-1": "--seed=-1",
        "--steps=0": "--steps=0", "--num_train=0": "--num_train=0", "--languages=en,xx": "['xx']",
        "--seeds=0,a": "--seeds must be ints", "--lambdas=1,-1": "--lambdas must be finite and >= 0",
        "--seeds=0,1 --seed=2": "--seeds and --seed both given", "--seeds=0,0": "repeat a value",
        f"--model={no_tokenizer}": "pass --tokenizer=",
        f"--output_dir={used}": "holds another run's results (alignment.json); pass --resume",
        f"--model={short_context_model} --num_eval=3": "example 'builtin_nli-p02-c' (en) is 202 tokens long (prompt "
                                                       "and longest answer), longer than the 200 tokens of --model="
                                                       f"{short_context_model}'s context; shorten or remove it",
    }
    for (case, expected), line in zip(cases.items(), run_cases("align", base, [c.split(" ") for c in cases])):
        assert expected in line, (case, line)
        assert MODEL_LOADED not in line and "Traceback" not in line, (case, line)


def test_quotes_a_flagfile_keeps_are_dropped_and_align_defaults_to_a_prompt_end_format(tiny_dirs, tmp_path):
    model, _ = tiny_dirs
    flagfile = tmp_path / "quoted.flags"
    flagfile.write_text(f'--prompt_suffix="\\nAnswer:"\n--output_dir="{tmp_path / "quoted"}"\n--languages="en,de"\n')
    base = [f"--model={model}", "--task=builtin_nli", "--train_split=test", "--eval_split=test", "--num_train=2",
            "--num_eval=2"]
    quoted, default_format = run_cases("align", base, [[f"--flagfile={flagfile}", "--prompt_format=paper"],
                                                       [f"--output_dir={tmp_path / 'default_format'}"]])
    assert quoted == MODEL_LOADED and default_format == MODEL_LOADED
    assert sorted(os.listdir(tmp_path)) == ["default_format", "quoted", "quoted.flags"]  # no folder named '"...'
    claim = json.loads((tmp_path / "quoted" / RUN_FILE).read_text())
    assert claim["--prompt_suffix"] == "\\nAnswer:" and claim["--languages"] == ["en", "de"]
    # builtin_nli's default (harness) reads the neurons at the answer's end: align.py takes the paper prompt
    assert json.loads((tmp_path / "default_format" / RUN_FILE).read_text())["--prompt_format"] == "paper"


def test_renamed_flags_keep_their_old_spelling_one_release(tiny_dirs, tmp_path):
    """--positions and --intervene_all_positions still work, read as --neuron_position and
    --deactivate_every_token (the claim records the new spelling only); both spellings at once are refused."""
    model, _ = tiny_dirs
    base = [f"--model={model}", "--task=builtin_nli", "--languages=en,de", "--prompt_format=paper"]
    old = ["--positions=all", "--intervene_all_positions", "--interventions=all_shared",
           f"--output_dir={tmp_path / 'old'}"]
    old, both = run_cases("analyze", base, [old, ["--positions=last", "--neuron_position=last",
                                                  f"--output_dir={tmp_path / 'both'}"]])
    assert old == MODEL_LOADED
    claim = json.loads((tmp_path / "old" / RUN_FILE).read_text())
    assert claim["--neuron_position"] == "any_token" and claim["--deactivate_every_token"] is True
    assert claim["--positions"] is None and claim["--intervene_all_positions"] is None
    assert "--positions is the old name of --neuron_position: give --neuron_position alone" in both


def test_analyze_drops_examples_longer_than_the_context_with_on_error_skip(short_context_model, tmp_path):
    base = [f"--model={short_context_model}", "--task=builtin_nli", "--languages=en,de", "--prompt_format=paper"]
    quoted_out = f'--output_dir="{tmp_path / "skip"}"'  # quotes as a flagfile keeps them
    assert run_cases("analyze", base, [["--on_error=skip", quoted_out]]) == [MODEL_LOADED]
    assert os.listdir(tmp_path) == ["skip"]


def test_check_context_counts_what_it_drops(short_context_model):
    from jaxneurons.cli import check_context
    from jaxneurons.tasks import get_task

    examples = get_task("builtin_nli").load(["en", "de"], split="test", prompt_format="paper").examples
    kept, dropped = check_context(examples, ["en", "de"], short_context_model, None, skip=True)
    assert dropped == 18 and len(kept) == len(examples) - 18
    assert "builtin_nli-p02-c" not in {ex.id for ex in kept} and "builtin_nli-p01-e" in {ex.id for ex in kept}
    with pytest.raises(ValueError, match=r"^example 'builtin_nli-p02-c' \(en\) is 202 tokens long"):
        check_context(examples, ["en", "de"], short_context_model, None)
    assert check_context(examples[:2], ["en", "de"], short_context_model, None) == (examples[:2], 0)


def test_flag_values_lose_one_pair_of_quotes():
    from jaxneurons.cli import POSITIVE, Bounds, strip_quotes

    assert strip_quotes('"\\nAnswer:"') == "\\nAnswer:" and strip_quotes("'runs/x'") == "runs/x"
    assert strip_quotes('"runs/x\'') == '"runs/x\'' and strip_quotes('"') == '"' and strip_quotes("a") == "a"
    assert strip_quotes(['"en', 'de"']) == strip_quotes(["en,de"]) == strip_quotes(['"en"', "de"]) == ["en", "de"]
    assert not POSITIVE.admits(0.0) and POSITIVE.admits(1e-9) and not POSITIVE.admits(float("nan"))
    assert Bounds(0.0, 1.0, low_open=True).admits(1.0) and not Bounds().admits(float("inf"))


def test_pass_settings_refuse_nan_and_inf():
    from jaxneurons.pipeline.checks import check_at_least_zero, check_positive

    for bad in (float("nan"), float("inf")):
        with pytest.raises(PipelineInputError, match="bootstrap must be a finite number >= 0"):
            check_at_least_zero(bootstrap=bad)
        with pytest.raises(PipelineInputError, match="top_k must be a finite number >= 1"):
            check_positive(top_k=bad)
    check_at_least_zero(bootstrap=0)
    check_positive(top_k=1, ig_chunk_size=None)


def test_a_claim_without_results_is_started_again_by_the_same_flags(tmp_path):
    claim_output_dir(str(tmp_path), {"--task": "xnli"})
    (tmp_path / "flags.txt").write_text("--task=xnli\n")
    (tmp_path / "figures").mkdir()  # an empty folder is no result either
    claim_output_dir(str(tmp_path), {"--task": "xnli"})  # the run died before any result: start again
    claim_output_dir(str(tmp_path), {"--task": "xnli"}, resume=True)  # --resume: from the beginning
    with pytest.raises(PipelineInputError, match=r"holds the claim of another run that left no results \(differs in: "
                                                 r"--task\); pass --overwrite"):
        claim_output_dir(str(tmp_path), {"--task": "pawsx"})
    claim_output_dir(str(tmp_path), {"--task": "pawsx"}, overwrite=True)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == {"--task": "pawsx"}
    (tmp_path / "state.npz").write_text("a checkpoint")  # a result: the folder is a run's again
    with pytest.raises(PipelineInputError, match="holds another run's results"):
        claim_output_dir(str(tmp_path), {"--task": "pawsx"})


def test_resume_of_an_empty_folder_starts_from_the_beginning(tmp_path):
    claim_output_dir(str(tmp_path / "new"), {"--task": "xnli"}, resume=True)
    assert os.listdir(tmp_path / "new") == [RUN_FILE]


def test_a_folder_of_another_run_is_refused(tmp_path):
    (tmp_path / "attribution.json").write_text("{}")
    with pytest.raises(PipelineInputError, match="holds another run's results"):
        claim_output_dir(str(tmp_path), {"--task": "xnli"})


def test_overwrite_removes_every_file_of_the_previous_run(tmp_path):
    for name in ("sharing.json", "attribution.json", "state.npz", "figures/attribution_share.png",
                 "checkpoints/aligned/8/params", "eval/after/state.npz"):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_text("old")
    claim_output_dir(str(tmp_path), {"--task": "xnli"}, overwrite=True)
    assert os.listdir(tmp_path) == [RUN_FILE]


def test_overwrite_refuses_a_folder_that_is_no_run(tmp_path):
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(PipelineInputError, match="no jaxneurons run's"):
        claim_output_dir(str(tmp_path), {"--task": "xnli"}, overwrite=True)
    assert os.listdir(tmp_path) == ["thesis.tex"]


def test_resume_names_the_flags_that_differ(tmp_path):
    claim_output_dir(str(tmp_path), {"--task": "xnli", "--lr": 1e-4, "--seed": 0})
    claim_output_dir(str(tmp_path), {"--task": "xnli", "--lr": 1e-4, "--seed": 0}, resume=True)
    with pytest.raises(ResumeMismatchError, match=r"differs in: --lr, --seed\)"):
        claim_output_dir(str(tmp_path), {"--task": "xnli", "--lr": 2e-4, "--seed": 1}, resume=True)


def test_resume_refuses_a_folder_without_run_json(tmp_path):
    (tmp_path / "state.npz").write_text("older")
    with pytest.raises(PipelineInputError, match="has no run.json .* cannot be resumed; --overwrite replaces it"):
        claim_output_dir(str(tmp_path), {"--task": "xnli"}, resume=True)


def test_other_processes_wait_for_process_0s_claim(tmp_path):
    claim_output_dir(str(tmp_path), {"--task": "xnli"})
    wait_for_claim(str(tmp_path), {"--task": "xnli"}, since=time.time())  # claimed: returns at once
    with pytest.raises(PipelineInputError, match="did not claim"):  # another run's claim: not this run's
        wait_for_claim(str(tmp_path), {"--task": "pawsx"}, timeout_s=0.6)
    with pytest.raises(PipelineInputError, match="did not claim"):  # --overwrite: a claim from before its start
        wait_for_claim(str(tmp_path), {"--task": "xnli"}, since=time.time() + 120, timeout_s=0.6)


def test_result_files_are_created_0644(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_json_atomic(tmp_path / "result.json", {"a": 1})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def _drive(launcher: str, base: list[str], cases: list[list[str]]) -> None:
    """Run each case through the launcher's flag parsing and main; print the list of error lines as JSON."""
    import contextlib
    import importlib.util
    import io

    from absl import app, flags

    import jaxneurons

    def no_load(*args, **kwargs):
        raise RuntimeError(MODEL_LOADED)

    jaxneurons.load_model = no_load
    spec = importlib.util.spec_from_file_location(f"{launcher}_launcher", os.path.join(REPO, "launchers",
                                                                                     f"{launcher}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = []
    for case in cases:
        flags.FLAGS.unparse_flags()
        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                app.parse_flags_with_usage([launcher, *base, *case])
                module.main([launcher])
            lines.append("no error")
        except SystemExit as e:
            lines.append(str(e.code) if isinstance(e.code, str) else stderr.getvalue().splitlines()[0])
        except RuntimeError as e:
            lines.append(str(e))
        except Exception as e:  # noqa: BLE001 - what would reach the user as a traceback
            lines.append(f"Traceback: {type(e).__name__}")
    print(json.dumps(lines))


if __name__ == "__main__":
    _drive(sys.argv[1], *json.loads(sys.argv[2]))
