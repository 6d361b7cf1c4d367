"""jaxneurons against the PyTorch way, side by side in one process, same random weights, same token ids.

    python benchmarks/run.py --shapes=tiny,smollm2 --markdown=perf.md                      # this CPU
    python benchmarks/run.py --shapes=smollm2,llama2_7b --dtype=bfloat16 --examples=256 \\
        --batch_size=32 --paper_examples=8 --ig_len=80 --markdown=perf_gpu.md              # a GPU
    python benchmarks/run.py --shapes=smollm2 --rows=generation                             # one row alone

Every measure runs each side `--repeats` times, interleaved A B .. B A, after a warm-up (JAX's compiles are
reported as compile_s); the table gives the median with min-max and every JSON line the load average before
and after each run, the CPU model, the accelerator and per-phase memory peaks. The baselines are named in
`baselines.py`: categorisation against the paper's loop, batched hooks and length-sorted batched hooks;
IG against lean Knowledge Neurons (naive) and the same last-token replay written in PyTorch; greedy generation
with neurons zeroed against transformers' generate with a pre-hook. Both sides' category counts, IG
attributions and generated tokens are compared in the run. IG FLOPs per example are counted from the
shape (`flops.py`). Runs refuse to start when the 1-minute load exceeds half the cores (`--force` runs
anyway, and says so).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import machine  # noqa: E402

machine.memory_shares()  # before jax is imported

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from absl import app, flags  # noqa: E402

import jaxneurons as jn  # noqa: E402
from benchmarks import baselines, flops, report  # noqa: E402
from benchmarks.weights import SHAPES, build, without_eos  # noqa: E402
from jaxneurons.lm import pad_rows  # noqa: E402
from jaxneurons.pipeline.batching import TokenizedRow, plan_batches  # noqa: E402
from jaxneurons.pipeline.sharing import sharing_batches  # noqa: E402
from jaxneurons.pipeline.state import new_state  # noqa: E402

ROWS = ("ig", "categorisation", "generation")  # IG first: see bench_shape

FLAGS = flags.FLAGS
flags.DEFINE_list("shapes", ["tiny", "smollm2"], f"model shapes, from {sorted(SHAPES)}")
flags.DEFINE_list("rows", list(ROWS), f"measures to run, in this order, from {ROWS}")
flags.DEFINE_integer("examples", 32, "parallel examples for the categorisation")
flags.DEFINE_integer("languages", 9, "parallel rows per example")
flags.DEFINE_integer("min_len", 60, "shortest prompt (tokens)")
flags.DEFINE_integer("max_len", 100, "longest prompt (tokens)")
flags.DEFINE_integer("batch_size", 8, "examples per batch (x languages rows)")
flags.DEFINE_integer("paper_examples", 4, "examples timed for the one-prompt-at-a-time loop (it is slow)")
flags.DEFINE_integer("ig_examples", 1, "example-languages for integrated gradients")
flags.DEFINE_integer("ig_steps", 20, "IG alphas")
flags.DEFINE_integer("ig_layers", 4, "IG target layers, spread evenly from the first to the last (both sides)")
flags.DEFINE_integer("ig_len", 64, "IG prompt length")
flags.DEFINE_integer("gen_prompts", 16, "prompts for generation (random ids)")
flags.DEFINE_integer("gen_batch", 8, "prompts generated together, both sides")
flags.DEFINE_integer("gen_prompt_len", 64, "longest generation prompt (tokens); lengths drawn from half of it up")
flags.DEFINE_integer("gen_new_tokens", 32, "tokens generated per prompt (EOS off on both sides)")
flags.DEFINE_float("gen_zeroed", 0.01, "share of each layer's neurons zeroed during generation (a fixed random set)")
flags.DEFINE_integer("repeats", 3, "timed runs of each side (interleaved A B .. B A); the median is reported")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "weights and activations, both sides")
flags.DEFINE_string("json_out", None, "also append the JSON lines to this file")
flags.DEFINE_string("markdown", None, "write the table, the machine and the load to this file")
flags.DEFINE_bool("force", False, "run even when the 1-minute load exceeds half the cores")
flags.DEFINE_list("skip", [], "sides to skip: paper, batched, sorted, jax (packed rows), jax_padded, ig, "
                  "ig_naive, ig_replay")

IG_TARGET = 7  # the token whose probability IG attributes


def token_rows(rng, vocab, examples, languages, lo, hi):
    return [[rng.integers(3, vocab, size=int(rng.integers(lo, hi + 1))).tolist() for _ in range(languages)]
            for _ in range(examples)]


def jax_categorise(lm, rows, batch_size, output_dir, pack):
    """([E, L, 4] category counts, share of real tokens) from jaxneurons' pipeline."""
    tokenized = [[TokenizedRow(tuple(p), ((1,),), (0,)) for p in example] for example in rows]
    plan = plan_batches(tokenized, batch_size, "last", "right", 0, pack=pack)
    state = new_state({}, plan.num_examples, 1, plan.num_languages, lm.config.num_layers,
                      lm.config.intermediate_size, 1)
    state = sharing_batches(lm, plan, state, [0.0], output_dir, progress=False, checkpoint_every=10**9)
    return state.category_counts_eklc[:, 0], state.padding_ratio


