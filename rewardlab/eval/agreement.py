"""Agreement between annotators on ordinal levels: Krippendorff's alpha, pairwise weighted
kappa, and the confusion of levels given to the same task.

All functions take the export frame (`rewardlab.store.export.judgments_frame`: one row per
judgment with ``task_id``, ``annotator_id``, ``level``) or plain lists of levels.

Krippendorff's alpha, ordinal (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
each unit (task) with m >= 2 values adds 1 / (m - 1) to the coincidence o[c, k] of every
ordered pair of its values from different annotators. With n_c = sum_k o[c, k] and n = sum n_c,

    delta2(c, k) = (sum_{g=c..k} n_g - (n_c + n_k) / 2) ** 2          (ordinal metric, c <= k)
    alpha = 1 - (n - 1) * sum o[c, k] delta2(c, k) / sum n_c n_k delta2(c, k)

1 is perfect agreement, 0 agreement at chance, below 0 systematic disagreement.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import polars as pl
from sklearn.metrics import cohen_kappa_score


def coincidences(units: Sequence[Sequence[int]], values: Sequence[int]) -> np.ndarray:
    """(V, V) coincidence matrix of the units' values, V = len(values) in order."""
    index = {value: i for i, value in enumerate(values)}
    matrix = np.zeros((len(values), len(values)))
    for unit in units:
        if len(unit) < 2:  # a value nobody else gave to the unit cannot be compared
            continue
        counts = np.bincount([index[v] for v in unit], minlength=len(values)).astype(float)
        # pairs of different annotators: all pairs minus each value with itself
        matrix += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    return matrix


def krippendorff_alpha_ordinal(units: Sequence[Sequence[int]], values: Sequence[int]) -> float:
    """Alpha for ordinal `values` (in order); each unit lists the values its annotators gave.

    NaN when fewer than two values were ever compared, or all of them are the same.
    """
    o = coincidences(units, values)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
    index = np.arange(len(values))
    low, high = np.minimum.outer(index, index), np.maximum.outer(index, index)
    # sum of n_g for g in low..high, minus half of the two ends
    delta2 = (cumulative[high + 1] - cumulative[low] - (n_c[low] + n_c[high]) / 2) ** 2
    expected = (np.outer(n_c, n_c) * delta2).sum()
    if n < 2 or expected == 0:
        return float("nan")
    return float(1 - (n - 1) * (o * delta2).sum() / expected)


def task_levels(judgments: pl.DataFrame) -> list[list[int]]:
    """The levels each task received, one list per task."""
    return judgments.group_by("task_id").agg(pl.col("level"))["level"].to_list()


def alpha_of_levels(judgments: pl.DataFrame, k: int) -> float:
    """Ordinal alpha over all tasks, levels -k..k."""
    return krippendorff_alpha_ordinal(task_levels(judgments), list(range(-k, k + 1)))


def pairwise_kappa(judgments: pl.DataFrame, k: int, min_shared: int = 5) -> pl.DataFrame:
    """Quadratically weighted kappa for each pair of annotators sharing >= `min_shared` tasks.

    Columns: annotator_a, annotator_b (a < b), shared, kappa (NaN when both used one level).
    """
    levels = list(range(-k, k + 1))
    wide = judgments.pivot(on="annotator_id", index="task_id", values="level")
    names = sorted(c for c in wide.columns if c != "task_id")
    rows = []
    for a, b in combinations(names, 2):
        both = wide.select(a, b).drop_nulls()
        if both.height < min_shared:
            continue
        with np.errstate(invalid="ignore", divide="ignore"):
            kappa = cohen_kappa_score(
                both[a].to_numpy(), both[b].to_numpy(), labels=levels, weights="quadratic"
            )
        rows.append({"annotator_a": a, "annotator_b": b, "shared": both.height, "kappa": kappa})
    schema = {"annotator_a": pl.String, "annotator_b": pl.String, "shared": pl.Int64}
    return pl.DataFrame(rows, schema=schema | {"kappa": pl.Float64})


def level_confusion(judgments: pl.DataFrame, k: int) -> np.ndarray:
    """(2k+1, 2k+1) counts of the level pairs two annotators gave the same task.

    Symmetric: each unordered pair of judgments of a task counts once in each direction, so the
    diagonal holds agreements and the mass far from it the large disagreements.
    """
    size = 2 * k + 1
    matrix = np.zeros((size, size), dtype=np.int64)
    for levels in task_levels(judgments):
        for first, second in combinations(levels, 2):
            matrix[first + k, second + k] += 1
            matrix[second + k, first + k] += 1
    return matrix
