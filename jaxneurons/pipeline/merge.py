"""Several processes, one result: each process's partial state of a pass merged into that of a one-process run.

Process k of P keeps its partial state in output_dir/process_{k}_of_{P}/ (state.npz, attribution_state.npz,
interventions_state.npz).
They are merged through `process_allgather` when `jax.distributed` is initialized with P processes, else
through the partial files (output_dir on a filesystem every process sees; no coordinator needed). Process 0
alone writes the outputs.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging

from jaxneurons.analysis import OverlapState
from jaxneurons.pipeline.checkpoint import NEXT_BATCH, load_checkpoint
from jaxneurons.pipeline.errors import ResumeMismatchError
from jaxneurons.pipeline.state import RunState, load_state

MERGE_TIMEOUT_S = 24 * 3600.0  # how long process 0 waits for the other processes' partial files
_POLL_S = 1.0


def partial_dir(output_dir: str | os.PathLike, process_index: int, process_count: int) -> str:
    return os.path.join(output_dir, f"process_{process_index}_of_{process_count}")


def partial_identity(identity: dict, process_index: int, process_count: int) -> dict:
    return {**identity, "process": [int(process_index), int(process_count)]}


def own_state_dir(output_dir: str | os.PathLike, identity: dict, process_index: int,
                  process_count: int) -> tuple[str, dict]:
    """(folder, identity) of this process's checkpoints of a pass: output_dir and the run's identity with one
    process, else its partial_dir and its partial_identity. The folder is created."""
    if process_count > 1:
        output_dir = partial_dir(output_dir, process_index, process_count)
        identity = partial_identity(identity, process_index, process_count)
    os.makedirs(output_dir, exist_ok=True)
    return os.fspath(output_dir), identity


def example_owners(plan, process_count: int) -> np.ndarray:
    """[E] the process that runs each example."""
    owners = np.zeros(plan.num_examples, np.int64)
    for i in range(plan.num_batches):
        owners[plan.examples_in(i)] = i % process_count
    return owners


PER_EXAMPLE_SUFFIXES = ("_eklc", "_eknl", "_eno", "_en", "_elb", "_enlb", "_enlf")  # RunState's example-first arrays


def _from_owners(parts: Sequence[np.ndarray], owners_e: np.ndarray) -> np.ndarray:
    """Each example's row from the process that ran it (an array over the first C <= E examples: theirs)."""
    rows = len(parts[0])
    return np.stack(parts)[owners_e[:rows], np.arange(rows)]


def merge_states(states: Sequence[RunState], owners_e: np.ndarray, identity: dict) -> RunState:
    """The state of a one-process run, from the finished partial states of processes 0..P-1.

    Per-example arrays come from the process that ran the example. Overlap: the reference category is the
    one of the process that saw the first batch (process 0); a neuron stays consistent only if it is
    consistent in every process that saw examples and all their reference categories agree.
    """
    per_example = {f.name: _from_owners([getattr(s, f.name) for s in states], owners_e)
                   for f in dataclasses.fields(RunState) if f.name.endswith(PER_EXAMPLE_SUFFIXES)}
    seen = [int(s.overlap.seen) for s in states]
    ref = next((s.overlap.first_code for s, n in zip(states, seen) if n > 0), states[0].overlap.first_code)
    consistent = np.ones_like(states[0].overlap.consistent)
    for s, n in zip(states, seen):
        if n > 0:
            consistent &= np.asarray(s.overlap.consistent) & (np.asarray(s.overlap.first_code) == ref)
    overlap = OverlapState(np.asarray(ref), consistent, np.asarray(sum(seen), np.int32))
    return RunState(identity=identity, overlap=overlap, next_batch=max(s.next_batch for s in states),
                    real_tokens=sum(s.real_tokens for s in states),
                    padded_tokens=sum(s.padded_tokens for s in states),
                    elapsed_s=max(s.elapsed_s for s in states), **per_example)


def gather_states(state: RunState, plan, identity: dict, output_dir: str | os.PathLike, process_index: int,
                  process_count: int, timeout_s: float = MERGE_TIMEOUT_S) -> RunState:
    """Every process's finished partial state, merged (collectives if jax.distributed has P processes)."""
    if jax.process_count() == process_count:
        states = _allgather_states(state, process_count)
    else:
        states = [state if k == process_index else
                  _wait_for_partial(output_dir, identity, k, process_count, plan.num_batches, timeout_s)
                  for k in range(process_count)]
    return merge_states(states, example_owners(plan, process_count), identity)


