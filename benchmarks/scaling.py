"""Time the jitted sharing step on 1, 2, 4, 8 simulated CPU devices (a data mesh) for 8..64 examples.

  python benchmarks/scaling.py [--devices=1,2,4,8] [--examples=8,16,32,64]

Each device count runs in its own subprocess (XLA_FLAGS=--xla_force_host_platform_device_count must be set
before jax is imported), on a small random model, one batch of E examples x 3 languages, length 64.
Prints a table and one JSON line per measurement. Simulated CPU devices share the machine's cores, so more
devices cannot take less time here: the figures show the growth with examples and that every mesh gives the
counts of one device (checked: `same`), not a speed-up; run on real accelerators for that.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LANGUAGES, LENGTH, REPEATS = 3, 64, 3


def measure(devices: int, examples: list[int]) -> list[dict]:
    import jax
    import jax.numpy as jnp
    import numpy as np

    sys.path.insert(0, REPO)
    import jaxneurons as jn
    from jaxneurons import distributed
    from jaxneurons.analysis import overlap_init
    from jaxneurons.models.decoder import Record
    from jaxneurons.models.output import param_shapes
    from jaxneurons.pipeline.step import sharing_step

    config = jn.ModelConfig(family="llama", vocab_size=512, hidden_size=128, intermediate_size=512, num_layers=4,
                            num_heads=4, num_kv_heads=2, head_dim=32, tie_embeddings=True, pad_token_id=0)
    shapes = param_shapes(config)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: jnp.asarray(rng.normal(0, 0.1, x.shape) if x.ndim == 2 else
                                                np.ones(x.shape), jnp.float32), shapes)
    decoder = jn.Decoder(config, record=Record(("act",), "last"), logits="indexed")
    mesh = distributed.make_mesh(f"data:{devices}")
    sharded = distributed.shard_params(params, mesh)
    thresholds = distributed.replicate(jnp.asarray([0.0, 0.1, 0.5], jnp.float32), mesh)
    results = []
    for e in examples:
        rows = e * LANGUAGES
        forward = {"ids_rt": rng.integers(1, 512, (rows, LENGTH)).astype(np.int32),
                   "mask_rt": np.ones((rows, LENGTH), bool),
                   "record_index_r": np.full(rows, LENGTH - 2, np.int32),
                   "logit_index_rj": np.full((rows, 1), LENGTH - 2, np.int32),
                   "targets_rj": np.ones((rows, 1), np.int32), "target_mask_rj": np.ones((rows, 1), bool)}
        first = np.ones((rows, 2), np.int32)
        valid = np.ones(e, bool)
        overlap = distributed.replicate(overlap_init(3, config.num_layers, config.intermediate_size), mesh)
        args = (distributed.shard_batch(forward, mesh), distributed.shard_batch(first, mesh),
                distributed.shard_batch(valid, mesh), thresholds)

        def step(p, o):
            with jax.set_mesh(mesh):
                return jax.block_until_ready(sharing_step(decoder, p, o, args[0], args[1], args[2], args[3],
                                                          LANGUAGES))

        start = time.perf_counter()
        _, stats = step(sharded, overlap)
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            step(sharded, overlap)
            times.append(time.perf_counter() - start)
        one = jax.device_put(params, jax.local_devices()[0])
        _, ref = sharing_step(decoder, one, overlap_init(3, config.num_layers, config.intermediate_size),
                              jax.tree.map(jnp.asarray, forward), jnp.asarray(first), jnp.asarray(valid),
                              jnp.asarray([0.0, 0.1, 0.5]), LANGUAGES)
        same = bool(np.array_equal(np.asarray(stats["category_counts"]), np.asarray(ref["category_counts"])))
        step_s = min(times)
        results.append({"devices": devices, "examples": e, "rows": rows, "first_call_s": round(compile_s, 3),
                        "step_s": round(step_s, 4), "examples_per_s": round(e / step_s, 1), "same": same})
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="1,2,4,8")
    parser.add_argument("--examples", default="8,16,32,64")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    examples = [int(x) for x in args.examples.split(",")]
    if args.child is not None:
        for row in measure(args.child, examples):
            print(json.dumps(row), flush=True)
        return
    rows = []
    for d in (int(x) for x in args.devices.split(",")):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={d}", "JAX_PLATFORMS": "cpu"}
        out = subprocess.run([sys.executable, __file__, f"--child={d}", f"--examples={args.examples}"], env=env,
                             check=True, capture_output=True, text=True).stdout
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    print(f"{'devices':>7} {'examples':>8} {'step s':>8} {'ex/s':>7} {'1st call s':>10} same-as-1-device")
    for r in rows:
        print(f"{r['devices']:>7} {r['examples']:>8} {r['step_s']:>8.4f} {r['examples_per_s']:>7.1f} "
              f"{r['first_call_s']:>10.2f} {r['same']}")
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
