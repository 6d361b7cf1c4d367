"""Analyse how a model's FFN neurons are shared across languages on a task (the paper's sharing analysis).

  python launchers/analyze.py --flagfile=launchers/configs/demo.flags
  python launchers/analyze.py --model=smollm2-135m --task=xnli --languages=en,de,zh --num_examples=100

Writes output_dir/{flags.txt, sharing.json, examples.npz, figures/*.png, report.md, state.npz}.
`--resume` continues an interrupted run from state.npz with identical results.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

_MODEL = flags.DEFINE_string("model", "smollm2-135m", "Zoo name (smollm2-135m, gemma3-270m), a Hugging Face "
                             "checkpoint directory, a .gguf file or a jaxneurons checkpoint directory.")
_TASK = flags.DEFINE_string("task", "builtin_nli", "Task name: xnli, pawsx, xcopa, mpararel, mzsre_en2all, "
                            "mzsre_all2en, builtin_nli, builtin_facts.")
_LANGUAGES = flags.DEFINE_list("languages", "en,de,es,fr,ru,th,tr,vi,zh", "Comma-separated languages; every "
                               "example is analysed in all of them.")
_SPLIT = flags.DEFINE_string("split", "test", "Dataset split (e.g. test, dev; see the task).")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Use the first N parallel examples (default: all).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Examples per step; each brings one row per language.")
_POSITIONS = flags.DEFINE_enum("positions", "last", ["last", "all"], "Neurons at the prompt's last token, or "
                               "activated at any prompt token (all).")
_THRESHOLDS = flags.DEFINE_list("thresholds", "0,0.1,0.2,0.3,0.4,0.5", "Activation thresholds tau (must "
                                "include 0, the paper's).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Weight and activation dtype.")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/analyze", "Directory for the results.")
_DATA_DIR = flags.DEFINE_string("data_dir", os.environ.get("JAXNEURONS_DATA_DIR"), "Folder with the dataset "
                                "files (default: env JAXNEURONS_DATA_DIR).")
_DATA_SOURCE = flags.DEFINE_enum("data_source", "local", ["local", "hub"], "Read datasets from data_dir (local) "
                                 "or the Hugging Face hub.")
_ON_ERROR = flags.DEFINE_enum("on_error", "raise", ["raise", "skip"], "On a malformed data item: stop with a "
                              "message (raise) or skip and count it (skip).")
_RESUME = flags.DEFINE_bool("resume", False, "Continue from output_dir/state.npz if it belongs to this run.")
_ALLOW_PICKLE = flags.DEFINE_bool("allow_pickle", False, "Allow loading pytorch_model.bin (a pickle runs code).")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")


def initialize_distributed() -> None:
    """Join a multi-process job when there is one (as flax's gemma example); a single host just goes on."""
    import jax

    try:
        jax.distributed.initialize()
    except Exception as e:  # noqa: BLE001 - no cluster to join: run single-process
        logging.info("jax.distributed.initialize() skipped (%s): single process", e)
    logging.info("process %d of %d, devices: %s", jax.process_index(), jax.process_count(), jax.devices())


def parse_thresholds(values: list[str]) -> list[float]:
    from jaxneurons.pipeline import check_thresholds

    try:
        thresholds = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--thresholds must be numbers, got {','.join(values)}") from None
    return check_thresholds(thresholds)


def load_examples():
    """(task, LoadResult): checks the flags and loads the data before the (slow) model load."""
    from jaxneurons.tasks import get_task

    parse_thresholds(_THRESHOLDS.value)
    task = get_task(_TASK.value)
    task.check_languages(_LANGUAGES.value)
    task.check_split(_SPLIT.value)
    return task, task.load(_LANGUAGES.value, _SPLIT.value, _NUM_EXAMPLES.value, _DATA_DIR.value,
                           _DATA_SOURCE.value, _ON_ERROR.value)


def sharing_analysis(lm, task, loaded) -> dict:
    from jaxneurons.pipeline import run_sharing_analysis

    return run_sharing_analysis(
        lm, task, loaded.examples, _LANGUAGES.value, _OUTPUT_DIR.value, batch_size=_BATCH_SIZE.value,
        positions=_POSITIONS.value, thresholds=parse_thresholds(_THRESHOLDS.value), resume=_RESUME.value,
        progress=_PROGRESS.value, skipped=loaded.skipped, flags_text=flags_text())


def flags_text() -> str:
    """This launcher's flags (not absl's or jax's) as a flagfile."""
    own = flags.FLAGS.get_flags_for_module(sys.argv[0]) or flags.FLAGS.get_flags_for_module(__name__)
    return "\n".join(line for line in (f.serialize() for f in own) if line)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jaxneurons
    from jaxneurons.tasks import HubUnavailableError

    initialize_distributed()
    try:
        task, loaded = load_examples()
        logging.info("%s: %d examples in %s (skipped: %s)", task.name, len(loaded.examples),
                     ",".join(_LANGUAGES.value), loaded.skipped or "none")
        lm = jaxneurons.load_model(_MODEL.value, dtype=_DTYPE.value, allow_pickle=_ALLOW_PICKLE.value)
        sharing = sharing_analysis(lm, task, loaded)
        # Later analyses (attribution, interventions) go here, reusing lm, task, loaded and output_dir.
    except (ValueError, OSError, ImportError, HubUnavailableError) as e:  # bad input: one line, no traceback
        sys.exit(f"error: {e}")
    print(f"accuracy: {', '.join(f'{k} {v:.2f}' for k, v in sharing['accuracy'].items())}")
    print(f"results in {os.path.abspath(_OUTPUT_DIR.value)} (report.md, sharing.json, examples.npz, figures/)")


if __name__ == "__main__":
    app.run(main)
