"""Should a researcher trust the reward: ranking, agreement, calibration, biases, breakdowns.

Inputs are arrays in canonical orientation (policy vs reference): per-order distributions
``probs`` (N, O, 2K+1) from `GenerativeRewardModel.judge`, the `RewardMapper` that turns them
into rewards, and reference levels (N,) in -K..K (human, or a known truth).

- accuracy on non-tie pairs, quadratically weighted kappa, position consistency: see
  `rewardlab.eval.judge_metrics` (the same numbers `train-grm` reports).
- Kendall tau-b between a score and the reference level: (n_c - n_d) / sqrt((n_0 - n_1)
  (n_0 - n_2)) with n_c, n_d the concordant and discordant pairs, n_0 = n(n-1)/2, and n_1, n_2
  the pairs tied in the score and in the reference (ties are common on a 2K+1 scale).
- position bias: mean_i (E_policy_first - E_reference_first) / 2, in levels: how far the GRM
  moves towards the response shown first (+) or second (-).
- Krippendorff's alpha (ordinal) over the human judgments, and again with the GRM as one more
  rater giving each task its rounded debiased expected level.
- P(policy better) and ECE: q_i = P(level > 0) / (P(level > 0) + P(level < 0)) under the
  debiased distribution (0.5 when all mass is on the tie), judged on the non-tie pairs only
  (reference level != 0) against y_i = [reference level > 0]. With B equal-width bins
  [b/B, (b+1)/B) (the last one closed), ECE = sum_b (n_b / n) |mean_b(y) - mean_b(q)|.
- ECE floor: the mean ECE of a judge calibrated exactly, y_i ~ Bernoulli(q_i), at the same q
  and n. A finite sample's ECE sits above 0 even then (each bin's frequency is a mean of a few
  dozen coin flips), so an ECE near its floor is as calibrated as the sample can show.
- length bias: Pearson correlation of the reward with the reply length difference (policy
  minus reference, in words), beside the same correlation for the reference level: a judge
  is length-biased by the gap between the two, not by the first alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from scipy.stats import kendalltau

from rewardlab.eval.agreement import krippendorff_alpha_ordinal
from rewardlab.eval.judge_metrics import judge_metrics
from rewardlab.reward import RewardMapper


def kendall_tau_b(score: np.ndarray, reference: np.ndarray) -> float:
    """NaN when either side is constant (tau-b is undefined)."""
    if len(score) < 2 or np.ptp(score) == 0 or np.ptp(reference) == 0:
        return float("nan")
    return float(kendalltau(score, reference, variant="b").statistic)


def position_bias(expected_by_order: np.ndarray) -> float:
    """(N, 2) expected levels (policy-first, reference-first) -> mean half-difference."""
    return float((expected_by_order[:, 0] - expected_by_order[:, 1]).mean() / 2)


def p_policy_better(debiased: np.ndarray) -> np.ndarray:
    """(N, 2K+1) distributions -> (N,) P(policy better | not a tie)."""
    k = (debiased.shape[1] - 1) // 2
    better, worse = debiased[:, k + 1 :].sum(1), debiased[:, :k].sum(1)
    decided = better + worse
    return np.where(decided > 0, better / np.where(decided > 0, decided, 1), 0.5)


def reliability(q: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, list]:
    """Per equal-width bin of q: its edges, count, mean q (confidence), mean y (frequency)."""
    index = np.minimum((q * n_bins).astype(int), n_bins - 1)  # q = 1 goes to the last bin
    counts = np.bincount(index, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        confidence = np.bincount(index, weights=q, minlength=n_bins) / counts
        frequency = np.bincount(index, weights=y.astype(float), minlength=n_bins) / counts
    return {
        "lower": [b / n_bins for b in range(n_bins)],
        "upper": [(b + 1) / n_bins for b in range(n_bins)],
        "count": counts.tolist(),
        "confidence": confidence.tolist(),  # NaN where a bin is empty
        "frequency": frequency.tolist(),
    }


def expected_calibration_error(q: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    if not len(q):
        return float("nan")
    bins = reliability(q, y, n_bins)
    counts = np.asarray(bins["count"])
    gaps = np.abs(np.asarray(bins["frequency"]) - np.asarray(bins["confidence"]))
    return float(np.nansum(counts * gaps) / counts.sum())


def ece_noise_floor(q: np.ndarray, n_bins: int = 10, draws: int = 2000, seed: int = 0) -> float:
    """Mean ECE over `draws` outcome vectors drawn from `q` itself (module docstring)."""
    if not len(q):
        return float("nan")
    index = np.minimum((q * n_bins).astype(int), n_bins - 1)
    one_hot = np.eye(n_bins)[index]  # (n, B)
    counts = one_hot.sum(0)
    filled = counts > 0
    confidence = (q @ one_hot)[filled] / counts[filled]
    outcomes = np.random.default_rng(seed).random((draws, len(q))) < q  # (draws, n)
    frequency = (outcomes @ one_hot)[:, filled] / counts[filled]
    gaps = np.abs(frequency - confidence) @ counts[filled]
    return float(gaps.mean() / len(q))


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def alpha_with_rater(units: Sequence[Sequence[int]], rater: Sequence[int], k: int) -> float:
    """Ordinal alpha after adding `rater`'s level to each unit (task)."""
    joined = [[*unit, level] for unit, level in zip(units, rater, strict=True)]
    return krippendorff_alpha_ordinal(joined, list(range(-k, k + 1)))


