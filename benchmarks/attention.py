"""Peak memory and time of one long forward with each attention path of the decoder: the explicit one
(`decoder.attend`, every score at once), the fused one (`decoder.attend_fused`, `jax.nn.dot_product_attention`)
and the one by query blocks (`decoder.attend_chunked`, what a forward uses off GPU when no pattern is recorded).

    python benchmarks/attention.py                            # SmolLM2-135M's shapes, 2,048 tokens, batch 1
    python benchmarks/attention.py --tokens=4096 --repeats=2 --modes=blocks,explicit

Each mode runs in a fresh process (nothing shared, its own peak): random weights of SmolLM2-135M's config (no
download: `--model` takes any zoo name or checkpoint whose config to copy), one jitted forward with logits at the
last token only (the [T, V] logits would dwarf attention), timed over `--repeats` calls after a warm-up. Peak
memory is read two ways: XLA's compiled `memory_analysis()` (temporary buffers of the forward, exact and
load-independent) and the kernel's peak resident set size of the process (`ru_maxrss`, weights included), next to
the RSS before the forward. A benchmark, not a test: the figures go to BUILD_NOTES.md with the load they ran at.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

MODES = ("explicit", "fused", "blocks")
_MODES = flags.DEFINE_list("modes", ["explicit", "fused", "blocks", "explicit", "fused", "blocks"],
                           f"Which attentions, in this order (repeat to interleave), of {MODES}.")
_TOKENS = flags.DEFINE_integer("tokens", 2048, "Tokens in the row.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed forwards after the warm-up.")
_MODEL = flags.DEFINE_string("model", "smollm2-135m", "Zoo name or checkpoint whose config the weights follow.")
_CHILD = flags.DEFINE_string("child", None, "Internal: run one mode in this process and print its JSON.")


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GB


def run_one(mode: str) -> dict:
    """One mode in this process: compile, warm up, time; memory from XLA and from the kernel."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxneurons.loading import read_model_config
    from jaxneurons.models import decoder as D
    from jaxneurons.models.output import param_shapes

    if mode == "explicit":
        D.attend_unrecorded = lambda *args: D.attend(*args)[0]  # every forward through `attend`, as before
    elif mode == "fused":
        D.attend_unrecorded = D.attend_fused  # what a GPU runs, here on this backend
    config = read_model_config(_MODEL.value)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.02, s.shape) if len(s.shape) == 2
                                                else np.ones(s.shape), jnp.float32), param_shapes(config))
    ids = jnp.asarray(rng.integers(3, config.vocab_size, (1, _TOKENS.value)), jnp.int32)
    mask = jnp.ones_like(ids)
    decoder = D.Decoder(config, logits="last")
    step = jax.jit(lambda p, i, m: decoder.apply({"params": p}, i, m))
    rss_before = _rss_gb()
    compiled = step.lower(params, ids, mask).compile()
    temp = compiled.memory_analysis().temp_size_in_bytes / 2**20
    compiled(params, ids, mask).block_until_ready()
    times = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        compiled(params, ids, mask).block_until_ready()
        times.append(time.perf_counter() - start)
    return {"mode": mode, "tokens": _TOKENS.value, "xla_temp_mb": round(temp, 1),
            "rss_before_gb": round(rss_before, 3), "peak_rss_gb": round(_rss_gb(), 3),
            "time_s": [round(t, 2) for t in times], "load": round(os.getloadavg()[0], 1)}


def main(argv: list[str]) -> None:
    del argv
    if _CHILD.value:
        print(json.dumps(run_one(_CHILD.value)))
        return
    unknown = [m for m in _MODES.value if m not in MODES]
    if unknown:
        raise app.UsageError(f"--modes: unknown {unknown}; choose from {MODES}")
    print("| attention | tokens | XLA temp (MB) | RSS before forward (GB) | peak RSS (GB) | forward (s) | load |")
    print("|---|---|---|---|---|---|---|")
    for mode in _MODES.value:
        args = [f"--tokens={_TOKENS.value}", f"--repeats={_REPEATS.value}", f"--model={_MODEL.value}"]
        out = subprocess.run([sys.executable, os.path.abspath(__file__), f"--child={mode}", *args],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {r['mode']} | {r['tokens']} | {r['xla_temp_mb']} | {r['rss_before_gb']} | {r['peak_rss_gb']} | "
              f"{', '.join(map(str, r['time_s']))} | {r['load']} |", flush=True)


if __name__ == "__main__":
    app.run(main)
