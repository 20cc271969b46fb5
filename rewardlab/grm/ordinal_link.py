"""`OrdinalLink`: a scalar reward difference -> a distribution over the levels -K..K.

A scalar reward model gives each reply a number r; a task's difference d = r_policy -
r_reference says which reply is better but not on the annotators' scale. The link puts it
there, so the scalar model is scored by the same metrics as the GRM (accuracy, QWK, ECE of
P(policy better)). It is a symmetric cumulative logit: a slope s > 0 and cutpoints
0 < c_1 < ... < c_K give the 2K boundaries b = (-c_K, ..., -c_1, c_1, ..., c_K) and

    P(level <= -K + m | d) = sigmoid(b_m - s d)           m = 0 .. 2K-1
    P(level = j | d)       = P(level <= j | d) - P(level <= j - 1 | d)

with P(level <= -K - 1) = 0 and P(level <= K) = 1. The probabilities sum to 1 by telescoping.
Symmetry: P(level = j | d) = P(level = -j | -d), as swapping the two replies demands.
Monotone: every cumulative probability falls as d grows, so mass moves to higher levels.

`fit` minimises the cross-entropy to soft targets (share of annotators per level) over
log s and the logs of the cutpoint increments (so the order constraints always hold); a
weak pull of log s towards 0 keeps s finite when the training differences separate the
levels perfectly. Saved as JSON, never pickled.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

LINK_FILE = "ordinal_link.json"
SLOPE_PRIOR = 1e-3  # weight of (log s)^2 per task: keeps s finite on separable data


@dataclass(frozen=True)
class OrdinalLink:
    slope: float
    cutpoints: tuple[float, ...]  # c_1 < ... < c_K, all > 0

    def __post_init__(self) -> None:
        cuts = np.asarray(self.cutpoints, dtype=np.float64)
        if self.slope <= 0 or not np.isfinite(self.slope):
            raise ValueError(f"slope must be a positive number, got {self.slope}")
        if len(cuts) < 1 or cuts[0] <= 0 or np.any(np.diff(cuts) <= 0):
            raise ValueError(f"cutpoints must be positive and increasing, got {self.cutpoints}")

    @property
    def k(self) -> int:
        return len(self.cutpoints)

    @classmethod
    def initial(cls, k: int) -> OrdinalLink:
        """Slope 1, boundaries half-way between integers: d reads as a level before fitting."""
        return cls(1.0, tuple(j - 0.5 for j in range(1, k + 1)))

    def boundaries(self) -> np.ndarray:
        cuts = np.asarray(self.cutpoints, dtype=np.float64)
        return np.concatenate([-cuts[::-1], cuts])  # (2K,)

    def probs(self, d: np.ndarray) -> np.ndarray:
        """(N,) differences -> (N, 2K+1) level distributions, policy vs reference."""
        return _probs(np.asarray(d, dtype=np.float64), self.slope, self.boundaries())

    @classmethod
    def fit(cls, d: np.ndarray, targets: np.ndarray) -> OrdinalLink:
        """The link of least cross-entropy to `targets` (N, 2K+1) given differences `d` (N,)."""
        d = np.asarray(d, dtype=np.float64)
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 2 or targets.shape[0] != len(d) or targets.shape[1] % 2 != 1:
            raise ValueError(
                f"targets must be (N, 2K+1) for N={len(d)} differences, got {targets.shape}"
            )
        if not len(d):
            raise ValueError("no tasks to fit the ordinal link on")
        k = targets.shape[1] // 2

        def unpack(theta: np.ndarray) -> tuple[float, np.ndarray]:
            cuts = np.cumsum(np.exp(theta[1:]))
            return float(np.exp(theta[0])), np.concatenate([-cuts[::-1], cuts])

        def loss(theta: np.ndarray) -> float:
            slope, bounds = unpack(theta)
            p = np.clip(_probs(d, slope, bounds), 1e-12, None)
            return float(-(targets * np.log(p)).sum(1).mean() + SLOPE_PRIOR * theta[0] ** 2)

        start = cls.initial(k)
        increments = np.diff(np.concatenate([[0.0], start.cutpoints]))
        theta0 = np.concatenate([[0.0], np.log(increments)])
        theta = minimize(loss, theta0, method="L-BFGS-B").x
        slope, bounds = unpack(theta)
        return cls(slope, tuple(float(c) for c in bounds[k:]))

    # -- persistence ----------------------------------------------------------------------------

    def save(self, directory: Path | str) -> Path:
        path = Path(directory) / LINK_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path | str) -> OrdinalLink:
        data = json.loads((Path(directory) / LINK_FILE).read_text())
        return cls(float(data["slope"]), tuple(float(c) for c in data["cutpoints"]))


def _probs(d: np.ndarray, slope: float, bounds: np.ndarray) -> np.ndarray:
    cumulative = expit(bounds[None, :] - slope * d[:, None])  # (N, 2K) P(level <= boundary)
    n = len(d)
    edges = np.concatenate([np.zeros((n, 1)), cumulative, np.ones((n, 1))], axis=1)
    return np.diff(edges, axis=1)  # (N, 2K+1)
