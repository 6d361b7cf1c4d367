"""One batch loop for every pass over a task (sharing, attribution, deactivation): this process's batches from
the resume point, one step each, a checkpoint every k of them, every CHECKPOINT_SECONDS and after its last (and
at least MIN_CHECKPOINTS a run), and one progress format (a bar, or without it one log line per checkpoint).
A pass run in memory (output_dir None) has no checkpoint folder (`checkpoint_dir`) and saves nothing."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from jaxneurons import distributed
from jaxneurons.pipeline import merge
from jaxneurons.pipeline.batching import BatchPlan
from jaxneurons.pipeline.errors import PipelineInputError

CHECKPOINT_SECONDS = 120.0  # a run killed at any moment loses at most about this much work
MIN_CHECKPOINTS = 5  # a short run still saves this often (so a 6-batch run can be resumed)


def checkpoint_dir(output_dir: str | os.PathLike | None, identity: dict, process_index: int, process_count: int,
                   resume: bool, lockstep: bool = False) -> tuple[str | None, dict]:
    """(folder, identity) of this process's checkpoints (`merge.own_state_dir`); (None, identity) for a run in
    memory (output_dir None), which cannot resume, nor merge processes through files. lockstep (a mesh across
    processes: each process's checkpoint holds every batch) is part of the identity: a split run's partial
    checkpoints never resume it, nor its checkpoints a split run."""
    if output_dir is not None:
        if lockstep and process_count > 1:
            identity = {**identity, "lockstep": True}
        return merge.own_state_dir(output_dir, identity, process_index, process_count)
    if resume:
        raise PipelineInputError("resume=True needs output_dir (the folder of the run to continue); a run in "
                                 "memory (output_dir=None) keeps no checkpoint")
    if process_count > 1 and jax.process_count() != process_count:
        raise PipelineInputError(f"{process_count} processes without jax.distributed merge through output_dir: "
                                 "pass output_dir (a folder every process sees)")
    return None, identity


def run_pass(name: str, plan: BatchPlan, start: int, step: Callable[[int], None], save: Callable[[int], None], *,
             process_index: int = 0, process_count: int = 1, checkpoint_every: int = 1, progress: bool = True,
             on_batch_end: Callable[[int, int], None] | None = None,
             postfix: Callable[[], dict[str, str]] = dict) -> None:
    """Run step(i) for this process's batches i >= start (those with i % process_count == process_index).

    save(next batch) after every checkpoint_every of this process's batches (fewer when it has less than
    MIN_CHECKPOINTS x that many), after CHECKPOINT_SECONDS without a save, and after its last one, with
    plan.num_batches then: this process is done (a resumed process continues from the batch saved).
    on_batch_end(i, plan.num_batches) after each batch; postfix(): extra fields of the bar and log line.

    In lockstep (process_count 1 under jax.distributed with several processes: a mesh across processes, every
    process runs every batch and save's collectives), the processes must resume from the same batch, and
    process 0's decision to save (it depends on the clock) is every process's.
    """
    lockstep = process_count == 1 and jax.process_count() > 1
    if lockstep:
        _check_same_start(start)
    mine = [i for i in range(plan.num_batches) if distributed.owns(i, process_index, process_count)]
    size = {i: len(plan.examples_in(i)) for i in mine}
    done = sum(size[i] for i in mine if i < start)
    todo = [(own, i) for own, i in enumerate(mine, 1) if i >= start]
    bar = tqdm(total=sum(size.values()), initial=done, unit="ex", disable=not progress, dynamic_ncols=True,
               desc=name)
    every = max(1, min(checkpoint_every, len(mine) // MIN_CHECKPOINTS))
    began, ran = time.perf_counter(), 0
    saved_at = began
    try:
        for own, index in todo:
            step(index)
            next_batch = index + 1 if index + process_count < plan.num_batches else plan.num_batches
            done, ran = done + size[index], ran + size[index]
            fields = {"ex/s": f"{ran / max(time.perf_counter() - began, 1e-9):.2f}", **postfix()}
            now = time.perf_counter()
            due = own % every == 0 or now - saved_at >= CHECKPOINT_SECONDS or next_batch == plan.num_batches
            if lockstep:
                due = bool(multihost_utils.broadcast_one_to_all(np.int32(due)))
            if due:
                save(next_batch)
                saved_at = now
                if not progress:
                    logging.info("%s: batch %d of %d saved, %d of %d examples, %s", name, index + 1, plan.num_batches,
                                 done, bar.total, ", ".join(f"{k} {v}" for k, v in fields.items()))
            bar.update(size[index])
            bar.set_postfix(fields, refresh=False)
            if on_batch_end is not None:
                on_batch_end(index, plan.num_batches)
    finally:
        bar.close()
    if not todo and start < plan.num_batches:  # this process had no batch left: mark it done
        save(plan.num_batches)


def _check_same_start(start: int) -> None:
    """PipelineInputError unless every process (in lockstep) resumes from the same batch."""
    starts = np.asarray(multihost_utils.process_allgather(np.int64(start))).reshape(-1)
    if (starts != start).any():
        raise PipelineInputError(f"the processes' checkpoints stop at different batches {starts.tolist()}: a run "
                                 "on a mesh across processes resumes only when all of them saved the same batch; "
                                 "rerun without --resume")
