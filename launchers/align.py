"""Fine-tune a model to raise cross-language neuron sharing and measure it (paper v1, claim iii).

  python launchers/align.py --flagfile=launchers/configs/align_xnli.flags [--resume]

Writes OUTPUT_DIR/alignment.json (before / after / control_after: all_shared_pct, all_shared_per_layer,
accuracy), figures/all_shared_per_layer.png, report.md, checkpoints/ and model/ (jn.load_model(OUTPUT_DIR/model)).
Every flag and the data are checked before the model loads. A folder holding another run's results is refused:
`--resume` continues the run of the same settings, weights and examples (a larger --steps extends the training
and re-evaluates), `--overwrite` removes the other run's files first.
"""

import os

from absl import app, flags, logging

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "smollm2-135m", "Zoo name, HF checkpoint dir, .gguf file or orbax model dir.")
flags.DEFINE_string("tokenizer", None, "Take the tokenizer from here (zoo name, .gguf file, HF or jaxneurons "
                    "folder), e.g. for a checkpoint folder without tokenizer files.")
flags.DEFINE_string("task", "xnli", "Task name (jaxneurons.tasks).")
flags.DEFINE_list("languages", ["en", "de", "fr", "zh"], "Languages of each parallel example.")
flags.DEFINE_string("train_split", "dev", "Split the training examples come from.")
flags.DEFINE_string("eval_split", "test", "Held-out split for evaluation (same split -> disjoint slices).")
flags.DEFINE_integer("num_train", 64, "Training examples.", lower_bound=1)
flags.DEFINE_integer("num_eval", 64, "Evaluation examples.", lower_bound=1)
flags.DEFINE_list("layers", None, "Layers whose MLP is trained (default: all); everything else is frozen.")
flags.DEFINE_float("lr", 1e-4, "Peak learning rate (warmup-cosine).")
flags.DEFINE_integer("warmup", 10, "Warmup steps.", lower_bound=0)
flags.DEFINE_float("clip", 1.0, "Global-norm gradient clipping.")
flags.DEFINE_float("weight_decay", 0.0, "AdamW weight decay.")
flags.DEFINE_float("lambda_sharing", 1.0, "Weight of the sharing loss (the control run uses 0).")
flags.DEFINE_float("rho", 0.5, "Fraction of languages that must activate a neuron for it to be a target.")
flags.DEFINE_float("margin", 1.0, "Hinge margin on the pre-activation.")
flags.DEFINE_integer("steps", 100, "Optimizer steps (each run); --resume with more steps extends a run.",
                     lower_bound=1)
flags.DEFINE_integer("batch_size", 4, "Parallel examples per step (each with every language).", lower_bound=1)
flags.DEFINE_integer("save_every", 10, "Checkpoint interval in steps.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Data-order seed.", lower_bound=0)
flags.DEFINE_list("seeds", None, "Several data-order seeds (e.g. 0,1,2) instead of --seed: one run per seed (and "
                  "per --lambdas) in output_dir/lambda<L>_seed<S>/, then alignment_sweep.json/.md: the spread of "
                  "the effects over seeds.")
flags.DEFINE_list("lambdas", None, "Several sharing-loss weights (e.g. 0.5,1) instead of --lambda_sharing, each "
                  "run with every seed (see --seeds).")
flags.DEFINE_string("output_dir", "runs/align", "Output folder.")
flags.DEFINE_bool("resume", False, "Continue both runs from their latest checkpoints in output_dir (the same "
                  "settings, weights and examples; anything else is refused, naming what differs).")
flags.DEFINE_bool("overwrite", False, "output_dir holds another run's results: remove all of them first.")
flags.DEFINE_bool("debug", False, "On a bad input, show the traceback instead of one line.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype.")
flags.DEFINE_string("data_dir", os.environ.get("JAXNEURONS_DATA_DIR"), "Data folder (default: env "
                    "JAXNEURONS_DATA_DIR).")
flags.DEFINE_string("prompt_format", None, "Task formulation, as in analyze.py (default: the task's paper "
                    "prompt, which ends where the objective reads the neurons).")
flags.DEFINE_string("prompt_suffix", "", "Text appended to every language's prompt; \\n is a newline.")

# Flags of where and how a run executes, never of what it computes; TrainConfig's identity=False fields join them
# (`not_in_identity`: --steps extends a run, --save_every is when it saves).
RUNTIME_FLAGS = {"resume", "overwrite", "debug", "output_dir", "data_dir", "tokenizer"}


