"""Boosting neuron sharing across languages by fine-tuning (the paper's v1 claim iii), in JAX.

objective: L = L_task + lambda * L_share (formula in `jaxneurons.alignment.objective`) on the sharing pipeline's
forward arrays.
train: optax/orbax training loop with frozen parameters and exact resume, on the pipeline's tokenized rows.
experiment: the end-to-end run behind launchers/align.py (alignment.json, figure, report, model dir); its
evaluation is the sharing pipeline's.
"""

from jaxneurons.alignment.objective import (alignment_loss, make_batch, objective_decoder, sharing_loss,
                                            task_loss)
from jaxneurons.alignment.train import TrainConfig, batch_indices, make_optimizer, train, training_rows

__all__ = ["alignment_loss", "make_batch", "objective_decoder", "sharing_loss", "task_loss", "TrainConfig",
           "batch_indices", "make_optimizer", "train", "training_rows"]
