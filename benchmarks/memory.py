"""Peak resident memory of whole launcher runs, against the size of the model's weights.

    python benchmarks/memory.py                       # the README's demo, and XNLI on smollm2 on 1 and 8 devices
    python benchmarks/memory.py --runs=demo --json=memory.json
    python benchmarks/memory.py --runs=load_gemma             # the model load alone (jn.load_model)

Each run is `launchers/analyze.py` in a fresh process (so nothing is shared between runs), measured by the
kernel's peak resident set size of that process (`os.wait4`'s `ru_maxrss`) and its wall time. The weights' size is the float32 size of the model's parameters. The
8-device run simulates devices on the CPU (`--xla_force_host_platform_device_count=8`) with `--mesh=data:8`.
A benchmark, not a test: the numbers go to BUILD_NOTES.md and README.md with the load they were measured at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHER = os.path.join(REPO, "launchers", "analyze.py")

# name -> (model, analyze.py flags, simulated CPU devices); LOADS: name -> model, a process that only loads it
RUNS = {
    "demo": ("gemma3-270m", ["--flagfile=" + os.path.join(REPO, "launchers", "configs", "demo.flags")], 1),
    "xnli_smollm_1": ("smollm2-135m", ["--model=smollm2-135m", "--task=xnli", "--languages=en,de,fr,zh",
                                       "--num_examples=16"], 1),
    "xnli_smollm_8": ("smollm2-135m", ["--model=smollm2-135m", "--task=xnli", "--languages=en,de,fr,zh",
                                       "--num_examples=16", "--mesh=data:8"], 8),
}

LOADS = {"load_gemma": "gemma3-270m", "load_smollm": "smollm2-135m"}

_RUNS = flags.DEFINE_list("runs", list(RUNS), f"Which runs, of {', '.join(RUNS)}, or model loads alone: "
                          f"{', '.join(LOADS)}.")
_JSON = flags.DEFINE_string("json", None, "Also write the results here.")
_EXTRA = flags.DEFINE_list("extra_flags", [], "Flags appended to every run (e.g. --num_examples=8).")


def weights_gb(model: str) -> float:
    """The float32 size of the model's parameters, from its config (no weights loaded)."""
    import jax

    from jaxneurons.loading import read_model_config
    from jaxneurons.models.output import param_shapes

    shapes = param_shapes(read_model_config(model))
    return sum(x.size for x in jax.tree.leaves(shapes)) * 4 / 2**30


def measure(name: str) -> dict:
    """Run one launcher job (or one model load) in a child process: its peak RSS (`os.wait4`'s rusage of that child), wall time and
    exit code."""
    model, args, devices = RUNS[name] if name in RUNS else (LOADS[name], None, 1)
    env = dict(os.environ)
    if devices > 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    with tempfile.TemporaryDirectory() as out, open(os.path.join(out, "log.txt"), "w+") as log:
        command = ([sys.executable, "-c", f"import jaxneurons as jn; jn.load_model({model!r})"] if args is None else
                   [sys.executable, LAUNCHER, *args, *_EXTRA.value, f"--output_dir={out}/run", "--noprogress"])
        load = os.getloadavg()[0]
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        log.seek(0)
        tail = log.read()[-2000:]
    weights = weights_gb(model)
    peak = usage.ru_maxrss / 2**20  # kB -> GB
    result = {"run": name, "model": model, "devices": devices, "peak_rss_gb": peak, "weights_gb": weights,
              "peak_over_weights": peak / weights, "wall_s": wall, "load_before": load,
              "returncode": os.waitstatus_to_exitcode(status), "command": " ".join(command[1:])}
    if result["returncode"]:
        result["log_tail"] = tail
    return result


def main(argv: list[str]) -> None:
    del argv
    unknown = [r for r in _RUNS.value if r not in RUNS and r not in LOADS]
    if unknown:
        raise app.UsageError(f"--runs: unknown {unknown}; choose from {list(RUNS) + list(LOADS)}")
    results = []
    for name in _RUNS.value:
        result = measure(name)
        results.append(result)
        print(json.dumps(result), flush=True)
    print("| run | devices | peak RSS (GB) | weights, float32 (GB) | peak / weights | wall (s) | load | exit |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['run']} | {r['devices']} | {r['peak_rss_gb']:.2f} | {r['weights_gb']:.2f} | "
              f"{r['peak_over_weights']:.1f}x | {r['wall_s']:.0f} | {r['load_before']:.1f} | {r['returncode']} |")
    failed = [r["run"] for r in results if r["returncode"]]
    if failed:  # a run that stopped early says nothing about its peak
        raise SystemExit(f"failed: {', '.join(failed)} (see log_tail in the JSON lines above)")
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    app.run(main)