def matmul_peak_flops(config, dtype) -> float:
    """The device's matrix-product rate through JAX on this model's MLP shape (8192 tokens), FLOP/s."""
    x = jnp.ones((8192, config.hidden_size), dtype)
    w = jnp.ones((config.hidden_size, config.intermediate_size), dtype)
    product = jax.jit(lambda a, b: a @ b)
    product(x, w).block_until_ready()
    start = time.perf_counter()
    for _ in range(5):
        product(x, w).block_until_ready()
    return 5 * 2.0 * x.shape[0] * x.shape[1] * w.shape[1] / (time.perf_counter() - start)


def warm_up(name, side, model, rows, batch_size, device) -> float:
    """Seconds of a first run: JAX's whole pass (it compiles each shape once); PyTorch's on one batch."""
    start = time.perf_counter()
    if name.startswith("jax"):
        side()
    elif name == "paper":
        baselines.paper_loop(model, [rows[0][:1]], device)
    else:
        getattr(baselines, "length_sorted" if name == "sorted" else "batched")(model, rows[:batch_size],
                                                                                batch_size, device)
    return time.perf_counter() - start


def categorisation(model, lm, rows, device, base, emit, out_dir):
    """Time every categorisation side interleaved; emit one line per side with its counts checked."""
    bs, paper_rows = FLAGS.batch_size, rows[:FLAGS.paper_examples]
    sides = {
        "jax": lambda: jax_categorise(lm, rows, bs, out_dir, True),
        "jax_padded": lambda: jax_categorise(lm, rows, bs, out_dir, False),
        "sorted": lambda: baselines.length_sorted(model, rows, bs, device),
        "batched": lambda: baselines.batched(model, rows, bs, device),
        "paper": lambda: (baselines.paper_loop(model, paper_rows, device), 1.0),
    }
    sides = {k: v for k, v in sides.items() if k not in FLAGS.skip}
    if not sides:
        return
    warm = {name: warm_up(name, sides[name], model, rows, bs, device) for name in sides}
    timings = machine.interleaved(sides, FLAGS.repeats, device)
    batched_sides = [t for n, t in timings.items() if n != "paper"] or [timings["paper"]]
    reference = batched_sides[0].output[0]  # the counts every side must reproduce
    peak = matmul_peak_flops(lm.config, lm.compute_dtype)
    for name, timing in timings.items():
        counts, real_share = timing.output
        n_examples = len(paper_rows) if name == "paper" else len(rows)
        record = {**base, "measure": "categorisation", "side": name, "examples": n_examples,
                  "examples_per_s": n_examples / timing.median, "real_token_share": real_share,
                  **timing.summary(per=n_examples),
                  "max_count_difference": int(np.abs(counts - reference[:len(counts)]).max())}
        if name.startswith("jax"):
            real_tokens = sum(map(len, (p for example in rows for p in example)))
            record.update(compile_s=warm[name] - timing.median, matmul_peak_tflops=peak / 1e12,
                          fraction_of_peak_on_real_tokens=flops.forward_per_token(lm.config) * real_tokens
                          / timing.median / peak)
        emit(record)


def ig_layers(num_layers, n):
    """n target layers spread evenly over the depth (the first and the last included): a replay from layer l
    costs L - l layers, so the first n alone would not show what the study's all-layer IG costs."""
    return sorted({int(round(x)) for x in np.linspace(0, num_layers - 1, min(n, num_layers))})


