"""Boosting neuron sharing across languages by fine-tuning (the paper's v1 claim iii), in JAX.

objective: L = L_task + lambda * L_share (formula in `jaxneurons.alignment.objective`).
train: optax/orbax training loop with frozen parameters, exact resume, and before/after evaluation.
experiment: the end-to-end run behind launchers/align.py (alignment.json, figure, report, model dir).
"""

from jaxneurons.alignment.objective import (alignment_loss, make_batch, objective_decoder, sharing_loss,
                                            task_loss)
from jaxneurons.alignment.train import (TrainConfig, batch_indices, evaluate_token_items, make_optimizer,
                                        tokenize_examples, train)

__all__ = ["alignment_loss", "make_batch", "objective_decoder", "sharing_loss", "task_loss", "TrainConfig", "batch_indices",
           "evaluate_token_items", "make_optimizer", "tokenize_examples", "train"]
