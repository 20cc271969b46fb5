"""Choosing the reward mapper's calibration by cross-validated ECE on the calibration half.

A calibration map is only worth saving if it makes calibration better on tasks it was not
fitted on. The calibration half is split into folds by leakage group; each candidate (no
calibration; temperature or isotonic at strength 0.25, 0.5, 0.75 or 1, see `RewardMapper`) is
fitted on the other folds and scored on the held fold by the figure `rewardlab evaluate`
reports: the ECE of P(policy better) on the tasks the annotators decided. The candidate with
the lowest mean held-out ECE wins ("auto") if it beats no calibration by more than one standard
error of the per-fold differences (ECE on a few dozen tasks is noisy: a map that wins by less
is as likely fitted to noise); a named method gets its best strength, and is flagged when even
that is worse held-out than no calibration at all. Each fold also carries its ECE floor: what
the chosen map would score there if it were exactly calibrated (`ece_noise_floor`), so a fold
whose ECE sits near it is as calibrated as its few dozen tasks can tell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from rewardlab.eval.reward_metrics import (
    ece_noise_floor,
    expected_calibration_error,
    p_policy_better,
)
from rewardlab.reward import RewardMapper, decisions

STRENGTHS = (0.25, 0.5, 0.75, 1.0)
METHODS = ("temperature", "isotonic")


@dataclass(frozen=True)
class Candidate:
    method: str  # "none", "temperature", "isotonic"
    strength: float = 1.0

    def __str__(self) -> str:
        return self.method if self.method == "none" else f"{self.method} x{self.strength:g}"


@dataclass
class CalibrationChoice:
    chosen: Candidate
    cv_ece: dict[str, float]  # candidate -> mean held-out ECE over the folds
    # per fold: n (decided tasks), ECE before and after, and the ECE floor after
    folds: list[dict[str, float]] = field(default_factory=list)
    worse_than_none: bool = False  # the chosen map calibrates held-out tasks worse than none

    def summary(self) -> dict:
        return {
            "chosen": str(self.chosen),
            "method": self.chosen.method,
            "strength": self.chosen.strength,
            "cv_ece": self.cv_ece,
            "folds": self.folds,
            "worse_than_uncalibrated": self.worse_than_none,
        }


def fold_of(groups: Sequence[str], folds: int, seed: int) -> np.ndarray:
    """(N,) fold index per task: whole leakage groups to a fold, shuffled, round-robin."""
    unique = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(unique))
    fold = {unique[i]: rank % folds for rank, i in enumerate(order)}
    return np.array([fold[g] for g in groups])


def decided_forecasts(
    mapper: RewardMapper, probs: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`mapper`'s P(policy better) and the outcome, on the tasks the annotators decided."""
    decided, better = decisions(targets)
    return p_policy_better(mapper.distribution(probs))[decided], better[decided]


def held_out_ece(mapper: RewardMapper, probs: np.ndarray, targets: np.ndarray) -> float:
    return expected_calibration_error(*decided_forecasts(mapper, probs, targets))


def held_out_floor(mapper: RewardMapper, probs: np.ndarray, targets: np.ndarray) -> float:
    """The ECE `held_out_ece` would give if `mapper`'s P(policy better) were exact."""
    return ece_noise_floor(decided_forecasts(mapper, probs, targets)[0])


def choose_calibration(
    base: RewardMapper,
    probs: np.ndarray,
    targets: np.ndarray,
    groups: Sequence[str],
    *,
    method: str = "auto",
    folds: int = 5,
    seed: int = 0,
) -> CalibrationChoice:
    """The candidate with the lowest mean held-out ECE (among `method`'s, or all for "auto")."""
    if method not in ("auto", "none", *METHODS):
        raise ValueError(f"method must be auto, none, temperature or isotonic, got {method!r}")
    folds = max(2, min(folds, len(set(groups))))
    fold = fold_of(groups, folds, seed)
    candidates = [Candidate("none")] + [Candidate(m, s) for m in METHODS for s in STRENGTHS]
    scores: dict[Candidate, list[tuple[int, float]]] = {c: [] for c in candidates}
    fitted: dict[Candidate, list[RewardMapper]] = {c: [] for c in candidates}
    held_folds = []
    for f in range(folds):
        fit, held = fold != f, fold == f
        n = int(decisions(targets[held])[0].sum())
        if not n:
            continue  # nothing decided to measure on
        held_folds.append(held)
        for candidate in candidates:
            mapper = base.calibrated(probs[fit], targets[fit], candidate.method, candidate.strength)
            scores[candidate].append((n, held_out_ece(mapper, probs[held], targets[held])))
            fitted[candidate].append(mapper)
    if not scores[candidates[0]]:
        raise ValueError("no fold holds a decided task: too few judged tasks to calibrate")

    def mean(candidate: Candidate) -> float:
        n, ece = np.array(scores[candidate]).T
        return float((n * ece).sum() / n.sum())

    none = candidates[0]

    def standard_error(candidate: Candidate) -> float:
        gaps = [a - b for (_, a), (_, b) in zip(scores[candidate], scores[none], strict=True)]
        return float(np.std(gaps, ddof=1) / np.sqrt(len(gaps))) if len(gaps) > 1 else 0.0

    allowed = [c for c in candidates[1:] if method in ("auto", c.method)]
    chosen = min(allowed, key=lambda c: (mean(c), c.strength)) if allowed else none
    if method == "auto" and mean(none) - mean(chosen) <= standard_error(chosen):
        chosen = none
    return CalibrationChoice(
        chosen,
        {str(c): mean(c) for c in candidates},
        [
            {
                "n": n,
                "before": before,
                "after": after,
                "floor": held_out_floor(mapper, probs[held], targets[held]),
            }
            for (n, before), (_, after), mapper, held in zip(
                scores[none], scores[chosen], fitted[chosen], held_folds, strict=True
            )
        ],
        worse_than_none=mean(chosen) > mean(none) + 1e-9,
    )
