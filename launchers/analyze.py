"""Analyse how a model's FFN neurons are shared across languages on a task (the paper's sharing analysis).

  python launchers/analyze.py --flagfile=launchers/configs/demo.flags
  python launchers/analyze.py --model=smollm2-135m --task=xnli --languages=en,de,zh --num_examples=100

Writes output_dir/{flags.txt, sharing.json, examples.npz, figures/*.png, report.md, state.npz}, and with
--attribution / --interventions also attribution.json / interventions.json and their report sections.
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
_PROMPT_FORMAT = flags.DEFINE_string("prompt_format", None, "Task formulation (default: the task's; see README "
                                     "'Task formulations'), e.g. paper (the paper's prompts) or paper_fewshot.")
_PROMPT_SUFFIX = flags.DEFINE_string("prompt_suffix", "", "Text appended to every language's prompt; \\n is a "
                                     "newline (e.g. --prompt_suffix='\\nAnswer:').")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples of the examples for the 95% intervals "
                                  "of every headline number (seeded; 0: no intervals).", lower_bound=0)
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", None, "Use the first N parallel examples (default: all).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Examples per step; each brings one row per language.")
_POSITIONS = flags.DEFINE_enum("positions", "last", ["last", "all"], "Neurons at the prompt's last token, or "
                               "activated at any prompt token (all).")
_PACK = flags.DEFINE_bool("pack", True, "Lay each batch's rows one after another into fixed bins instead of "
                          "padding each row: same results, less padding, one compiled shape (positions=last only).")
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
# -- devices and processes (jaxneurons/distributed.py) --
_MESH = flags.DEFINE_string("mesh", "data:-1,fsdp:1", "This process's devices as data:D,fsdp:F (-1: the rest); "
                            "examples split over data (batch_size rounded up to a multiple of D), weights over fsdp.")
_COORDINATOR_ADDRESS = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 for "
                                           "jax.distributed (default: auto-detected on TPU VMs / Slurm).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the job; without "
                                      "--coordinator_address they merge through files in output_dir.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index in [0, num_processes).")

# Which neurons matter (after the sharing analysis): attribution x category, and deactivation.
_ATTRIBUTION = flags.DEFINE_list("attribution", [], "Attribution methods to split by category: contribution, "
                                 "effective, ig (empty: none). Writes attribution.json.")
_TOP_K = flags.DEFINE_integer("top_k", None, "Top neurons per layer for the category mix (default: the paper's "
                              "800 of 16,384, scaled to the model's layer width).")
_IG_STEPS = flags.DEFINE_integer("ig_steps", 20, "Integrated-gradients steps (alphas).")
_IG_RULE = flags.DEFINE_enum("ig_rule", "gauss_legendre", ["gauss_legendre", "trapezoid", "left"], "IG "
                             "integration rule (left: the Knowledge-Neurons Riemann sum, alpha_k = k/n, misses "
                             "completeness by up to 28% at 20 steps on gemma3-270m).")
_IG_PATH = flags.DEFINE_enum("ig_path", "frozen_norm", ["frozen_norm", "knowledge_neurons"], "IG path: "
                             "frozen_norm holds a post-feedforward norm (Gemma 3) at its clean scale so IG sums to "
                             "the layer's effect; knowledge_neurons scales m alone (the same on other families).")
_IG_CHUNK = flags.DEFINE_integer("ig_chunk_size", None, "IG (layer, alpha) replays computed at once (default: "
                                 "as many as fit in about 2 GiB; lower it to bound memory further).")
_IG_MEMORY = flags.DEFINE_float("ig_memory_gb", 2.0, "Memory for IG's replays when --ig_chunk_size is not given "
                                "(raise it on a large GPU).")
_ATTRIBUTION_BATCH = flags.DEFINE_integer("attribution_batch_size", 4, "Examples per attribution step.")
_INTERVENTIONS = flags.DEFINE_list("interventions", [], "Categories to deactivate, each measured separately: "
                                   "all_shared, partial_shared, specific, random, magnitude (empty: none). A "
                                   "category also runs count-matched to all-shared; random and magnitude draw "
                                   "as many neurons as all-shared (magnitude: activated ones with its |m|). "
                                   "Writes interventions.json.")
_INTERVENE_ALL = flags.DEFINE_bool("intervene_all_positions", False, "Deactivate at every token instead of the "
                                   "prompt's last token.")
_RANDOM_SEEDS = flags.DEFINE_integer("random_seeds", 3, "Seeds of every drawn set: the random, |m|-matched and "
                                     "count-matched deactivation controls, and the attribution's |m|-matched null.")


def parse_thresholds(values: list[str]) -> list[float]:
    from jaxneurons.pipeline import check_thresholds

    try:
        thresholds = [float(v) for v in values]
    except ValueError:
        raise ValueError(f"--thresholds must be numbers, got {','.join(values)}") from None
    return check_thresholds(thresholds)


def check_importance_flags() -> None:
    """--attribution / --interventions name known methods and sets (before the model loads)."""
    from jaxneurons.pipeline.attribution import METHODS
    from jaxneurons.pipeline.interventions import KINDS

    for flag, given, known in (("attribution", _ATTRIBUTION.value, METHODS), ("interventions",
                                                                             _INTERVENTIONS.value, KINDS)):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(f"--{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")


def load_examples():
    """(task, LoadResult): checks the flags and loads the data before the (slow) model load."""
    from jaxneurons.tasks import get_task

    parse_thresholds(_THRESHOLDS.value)
    check_importance_flags()
    task = get_task(_TASK.value)
    task.check_languages(_LANGUAGES.value)
    task.check_split(_SPLIT.value)
    flags.FLAGS.prompt_format = task.check_prompt_format(_PROMPT_FORMAT.value)  # flags.txt records the one used
    loaded = task.load(_LANGUAGES.value, _SPLIT.value, _NUM_EXAMPLES.value, _DATA_DIR.value, _DATA_SOURCE.value,
                       _ON_ERROR.value, _PROMPT_FORMAT.value, prompt_suffix())
    check_readout(loaded.examples)
    return task, loaded


def check_readout(examples) -> None:
    """Attribution and deactivation act at the prompt's last token: a formulation that reads the neurons at the
    answer's end (harness) would attribute toward, or deactivate, neurons that have not read the item."""
    answer_end = examples and examples[0].readout == "answer"
    if answer_end and (_ATTRIBUTION.value or (_INTERVENTIONS.value and not _INTERVENE_ALL.value)):
        raise ValueError(f"--prompt_format={_PROMPT_FORMAT.value} reads the neurons at the end of the gold answer; "
                         "--attribution and --interventions work at the prompt's last token: run them with "
                         "--prompt_format=paper (or another prompt-end format; --intervene_all_positions lifts "
                         "this for --interventions)")