def not_in_identity() -> set[str]:
    """The flags that do not enter the output folder's identity."""
    from jaxneurons.alignment import TrainConfig
    from jaxneurons.cli import identity_free

    return RUNTIME_FLAGS | identity_free(TrainConfig)


def train_config():
    from jaxneurons.alignment.train import TrainConfig
    from jaxneurons.cli import build_config

    try:
        layers = tuple(int(x) for x in FLAGS.layers) if FLAGS.layers else None
    except ValueError:
        raise ValueError(f"--layers must be layer indices, got {','.join(FLAGS.layers)}") from None
    return build_config(TrainConfig, **{name: (name, getattr(FLAGS, name)) for name in (
        "lr", "warmup", "clip", "weight_decay", "lambda_sharing", "rho", "margin", "steps", "batch_size", "seed",
        "save_every")}, layers=("layers", layers))


def check_flags() -> None:
    """Every flag's value: quotes a flagfile kept dropped (with a warning), float flags finite and in range."""
    from jaxneurons.cli import AT_LEAST_ZERO, POSITIVE, Bounds, check_flag_values

    check_flag_values(own_module(), {"lr": POSITIVE, "clip": POSITIVE, "weight_decay": AT_LEAST_ZERO,
                                     "lambda_sharing": AT_LEAST_ZERO, "margin": AT_LEAST_ZERO,
                                     "rho": Bounds(0.0, 1.0, low_open=True)})


def prompt_format(task) -> str:
    """--prompt_format checked; without it the task's paper prompt (the alignment objective reads the neurons at
    the prompt's last token, which a default such as xnli's harness, read at the answer's end, does not offer)."""
    if FLAGS.prompt_format is None and "paper" in task.prompt_formats and task.default_format != "paper":
        logging.info("--prompt_format not given: using paper (the task's default %s is not read at the prompt's "
                     "end, where the alignment objective reads the neurons)", task.default_format)
        return "paper"
    return task.check_prompt_format(FLAGS.prompt_format)


def load_data(task, model: str, tokenizer: str | None):
    """(train, eval) examples, each split non-empty, in every language and within the model's context, before the
    model loads."""
    from jaxneurons.alignment.experiment import load_examples as load
    from jaxneurons.cli import check_context
    from jaxneurons.tasks import TaskDataError

    task.check_languages(FLAGS.languages)
    for split in (FLAGS.train_split, FLAGS.eval_split):
        task.check_split(split)
    FLAGS.prompt_format = prompt_format(task)  # flags.txt and run.json record the one used
    try:
        train_ex, eval_ex = load(task, FLAGS.languages, FLAGS.train_split, FLAGS.eval_split, FLAGS.num_train,
                                 FLAGS.num_eval, FLAGS.data_dir, FLAGS.prompt_format, prompt_suffix())
    except TaskDataError as e:  # align.py has no --on_error: its data must be clean
        raise TaskDataError(str(e).replace('pass on_error="skip" to skip such items', "fix or remove such items in "
                                           "the data files")) from None
    for name, split, examples in (("train", FLAGS.train_split, train_ex), ("eval", FLAGS.eval_split, eval_ex)):
        if not examples:
            raise ValueError(f"no {name} examples of --task={FLAGS.task} in --{name}_split={split} (--data_dir="
                             f"{FLAGS.data_dir}): check the split, --num_train / --num_eval and the data files")
    check_context(train_ex + eval_ex, FLAGS.languages, model, tokenizer,
                  hint="shorten or remove it in the data files, or choose a model with a longer context")
    return train_ex, eval_ex


def prompt_suffix() -> str:
    """--prompt_suffix with the escapes \\n and \\t turned into a newline and a tab."""
    return FLAGS.prompt_suffix.replace("\\n", "\n").replace("\\t", "\t")


def own_module() -> str:
    """The module absl files this launcher's flags under (the script's path when run as a script)."""
    from jaxneurons.cli import launcher_module

    return launcher_module("lambda_sharing")


