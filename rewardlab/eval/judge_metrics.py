"""How good is a judge: accuracy, agreement with the ordinal truth, position consistency.

All functions take expected levels in canonical orientation (policy vs reference), e.g.
`LevelDistribution.expected_level()` of shape (N, orders), and reference levels (N,).

- pairwise accuracy: on pairs whose reference level is not 0, the share where the sign of the
  order-averaged expected level matches the sign of the reference (ties excluded: a tie has
  no winner to get right).
- quadratic weighted kappa: agreement of the rounded expected level with the reference level
  on the full ordinal scale, chance-corrected, with disagreements weighted by squared distance.
- position consistency: the share of pairs whose winner is the same in both orders; and where
  the orders part (`order_disagreement`): on decided pairs and on ties apart, with winners read
  from the rounded levels (a level within half a step of 0 is a tie), and the spread of the
  two orders' difference (a shift shows in its mean, `position_bias`; noise in its spread),
  beside the decided pairs' consistency two orders with the same accuracies would reach if
  their mistakes were independent.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import cohen_kappa_score


def pairwise_accuracy(expected: np.ndarray, reference: np.ndarray) -> float:
    decided = reference != 0
    if not decided.any():
        return float("nan")
    return float((np.sign(expected[decided]) == np.sign(reference[decided])).mean())


def quadratic_weighted_kappa(expected: np.ndarray, reference: np.ndarray, k: int) -> float:
    levels = list(range(-k, k + 1))
    predicted = np.clip(np.rint(expected), -k, k).astype(int)
    return float(
        cohen_kappa_score(reference.astype(int), predicted, labels=levels, weights="quadratic")
    )


def position_consistency(expected_by_order: np.ndarray) -> float:
    """(N, 2) expected levels -> share of pairs with one winner in both orders."""
    signs = np.sign(expected_by_order)
    return float((signs[:, 0] == signs[:, 1]).mean())


def order_disagreement(expected_by_order: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Where the two orders part: consistency on decided pairs and on ties apart, consistency
    of the rounded levels' winners, and the standard deviation of the orders' difference."""
    same = np.sign(expected_by_order[:, 0]) == np.sign(expected_by_order[:, 1])
    rounded = np.sign(np.rint(expected_by_order))
    tie = reference == 0
    # Two orders right with probabilities a1, a2 and erring independently keep their winner with
    # a1 a2 + (1 - a1)(1 - a2): measured near it, the flips are each order's own noise; above
    # it, the orders share their mistakes.
    right = [pairwise_accuracy(expected_by_order[:, j], reference) for j in range(2)]
    return {
        "judge/consistency_decided": float(same[~tie].mean()) if (~tie).any() else float("nan"),
        "judge/consistency_decided_if_independent": right[0] * right[1]
        + (1 - right[0]) * (1 - right[1]),
        "judge/consistency_ties": float(same[tie].mean()) if tie.any() else float("nan"),
        "judge/consistency_levels": float((rounded[:, 0] == rounded[:, 1]).mean()),
        "judge/order_gap_std": float(np.std(expected_by_order[:, 0] - expected_by_order[:, 1])),
    }


def judge_metrics(
    expected_by_order: np.ndarray, reference: np.ndarray, k: int, subsets: dict[str, np.ndarray]
) -> dict[str, float]:
    """`judge/...` metrics overall, per presentation order, and on each boolean subset."""
    debiased = expected_by_order.mean(axis=1)
    metrics = {
        "judge/accuracy": pairwise_accuracy(debiased, reference),
        "judge/qwk": quadratic_weighted_kappa(debiased, reference, k),
        "judge/n": float(len(reference)),
        "judge/n_decided": float((reference != 0).sum()),
    }
    for j in range(expected_by_order.shape[1]):
        metrics[f"judge/accuracy_order{j + 1}"] = pairwise_accuracy(
            expected_by_order[:, j], reference
        )
    if expected_by_order.shape[1] == 2:
        metrics["judge/consistency"] = position_consistency(expected_by_order)
        metrics |= order_disagreement(expected_by_order, reference)
    for name, mask in subsets.items():
        metrics[f"judge/accuracy_{name}"] = pairwise_accuracy(debiased[mask], reference[mask])
        metrics[f"judge/n_{name}"] = float(((reference != 0) & mask).sum())
    return metrics