def prompt_suffix() -> str:
    """--prompt_suffix with the escapes \\n and \\t turned into a newline and a tab."""
    return _PROMPT_SUFFIX.value.replace("\\n", "\n").replace("\\t", "\t")


def sharing_analysis(lm, task, loaded) -> dict:
    from jaxneurons.pipeline import run_sharing_analysis

    return run_sharing_analysis(
        lm, task, loaded.examples, _LANGUAGES.value, _OUTPUT_DIR.value, batch_size=_BATCH_SIZE.value,
        positions=_POSITIONS.value, thresholds=parse_thresholds(_THRESHOLDS.value), resume=_RESUME.value,
        progress=_PROGRESS.value, skipped=loaded.skipped, flags_text=flags_text(),
        pack=_PACK.value and _POSITIONS.value == "last", bootstrap=_BOOTSTRAP.value,
        prompt_format=_PROMPT_FORMAT.value, prompt_suffix=prompt_suffix())


def importance_analyses(lm, task, loaded, sharing) -> None:
    """attribution.json / interventions.json, their figures, and their sections appended to report.md."""
    from jaxneurons.analysis import attribution_report as ar, write_report
    from jaxneurons.pipeline.attribution import run_attribution_analysis
    from jaxneurons.pipeline.interventions import run_interventions

    out, sections, figures_dir = _OUTPUT_DIR.value, [], os.path.join(_OUTPUT_DIR.value, "figures")
    if _ATTRIBUTION.value:
        result = run_attribution_analysis(
            lm, task, loaded.examples, _LANGUAGES.value, out, _ATTRIBUTION.value, _TOP_K.value,
            _ATTRIBUTION_BATCH.value, _IG_STEPS.value, _IG_RULE.value, _IG_CHUNK.value, _RESUME.value,
            _PROGRESS.value, _IG_MEMORY.value, _RANDOM_SEEDS.value, _BOOTSTRAP.value, ig_path=_IG_PATH.value)
        figures = {"top_share": ar.plot_top_share(result, os.path.join(figures_dir, "attribution_top_share.png")),
                   "attribution_share": ar.plot_attribution_share(
                       result, os.path.join(figures_dir, "attribution_share.png"))}
        sections.append(ar.attribution_section(result, figures, out))
    if _INTERVENTIONS.value:
        result = run_interventions(lm, task, loaded.examples, _LANGUAGES.value, out, _INTERVENTIONS.value,
                                   _BATCH_SIZE.value, _INTERVENE_ALL.value, _RANDOM_SEEDS.value, _RESUME.value,
                                   _PROGRESS.value, _BOOTSTRAP.value)
        figures = {"interventions": ar.plot_interventions(result, os.path.join(figures_dir, "interventions.png"))}
        sections.append(ar.interventions_section(result, figures, out))
    if sections:
        paths = {name: os.path.join(out, path) for name, path in sharing.get("figures", {}).items()}
        write_report(out, sharing, paths, sections)


def flags_text() -> str:
    """This launcher's flags (not absl's or jax's) as a flagfile."""
    own = flags.FLAGS.get_flags_for_module(sys.argv[0]) or flags.FLAGS.get_flags_for_module(__name__)
    return "\n".join(line for line in (f.serialize() for f in own) if line)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jaxneurons
    from jaxneurons.tasks import HubUnavailableError

    from jaxneurons import distributed

    try:  # join the job (explicit flags, else auto-detection as in flax's gemma example), then the mesh
        distributed.initialize(_COORDINATOR_ADDRESS.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        distributed.set_default_mesh(distributed.make_mesh(_MESH.value))
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        task, loaded = load_examples()
        logging.info("%s: %d examples in %s (skipped: %s)", task.name, len(loaded.examples),
                     ",".join(_LANGUAGES.value), loaded.skipped or "none")
        lm = jaxneurons.load_model(_MODEL.value, dtype=_DTYPE.value, allow_pickle=_ALLOW_PICKLE.value)
        sharing = sharing_analysis(lm, task, loaded)
        importance_analyses(lm, task, loaded, sharing)
    except (ValueError, OSError, ImportError, HubUnavailableError) as e:  # bad input: one line, no traceback
        sys.exit(f"error: {e}")
    print(f"accuracy: {', '.join(f'{k} {v:.2f}' for k, v in sharing['accuracy'].items())}")
    print(f"results in {os.path.abspath(_OUTPUT_DIR.value)} (report.md, sharing.json, examples.npz, figures/)")


if __name__ == "__main__":
    app.run(main)