def sweep_settings() -> list[tuple[float, int]]:
    """The (lambda, seed) of every run: --lambdas x --seeds, or the one --lambda_sharing, --seed."""
    from jaxneurons.cli import AT_LEAST_ZERO

    try:
        lambdas = [float(v) for v in FLAGS.lambdas] if FLAGS.lambdas else [FLAGS.lambda_sharing]
    except ValueError:
        raise ValueError(f"--lambdas must be numbers, e.g. --lambdas=0.5,1, got {','.join(FLAGS.lambdas)}") from None
    try:
        seeds = [int(v) for v in FLAGS.seeds] if FLAGS.seeds else [FLAGS.seed]
    except ValueError:
        raise ValueError(f"--seeds must be ints, e.g. --seeds=0,1,2, got {','.join(FLAGS.seeds)}") from None
    for name, given, alone in (("lambdas", FLAGS.lambdas, "lambda_sharing"), ("seeds", FLAGS.seeds, "seed")):
        if given and FLAGS[alone].present:
            raise ValueError(f"--{name} and --{alone} both given: keep one")
    bad = [v for v in lambdas if not AT_LEAST_ZERO.admits(v)] + [v for v in seeds if v < 0]
    if bad:
        raise ValueError(f"--lambdas must be finite and >= 0 and --seeds >= 0, got {bad[0]}")
    runs = [(lam, seed) for lam in lambdas for seed in seeds]
    if len(set(runs)) != len(runs):
        raise ValueError("--lambdas / --seeds repeat a value: give each once")
    return runs


def use_run(lambda_sharing: float, seed: int, output_dir: str) -> None:
    """Make the flags those of one run of a sweep (its flags.txt and identity hold its own lambda and seed)."""
    FLAGS.lambda_sharing, FLAGS.seed, FLAGS.lambdas, FLAGS.seeds = lambda_sharing, seed, None, None
    FLAGS.output_dir = output_dir


def align() -> None:
    """Every check, then the model load, then the run (or, with --seeds / --lambdas, each run, then the spread)."""
    from jaxneurons.alignment.experiment import run_alignment
    from jaxneurons.alignment.sweep import run_name, sweep_summary, write_sweep
    from jaxneurons.cli import check_model, folder_identity, load_model_timed, quiet_checkpoint_logs
    from jaxneurons.pipeline.output_dir import RUN_FILE, claim_output_dir
    from jaxneurons.tasks import get_task

    check_flags()
    quiet_checkpoint_logs()
    runs, root = sweep_settings(), FLAGS.output_dir
    if len(runs) > 1 and os.path.exists(os.path.join(root, RUN_FILE)):
        raise ValueError(f"--output_dir={root} holds a single run ({RUN_FILE}); a sweep (--seeds / --lambdas) "
                         "writes one folder per run: choose another --output_dir")
    task = get_task(FLAGS.task)
    cfg = train_config()
    train_ex, eval_ex = load_data(task, FLAGS.model, FLAGS.tokenizer)
    model_config = check_model(FLAGS.model, FLAGS.tokenizer)
    try:
        cfg.check_layers(model_config.num_layers)
    except ValueError as e:
        raise ValueError(f"--layers: {e}") from None
    facts = {"model": FLAGS.model, "task": task.name, "train_split": FLAGS.train_split,
             "eval_split": FLAGS.eval_split, "dtype": FLAGS.dtype, "prompt_format": FLAGS.prompt_format,
             "prompt_suffix": prompt_suffix()}
    lm, results = None, {}
    for lambda_sharing, seed in runs:
        use_run(lambda_sharing, seed, root if len(runs) == 1 else os.path.join(root, run_name(lambda_sharing, seed)))
        claim_output_dir(FLAGS.output_dir, folder_identity(own_module(), not_in_identity()), FLAGS.resume,
                         FLAGS.overwrite)
        lm = lm or load_model_timed(FLAGS.model, dtype=FLAGS.dtype, tokenizer=FLAGS.tokenizer)
        result = run_alignment(lm, task, train_ex, eval_ex, FLAGS.languages, train_config(), FLAGS.output_dir,
                               resume=FLAGS.resume, facts=facts)
        results[(lambda_sharing, seed)] = result
        for key in ("before", "after", "control_after"):
            print(run_name(lambda_sharing, seed), key, f"{result[key]['all_shared_pct']:.3f}%", result[key]["accuracy"])
        print("timings", result["timings"])
        logging.info("results in %s", os.path.abspath(FLAGS.output_dir))
    if len(runs) > 1:
        print(f"spread over seeds in {write_sweep(root, sweep_summary(results))}")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from jaxneurons.cli import run_guarded

    run_guarded(align, FLAGS.debug)


if __name__ == "__main__":
    app.run(main)
