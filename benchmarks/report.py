"""The benchmark's JSON lines as the markdown that BUILD_NOTES quotes: table, targets, machine and load."""

from __future__ import annotations

import time

# (shape, on a GPU, dtype) -> {row key: (the ratio or share it must reach, "min", "above" (strictly) or "max")}
TARGETS = {
    ("smollm2", False, "float32"): {"sorted": (1.5, "min"), "ig_replay": (2.0, "min"), "ig_naive": (20.0, "min"),
                                    "ig_flops": (1.3, "max"), "generate": (1.0, "min")},
    ("smollm2", True, "bfloat16"): {"generate": (1.0, "above")},
    ("llama2_7b", True, "bfloat16"): {"sorted": (2.0, "min"), "peak": (0.75, "min"), "ig_replay": (3.0, "min"),
                                      "ig_naive": (100.0, "min"), "ig_memory_gb": (40.0, "max"),
                                      "ig_flops": (1.3, "max"), "generate": (1.0, "above")},
}
NAMES = {"paper": "the paper's loop (one prompt at a time, hooks)",
         "batched": "batched hooks (whole examples, left-padded)",
         "sorted": "length-sorted batched hooks (rows sorted by length)",
         "naive": "Knowledge Neurons, lean (whole prompt per alpha; last-position logits, frozen parameters)",
         "replay": "the same last-token replay in PyTorch",
         "torch": "transformers' generate (KV cache, SDPA, inference mode) with a pre-hook on down_proj"}


def _spread(median, low, high, digits=3):
    return f"{median:.{digits}g} ({low:.{digits}g}-{high:.{digits}g})"


def _verdict(targets, key, value):
    if key not in targets:
        return ""
    bound, kind = targets[key]
    met = {"min": value >= bound, "above": value > bound, "max": value <= bound}[kind]
    sign = {"min": ">=", "above": ">", "max": "<="}[kind]
    shown = f"{100 * bound:g}%" if key == "peak" else f"{bound:g}" + (" GB" if key.endswith("_gb") else "x")
    return f"{sign} {shown}: {'met' if met else '**not met**'}"


def _memory(record) -> str:
    m = record["memory"]
    if "rss_peak_gb" in m:
        return f"{m['rss_peak_gb']:.2f} GB RSS (at start {m['rss_start_gb']:.2f})"
    jax_peak = m.get("jax_peak_gb_since_start_of_process", 0.0)
    return f"PyTorch {m['torch_peak_gb']:.2f} GB, JAX {jax_peak:.2f} GB (process peak so far)"


def categorisation_rows(shape, sides, targets):
    ours = sides.get("jax")
    rows = []
    for variant, label in (("jax", "packed"), ("jax_padded", "padded rows")):
        mine = sides.get(variant)
        if mine is None:
            continue
        for other in ("paper", "batched", "sorted"):
            theirs = sides.get(other)
            if theirs is None or (variant == "jax_padded" and other != "sorted"):
                continue
            ratio = theirs["median_s"] / mine["median_s"]
            what = (f"categorisation, {label} ({100 * mine['real_token_share']:.0f}% real tokens) vs "
                    f"{NAMES[other]}" + ("" if other == "paper" else
                                         f", {100 * theirs['real_token_share']:.0f}% real tokens") + " (examples/s)")
            rows.append([shape, what, _rate(mine), _rate(theirs), f"{ratio:.3g}x",
                         _verdict(targets, other, ratio) if variant == "jax" else ""])
    if ours is not None:
        share = ours["fraction_of_peak_on_real_tokens"]
        rows.append([shape, f"categorisation, packed: share of the matrix-product peak "
                     f"({ours['matmul_peak_tflops']:.3g} TFLOP/s through JAX) used on real tokens",
                     f"{100 * share:.0f}%", "", "", _verdict(targets, "peak", share)])
    return rows


def _rate(side):
    return _spread(1 / side["median_s"], 1 / side["max_s"], 1 / side["min_s"])


def ig_rows(shape, sides, targets):
    ours, rows = sides.get("jax"), []
    if ours is None:
        return rows
    what = f"{ours['layers']} layers x {ours['steps']} steps, {ours['prompt_len']} tokens"
    for other in ("naive", "replay"):
        theirs = sides.get(other)
        if theirs is None:
            continue
        ratio = theirs["median_s"] / ours["median_s"]
        rows.append([shape, f"IG vs {NAMES[other]} (s per example-language; {what})",
                     _spread(ours["median_s"], ours["min_s"], ours["max_s"]),
                     _spread(theirs["median_s"], theirs["min_s"], theirs["max_s"]), f"{ratio:.3g}x",
                     _verdict(targets, "ig_" + other, ratio)])
    naive = sides.get("naive", {}).get("flops_per_example")
    rows.append([shape, f"IG GFLOP per example, the timed layers {ours['target_layers']}: jaxneurons "
                 f"({ours['layer_replays_per_alpha']} layer replays per alpha) / the method's minimum "
                 "(target layer l replays l..L-1) / naive", f"{ours['flops_per_example'] / 1e9:.3g}",
                 f"{ours['triangular_flops_per_example'] / 1e9:.3g} / " + (f"{naive / 1e9:.3g}" if naive else "-"),
                 f"{ours['flops_per_example'] / ours['triangular_flops_per_example']:.2f}x the minimum", ""])
    excess = ours["all_layers_flops_per_example"] / ours["all_layers_triangular_flops_per_example"]
    rows.append([shape, "IG GFLOP per example, all layers (the study's setting): jaxneurons / the method's "
                 "minimum / naive", f"{ours['all_layers_flops_per_example'] / 1e9:.3g}",
                 f"{ours['all_layers_triangular_flops_per_example'] / 1e9:.3g} / "
                 f"{ours['all_layers_naive_flops_per_example'] / 1e9:.3g}", f"{excess:.2f}x the minimum",
                 _verdict(targets, "ig_flops", excess)])
    before = ours["all_layers_v01_flops_per_example"] / ours["all_layers_triangular_flops_per_example"]
    rows.append([shape, "IG GFLOP per example, all layers, v0.1's replay (every target layer ran all layers)",
                 f"{ours['all_layers_v01_flops_per_example'] / 1e9:.3g}", "", f"{before:.2f}x the minimum", ""])
    return rows