def group_metrics(
    probs: np.ndarray, rewards: np.ndarray, reference: np.ndarray, k: int
) -> dict[str, float]:
    """The core numbers on one slice: the GRM's accuracy, kappa and position consistency (both
    orders judged), the reward's tau-b."""
    expected = probs @ np.arange(-k, k + 1, dtype=np.float64)  # (N, O)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")  # kappa on a slice that uses one level: NaN, warned
        core = judge_metrics(expected, reference, k, {})
    numbers = {
        "n": core["judge/n"],
        "n_decided": core["judge/n_decided"],
        "accuracy": core["judge/accuracy"],
        "qwk": core["judge/qwk"],
        "kendall_tau_b": kendall_tau_b(rewards, reference),
        "reward_mean": float(rewards.mean()) if len(rewards) else float("nan"),
    }
    if "judge/consistency" in core:
        numbers["consistency"] = core["judge/consistency"]
    return numbers


def evaluation_metrics(
    probs: np.ndarray,
    mapper: RewardMapper,
    reference: np.ndarray,
    human_units: Sequence[Sequence[int]],
    length_diff: np.ndarray,
    labels: dict[str, Sequence[str]],
    n_bins: int = 10,
) -> dict:
    """Every number of the report. ``judge/*``, ``agreement/*`` and ``calibration/ece_raw``
    read the GRM's own distributions; ``reward/*``, ``length/*`` and ``calibration/ece`` what
    the mapper makes of them (without updating running statistics). `labels`: per breakdown
    (e.g. ``rubric``, ``axis``), each task's group; each becomes ``by_<name>: {group: ...}``."""
    k = mapper.k
    levels = np.arange(-k, k + 1, dtype=np.float64)
    expected = probs @ levels  # (N, O) raw expected level per order
    debiased = probs.mean(axis=1)  # (N, L)
    rewards = mapper(probs, update=False)
    calibrated = mapper.distribution(probs)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore")
        metrics: dict = judge_metrics(expected, reference, k, {})
    metrics["judge/kendall_tau_b"] = kendall_tau_b(expected.mean(1), reference)
    if expected.shape[1] == 2:
        metrics["judge/position_bias"] = position_bias(expected)
    grm_levels = np.clip(np.rint(expected.mean(1)), -k, k).astype(int)
    metrics["agreement/alpha_humans"] = krippendorff_alpha_ordinal(
        human_units, list(range(-k, k + 1))
    )
    metrics["agreement/alpha_with_grm"] = alpha_with_rater(human_units, grm_levels.tolist(), k)
    decided = reference != 0
    outcome = reference[decided] > 0
    raw_q, calibrated_q = p_policy_better(debiased)[decided], p_policy_better(calibrated)[decided]
    metrics |= {
        "calibration/method": mapper.calibration,
        "calibration/ece_raw": expected_calibration_error(raw_q, outcome, n_bins),
        "calibration/ece": expected_calibration_error(calibrated_q, outcome, n_bins),
        "calibration/ece_floor": ece_noise_floor(calibrated_q, n_bins),
        "reward/mean": float(rewards.mean()),
        "reward/std": float(rewards.std()),
        "reward/kendall_tau_b": kendall_tau_b(rewards, reference),
        "length/corr_reward": pearson(rewards, length_diff),
        "length/corr_reference": pearson(reference.astype(float), length_diff),
        "reliability": {
            "raw": reliability(raw_q, outcome, n_bins),
            "calibrated": reliability(calibrated_q, outcome, n_bins),
        },
    }
    for name, groups in labels.items():
        groups = np.asarray(groups)
        metrics[f"by_{name}"] = {
            group: group_metrics(
                probs[groups == group], rewards[groups == group], reference[groups == group], k
            )
            for group in sorted(set(groups.tolist()))
        }
    return metrics
