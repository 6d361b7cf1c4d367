"""Resumable accumulators for the per-batch analyses after the sharing run (attribution, interventions).

After every batch the running sums and the next batch index are written atomically to one .npz, tagged
with the run's identity; `resume` continues from it only when the identity matches.
"""

from __future__ import annotations

import json
import os

import numpy as np

from jaxneurons.analysis import atomic_path


def load_progress(path: str, identity: dict) -> tuple[int, dict[str, np.ndarray]] | None:
    """(next batch, accumulators) saved for this identity, or None."""
    if not os.path.exists(path):
        return None
    with np.load(path) as data:
        if str(data["identity"]) != json.dumps(identity, sort_keys=True):
            return None
        return int(data["next_batch"]), {k[4:]: data[k] for k in data.files if k.startswith("acc/")}


def save_progress(path: str, identity: dict, next_batch: int, accumulators: dict[str, np.ndarray]) -> None:
    arrays = {f"acc/{k}": np.asarray(v) for k, v in accumulators.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, identity=np.array(json.dumps(identity, sort_keys=True)), next_batch=np.array(next_batch),
                 **arrays)
