"""Errors of the pipeline: bad input gets one clear message, never a wrong result."""

from __future__ import annotations


class PipelineInputError(ValueError):
    """The run's inputs are inconsistent (no examples, a language missing from an example, bad options...)."""


class ResumeMismatchError(PipelineInputError):
    """`resume=True` found a saved state written by a different run (model, task, examples or settings)."""
