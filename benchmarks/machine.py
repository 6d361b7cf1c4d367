"""The machine a benchmark runs on: its name, its load, per-phase memory peaks, interleaved timing.

Timings on a shared machine hold only when the sides run under the same conditions: `interleaved` runs them
A B .. B A, `repeats` times each, and keeps every run's seconds and the 1-minute load average before and after.
Nothing here imports jax at module level: `memory_shares` must set XLA's environment before jax is imported.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import statistics
import time
from typing import Any, Callable


def json_lines(json_out: str | None) -> tuple[list[dict], Callable[[dict], None]]:
    """(the records so far, emit): emit dates a record, keeps it, prints it as a JSON line and appends it to
    json_out (when given) at once, so a run stopped midway keeps what it measured."""
    lines: list[dict] = []

    def emit(record: dict) -> None:
        record = {"date": time.strftime("%Y-%m-%d %H:%M"), **record}
        lines.append(record)
        print(json.dumps(record), flush=True)
        if json_out:
            with open(json_out, "a") as f:
                f.write(json.dumps(record) + "\n")

    return lines, emit


def memory_shares(jax_fraction: float = 0.45) -> None:
    """Let JAX and PyTorch share one accelerator: JAX allocates on demand, up to `jax_fraction` of it
    (by default it preallocates 75%, leaving PyTorch too little at 7B). Call before jax is imported."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", str(jax_fraction))


def cpu_model() -> str:
    """/proc/cpuinfo's "model name" (what the figures depend on), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """The cores this process may run on (`taskset` narrows them; XLA's CPU thread pool follows the same mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def describe(device: str) -> dict[str, Any]:
    """The hardware both sides ran on: CPU model and cores, and the accelerator's name when there is one."""
    import jax

    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "cores_used": usable_cores(),
            "jax_device": jax.devices()[0].device_kind}
    if device == "cuda":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load() -> float:
    """The 1-minute load average (runnable processes, averaged): above the core count, runs wait for a core."""
    return os.getloadavg()[0]


def check_load(force: bool) -> str | None:
    """None when the machine is quiet enough (1-minute load <= half the cores); else a warning to print,
    or SystemExit without `force`."""
    now, cores = load(), os.cpu_count() or 1
    if now <= cores / 2:
        return None
    message = (f"1-minute load {now:.2f} on {cores} cores (> {cores / 2:g}): other jobs share the machine, "
               "timings will be slower and noisier (every line records the load)")
    if not force:
        raise SystemExit(message + "; rerun when it is quiet, or pass --force.")
    return "warning: " + message


def _proc_status_gb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 2**20  # kB -> GB
    return float("nan")


def reset_peak(device: str) -> dict[str, float]:
    """Start a memory phase: reset the peaks; returns what is in use now (the weights and caches kept)."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
        return {"torch_start_gb": torch.cuda.memory_allocated() / 2**30, **_jax_device_memory("start")}
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM, the peak resident set, to the current one
    except OSError:
        pass
    return {"rss_start_gb": _proc_status_gb("VmRSS")}


def read_peak(device: str) -> dict[str, float]:
    """The peaks since `reset_peak`. CPU: the process's resident set (both sides' weights included).
    GPU: PyTorch's allocator peak; JAX's peak cannot be reset, so its figure covers the process so far."""
    if device == "cuda":
        import torch

        return {"torch_peak_gb": torch.cuda.max_memory_allocated() / 2**30, **_jax_device_memory("peak")}
    return {"rss_peak_gb": _proc_status_gb("VmHWM")}


def _jax_device_memory(when: str) -> dict[str, float]:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    key = "bytes_in_use" if when == "start" else "peak_bytes_in_use"
    name = "jax_start_gb" if when == "start" else "jax_peak_gb_since_start_of_process"
    return {name: stats.get(key, 0) / 2**30}


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


@dataclasses.dataclass
class Timing:
    """Every timed run of one side: seconds, the load before and after each, the largest memory peak."""

    seconds: list[float] = dataclasses.field(default_factory=list)
    load_before: list[float] = dataclasses.field(default_factory=list)
    load_after: list[float] = dataclasses.field(default_factory=list)
    memory: dict[str, float] = dataclasses.field(default_factory=dict)
    output: Any = None

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def summary(self, per: float = 1.0) -> dict[str, Any]:
        """JSON-ready: seconds per `per` units (median, min, max, all) and the loads."""
        return {"median_s": self.median / per, "min_s": min(self.seconds) / per, "max_s": max(self.seconds) / per,
                "runs_s": [s / per for s in self.seconds], "load_1min_before": self.load_before,
                "load_1min_after": self.load_after, "memory": self.memory}


def interleaved(sides: dict[str, Callable[[], Any]], repeats: int, device: str) -> dict[str, Timing]:
    """Time each side `repeats` times, in the order A B .. Z on even rounds and Z .. B A on odd ones, so a
    load that rises or falls during the measurement weighs on every side alike. Warm-ups are the caller's."""
    timings = {name: Timing() for name in sides}
    order = list(sides)
    for round_ in range(repeats):
        for name in (order if round_ % 2 == 0 else order[::-1]):
            timing = timings[name]
            timing.load_before.append(load())
            start_memory = reset_peak(device)
            start = time.perf_counter()
            timing.output = sides[name]()
            synchronize(device)
            timing.seconds.append(time.perf_counter() - start)
            peak = read_peak(device)
            timing.load_after.append(load())
            for key, value in {**start_memory, **peak}.items():
                timing.memory[key] = max(timing.memory.get(key, 0.0), value)
    return timings
