"""The output folder policy: one folder holds one run's results, never a mix of two runs.

A launcher claims its output folder before the model loads. A new or empty folder is claimed at once; a folder
of the same run is kept with `resume` (its passes' checkpoints then check weights and examples); with
`overwrite`, every file of the previous run is removed first; any other folder with files is refused. The
claim is RUN_FILE: the launcher's settings that change results, so that a refused resume names them.

A folder holding only a claim (CLAIM_FILES, empty folders) is a run that died before any result: the same
settings start it again without `resume` or `overwrite`; another run's claim still needs `overwrite`.
"""

from __future__ import annotations

import json
import os
import shutil
import time

from absl import logging

from jaxneurons.analysis import write_json_atomic
from jaxneurons.pipeline.errors import PipelineInputError
from jaxneurons.pipeline.identity import check_identity, differences

RUN_FILE = "run.json"
# what a jaxneurons run leaves (today's and older versions'): a folder holding none of these is not a run's
RUN_MARKERS = (RUN_FILE, "flags.txt", "state.npz", "sharing.json", "alignment.json", "alignment_state.npz",
               "checkpoints", "attribution_state.npz", "interventions_state.npz", "attribution.json",
               "interventions.json", "examples.npz", "sections")
# what the claim itself leaves before a pass writes a result or a checkpoint
CLAIM_FILES = (RUN_FILE, "flags.txt")


def claim_output_dir(path: str, identity: dict, resume: bool = False, overwrite: bool = False) -> None:
    """Make `path` this run's folder, or raise PipelineInputError saying why not and what to pass instead."""
    if resume and overwrite:
        raise PipelineInputError("--resume and --overwrite exclude each other: continue the run, or replace it")
    check_writable(path)
    entries = sorted(os.listdir(path))
    if entries and overwrite:
        _remove_run(path, entries)
    elif entries and only_a_claim(path, entries):
        _reclaim(path, identity, resume)
    elif entries and resume:
        if not os.path.exists(os.path.join(path, RUN_FILE)):
            raise PipelineInputError(f"--output_dir={path} has no {RUN_FILE} (not a run, or one of an older "
                                     "jaxneurons): it cannot be resumed; --overwrite replaces it")
        check_identity(f"--output_dir={path}", _read_claim(path), identity)
    elif entries:
        raise PipelineInputError(f"--output_dir={path} holds another run's results ({', '.join(entries[:3])}"
                                 f"{', ...' if len(entries) > 3 else ''}); pass --resume to continue that run, "
                                 "--overwrite to replace it, or choose another --output_dir")
    elif resume:
        logging.info("--resume: --output_dir=%s holds no earlier run; starting from the beginning", path)
    write_json_atomic(os.path.join(path, RUN_FILE), identity)


def only_a_claim(path: str, entries: list[str]) -> bool:
    """True when the folder holds a claim (RUN_FILE) and nothing else but CLAIM_FILES and empty folders: a run
    that left no results."""
    def claim_only(name: str) -> bool:
        target = os.path.join(path, name)
        if os.path.isdir(target) and not os.path.islink(target):
            return not os.listdir(target)
        return name in CLAIM_FILES
    return RUN_FILE in entries and all(claim_only(name) for name in entries)


def _reclaim(path: str, identity: dict, resume: bool) -> None:
    """Take over the claim of a run that left no results: the same settings start again (a log line says so);
    another run's claim is refused, naming the settings that differ (ResumeMismatchError with `resume`)."""
    saved = _read_claim(path)
    if resume:
        check_identity(f"--output_dir={path}", saved, identity)
    differ = differences(saved, identity)
    if differ:
        raise PipelineInputError(f"--output_dir={path} holds the claim of another run that left no results "
                                 f"(differs in: {', '.join(differ)}); pass --overwrite to replace it, or choose "
                                 "another --output_dir")
    logging.info("--output_dir=%s: the earlier run of these settings left no results; %s", path,
                 "--resume starts from the beginning" if resume else "starting again")


def _read_claim(path: str) -> dict:
    """The identity in path/RUN_FILE; PipelineInputError when it is not JSON (a claim cut short)."""
    try:
        with open(os.path.join(path, RUN_FILE)) as f:
            return json.load(f)
    except ValueError:
        raise PipelineInputError(f"--output_dir={path}: {RUN_FILE} is not valid JSON (a damaged claim); "
                                 "--overwrite replaces it") from None


def _remove_run(path: str, entries: list[str]) -> None:
    """Remove every entry of a run's folder (`overwrite`); refuse a folder that holds no run's files."""
    if not any(name in RUN_MARKERS for name in entries):
        raise PipelineInputError(f"--output_dir={path} holds files that are no jaxneurons run's ({entries[0]}, "
                                 "...); --overwrite removes only a run's folder: choose another --output_dir")
    for name in entries:
        target = os.path.join(path, name)
        shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) else os.remove(target)


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
