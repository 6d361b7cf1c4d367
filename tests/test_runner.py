"""The batch loop saves often enough to resume: every k batches, by time, and a handful of times in any run."""

import numpy as np

from jaxneurons.pipeline import runner


class Plan:
    """The two things run_pass reads of a BatchPlan: the batch count and each batch's examples."""

    def __init__(self, batches: int):
        self.num_batches = batches

    def examples_in(self, index: int) -> np.ndarray:
        return np.array([index])


def saves(batches: int, checkpoint_every: int, **kwargs) -> list[int]:
    saved = []
    runner.run_pass("test", Plan(batches), 0, lambda i: None, saved.append, checkpoint_every=checkpoint_every,
                    progress=False, **kwargs)
    return saved


def test_a_short_run_saves_after_every_batch_however_large_checkpoint_every():
    assert saves(6, checkpoint_every=10) == [1, 2, 3, 4, 5, 6]  # the demo's 6 batches: resumable after each


def test_a_long_run_saves_every_k_batches_and_at_the_end():
    assert saves(103, checkpoint_every=10) == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 103]


def test_a_run_saves_when_the_time_since_the_last_save_passes_the_limit(monkeypatch):
    monkeypatch.setattr(runner, "CHECKPOINT_SECONDS", 0.0)
    assert saves(103, checkpoint_every=10) == list(range(1, 104))


def test_each_process_saves_its_own_batches():
    # process 1 of 2 runs batches 1, 3, ..., 11 and saves after each (6 batches < 5 x 10)
    assert saves(12, checkpoint_every=10, process_index=1, process_count=2) == [2, 4, 6, 8, 10, 12]
