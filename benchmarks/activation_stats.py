"""LAPE's activation pass: corpus tokens/s of jaxneurons' `activation_stats` against PyTorch forward hooks.

    python benchmarks/activation_stats.py --shapes=tiny,smollm2 --rows=32 --length=256          # this CPU
    python benchmarks/activation_stats.py --shapes=smollm2,llama2_7b --dtype=bfloat16 --rows=256 \\
        --length=512 --batch_size=32                                                           # a GPU

Both sides read the same random token rows of the same random weights (`weights.build`, no gguf) and count,
per layer and neuron, the tokens where act_fn(gate x) > 0 (LAPE's activation.py). The PyTorch side is the
strongest we could write of LAPE's hooks: torch.inference_mode, batched rows, a forward hook on each act_fn that
adds (act > 0).sum over rows and tokens to an int32 counter on the device, read back once at the end. Sides run
interleaved A B .. B A, `--repeats` times each, after a warm-up (JAX's compile reported as compile_s); each line
records the load before and after every run. Refuses to start when the 1-minute load exceeds half the cores
(`--force` runs anyway, and says so).
"""

from __future__ import annotations

import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import machine  # noqa: E402

machine.memory_shares()  # before jax is imported

import numpy as np  # noqa: E402
import torch  # noqa: E402
from absl import app, flags  # noqa: E402

from benchmarks.weights import SHAPES, build  # noqa: E402
from jaxneurons.lape.stats import stats_of_rows  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("shapes", ["tiny", "smollm2"], f"model shapes, from {sorted(SHAPES)}")
flags.DEFINE_integer("rows", 32, "corpus rows")
flags.DEFINE_integer("length", 256, "tokens per row")
flags.DEFINE_integer("batch_size", 8, "rows per step, both sides")
flags.DEFINE_integer("repeats", 3, "timed runs of each side (interleaved); the median is reported")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "weights and activations, both sides")
flags.DEFINE_enum("device", None, ["cpu", "cuda"], "PyTorch's device (default: cuda when available)")
flags.DEFINE_string("json_out", None, "also append the JSON lines to this file")
flags.DEFINE_bool("force", False, "run even when the 1-minute load exceeds half the cores")


@torch.inference_mode()
def torch_counts(model, rows: np.ndarray, batch_size: int, device: str) -> np.ndarray:
    """[L, F] tokens with act > 0, forward hooks on act_fn adding on the device (LAPE's activation.py)."""
    layers = model.model.layers
    counts = torch.zeros(len(layers), model.config.intermediate_size, dtype=torch.int32, device=device)

    def hook(k):
        def add(module, inputs, output):
            counts[k] += (output > 0).sum((0, 1), dtype=torch.int32)
        return add

    handles = [layer.mlp.act_fn.register_forward_hook(hook(k)) for k, layer in enumerate(layers)]
    try:
        ids = torch.as_tensor(rows, dtype=torch.long, device=device)
        for start in range(0, len(rows), batch_size):
            model.model(input_ids=ids[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
    return counts.cpu().numpy()


def jax_counts(lm, rows: np.ndarray, batch_size: int) -> np.ndarray:
    return stats_of_rows(lm, {"x": rows}, batch_size=batch_size, moments=False, progress=False).over_zero[0]


def bench_shape(shape: str, device: str, emit) -> None:
    model, lm = build(shape, FLAGS.dtype, device)
    rows = np.random.default_rng(0).integers(1, SHAPES[shape]["vocab_size"], (FLAGS.rows, FLAGS.length))
    sides = {"jax": lambda: jax_counts(lm, rows, FLAGS.batch_size),
             "torch_hooks": lambda: torch_counts(model, rows, FLAGS.batch_size, device)}
    warm = {}
    for name, side in sides.items():
        start = time.perf_counter()
        side()
        machine.synchronize(device)
        warm[name] = time.perf_counter() - start
    timings = machine.interleaved(sides, FLAGS.repeats, device)
    reference = timings["torch_hooks"].output
    tokens = rows.size
    for name, timing in timings.items():
        emit({"measure": "activation_stats", "shape": shape, "side": name, "dtype": FLAGS.dtype,
              **machine.describe(device), "rows": FLAGS.rows, "length": FLAGS.length, "batch_size": FLAGS.batch_size,
              "tokens": tokens, "tokens_per_s": tokens / timing.median, **timing.summary(),
              "compile_s": warm[name] - timing.median if name == "jax" else None,
              "max_count_difference": int(np.abs(timing.output.astype(np.int64) - reference).max()),
              "count_differences": int((timing.output != reference).sum())})


def markdown(lines: list[dict], command: str, warning: str | None) -> str:
    out = [f"`{command}`", "", f"{lines[0]['cpu']} ({lines[0]['cores']} cores), JAX device {lines[0]['jax_device']}"
           + (f", GPU {lines[0]['gpu']}" if lines[0].get("gpu") else ""), ""]
    if warning:
        out += [warning, ""]
    out += ["| shape | side | tokens/s (median) | runs (s) | 1-min load before | counts differing |", "|---|---|---|---|---|---|"]
    for r in lines:
        out.append(f"| {r['shape']} | {r['side']} | {r['tokens_per_s']:.0f} | "
                   f"{', '.join(f'{s:.2f}' for s in r['runs_s'])} | "
                   f"{', '.join(f'{x:.2f}' for x in r['load_1min_before'])} | {r['count_differences']} |")
    return "\n".join(out)


def main(argv):
    del argv
    warning = machine.check_load(FLAGS.force)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    device = FLAGS.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(os.cpu_count() or 1)
    lines, emit = machine.json_lines(FLAGS.json_out)

    for shape in FLAGS.shapes:
        bench_shape(shape, device, emit)
    print("\n" + markdown(lines, " ".join(sys.argv), warning))


if __name__ == "__main__":
    app.run(main)