def _allgather_states(state: RunState, process_count: int) -> list[RunState]:
    from jax.experimental import multihost_utils

    arrays = {f.name: np.asarray(getattr(state, f.name)) for f in dataclasses.fields(RunState)
              if f.name not in ("identity", "overlap")}
    arrays.update({f"overlap_{k}": np.asarray(v) for k, v in state.overlap._asdict().items()})
    gathered = jax.tree.map(np.asarray, multihost_utils.process_allgather(arrays))
    states = []
    for k in range(process_count):
        one = {name: value[k] for name, value in gathered.items()}
        overlap = OverlapState(*(one.pop(f"overlap_{n}") for n in OverlapState._fields))
        scalars = {n: int(one.pop(n)) for n in ("next_batch", "real_tokens", "padded_tokens")}
        scalars["elapsed_s"] = float(one.pop("elapsed_s"))
        states.append(RunState(identity=state.identity, overlap=overlap, **one, **scalars))
    return states


def gather_accumulators(acc: dict[str, np.ndarray], plan, identity: dict, output_dir: str | os.PathLike,
                        name: str, process_index: int, process_count: int,
                        timeout_s: float = MERGE_TIMEOUT_S) -> dict[str, np.ndarray]:
    """A pass's per-example accumulators (every array's first axis: the examples) merged over the processes:
    each example's values from the process that ran it, so the result is exactly a one-process run's.

    name: the checkpoint file each process keeps in its partial_dir (read when merging through files)."""
    if jax.process_count() == process_count:
        from jax.experimental import multihost_utils

        as_bytes = {key: np.ascontiguousarray(value).reshape(-1).view(np.uint8) for key, value in acc.items()}
        gathered = jax.tree.map(np.asarray, multihost_utils.process_allgather(as_bytes))  # bytes: float64 intact
        parts = [{key: value[k].view(acc[key].dtype).reshape(acc[key].shape) for key, value in gathered.items()}
                 for k in range(process_count)]
    else:
        parts = [acc if k == process_index else _wait_for(
            lambda k=k: _finished_checkpoint(os.path.join(partial_dir(output_dir, k, process_count), name),
                                             partial_identity(identity, k, process_count), plan.num_batches),
            f"process {k} of {process_count}", timeout_s) for k in range(process_count)]
    owners_e = example_owners(plan, process_count)
    return {key: np.stack([part[key] for part in parts])[owners_e, np.arange(len(owners_e))] for key in acc}


def _finished_checkpoint(path: str, identity: dict, num_batches: int) -> dict | None:
    """The checkpoint's arrays once it has done every batch; None before (or while another run's is there)."""
    try:
        found = load_checkpoint(path, identity)
    except (ResumeMismatchError, OSError, ValueError, KeyError):  # another run's, or being replaced
        return None
    if found is None or int(found.pop(NEXT_BATCH)) < num_batches:
        return None
    return found


def _wait_for_partial(output_dir, identity: dict, k: int, process_count: int, num_batches: int,
                      timeout_s: float) -> RunState:
    """Process k's partial state once it has finished every batch (another run's file: wait too)."""
    path = partial_dir(output_dir, k, process_count)

    def finished():
        try:
            found = load_state(path, partial_identity(identity, k, process_count))
        except (ResumeMismatchError, OSError, ValueError, KeyError):  # another run's, or being replaced
            return None
        return found if found is not None and found.next_batch >= num_batches else None

    return _wait_for(finished, f"process {k} of {process_count} (state in {path})", timeout_s)


def _wait_for(finished, what: str, timeout_s: float):
    """Poll finished() until it returns something; TimeoutError after timeout_s."""
    deadline, last_log = time.monotonic() + timeout_s, 0.0
    while True:
        found = finished()
        if found is not None:
            return found
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout_s:.0f}s")
        if now - last_log > 60:
            logging.info("waiting for %s", what)
            last_log = now
        time.sleep(_POLL_S)
