"""The run's state: per-example results so far, the overlap state and the position; saved atomically.

`state.npz` holds everything a resumed run needs to finish with exactly the results of an uninterrupted
one: the plan is rebuilt from the same tokens and settings (checked through `identity`), the per-example
arrays are indexed by the caller's example order, and the overlap state is restored bit for bit.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from jaxneurons.analysis import OverlapState, overlap_init
from jaxneurons.pipeline.checkpoint import load_checkpoint, save_checkpoint

STATE_FILE = "state.npz"


@dataclasses.dataclass
class RunState:
    """Results of the batches done so far (host arrays; example axis in the caller's order)."""

    identity: dict  # what must match for a resume (`pipeline.identity`): config, weights, examples
    category_counts_eklc: np.ndarray  # int32 [E, K, L, 4]
    activated_eknl: np.ndarray  # int32 [E, K, N, L]
    option_logprobs_eno: np.ndarray  # float32 [E, N, O] summed log-prob of each option (NaN: not scored)
    gold_logprob_en: np.ndarray  # float32 [E, N] summed log-prob of the gold answer
    greedy_match_en: np.ndarray  # bool [E, N] every gold-answer token is the argmax
    all_shared_elb: np.ndarray  # uint8 [E, L, ceil(F / 8)] all-shared at tau = 0, packed (analysis.frequency)
    control_bits_enlb: np.ndarray  # uint8 [C, N, L, ceil(F / 8)] activated at tau = 0, packed, first C examples
    control_unit_enlf: np.ndarray  # float16 [C, N, L, F] unit activation vectors of the first C examples
    overlap: OverlapState  # numpy arrays
    next_batch: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    elapsed_s: float = 0.0  # time spent in the batch loop, over every session of the run

    @property
    def padding_ratio(self) -> float:
        """Real tokens / padded tokens over every forward run so far (1.0 = no padding)."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def new_state(identity: dict, num_examples: int, num_thresholds: int, num_languages: int, num_layers: int,
              neurons_per_layer: int, num_options: int, control_items: int = 0) -> RunState:
    """An empty state; the grouping controls keep the rows of the first min(control_items, E) examples."""
    e, k, n, l = num_examples, num_thresholds, num_languages, num_layers
    c, packed = min(control_items, num_examples), -(-neurons_per_layer // 8)
    overlap = overlap_init(k, l, neurons_per_layer)
    return RunState(
        identity=identity,
        category_counts_eklc=np.zeros((e, k, l, 4), np.int32),
        activated_eknl=np.zeros((e, k, n, l), np.int32),
        option_logprobs_eno=np.full((e, n, num_options), np.nan, np.float32),
        gold_logprob_en=np.full((e, n), np.nan, np.float32),
        greedy_match_en=np.zeros((e, n), bool),
        all_shared_elb=np.zeros((e, l, packed), np.uint8),
        control_bits_enlb=np.zeros((c, n, l, packed), np.uint8),
        control_unit_enlf=np.zeros((c, n, l, neurons_per_layer), np.float16),
        overlap=OverlapState(*(np.asarray(x) for x in overlap)),
    )


def save_state(output_dir: str | os.PathLike, state: RunState) -> str:
    """Write output_dir/state.npz atomically (a crash mid-write leaves the previous state)."""
    arrays = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)
              if f.name not in ("identity", "overlap")}
    arrays.update({f"overlap_{name}": np.asarray(value) for name, value in state.overlap._asdict().items()})
    return save_checkpoint(os.path.join(output_dir, STATE_FILE), state.identity, arrays)


def load_state(output_dir: str | os.PathLike, identity: dict) -> RunState | None:
    """The saved state of this same run, None when there is none; ResumeMismatchError if another run's."""
    data = load_checkpoint(os.path.join(output_dir, STATE_FILE), identity)
    if data is None:
        return None
    overlap = OverlapState(*(data[f"overlap_{name}"] for name in OverlapState._fields))
    scalars = {name: int(data[name]) for name in ("next_batch", "real_tokens", "padded_tokens")}
    scalars["elapsed_s"] = float(data["elapsed_s"])
    arrays = {f.name: data[f.name] for f in dataclasses.fields(RunState)
              if f.name not in ("identity", "overlap") and f.name not in scalars}
    return RunState(identity=identity, overlap=overlap, **arrays, **scalars)
