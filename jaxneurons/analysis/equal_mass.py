"""Deactivation at equal mass: two neuron sets compared where they remove the same contribution mass.

A control drawn outside all-shared often cannot remove as much contribution mass as all-shared does (on
gemma3-270m mParaRel the uniform one removes 0.31x, the |m|-matched one 0.78x), so the difference of their
effects mixes the sets' kind with their dose. Here a dose curve (one example's sets of growing size, nested)
is read at the other set's mass, example by example: linearly between clean, at (0, 0), and the curve's sets
in order of mass. An example whose mass lies beyond the curve's largest set is left out, and counted. The
difference is taken per example, so its bootstrap interval is paired.
"""

from __future__ import annotations

import numpy as np

from jaxneurons.analysis.bootstrap import point_and_ci


def read_curve(curve_mass_ek, curve_change_ek, mass_e) -> tuple[np.ndarray, np.ndarray]:
    """(change [E], inside [E]): each example's dose curve (its K sets' removed mass and effect, any order) at
    mass_e, linearly interpolated between clean (0, 0) and the sets; inside False where mass_e lies beyond the
    curve's largest mass (the value there is the largest set's)."""
    mass_e = np.asarray(mass_e, np.float64)
    zero = np.zeros((len(mass_e), 1))
    xs = np.concatenate([zero, np.asarray(curve_mass_ek, np.float64)], 1)
    zs = np.concatenate([zero, np.asarray(curve_change_ek, np.float64)], 1)
    order = np.argsort(xs, 1, kind="stable")
    xs, zs = np.take_along_axis(xs, order, 1), np.take_along_axis(zs, order, 1)
    change = np.array([np.interp(m, x, z) for m, x, z in zip(mass_e, xs, zs)])
    return change, mass_e <= xs[:, -1]


def compare(mass_e, all_shared_e, other_e, inside_e, resamples: int) -> dict:
    """{"n", "left_out", and with n > 0 "mass", "all_shared", "other" (means over the examples inside) and
    "difference": all-shared's change minus the other's at one mass, per example, mean and paired 95% bootstrap
    interval (none with resamples 0)}; negative: all-shared hurts more."""
    inside = np.asarray(inside_e, bool)
    out = {"n": int(inside.sum()), "left_out": int((~inside).sum())}
    if not out["n"]:
        return out
    d = (np.asarray(all_shared_e) - np.asarray(other_e))[inside]
    difference = point_and_ci(d, resamples=resamples) if resamples else {"value": float(d.mean()), "ci95": None}
    return {**out, "mass": float(np.mean(np.asarray(mass_e)[inside])),
            "all_shared": float(np.mean(np.asarray(all_shared_e)[inside])),
            "other": float(np.mean(np.asarray(other_e)[inside])), "difference": difference}
