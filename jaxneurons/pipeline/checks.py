"""Checks of a pass's settings: each names the setting and the accepted values (PipelineInputError)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from jaxneurons.analysis import MAIN_THRESHOLD
from jaxneurons.pipeline.errors import PipelineInputError


def check_thresholds(thresholds: Sequence[float]) -> list[float]:
    """The thresholds as floats; PipelineInputError unless finite, distinct and including 0."""
    values = [float(t) for t in thresholds]
    if not values or any(not math.isfinite(t) for t in values):
        raise PipelineInputError(f"thresholds must be finite numbers, got {list(thresholds)}")
    if any(t < 0 for t in values):
        raise PipelineInputError(f"thresholds must be >= 0 (a neuron is activated when act > tau), got {values}")
    if not any(t == MAIN_THRESHOLD for t in values):
        raise PipelineInputError(f"thresholds must include {MAIN_THRESHOLD} (the paper's tau), got {values}")
    if len(set(values)) != len(values):
        raise PipelineInputError(f"duplicate thresholds in {values}")
    return values


def check_positive(**values: int | None) -> None:
    """PipelineInputError naming the first setting that is given (not None) and not a finite number >= 1."""
    for name, value in values.items():
        if value is not None and not (math.isfinite(value) and value >= 1):
            raise PipelineInputError(f"{name} must be a finite number >= 1, got {value}")


def check_at_least_zero(**values: float) -> None:
    """PipelineInputError naming the first setting that is not a finite number >= 0 (nan and inf included)."""
    for name, value in values.items():
        if not (math.isfinite(value) and value >= 0):
            raise PipelineInputError(f"{name} must be a finite number >= 0, got {value}")


def check_choices(name: str, given: Sequence[str], known: Sequence[str]) -> None:
    """PipelineInputError unless `given` is a non-empty list of names out of `known`."""
    unknown = sorted(set(given) - set(known))
    if unknown or not given:
        raise PipelineInputError(f"{name}: unknown {', '.join(unknown) or '(none given)'}; choose from "
                                 f"{', '.join(known)}")


def check_seeds(seeds) -> int | tuple[int, ...]:
    """A pass's seeds: an int n (seeds 0..n-1, as before) or a list of distinct ints >= 0; a list equal to 0..n-1
    becomes n, so a run keeps its identity however its seeds were written. PipelineInputError otherwise."""
    if isinstance(seeds, (int, float)) and not isinstance(seeds, bool):
        check_positive(seeds=seeds)
        return int(seeds)
    try:
        values = tuple(int(s) for s in seeds)
    except (TypeError, ValueError):
        raise PipelineInputError(f"seeds must be a count (e.g. 3) or a list of ints (e.g. 0,1,2), "
                                 f"got {seeds!r}") from None
    if not values or any(s < 0 for s in values) or len(set(values)) != len(values):
        raise PipelineInputError(f"seeds must be distinct ints >= 0, at least one, got {list(values)}")
    return len(values) if values == tuple(range(len(values))) else values


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """The seeds a pass draws with: 0..n-1 for an int n, else the list."""
    return list(range(seeds)) if isinstance(seeds, int) else list(seeds)
