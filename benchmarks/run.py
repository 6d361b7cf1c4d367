"""jaxneurons against the PyTorch way, side by side in one process, same random weights, same token ids.

    python benchmarks/run.py --shapes=tiny,smollm2 --examples=32 --languages=9        # this CPU
    python benchmarks/run.py --shapes=smollm2,llama2_7b --dtype=bfloat16 --examples=256  # a GPU

Categorisation (the last token's act(gate) > 0, categorised across N parallel "languages"):
  paper    : one prompt at a time, forward hooks, NumPy (the released notebooks' way, minus their bugs);
  batched  : left-padded batches of `batch_size` examples x N languages, hooks keep only the last
             position, categories on the device (the best plain PyTorch we could write);
  jax      : jaxneurons' pipeline (rows packed into fixed bins, jitted step, counts only leave the device),
             timed on a second pass: the first compiles each shape once (reported as compile_s);
  jax_padded: the same with each row padded to its batch's length bucket (no packing).
Integrated gradients (target: a fixed token at the last position, `steps` alphas, left Riemann):
  naive    : Knowledge Neurons in PyTorch: per layer, the alphas as a batch, full forward and backward;
  jax      : jaxneurons.integrated_gradients (last-token replay against a KV cache).
Both sides' categories and attributions are compared in the same run. Prints a table and JSON lines; the
jax lines also give the share of the device's matrix-product rate (measured through JAX on the model's MLP
shape) that the projections and MLP of the real, unpadded tokens used.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

import jaxneurons as jn  # noqa: E402
from jaxneurons.pipeline.batching import TokenizedRow, plan_batches  # noqa: E402
from jaxneurons.pipeline.run import run_batches  # noqa: E402
from jaxneurons.pipeline.state import new_state  # noqa: E402

SHAPES = {
    "tiny": dict(vocab_size=1000, hidden_size=64, intermediate_size=176, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, tie_word_embeddings=True),
    "smollm2": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True),
    "llama2_7b": dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=32),
}

FLAGS = flags.FLAGS
flags.DEFINE_list("shapes", ["tiny", "smollm2"], f"model shapes, from {sorted(SHAPES)}")
flags.DEFINE_integer("examples", 32, "parallel examples for the categorisation")
flags.DEFINE_integer("languages", 9, "parallel rows per example")
flags.DEFINE_integer("min_len", 60, "shortest prompt (tokens)")
flags.DEFINE_integer("max_len", 100, "longest prompt (tokens)")
flags.DEFINE_integer("batch_size", 8, "examples per batch (x languages rows)")
flags.DEFINE_integer("paper_examples", 4, "examples timed for the one-prompt-at-a-time loop (it is slow)")
flags.DEFINE_integer("ig_examples", 1, "example-languages for integrated gradients")
flags.DEFINE_integer("ig_steps", 20, "IG alphas")
flags.DEFINE_integer("ig_layers", 4, "IG target layers (the first n; both sides the same)")
flags.DEFINE_integer("ig_len", 64, "IG prompt length")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "weights and activations, both sides")
flags.DEFINE_string("json_out", None, "also append the JSON lines to this file")
flags.DEFINE_list("skip", [], "parts to skip: paper, batched, jax (packed rows), jax_padded, ig")


def build(shape: str, dtype: str, device: str):
    config = transformers.LlamaConfig(**SHAPES[shape], max_position_embeddings=4096)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config).eval()
    directory = tempfile.mkdtemp(prefix=f"bench-{shape}-")
    model.save_pretrained(directory)
    lm = jn.load_model(directory, dtype=dtype)
    model = model.to(device=device, dtype=getattr(torch, dtype))
    return model, lm


def token_rows(rng, vocab, examples, languages, lo, hi):
    return [[rng.integers(3, vocab, size=int(rng.integers(lo, hi + 1))).tolist() for _ in range(languages)]
            for _ in range(examples)]


def categories_np(acts_nlf):
    s = (acts_nlf > 0).sum(0)
    n = acts_nlf.shape[0]
    return np.stack([(s == n), (s >= 2) & (s <= n - 1), s == 1, s == 0], -1).sum(1)  # [L, 4]


def mlp_hooks(model, keep):
    return [layer.mlp.act_fn.register_forward_hook(keep) for layer in model.model.layers]


@torch.inference_mode()
def torch_paper(model, rows, device):
    out = []
    for example in rows:
        acts = []
        for prompt in example:
            seen = []
            handles = mlp_hooks(model, lambda m, i, o: seen.append(o[0, -1].float().cpu().numpy()))
            model(torch.tensor([prompt], device=device))
            for h in handles:
                h.remove()
            acts.append(np.stack(seen))
        out.append(categories_np(np.stack(acts)))
    return np.stack(out)


@torch.inference_mode()
def torch_batched(model, rows, batch_size, device):
    n = len(rows[0])
    out = []
    for start in range(0, len(rows), batch_size):
        flat = [p for example in rows[start:start + batch_size] for p in example]
        length = max(map(len, flat))
        ids = torch.zeros((len(flat), length), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(flat):
            ids[i, length - len(p):], mask[i, length - len(p):] = torch.tensor(p), 1
        ids, mask = ids.to(device), mask.to(device)
        seen = []
        handles = mlp_hooks(model, lambda m, i, o: seen.append(o[:, -1]))
        model.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
        for h in handles:
            h.remove()
        active = (torch.stack(seen, 1) > 0).reshape(-1, n, len(seen), seen[0].shape[-1])  # [B, N, L, F]
        s = active.sum(1)
        counts = torch.stack([(s == n), (s >= 2) & (s <= n - 1), s == 1, s == 0], -1).sum(2)
        out.append(counts.cpu().numpy())
    return np.concatenate(out)


def jax_categorise(lm, rows, batch_size, output_dir, pack):
    tokenized = [[TokenizedRow(tuple(p), ((1,),), (0,)) for p in example] for example in rows]
    plan = plan_batches(tokenized, batch_size, "last", "right", 0, pack=pack)
    state = new_state({}, plan.num_examples, 1, plan.num_languages, lm.config.num_layers,
                      lm.config.intermediate_size, 1)
    state = run_batches(lm, plan, state, [0.0], output_dir, progress=False, checkpoint_every=10**9)
    return state.category_counts_eklc[:, 0], state.padding_ratio, state.real_tokens


def forward_flops_per_token(config) -> float:
    """Matrix-product FLOPs of one token through the layers (projections and MLP; attention scores aside)."""
    h, f, d = config.hidden_size, config.intermediate_size, config.head_dim
    projections = h * d * (2 * config.num_heads + 2 * config.num_kv_heads)
    return 2.0 * config.num_layers * (projections + (3 if config.gated_mlp else 2) * h * f)


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


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out) if not isinstance(out, tuple) else None
    return out, time.perf_counter() - start


def naive_ig(model, prompt, target, layers, steps, device):
    """Knowledge-Neurons IG: per layer, all alphas as one batch, forward and backward of the whole prompt."""
    ids = torch.tensor([prompt] * steps, device=device)
    alphas = (torch.arange(steps, device=device, dtype=torch.float32) / steps)[:, None]
    clean = {}

    def grab(layer):
        return lambda m, inputs: clean.__setitem__(layer, inputs[0][0, -1].detach().clone())

    handles = [model.model.layers[l].mlp.down_proj.register_forward_pre_hook(grab(l)) for l in layers]
    with torch.no_grad():
        model(ids[:1])
    for h in handles:
        h.remove()
    out = []
    for layer in layers:
        scaled = (alphas * clean[layer].float()).to(clean[layer].dtype).requires_grad_(True)

        def replace(m, inputs):
            x = inputs[0].clone()
            x[:, -1] = scaled
            return (x,)

        handle = model.model.layers[layer].mlp.down_proj.register_forward_pre_hook(replace)
        logits = model(ids).logits[:, -1].float()
        handle.remove()
        prob = torch.softmax(logits, -1)[:, target].sum()
        (grad,) = torch.autograd.grad(prob, scaled)
        out.append((clean[layer].float() * grad.float().mean(0)).cpu().numpy())
    return np.stack(out)


def peak_memory(device):
    if device == "cuda":
        stats = jax.devices()[0].memory_stats() or {}
        return {"jax_peak_gb": stats.get("peak_bytes_in_use", 0) / 2**30,
                "torch_peak_gb": torch.cuda.max_memory_allocated() / 2**30}
    return {"process_max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def bench_shape(shape, device, emit):
    model, lm = build(shape, FLAGS.dtype, device)
    rng = np.random.default_rng(0)
    rows = token_rows(rng, SHAPES[shape]["vocab_size"], FLAGS.examples, FLAGS.languages, FLAGS.min_len,
                      FLAGS.max_len)
    base = {"shape": shape, "dtype": FLAGS.dtype, "device": describe_device(device), "languages": FLAGS.languages}
    results = {}
    ours = {}  # category counts of each jaxneurons variant
    peak = matmul_peak_flops(lm.config, lm.compute_dtype)
    for name, pack in (("jax", True), ("jax_padded", False)):
        if name in FLAGS.skip:
            continue
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            jax_categorise(lm, rows, FLAGS.batch_size, out, pack)  # compiles each shape once
            first_pass = time.perf_counter() - start
            start = time.perf_counter()
            ours[name], padding, real_tokens = jax_categorise(lm, rows, FLAGS.batch_size, out, pack)
            seconds = time.perf_counter() - start
            results[name] = FLAGS.examples / seconds
        useful = forward_flops_per_token(lm.config) * real_tokens / seconds
        emit({**base, "pipeline": name, "examples_per_s": results[name], "real_token_ratio": padding,
              "compile_s": first_pass - FLAGS.examples / results[name], "matmul_peak_tflops": peak / 1e12,
              "fraction_of_peak_on_real_tokens": useful / peak,
              "max_count_difference_to_first_variant": int(np.abs(ours[name] - next(iter(ours.values()))).max())})
    have_jax = bool(ours)
    counts_jax = next(iter(ours.values())) if have_jax else None
    if "batched" not in FLAGS.skip:
        torch_batched(model, rows[:FLAGS.batch_size], FLAGS.batch_size, device)  # warm up
        start = time.perf_counter()
        counts_torch = torch_batched(model, rows, FLAGS.batch_size, device)
        results["batched"] = FLAGS.examples / (time.perf_counter() - start)
        agree = float((counts_torch == counts_jax).mean()) if have_jax else None
        emit({**base, "pipeline": "torch_batched", "examples_per_s": results["batched"],
              "category_counts_equal_fraction": agree,
              "max_count_difference": int(np.abs(counts_torch - counts_jax).max()) if have_jax else None})
    if "paper" not in FLAGS.skip:
        subset = rows[:FLAGS.paper_examples]
        start = time.perf_counter()
        counts_paper = torch_paper(model, subset, device)
        results["paper"] = len(subset) / (time.perf_counter() - start)
        emit({**base, "pipeline": "torch_paper_loop", "examples_per_s": results["paper"],
              "max_count_difference": int(np.abs(counts_paper - counts_jax[:len(subset)]).max())
              if have_jax else None})
    for variant in ("jax", "jax_padded"):
        for other in ("batched", "paper"):
            if variant in results and other in results:
                emit({**base, "ratio": f"{variant}/{other}",
                      "categorisation_speedup": results[variant] / results[other]})
    if "ig" not in FLAGS.skip:
        bench_ig(model, lm, shape, device, base, emit)
    emit({**base, "memory": peak_memory(device)})


def bench_ig(model, lm, shape, device, base, emit):
    rng = np.random.default_rng(1)
    layers = list(range(min(FLAGS.ig_layers, lm.config.num_layers)))
    prompts = [rng.integers(3, SHAPES[shape]["vocab_size"], FLAGS.ig_len).tolist() for _ in range(FLAGS.ig_examples)]
    target = 7
    ids = np.array(prompts, np.int32)
    jn.integrated_gradients(lm, ids, [target] * len(prompts), steps=FLAGS.ig_steps, layers=layers)  # compile
    start = time.perf_counter()
    ours = jn.integrated_gradients(lm, ids, [target] * len(prompts), steps=FLAGS.ig_steps, layers=layers)
    jax_s = (time.perf_counter() - start) / len(prompts)
    naive_ig(model, prompts[0], target, layers[:1], 2, device)  # warm up
    start = time.perf_counter()
    theirs = np.stack([naive_ig(model, p, target, layers, FLAGS.ig_steps, device) for p in prompts])
    torch_s = (time.perf_counter() - start) / len(prompts)
    ours_l = ours.attributions[:, layers]
    scale = float(np.abs(theirs).max()) or 1.0
    emit({**base, "ig": "seconds_per_example_language", "jax_s": jax_s, "torch_naive_s": torch_s,
          "speedup": torch_s / jax_s, "layers": len(layers), "steps": FLAGS.ig_steps, "prompt_len": FLAGS.ig_len,
          "max_abs_difference_relative": float(np.abs(ours_l - theirs).max()) / scale})


def describe_device(device):
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def main(argv):
    del argv
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(os.cpu_count() or 1)
    lines = []

    def emit(record):
        record = {"date": time.strftime("%Y-%m-%d"), **record}
        lines.append(record)
        print(json.dumps(record), flush=True)
        if FLAGS.json_out:
            with open(FLAGS.json_out, "a") as f:
                f.write(json.dumps(record) + "\n")

    for shape in FLAGS.shapes:
        bench_shape(shape, device, emit)
    print("\n| shape | what | jaxneurons | PyTorch | ratio |\n|---|---|---|---|---|")
    for r in lines:
        if "ratio" in r:
            ours, other = r["ratio"].split("/")
            jax_eps = next(x["examples_per_s"] for x in lines if x.get("pipeline") == ours and x["shape"] == r["shape"])
            theirs = next(x["examples_per_s"] for x in lines if x.get("pipeline", "").endswith(other.replace("paper", "paper_loop"))
                          and x["shape"] == r["shape"])
            what = "packed" if ours == "jax" else "padded rows"
            print(f"| {r['shape']} | categorisation ({what}) vs {other} (examples/s) | {jax_eps:.2f} | {theirs:.2f} | "
                  f"{r['categorisation_speedup']:.1f}x |")
        if r.get("pipeline") in ("jax", "jax_padded"):
            what = "packed" if r["pipeline"] == "jax" else "padded rows"
            print(f"| {r['shape']} | share of the matmul peak ({r['matmul_peak_tflops']:.3g} TFLOP/s) used on real "
                  f"tokens ({what}) | {100 * r['fraction_of_peak_on_real_tokens']:.0f}% | | |")
        if r.get("ig"):
            print(f"| {r['shape']} | IG s per example-language ({r['layers']} layers x {r['steps']} steps) | "
                  f"{r['jax_s']:.2f} | {r['torch_naive_s']:.2f} | {r['speedup']:.1f}x |")


if __name__ == "__main__":
    app.run(main)
