"""Many devices and many processes for the sharing analysis: a mesh, sharded weights, merged results.

Devices: `make_mesh("data:4,fsdp:2")` lays this process's devices out on two axes. A batch's examples are
split over `data` (the N language rows of an example stay on one device: rows are example-major), the
weights over `fsdp` (the FFN neuron axis of the MLP kernels, the hidden axis of the others; a weight whose
axis does not divide stays replicated). The batch size is rounded up to a multiple of the `data` size.

Processes: process k of P runs the batches i with i % P == k on its own devices (its mesh holds only its
local devices), and keeps its partial state in output_dir/process_{k}_of_{P}/state.npz. The partial
states are then merged into the state of a one-process run (`pipeline.merge`). This module imports nothing of
the pipeline: it is the layer below it.

One mesh across processes (`make_mesh(spec, across_processes=True)`, under jax.distributed): the mesh holds
every device of every process, process by process, so `fsdp` larger than a host's devices splits the weights
across hosts. Every process then runs every batch in lockstep (`batch_split` is (0, 1)): each builds the same
host batch and places only its own devices' slices (`jax.make_array_from_callback`); outputs are gathered to
every process (`Placement.fetch`) and process 0 writes.

>>> mesh = make_mesh("data:-1,fsdp:1")  # every local device on data
>>> sharing = run_sharing_analysis(lm, task, examples, languages, "runs/x", mesh=mesh)
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp")
DEFAULT_MESH = "data:-1,fsdp:1"


class LayoutError(ValueError):
    """A bad layout of devices or processes (mesh spec, process ids)."""

_default_mesh: Mesh | None = None
_process_layout: tuple[int, int] | None = None  # (index, count) given explicitly, without jax.distributed


# ---------------------------------------------------------------- processes


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> tuple[int, int]:
    """Join the job; returns (process index, process count).

    With a coordinator address: `jax.distributed.initialize` with the three values (collectives merge the
    results). With num_processes and process_id only: no jax.distributed, the results are merged through
    files in output_dir. With none: `jax.distributed.initialize()` auto-detection (TPU VM pod slices, Slurm),
    and a single process when there is nothing to join.
    """
    global _process_layout
    if coordinator_address:
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    elif num_processes is not None or process_id is not None:
        if num_processes is None or process_id is None:
            raise LayoutError("give both --num_processes and --process_id (or neither)")
        set_process_layout(process_id, num_processes)
    else:
        try:
            jax.distributed.initialize()
        except Exception as e:  # noqa: BLE001 - nothing to join: one process
            logging.info("jax.distributed.initialize() skipped (%s): single process", e)
    index, count = process_layout()
    logging.info("process %d of %d, local devices: %s", index, count, jax.local_devices())
    return index, count


def set_process_layout(process_index: int, process_count: int) -> None:
    """Declare this process as process_index of process_count (file-based merge; no jax.distributed)."""
    global _process_layout
    if not (process_count >= 1 and 0 <= process_index < process_count):
        raise LayoutError(f"process_id must be in [0, {process_count}), got {process_index}")
    _process_layout = (int(process_index), int(process_count))


def process_layout(process_index: int | None = None, process_count: int | None = None) -> tuple[int, int]:
    """(index, count): the arguments when given, else `set_process_layout`'s, else jax's."""
    if process_index is not None or process_count is not None:
        if process_index is None or process_count is None:
            raise LayoutError("give both process_index and process_count (or neither)")
        if not (process_count >= 1 and 0 <= process_index < process_count):
            raise LayoutError(f"process_index must be in [0, {process_count}), got {process_index}")
        return int(process_index), int(process_count)
    if _process_layout is not None:
        return _process_layout
    return jax.process_index(), jax.process_count()


# ---------------------------------------------------------------- devices


def parse_mesh_spec(spec: str) -> dict[str, int]:
    """"data:-1,fsdp:2" -> {"data": -1, "fsdp": 2}; axes not named get size 1; at most one -1."""
    sizes = dict.fromkeys(MESH_AXES, 1)
    named = set()
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or name not in MESH_AXES or name in named:
            raise LayoutError(f"bad mesh {spec!r}: expected e.g. 'data:-1,fsdp:1' (axes {MESH_AXES})")
        try:
            sizes[name] = int(value)
        except ValueError:
            raise LayoutError(f"bad mesh {spec!r}: size of {name!r} is not an integer") from None
        if sizes[name] == 0 or sizes[name] < -1:
            raise LayoutError(f"bad mesh {spec!r}: sizes must be positive or -1")
        named.add(name)
    if sum(v == -1 for v in sizes.values()) > 1:
        raise LayoutError(f"bad mesh {spec!r}: at most one axis may be -1")
    return sizes


def make_mesh(spec: str = DEFAULT_MESH, devices: Sequence | None = None, across_processes: bool = False) -> Mesh:
    """A (data, fsdp) mesh over `devices` (default: this process's local devices, or with across_processes
    every process's, see `global_devices`); -1 takes the rest."""
    if devices is None:
        devices = global_devices() if across_processes else jax.local_devices()
    devices = list(devices)
    where = f"the {jax.process_count()} processes have" if across_processes else "this process has"
    sizes = parse_mesh_spec(spec)
    known = math.prod(v for v in sizes.values() if v != -1)
    if -1 in sizes.values():
        if len(devices) % known:
            raise LayoutError(f"mesh {spec!r}: {len(devices)} devices do not divide by {known}")
        sizes = {k: (len(devices) // known if v == -1 else v) for k, v in sizes.items()}
    if math.prod(sizes.values()) != len(devices):
        raise LayoutError(f"mesh {spec!r} needs {math.prod(sizes.values())} devices, {where} {len(devices)}")
    shape = tuple(sizes[a] for a in MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES),
                         devices=devices)


def global_devices() -> list:
    """Every device of every process joined by jax.distributed, process by process (a mesh axis larger than a
    host's devices spans hosts). Processes declared by --num_processes/--process_id alone cannot share a mesh."""
    count = process_layout()[1]
    if count != jax.process_count():
        raise LayoutError(f"a mesh across processes needs jax.distributed (--coordinator_address, or auto-detection "
                          f"on TPU VMs / Slurm): these {count} processes merge through files, jax sees "
                          f"{jax.process_count()}")
    return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def spans_processes(mesh: Mesh | None) -> bool:
    """Whether the mesh holds devices of several processes (then every process runs every batch)."""
    return mesh is not None and len({d.process_index for d in mesh.devices.flat}) > 1


def batch_split(mesh: Mesh | None, process_index: int, process_count: int) -> tuple[int, int]:
    """(index, count) of the split of a pass's batches between processes: (0, 1) on a mesh across processes
    (each runs every batch, in lockstep, on its part of the mesh), else the process layout."""
    return (0, 1) if spans_processes(mesh) else (process_index, process_count)


def require_process_local(mesh: Mesh | None, what: str) -> None:
    """LayoutError when `what` (a pass that reads its device arrays directly) is asked to run on a mesh across
    processes."""
    if spans_processes(mesh):
        raise LayoutError(f"{what} does not run on a mesh across processes (--global_mesh) yet; run it with a "
                          "mesh of each process's own devices")


def set_default_mesh(mesh: Mesh | None) -> None:
    """The mesh `run_sharing_analysis` uses when given none (the launcher sets it from --mesh)."""
    global _default_mesh
    _default_mesh = mesh


def default_mesh() -> Mesh | None:
    return _default_mesh


def data_size(mesh: Mesh | None) -> int:
    return 1 if mesh is None else int(mesh.shape["data"])


def round_batch_size(batch_size: int, mesh: Mesh | None) -> int:
    """batch_size rounded up to a multiple of the mesh's data axis (each device gets whole examples)."""
    size = data_size(mesh)
    return -(-int(batch_size) // size) * size


# Parameter path -> the axis split over `fsdp` (negative: counted from the end, so the stacked layer axis
# of `layers/...` does not shift it). MLP kernels on their FFN neuron axis, the other matrices on their hidden
# axis; every path not listed (norms, biases) is replicated.
FSDP_AXIS = {
    "embed/embedding": -1,  # [V, H]
    "lm_head/kernel": -2,  # [H, V]
    "layers/attn/q/kernel": -2, "layers/attn/k/kernel": -2, "layers/attn/v/kernel": -2,  # [L, H, heads * dim]
    "layers/attn/o/kernel": -1,  # [L, heads * dim, H]
    "layers/mlp/gate/kernel": -1, "layers/mlp/up/kernel": -1,  # [L, H, F]
    "layers/mlp/down/kernel": -2,  # [L, F, H]
    "layers/mlp/router/kernel": -2,  # [L, H, E] (mixtures of experts, whose F axis is E experts' neurons)
}


def param_spec(path: str, shape: tuple[int, ...], fsdp: int) -> PartitionSpec:
    """The sharding of the parameter at `path` ("layers/mlp/up/kernel"): FSDP_AXIS over `fsdp`, replicated
    where the path is not listed or the axis does not divide."""
    axis = FSDP_AXIS.get(path)
    if fsdp <= 1 or axis is None or shape[axis] % fsdp:
        return PartitionSpec()
    return PartitionSpec(*(None,) * (len(shape) + axis), "fsdp")


def put(x, sharding: NamedSharding) -> jax.Array:
    """x (the same value on every process) placed by `sharding`; on a mesh across processes each process
    builds only the slices of its own devices (the other processes' are never sent)."""
    if sharding.is_fully_addressable or (isinstance(x, jax.Array) and not x.is_fully_addressable):
        return jax.device_put(x, sharding)  # this process's devices, or an array already across processes
    x = x if hasattr(x, "shape") else np.asarray(x)
    return jax.make_array_from_callback(tuple(x.shape), sharding, lambda index: x[index])


def place_param(path: str, x, mesh: Mesh) -> jax.Array:
    """The parameter at `path` placed on the mesh: split over `fsdp` by `param_spec`, replicated over `data`."""
    return put(x, NamedSharding(mesh, param_spec(path, tuple(x.shape), int(mesh.shape["fsdp"]))))


def shard_params(params, mesh: Mesh):
    """params placed on the mesh (`place_param`; a leaf already placed so is not copied)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, x: place_param("/".join(str(getattr(k, "key", k)) for k in path), x, mesh), params)


def shard_batch(arrays, mesh: Mesh):
    """Arrays whose axis 0 is rows (example-major) or examples, split over `data`."""
    return jax.tree.map(lambda x: put(x, NamedSharding(mesh, PartitionSpec("data"))), arrays)


def replicate(tree, mesh: Mesh):
    return jax.tree.map(lambda x: put(x, NamedSharding(mesh, PartitionSpec())), tree)


def fetch(tree, mesh: Mesh | None = None):
    """The tree's arrays as numpy on this process (`jax.device_get`); on a mesh across processes they are first
    replicated (one collective: every process must call it at the same point)."""
    if spans_processes(mesh):
        tree = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, PartitionSpec()))(tree)
    return jax.device_get(tree)


class Placement:
    """Where one run's arrays live, used by every pass: `params` split over the mesh's `fsdp` axis (replicated
    over `data`), `batch` (arrays whose axis 0 is rows or examples) split over `data`, `replicate` on every
    device; with no mesh, everything on the default device. Params are placed once per params object.

    >>> placement = Placement(make_mesh("data:4,fsdp:2"))
    >>> with placement.context():
    ...     out = step(placement.params(lm.params), placement.batch(arrays))
    """

    def __init__(self, mesh: Mesh | None = None):
        self.mesh = mesh
        self._placed: tuple[object, object] | None = None  # (params given, params placed)

    @property
    def data_size(self) -> int:
        return data_size(self.mesh)

    def round_batch_size(self, batch_size: int) -> int:
        return round_batch_size(batch_size, self.mesh)

    def params(self, params):
        if self._placed is None or self._placed[0] is not params:
            placed = jax.device_put(params) if self.mesh is None else shard_params(params, self.mesh)
            self._placed = (params, placed)
        return self._placed[1]

    def batch(self, arrays):
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, arrays)
        return shard_batch(arrays, self.mesh)

    def replicate(self, tree):
        return jax.tree.map(jnp.asarray, tree) if self.mesh is None else replicate(tree, self.mesh)

    def fetch(self, tree):
        """Outputs as numpy (`fetch`): on a mesh across processes, a collective every process runs."""
        return fetch(tree, self.mesh)

    def context(self):
        """The mesh as jax's current mesh (`jax.set_mesh`, or the mesh itself on older jax); none without one."""
        if self.mesh is None:
            return contextlib.nullcontext()
        return jax.set_mesh(self.mesh) if hasattr(jax, "set_mesh") else self.mesh


_placements: dict[Mesh | None, Placement] = {}


def placement(mesh: Mesh | None = None) -> Placement:
    """The run's placement on `mesh` (default: `default_mesh()`), one per mesh, so passes share placed params."""
    mesh = default_mesh() if mesh is None else mesh
    if mesh not in _placements:
        _placements[mesh] = Placement(mesh)
    return _placements[mesh]


# ---------------------------------------------------------------- merging the processes' results


def owns(batch_index: int, process_index: int, process_count: int) -> bool:
    return batch_index % process_count == process_index
