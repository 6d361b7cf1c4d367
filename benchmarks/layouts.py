"""Which mesh a model needs on a machine: weight bytes per device under `fsdp`, plus a rough activation margin.

    python benchmarks/layouts.py                    # LLaMA-2-70B in bfloat16 on a TPU v4-32, a v5e-16, 2 x 8 H100
    python benchmarks/layouts.py --rows=16 --length=1024

The weights per device are computed from the decoder's own parameter shapes (`loading.convert.expected_shapes`)
split the way `distributed.param_spec` splits them (norms replicated). The margin is an estimate, not a
measurement: one layer's weights gathered whole, twice (XLA gathers a split layer before its matmuls and may
prefetch the next), and one layer's activations for the rows a device holds (hidden states, MLP neurons,
float32 attention scores, the logits read). A layout fits when weights + margin <= the usable memory.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from absl import app, flags

from jaxneurons.distributed import param_spec
from jaxneurons.loading.convert import expected_shapes
from jaxneurons.models.config import ModelConfig

GIB = 2 ** 30

# LLaMA-2-70B (meta-llama/Llama-2-70b-hf config.json)
LLAMA2_70B = ModelConfig(family="llama", vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_layers=80,
                         num_heads=64, num_kv_heads=8, head_dim=128, norm_eps=1e-5)


@dataclasses.dataclass(frozen=True)
class Machine:
    name: str
    chips: int
    chips_per_host: int
    memory_gib: float  # per chip
    usable: float  # share of it a run may take (GPU: JAX preallocates 75% unless XLA_PYTHON_CLIENT_MEM_FRACTION)


MACHINES = (
    Machine("TPU v4-32", chips=16, chips_per_host=4, memory_gib=32.0, usable=0.9),
    Machine("TPU v5e-16", chips=16, chips_per_host=4, memory_gib=16.0, usable=0.9),
    Machine("2 x 8 H100 80GB", chips=16, chips_per_host=8, memory_gib=80.0, usable=0.75),
)

_ROWS = flags.DEFINE_integer("rows", 8, "Rows (examples x languages) a device holds in one step.")
_LENGTH = flags.DEFINE_integer("length", 512, "Tokens a row.")


@functools.cache
def _shapes(config: ModelConfig) -> dict:
    return expected_shapes(config)


def weight_bytes(config: ModelConfig, fsdp: int = 1, itemsize: int = 2) -> int:
    """Bytes of the weights one device holds when they are split over `fsdp` devices (1: the whole model)."""
    total = 0
    for path, leaf in _shapes(config).items():
        size = math.prod(leaf.shape) * itemsize
        total += size // fsdp if "fsdp" in tuple(param_spec(path, tuple(leaf.shape), fsdp)) else size
    return total


def margin_bytes(config: ModelConfig, rows: int, length: int, itemsize: int = 2) -> int:
    """Rough transient memory of one step on a device: two layers' weights gathered whole, and one layer's
    activations of `rows` rows of `length` tokens (see the module docstring)."""
    layer = sum(math.prod(leaf.shape[1:]) for path, leaf in _shapes(config).items()
                if path.startswith("layers/")) * itemsize
    tokens = rows * length
    q_kv = (config.num_heads + 2 * config.num_kv_heads) * config.head_dim
    hidden = tokens * (4 * config.hidden_size + q_kv + 3 * config.intermediate_size) * itemsize
    scores = rows * config.num_heads * length * length * 4
    logits = rows * config.vocab_size * 4
    return 2 * layer + hidden + scores + logits


def divides(config: ModelConfig, fsdp: int) -> bool:
    """Whether every matrix splits over fsdp (else some stay replicated: allowed, but wasteful)."""
    return all(size % fsdp == 0 for size in (config.hidden_size, config.intermediate_size))


def smallest_fsdp(config: ModelConfig, machine: Machine, rows: int, length: int) -> int | None:
    """The smallest fsdp (dividing the chips and the matrices) whose weights + margin fit a chip; None if none."""
    room = machine.usable * machine.memory_gib * GIB
    for fsdp in range(1, machine.chips + 1):
        if machine.chips % fsdp == 0 and divides(config, fsdp) and \
                weight_bytes(config, fsdp) + margin_bytes(config, rows, length) <= room:
            return fsdp
    return None


def layout_rows(config: ModelConfig, machines=MACHINES, rows: int = 8, length: int = 512) -> list[dict]:
    """One dict per machine: the smallest fitting fsdp, its mesh flags, and the numbers behind them."""
    out = []
    for m in machines:
        fsdp = smallest_fsdp(config, m, rows, length)
        row = {"machine": m.name, "chips": m.chips, "hosts": m.chips // m.chips_per_host,
               "usable_gib": m.usable * m.memory_gib, "margin_gib": margin_bytes(config, rows, length) / GIB,
               "fsdp": fsdp}
        if fsdp is not None:
            row["weights_gib"] = weight_bytes(config, fsdp) / GIB
            row["flags"] = f"--mesh=data:{m.chips // fsdp},fsdp:{fsdp} --global_mesh" if fsdp > m.chips_per_host \
                else f"--mesh=data:{m.chips_per_host // fsdp},fsdp:{fsdp} (one process a host)"
        out.append(row)
    return out


def main(argv) -> None:
    del argv
    config = LLAMA2_70B
    total = weight_bytes(config)
    print(f"LLaMA-2-70B: {total / 2 / 1e9:.2f} B parameters, {total / GIB:.1f} GiB in bfloat16; every host reads "
          f"them all into RAM while loading. Margin at {_ROWS.value} rows x {_LENGTH.value} tokens a device.")
    print("| machine | chips (hosts) | usable GiB/chip | fsdp | weights GiB/chip | + margin GiB | flags |")
    print("|---|---|---|---|---|---|---|")
    for r in layout_rows(config, rows=_ROWS.value, length=_LENGTH.value):
        weights = "-" if r["fsdp"] is None else f"{r['weights_gib']:.1f}"
        print(f"| {r['machine']} | {r['chips']} ({r['hosts']}) | {r['usable_gib']:.1f} | {r['fsdp'] or 'none'} | "
              f"{weights} | {r['margin_gib']:.1f} | {r.get('flags', 'does not fit')} |")
    print("weights a chip by fsdp: " + "; ".join(
        f"fsdp:{f} {weight_bytes(config, f) / GIB:.1f} GiB" for f in (1, 2, 4, 8, 16)))


if __name__ == "__main__":
    app.run(main)
