"""Estimates ({"value": v, "ci95": [lo, hi]}, the bootstrap's output) as report text and as figure error bars."""

from __future__ import annotations

import numpy as np

def ci_text(stat: dict, unit: str = "%") -> str:
    """'12.3% [10.1, 14.2]' from {"value", "ci95"}."""
    if stat is None or stat["value"] is None:
        return "n/a"
    text = f"{stat['value']:.1f}{unit}"
    if stat.get("ci95") and stat["ci95"][0] is not None:
        text += f" [{stat['ci95'][0]:.1f}, {stat['ci95'][1]:.1f}]"
    return text


def error_bars(stats: list[dict]):
    """[2, n] distances from each value to its interval ends (None without intervals)."""
    if any(s["ci95"] is None for s in stats):
        return None
    return np.array([[max(or_zero(s["value"]) - or_zero(s["ci95"][0]), 0), max(or_zero(s["ci95"][1]) - or_zero(s["value"]), 0)]
                     for s in stats]).T


def floats(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], float)


def or_zero(value) -> float:
    return 0.0 if value is None else float(value)


def num_text(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def pct_text(value) -> str:
    return "n/a" if value is None else f"{value:.1f}%"
