"""Fine-tune a model to raise cross-language neuron sharing and measure it (paper v1, claim iii).

  python launchers/align.py --flagfile=launchers/configs/align_xnli.flags [--resume]

Writes OUTPUT_DIR/alignment.json (before / after / control_after: all_shared_pct, all_shared_per_layer,
accuracy), figures/all_shared_per_layer.png, report.md, checkpoints/ and model/ (jn.load_model(OUTPUT_DIR/model)).
"""

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "smollm2-135m", "Zoo name, HF checkpoint dir, .gguf file or orbax model dir.")
flags.DEFINE_string("task", "xnli", "Task name (jaxneurons.tasks).")
flags.DEFINE_list("languages", ["en", "de", "fr", "zh"], "Languages of each parallel example.")
flags.DEFINE_string("train_split", "dev", "Split the training examples come from.")
flags.DEFINE_string("eval_split", "test", "Held-out split for evaluation (same split -> disjoint slices).")
flags.DEFINE_integer("num_train", 64, "Training examples.")
flags.DEFINE_integer("num_eval", 64, "Evaluation examples.")
flags.DEFINE_list("layers", None, "Layers whose MLP is trained (default: all); everything else is frozen.")
flags.DEFINE_float("lr", 1e-4, "Peak learning rate (warmup-cosine).")
flags.DEFINE_integer("warmup", 10, "Warmup steps.")
flags.DEFINE_float("clip", 1.0, "Global-norm gradient clipping.")
flags.DEFINE_float("weight_decay", 0.0, "AdamW weight decay.")
flags.DEFINE_float("lambda_sharing", 1.0, "Weight of the sharing loss (the control run uses 0).")
flags.DEFINE_float("rho", 0.5, "Fraction of languages that must activate a neuron for it to be a target.")
flags.DEFINE_float("margin", 1.0, "Hinge margin on the pre-activation.")
flags.DEFINE_integer("steps", 100, "Optimizer steps (each run).")
flags.DEFINE_integer("batch_size", 4, "Parallel examples per step (each with every language).")
flags.DEFINE_integer("save_every", 10, "Checkpoint interval in steps.")
flags.DEFINE_integer("seed", 0, "Data-order seed.")
flags.DEFINE_string("output_dir", "runs/align", "Output folder.")
flags.DEFINE_bool("resume", False, "Resume both runs from their latest checkpoints in output_dir.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Parameter dtype.")
flags.DEFINE_string("data_dir", None, "Data folder (default: env JAXNEURONS_DATA_DIR).")
flags.DEFINE_string("prompt_format", None, "Task formulation (default: the task's), as in analyze.py.")
flags.DEFINE_string("prompt_suffix", "", "Text appended to every language's prompt; \\n is a newline.")


def main(argv):
    del argv
    from jaxneurons.alignment.experiment import run_alignment
    from jaxneurons.alignment.train import TrainConfig

    cfg = TrainConfig(layers=tuple(int(x) for x in FLAGS.layers) if FLAGS.layers else None, lr=FLAGS.lr,
                      warmup=FLAGS.warmup, clip=FLAGS.clip, weight_decay=FLAGS.weight_decay,
                      lambda_sharing=FLAGS.lambda_sharing, rho=FLAGS.rho, margin=FLAGS.margin, steps=FLAGS.steps,
                      batch_size=FLAGS.batch_size, seed=FLAGS.seed, save_every=FLAGS.save_every)
    result = run_alignment(FLAGS.model, FLAGS.task, FLAGS.languages, FLAGS.train_split, FLAGS.eval_split,
                           FLAGS.num_train, FLAGS.num_eval, cfg, FLAGS.output_dir, FLAGS.resume, FLAGS.dtype,
                           FLAGS.data_dir, prompt_format=FLAGS.prompt_format,
                           prompt_suffix=FLAGS.prompt_suffix.replace("\\n", "\n").replace("\\t", "\t"))
    for key in ("before", "after", "control_after"):
        print(key, f"{result[key]['all_shared_pct']:.3f}%", result[key]["accuracy"])
    print("timings", result["timings"])


if __name__ == "__main__":
    app.run(main)