def ig_flops(config, layers, length, steps) -> dict:
    """IG FLOPs per example of each side for `layers`, and of jaxneurons, the minimum and naive for all layers."""
    counts = flops.replay_layer_counts(config, layers)
    everything = flops.replay_layer_counts(config, list(range(config.num_layers)))
    return {"jax": flops.replay_ig(config, length, steps, counts["jaxneurons"]),
            "replay": flops.replay_ig(config, length, steps, counts["triangular"], zeroed=False),
            "naive": flops.naive_ig(config, length, steps, layers),
            "layer_replays_per_alpha": sum(counts["jaxneurons"]),
            "triangular_flops_per_example": flops.replay_ig(config, length, steps, counts["triangular"]),
            "all_layers_flops_per_example": flops.replay_ig(config, length, steps, everything["jaxneurons"]),
            "all_layers_v01_flops_per_example": flops.replay_ig(config, length, steps, everything["v0.1"]),
            "all_layers_triangular_flops_per_example": flops.replay_ig(config, length, steps,
                                                                       everything["triangular"]),
            "all_layers_naive_flops_per_example": flops.naive_ig(config, length, steps,
                                                                 list(range(config.num_layers)))}


def integrated_gradients(model, lm, shape, device, base, emit):
    """Time jaxneurons' IG and the two PyTorch IGs interleaved; attributions compared; FLOPs counted."""
    rng = np.random.default_rng(1)
    layers = ig_layers(lm.config.num_layers, FLAGS.ig_layers)
    prompts = [rng.integers(3, SHAPES[shape]["vocab_size"], FLAGS.ig_len).tolist() for _ in range(FLAGS.ig_examples)]
    ids, steps = np.array(prompts, np.int32), FLAGS.ig_steps

    def ours():
        result = jn.integrated_gradients(lm, ids, [IG_TARGET] * len(prompts), steps=steps, layers=layers,
                                         rule="left")  # the baselines' alphas k/n (Knowledge Neurons)
        return result.attributions[:, layers]

    def torch_side(fn):
        return lambda: np.stack([fn(model, p, IG_TARGET, layers, steps, device) for p in prompts])

    sides = {"jax": ours, "naive": torch_side(baselines.naive_ig), "replay": torch_side(baselines.replay_ig)}
    sides = {k: v for k, v in sides.items() if "ig_" + k not in FLAGS.skip}
    start = time.perf_counter()
    ours()
    compile_s = time.perf_counter() - start
    baselines.naive_ig(model, prompts[0], IG_TARGET, layers[:1], 2, device)  # warm up
    baselines.replay_ig(model, prompts[0], IG_TARGET, layers[:1], 2, device)
    timings = machine.interleaved(sides, FLAGS.repeats, device)
    reference = timings["jax"].output if "jax" in timings else None
    counted = ig_flops(lm.config, layers, FLAGS.ig_len, steps)
    common = {k: v for k, v in counted.items() if k not in ("jax", "naive", "replay")}
    for name, timing in timings.items():
        scale = float(np.abs(timing.output).max()) or 1.0
        difference = None if reference is None else float(np.abs(reference - timing.output).max()) / scale
        emit({**base, "measure": "ig", "side": name, "layers": len(layers), "target_layers": layers, "steps": steps,
              "prompt_len": FLAGS.ig_len, "examples": len(prompts), **timing.summary(per=len(prompts)),
              "flops_per_example": counted[name], **common, "compile_s": compile_s if name == "jax" else None,
              "max_abs_difference_to_jax_relative": difference})


