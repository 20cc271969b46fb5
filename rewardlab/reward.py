"""The scalar mapping layer R = f(j): the GRM's level distribution -> one reward per task.

    mapper = RewardMapper.load("runs/grm/final", k=3)  # the default mapper when none was saved
    rewards = mapper(grm.judge(items).probs)           # (N,) floats, ready for PPO / GRPO

The input is ``probs`` (N, O, 2K+1): per task and presentation order, the GRM's distribution
over levels -K..K in canonical orientation (policy vs reference; `GenerativeRewardModel.judge`
already flipped the reference-first order back). In this order:

1. temperature (``temperature`` set): each pass is re-tempered, p <- softmax(log p / T), which
   is the verdict logits divided by T (`fit_temperature`, fitted to the binary decision that
   calibration is measured on).
2. debiasing: the orders' distributions are averaged, p̄ = mean_o p[:, o]. Expectation is
   linear, so E_p̄[v] = mean_o E_p_o[v]: a position bias that adds +b to the expected level
   when the policy is shown first adds -b when it is shown second (signs aligned), and cancels.
3. isotonic (``isotonic`` set): each cumulative probability S_c = P(level >= c) of p̄,
   c = -K+1..K, goes through its own monotone map fitted to the human share of judgments at
   >= c (`fit_isotonic`); the S_c are made non-increasing in c again and differenced back into
   a distribution. Each calibrated S_c is non-decreasing in every raw S_c: more mass at or
   above a level never becomes less.
4. expectation: R = sum_l p̄_l v_l, v the level values (default: the levels -K..K themselves;
   any increasing values, e.g. a steeper penalty for "much worse").
5. normalisation: ``running``: (R - mean) / std over every reward mapped so far, this batch
   included (population std; the identity before the first batch); ``fixed``: mean and std of
   a reference set, fitted once (`with_fixed_normalization`).
6. clipping to [-clip, clip].

``strength`` (0..1] blends steps 1-3: the calibrated p̄ is mixed with the raw one,
(1 - s) p̄_raw + s p̄_cal; `rewardlab calibrate` chooses method and strength by cross-validated
ECE (`rewardlab.grm.calibration`).

The mapper is a plain object with a batch API and no framework attached; it saves to
``reward_mapper.json`` inside the GRM checkpoint (isotonic maps as their knots, not pickles).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.isotonic import IsotonicRegression

MAPPER_FILE = "reward_mapper.json"
Normalize = Literal["none", "running", "fixed"]
Knots = tuple[tuple[float, ...], tuple[float, ...]]  # (x, y) of a piecewise-linear monotone map
_FLOOR = 1e-12  # log of a zero probability
_MIN_STD = 1e-6


@dataclass
class RewardMapper:
    k: int = 3
    level_values: tuple[float, ...] | None = None  # value of each level -K..K; None: the levels
    temperature: float | None = None  # temperature calibration (step 1)
    strength: float = 1.0  # share of the calibrated distribution, the rest raw
    isotonic: tuple[Knots, ...] | None = None  # isotonic calibration, one map per c (step 3)
    normalize: Normalize = "none"
    clip: float | None = None
    count: int = 0  # normalisation statistics: rewards seen, their mean, sum of squared gaps
    mean: float = 0.0
    m2: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)  # what calibration was fitted on

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.level_values is not None:
            values = tuple(float(v) for v in self.level_values)
            if len(values) != 2 * self.k + 1 or np.any(np.diff(values) <= 0):
                raise ValueError(
                    f"level_values must be {2 * self.k + 1} strictly increasing numbers (one per"
                    f" level -{self.k}..{self.k}), got {self.level_values}"
                )
            self.level_values = values
        if self.temperature is not None and self.isotonic is not None:
            raise ValueError("temperature and isotonic: choose one calibration, not both")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.isotonic is not None:
            self.isotonic = tuple((tuple(x), tuple(y)) for x, y in self.isotonic)
            if len(self.isotonic) != 2 * self.k:
                raise ValueError(
                    f"isotonic needs {2 * self.k} maps (K={self.k}), got {len(self.isotonic)}"
                )
        if not 0 < self.strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {self.strength}")
        if self.normalize not in ("none", "running", "fixed"):
            raise ValueError(f"normalize must be none, running or fixed, got {self.normalize!r}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be > 0 (or None: no clipping), got {self.clip}")

    @property
    def values(self) -> np.ndarray:
        """(2K+1,) the value of each level -K..K."""
        if self.level_values is None:
            return np.arange(-self.k, self.k + 1, dtype=np.float64)
        return np.asarray(self.level_values)

    @property
    def calibration(self) -> str:
        return "temperature" if self.temperature else "isotonic" if self.isotonic else "none"

    # -- the mapping ----------------------------------------------------------------------

    def distribution(self, probs: np.ndarray) -> np.ndarray:
        """(N, O, 2K+1) per-order distributions -> (N, 2K+1): steps 1-3."""
        probs = self._check(probs)
        raw = probs.mean(axis=1)  # (N, L)
        if self.calibration == "none":
            return raw
        debiased = temper(probs, self.temperature).mean(axis=1) if self.temperature else raw
        if self.isotonic is not None:
            debiased = apply_isotonic(debiased, self.isotonic)
        if self.strength < 1:
            debiased = (1 - self.strength) * raw + self.strength * debiased
        return debiased

    def expected(self, probs: np.ndarray) -> np.ndarray:
        """(N,) calibrated, debiased expected value, before normalisation: steps 1-4."""
        return self.distribution(probs) @ self.values

    def __call__(self, probs: np.ndarray, *, update: bool = True) -> np.ndarray:
        """(N,) rewards. `update`: running normalisation absorbs this batch first."""
        rewards = self.expected(probs)
        if self.normalize != "none":
            if self.normalize == "running" and update:
                self._absorb(rewards)
            if self.count:
                std = max(float(np.sqrt(self.m2 / self.count)), _MIN_STD)
                rewards = (rewards - self.mean) / std
        if self.clip is not None:
            rewards = np.clip(rewards, -self.clip, self.clip)
        return rewards

    def _absorb(self, rewards: np.ndarray) -> None:
        """Merge a batch into (count, mean, m2): Chan et al.'s parallel update."""
        n = len(rewards)
        if not n:
            return
        mean = float(rewards.mean())
        total = self.count + n
        delta = mean - self.mean
        self.m2 += float(((rewards - mean) ** 2).sum()) + delta**2 * self.count * n / total
        self.mean += delta * n / total
        self.count = total

    def _check(self, probs: np.ndarray) -> np.ndarray:
        probs = np.asarray(probs, dtype=np.float64)
        if probs.ndim != 3 or probs.shape[-1] != 2 * self.k + 1:
            raise ValueError(
                f"probs must have shape (tasks, orders, {2 * self.k + 1}) for K={self.k},"
                f" got {probs.shape}"
            )
        return probs

    # -- fitting (each returns a new mapper) ------------------------------------------------

    def calibrated(
        self,
        probs: np.ndarray,
        targets: np.ndarray,
        method: Literal["temperature", "isotonic", "none"],
        strength: float = 1.0,
    ) -> RewardMapper:
        """A copy calibrated on `probs` (N, O, L) against human soft targets (N, L), blended
        at `strength`; any normalisation statistics are dropped, as they measured the
        uncalibrated rewards."""
        probs, targets = self._check(probs), np.asarray(targets, dtype=np.float64)
        if targets.shape != (probs.shape[0], probs.shape[2]):
            raise ValueError(f"targets must have shape {probs.shape[::2]}, got {targets.shape}")
        base = dataclasses.replace(
            self, temperature=None, isotonic=None, strength=strength, count=0, mean=0.0, m2=0.0
        )
        if method == "none":
            return dataclasses.replace(base, strength=1.0)
        if method == "temperature":
            return dataclasses.replace(base, temperature=fit_temperature(probs, targets))
        if method == "isotonic":
            return dataclasses.replace(base, isotonic=fit_isotonic(probs.mean(axis=1), targets))
        raise ValueError(f"method must be temperature, isotonic or none, got {method!r}")

    def with_fixed_normalization(self, probs: np.ndarray) -> RewardMapper:
        """A copy normalising with the mean and std of the rewards of a reference set."""
        fixed = dataclasses.replace(self, normalize="fixed", count=0, mean=0.0, m2=0.0)
        fixed._absorb(self.expected(probs))
        return fixed

    # -- persistence ----------------------------------------------------------------------

    def state_dict(self) -> dict[str, float]:
        """What changes while it maps: the normalisation statistics (a PPO checkpoint keeps
        them, so a resumed run normalises as the straight run would)."""
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.count, self.mean, self.m2 = (
            int(state["count"]),
            float(state["mean"]),
            float(state["m2"]),
        )

    def save(self, directory: Path | str) -> Path:
        path = Path(directory) / MAPPER_FILE
        path.write_text(json.dumps(dataclasses.asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path | str, *, k: int) -> RewardMapper:
        """The mapper saved in a GRM checkpoint, or the default one (no calibration, no
        normalisation, no clipping) when none was saved; `k` is the GRM's."""
        path = Path(directory) / MAPPER_FILE
        if not path.exists():
            return cls(k=k)
        try:
            mapper = cls(**json.loads(path.read_text()))
        except (TypeError, ValueError) as error:  # unknown field, bad value, bad JSON
            raise ValueError(f"{path}: {error}") from None
        if mapper.k != k:
            raise ValueError(f"{path}: k: the mapper has K={mapper.k} but the GRM has K={k}")
        return mapper


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T) over the last axis."""
    logits = np.log(np.clip(probs, _FLOOR, None)) / temperature
    return np.exp(logits - logsumexp(logits, axis=-1, keepdims=True))


def decisions(targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(decided (N,) bool, policy better (N,) bool) from soft targets: the annotators' mean
    level, rounded (ties to even, as the evaluation's reference levels), and its sign."""
    k = (targets.shape[-1] - 1) // 2
    level = np.round(targets @ np.arange(-k, k + 1, dtype=np.float64))
    return level != 0, level > 0


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """T minimising the binary cross-entropy of the decision calibration is measured on:

        BCE(T) = -mean_i [y_i log q_i(T) + (1 - y_i) log(1 - q_i(T))],
        q_i(T) = P(policy better | not a tie) of mean_o softmax(log p_io / T)

    over the tasks the annotators decided (mean level, rounded, not 0), y_i = 1 when they
    preferred the policy; T in [0.05, 20] (bounded Brent on log T). Fitting the 7-level
    spread instead can make the reported ECE of this decision worse. Without decided tasks,
    T = 1.
    """
    decided, better = decisions(targets)
    if not decided.any():
        return 1.0
    probs, y = probs[decided], better[decided].astype(np.float64)
    k = (probs.shape[-1] - 1) // 2

    def bce(log_t: float) -> float:
        p = temper(probs, float(np.exp(log_t))).mean(axis=1)  # (n, L)
        up, down = p[:, k + 1 :].sum(-1), p[:, :k].sum(-1)
        q = np.clip(up / np.maximum(up + down, _FLOOR), 1e-9, 1 - 1e-9)
        return float(-(y * np.log(q) + (1 - y) * np.log(1 - q)).mean())

    result = minimize_scalar(bce, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def cumulative(probs: np.ndarray) -> np.ndarray:
    """(N, L) distributions -> (N, L-1) S_c = P(level >= c), c = -K+1..K."""
    return np.cumsum(probs[:, ::-1], axis=1)[:, ::-1][:, 1:]


def from_cumulative(s: np.ndarray) -> np.ndarray:
    """Inverse of `cumulative`: p_l = S_l - S_{l+1} with S_{-K} = 1 and S_{K+1} = 0."""
    ones, zeros = np.ones((len(s), 1)), np.zeros((len(s), 1))
    full = np.concatenate([ones, s, zeros], axis=1)
    return full[:, :-1] - full[:, 1:]


def fit_isotonic(debiased: np.ndarray, targets: np.ndarray) -> tuple[Knots, ...]:
    """Per threshold c, the isotonic regression of the human share at >= c on the GRM's
    S_c (scikit-learn), kept as its knots: prediction is linear between them, flat outside."""
    raw, human = cumulative(debiased), cumulative(targets)
    maps = []
    for c in range(raw.shape[1]):
        fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        fit.fit(raw[:, c], human[:, c])
        maps.append((tuple(map(float, fit.X_thresholds_)), tuple(map(float, fit.y_thresholds_))))
    return tuple(maps)


def apply_isotonic(debiased: np.ndarray, maps: tuple[Knots, ...]) -> np.ndarray:
    s = cumulative(debiased)
    mapped = np.stack([np.interp(s[:, c], x, y) for c, (x, y) in enumerate(maps)], axis=1)
    mapped = np.minimum.accumulate(np.clip(mapped, 0.0, 1.0), axis=1)  # non-increasing in c
    return from_cumulative(mapped)
