"""What a bias probe did to a judge's verdicts: the shift of the expected level and the flips.

For task i, d_i is the expected level averaged over both presentation orders (policy vs
reference) as judged originally, and p_i the same under the probe. Per probe:

- ``mean_shift`` = mean(p - d), with ``shift_se`` = std(p - d, ddof=1) / sqrt(N): the drift of
  the verdict towards the policy (positive) or the reference (negative);
- ``mean_abs_shift`` = mean|p - d|: movement in either direction, which a mean can hide;
- ``flip_rate``: among the ``n_decided`` tasks with d_i != 0, the share whose sign of p_i
  differs from that of d_i (a tie under the probe counts as a flip).

A probe that must not matter should leave all of them at zero.
"""

from __future__ import annotations

import numpy as np

PREFIX = "probes/"
PROBE_METRICS = ("mean_shift", "shift_se", "mean_abs_shift", "flip_rate", "n_decided")


def debiased_expected(probs: np.ndarray) -> np.ndarray:
    """(N,) expected level of (N, orders, 2K+1) distributions, averaged over the orders."""
    k = (probs.shape[-1] - 1) // 2
    return (probs @ np.arange(-k, k + 1, dtype=np.float64)).mean(axis=1)


def probe_shift(original: np.ndarray, probed: np.ndarray) -> dict[str, float]:
    """The `PROBE_METRICS` of one probe, from debiased expected levels (N,) before and after."""
    if original.shape != probed.shape or original.ndim != 1 or not len(original):
        raise ValueError(
            f"probe_shift needs two equal non-empty (N,) arrays, got {original.shape}"
            f" and {probed.shape}"
        )
    shift = probed - original
    decided = np.sign(original) != 0
    flips = np.sign(probed[decided]) != np.sign(original[decided])
    return {
        "mean_shift": float(shift.mean()),
        "shift_se": float(shift.std(ddof=1) / np.sqrt(len(shift))) if len(shift) > 1 else np.nan,
        "mean_abs_shift": float(np.abs(shift).mean()),
        "flip_rate": float(flips.mean()) if decided.any() else np.nan,
        "n_decided": float(decided.sum()),
    }


def probe_metrics(probs: np.ndarray, probed: dict[str, np.ndarray]) -> dict[str, float]:
    """``probes/<name>/<metric>`` for each probe: `probs` and each of `probed` are the same
    tasks' level distributions (N, orders, 2K+1), originally and under the probe."""
    original = debiased_expected(probs)
    metrics = {}
    for name, shifted in probed.items():
        for key, value in probe_shift(original, debiased_expected(shifted)).items():
            metrics[f"{PREFIX}{name}/{key}"] = value
    return metrics


def probe_table(metrics: dict) -> dict[str, dict[str, float]]:
    """Probe name -> its metrics, from the flat ``probes/<name>/<metric>`` keys (in order)."""
    table: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        if key.startswith(PREFIX):
            name, metric = key[len(PREFIX) :].rsplit("/", 1)
            table.setdefault(name, {})[metric] = value
    return table