def generation_prompts(vocab, count, longest, rng):
    """count random prompts of longest // 2 to longest tokens."""
    return [rng.integers(3, vocab, size=int(rng.integers(max(1, longest // 2), longest + 1))).tolist()
            for _ in range(count)]


def zeroed_neurons(config, share, rng):
    """{layer: sorted indices}: the same random `share` of the neurons (at least one) in every layer."""
    k = max(1, int(round(share * config.intermediate_size)))
    return {l: np.sort(rng.choice(config.intermediate_size, k, replace=False)) for l in range(config.num_layers)}


def generation(model, lm, shape, device, base, emit):
    """Greedy generation with neurons zeroed, jaxneurons against transformers' generate with a pre-hook,
    interleaved; tokens per second (prefill included), the generated tokens compared."""
    rng = np.random.default_rng(2)
    lm = without_eos(lm)  # both sides make exactly gen_new_tokens per prompt
    prompts = generation_prompts(SHAPES[shape]["vocab_size"], FLAGS.gen_prompts, FLAGS.gen_prompt_len, rng)
    neurons = zeroed_neurons(lm.config, FLAGS.gen_zeroed, rng)
    ids, mask = pad_rows(prompts, lm.pad_id, "left")
    off, new, batch = jn.Intervention.zero(lm, neurons), FLAGS.gen_new_tokens, FLAGS.gen_batch

    def ours():
        out = lm.generate(ids, attention_mask=mask, max_new_tokens=new, intervention=off, batch_size=batch)
        if not (out.lengths == new).all():
            raise RuntimeError(f"jaxneurons stopped early: lengths {sorted(set(out.lengths.tolist()))}, not {new}")
        return out.token_ids

    def theirs():
        return baselines.generate_zeroed(model, prompts, neurons, new, batch, device, lm.pad_id)

    start = time.perf_counter()
    ours()
    compile_s = time.perf_counter() - start
    baselines.generate_zeroed(model, prompts[:batch], neurons, 2, batch, device, lm.pad_id)  # warm up
    timings = machine.interleaved({"jax": ours, "torch": theirs}, FLAGS.repeats, device)
    reference, tokens = timings["jax"].output, len(prompts) * new
    for name, timing in timings.items():
        if timing.output.shape != reference.shape:
            raise RuntimeError(f"{name} generated {timing.output.shape} tokens, jaxneurons {reference.shape}")
        emit({**base, "measure": "generation", "side": name, "prompts": len(prompts), "batch": batch,
              "new_tokens": new, "prompt_len": [min(map(len, prompts)), max(map(len, prompts))],
              "zeroed_per_layer": len(neurons[0]), "neurons_per_layer": lm.config.intermediate_size,
              "tokens_per_s": tokens / timing.median, **timing.summary(per=tokens),
              "compile_s": compile_s - timing.median if name == "jax" else None,
              "equal_token_share": float((timing.output == reference).mean()),
              "equal_row_share": float((timing.output == reference).all(1).mean())})


def bench_shape(shape, device, emit, measured):
    """FLAGS.rows on one shape, one model build; `measured()` after each row (the report so far)."""
    model, lm = build(shape, FLAGS.dtype, device)
    base = {"shape": shape, "dtype": FLAGS.dtype, **machine.describe(device), "languages": FLAGS.languages,
            "repeats": FLAGS.repeats}
    for row in FLAGS.rows:
        if row == "ig" and "ig" not in FLAGS.skip:  # first by default: JAX's device-memory peak cannot be
            integrated_gradients(model, lm, shape, device, base, emit)  # reset, so it then covers IG alone
        elif row == "categorisation":
            rows = token_rows(np.random.default_rng(0), SHAPES[shape]["vocab_size"], FLAGS.examples,
                              FLAGS.languages, FLAGS.min_len, FLAGS.max_len)
            with tempfile.TemporaryDirectory() as out_dir:
                categorisation(model, lm, rows, device, base, emit, out_dir)
        elif row == "generation":
            generation(model, lm, shape, device, base, emit)
        measured()
    del model, lm


def check_flags():
    """One line naming the flag, before anything is built."""
    if set(FLAGS.rows) - set(ROWS) or not FLAGS.rows:
        raise app.UsageError(f"--rows: {','.join(FLAGS.rows)!r} is not a list from {ROWS}")
    if set(FLAGS.shapes) - set(SHAPES):
        raise app.UsageError(f"--shapes: choose from {sorted(SHAPES)}, got {FLAGS.shapes}")
    for name in ("gen_prompts", "gen_batch", "gen_prompt_len", "gen_new_tokens", "repeats"):
        if getattr(FLAGS, name) < 1:
            raise app.UsageError(f"--{name} must be at least 1, got {getattr(FLAGS, name)}")
    if not 0 < FLAGS.gen_zeroed <= 1:
        raise app.UsageError(f"--gen_zeroed must be a share in (0, 1], got {FLAGS.gen_zeroed}")


def main(argv):
    del argv
    check_flags()
    warning = machine.check_load(FLAGS.force)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(machine.usable_cores())
    lines, emit = machine.json_lines(FLAGS.json_out)

    start = time.perf_counter()

    def measured():  # the table so far, rewritten after each row: a run stopped midway keeps what it measured
        text = report.markdown(lines, " ".join(sys.argv), time.perf_counter() - start, warning) if lines else ""
        if FLAGS.markdown and text:
            with open(FLAGS.markdown, "w") as f:
                f.write(text)
        return text

    for shape in FLAGS.shapes:
        bench_shape(shape, device, emit, measured)
    print("\n" + measured())


if __name__ == "__main__":
    app.run(main)