def generation_rows(shape, sides, targets):
    ours, theirs = sides.get("jax"), sides.get("torch")
    if ours is None or theirs is None:
        return []
    ratio = theirs["median_s"] / ours["median_s"]
    what = (f"greedy generation, {ours['zeroed_per_layer']} of {ours['neurons_per_layer']} neurons zeroed in every "
            f"layer; {ours['prompts']} prompts of {ours['prompt_len'][0]}-{ours['prompt_len'][1]} tokens, "
            f"{ours['new_tokens']} new tokens each, batches of {ours['batch']}, prefill included; vs "
            f"{NAMES['torch']} (tokens/s; JAX compile {ours['compile_s']:.3g} s apart)")
    return [[shape, what, _rate(ours), _rate(theirs), f"{ratio:.3g}x", _verdict(targets, "generate", ratio)]]


def memory_rows(shape, measure, sides, targets):
    rows = []
    for name, side in sides.items():
        key = "ig_memory_gb" if measure == "ig" and name == "jax" else None
        gpu_jax = side["memory"].get("jax_peak_gb_since_start_of_process")
        rows.append([shape, f"peak memory, {measure}, {name}", _memory(side), "", "",
                     _verdict(targets, key, gpu_jax) if key and gpu_jax is not None else ""])
    return rows


def markdown(lines, command, duration_s, warning) -> str:
    """The table (medians, min-max in brackets), then the machine, the load and the checks."""
    table = [["shape", "measure", "jaxneurons", "PyTorch", "ratio", "target"]]
    checks = []
    for shape in dict.fromkeys(r["shape"] for r in lines):
        mine = [r for r in lines if r["shape"] == shape]
        on_gpu = "gpu" in mine[0]
        targets = TARGETS.get((shape, on_gpu, mine[0]["dtype"]), {})
        cat = {r["side"]: r for r in mine if r.get("measure") == "categorisation"}
        ig = {r["side"]: r for r in mine if r.get("measure") == "ig"}
        gen = {r["side"]: r for r in mine if r.get("measure") == "generation"}
        table += categorisation_rows(shape, cat, targets) + ig_rows(shape, ig, targets)
        table += generation_rows(shape, gen, targets)
        table += memory_rows(shape, "categorisation", cat, targets) + memory_rows(shape, "ig", ig, targets)
        table += memory_rows(shape, "generation", gen, targets)
        checks.append(f"{shape}: category counts, largest difference to jaxneurons over all sides: "
                      f"{max(r['max_count_difference'] for r in cat.values()) if cat else '-'}; IG attributions, "
                      "largest difference relative to the largest attribution: "
                      + (f"{max(r['max_abs_difference_to_jax_relative'] or 0 for r in ig.values()):.2g}"
                         if ig else "-")
                      + (f"; generated tokens equal to jaxneurons' (greedy; float ties may differ): "
                         f"{100 * gen['torch']['equal_token_share']:.1f}% of tokens, "
                         f"{100 * gen['torch']['equal_row_share']:.0f}% of rows" if "torch" in gen else ""))
    loads = [x for r in lines for x in r.get("load_1min_before", []) + r.get("load_1min_after", [])]
    first = lines[0]
    repeats = " or ".join(str(n) for n in sorted({r["repeats"] for r in lines}))
    out = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    out += ["| " + " | ".join(row) + " |" for row in table[1:]]
    out += ["", f"Command: `{command}`", f"Date: {time.strftime('%Y-%m-%d %H:%M')}, {duration_s / 60:.1f} minutes.",
            f"Machine: {first['cpu']} ({first['cores']} cores"
            + (f", {first['cores_used']} used" if first.get("cores_used", first["cores"]) != first["cores"] else "")
            + ")" + (f", {first['gpu']}" if "gpu" in first else "")
            + f"; JAX device {first['jax_device']}; {first['dtype']}.",
            f"1-minute load average around the timed runs: {min(loads):.2f} to {max(loads):.2f} "
            f"(median {sorted(loads)[len(loads) // 2]:.2f})." if loads else "No timed runs.",
            f"Each side ran {repeats} times, interleaved A B .. B A after a warm-up; medians, min-max in "
            "brackets; ratios are of the medians."] + checks
    if warning:
        out.append(warning)
    return "\n".join(out) + "\n"


def main(argv) -> None:
    """`python benchmarks/report.py perf.jsonl [minutes]`: the table of a JSON lines file (several runs'
    lines together, e.g. benchmarks/gpu.sh's stages) on stdout."""
    import json

    if len(argv) not in (2, 3):
        raise SystemExit("usage: python benchmarks/report.py PERF.jsonl [MINUTES]")
    with open(argv[1]) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    if not lines:
        raise SystemExit(f"{argv[1]}: no JSON lines (no measure finished)")
    minutes = float(argv[2]) if len(argv) == 3 else 0.0
    print(markdown(lines, f"the JSON lines of {argv[1]}", 60 * minutes, None), end="")


if __name__ == "__main__":
    import sys

    main(sys.argv)
