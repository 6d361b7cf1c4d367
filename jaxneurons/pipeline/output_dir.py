"""The output folder policy: one folder holds one run's results, never a mix of two runs.

A launcher claims its output folder before the model loads. A new or empty folder is claimed at once; a folder
of the same run is kept with `resume` (its passes' checkpoints then check weights and examples); with
`overwrite`, every file of the previous run is removed first; any other folder with files is refused. The
claim is RUN_FILE: the launcher's settings that change results, so that a refused resume names them.
"""

from __future__ import annotations

import json
import os
import shutil
import time

from jaxneurons.analysis import write_json_atomic
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.identity import check_identity

RUN_FILE = "run.json"
# what a jaxneurons run leaves (today's and older versions'): a folder holding none of these is not a run's
RUN_MARKERS = (RUN_FILE, "flags.txt", "state.npz", "sharing.json", "alignment.json", "alignment_state.npz",
               "checkpoints", "attribution_state.npz", "interventions_state.npz")


def claim_output_dir(path: str, identity: dict, resume: bool = False, overwrite: bool = False) -> None:
    """Make `path` this run's folder, or raise PipelineInputError saying why not and what to pass instead."""
    if resume and overwrite:
        raise PipelineInputError("--resume and --overwrite exclude each other: continue the run, or replace it")
    check_writable(path)
    entries = sorted(os.listdir(path))
    if entries and overwrite:
        if not any(name in RUN_MARKERS for name in entries):
            raise PipelineInputError(f"--output_dir={path} holds files that are no jaxneurons run's ({entries[0]}, "
                                     "...); --overwrite removes only a run's folder: choose another --output_dir")
        for name in entries:
            target = os.path.join(path, name)
            shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)
    elif entries and resume:
        if not os.path.exists(os.path.join(path, RUN_FILE)):
            raise PipelineInputError(f"--output_dir={path} has no {RUN_FILE} (not a run, or one of an older "
                                     "jaxneurons): it cannot be resumed; --overwrite replaces it")
        with open(os.path.join(path, RUN_FILE)) as f:
            check_identity(f"--output_dir={path}", json.load(f), identity)
    elif entries:
        raise PipelineInputError(f"--output_dir={path} holds another run's results ({', '.join(entries[:3])}"
                                 f"{', ...' if len(entries) > 3 else ''}); pass --resume to continue that run, "
                                 "--overwrite to replace it, or choose another --output_dir")
    write_json_atomic(os.path.join(path, RUN_FILE), identity)


def wait_for_claim(path: str, identity: dict, since: float | None = None, timeout_s: float = 300.0) -> None:
    """For processes other than 0: wait until process 0 has claimed `path` for this run; with `since` (when
    process 0 overwrites), a claim written at most a minute before it (clocks of hosts and file servers differ),
    so that the overwrite cannot remove what this process writes."""
    run_file, deadline = os.path.join(path, RUN_FILE), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(run_file) as f:
                if json.load(f) == identity and (since is None or os.path.getmtime(run_file) >= since - 60.0):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise PipelineInputError(f"process 0 did not claim --output_dir={path} for this run within {timeout_s:.0f}s")


def check_writable(path: str) -> None:
    """Create `path` if needed and prove a file can be written there (PipelineInputError otherwise)."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".write_test_{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise PipelineInputError(f"--output_dir={path} is not writable ({e.strerror}); choose another folder or "
                                 "fix its permissions") from None
