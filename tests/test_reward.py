"""The scalar mapping layer: expectation, debiasing, calibration, normalisation, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rewardlab.eval.reward_metrics import expected_calibration_error, p_policy_better
from rewardlab.reward import (
    MAPPER_FILE,
    RewardMapper,
    apply_isotonic,
    cumulative,
    fit_temperature,
    from_cumulative,
    temper,
)


def one_hot(levels: list[int], k: int = 3, orders: int = 2) -> np.ndarray:
    """(N, orders, 2K+1) certain verdicts at `levels`."""
    probs = np.zeros((len(levels), orders, 2 * k + 1))
    for i, level in enumerate(levels):
        probs[i, :, level + k] = 1.0
    return probs


def test_expected_level_under_default_and_custom_level_values():
    """K=1, one task, orders p1 = (0.2, 0.4, 0.4) and p2 = (0.4, 0.4, 0.2) over -1, 0, 1.

    Debiased p̄ = (0.3, 0.4, 0.3). Default values (-1, 0, 1): E = -0.3 + 0.3 = 0.
    Values (-2, 0, 1) (a steeper penalty for "worse"): E = -0.6 + 0.3 = -0.3.
    """
    probs = np.array([[[0.2, 0.4, 0.4], [0.4, 0.4, 0.2]]])
    np.testing.assert_allclose(RewardMapper(k=1).distribution(probs), [[0.3, 0.4, 0.3]])
    assert RewardMapper(k=1)(probs)[0] == pytest.approx(0.0)
    assert RewardMapper(k=1, level_values=(-2, 0, 1))(probs)[0] == pytest.approx(-0.3)


def test_debiasing_cancels_a_planted_position_bias_exactly():
    """A judge that favours whichever response it is shown first by one whole level.

    True canonical distribution p (no mass at ±K). Policy first: the shown level is the
    canonical one, shifted up one level: roll(p, +1), expectation E + 1. Reference first: the
    shown level is reference-vs-policy, p reversed, shifted up one level; flipped back to
    canonical (as `judge` does) it is roll(p, -1), expectation E - 1. The mean is E, exactly.
    """
    rng = np.random.default_rng(0)
    k = 3
    p = np.zeros((50, 2 * k + 1))
    p[:, 1:-1] = rng.dirichlet(np.ones(2 * k - 1), size=50)  # mass on -2..2 only
    levels = np.arange(-k, k + 1)
    policy_first = np.roll(p, 1, axis=1)
    shown_reference_first = np.roll(p[:, ::-1], 1, axis=1)
    reference_first = shown_reference_first[:, ::-1]  # flipped back to policy vs reference
    probs = np.stack([policy_first, reference_first], axis=1)  # (N, 2, L)
    np.testing.assert_allclose(policy_first @ levels, p @ levels + 1)
    np.testing.assert_allclose(reference_first @ levels, p @ levels - 1)
    np.testing.assert_allclose(RewardMapper(k=k)(probs), p @ levels, atol=1e-12)


def test_temperature_hand_worked_and_fit_recovers_a_planted_temperature():
    """temper((0.2, 0.4, 0.4), T=0.5) = p^2 / sum p^2 = (0.04, 0.16, 0.16) / 0.36 = (1/9, 4/9,
    4/9). A scorer whose logits are 3x the true ones, softmax(3z), against one annotator per
    task who answers from the true distribution softmax(z): the tempered scorer's P(policy
    better) matches the annotators' decisions at T = 3, where softmax(3z / T) = softmax(z); the
    binary cross-entropy fit finds it within sampling error (2,000 tasks)."""
    np.testing.assert_allclose(temper(np.array([0.2, 0.4, 0.4]), 0.5), [1 / 9, 4 / 9, 4 / 9])
    rng = np.random.default_rng(1)
    z = rng.normal(size=(2000, 1, 7))
    truth = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    scorer = np.exp(3 * z) / np.exp(3 * z).sum(-1, keepdims=True)
    human = np.array([rng.choice(7, p=row) for row in truth[:, 0]])
    assert fit_temperature(scorer, np.eye(7)[human]) == pytest.approx(3.0, rel=0.1)
    assert fit_temperature(scorer, np.full((2000, 7), 1 / 7)) == 1.0  # nothing decided


def test_cumulative_probabilities_round_trip():
    """(0.1, 0.2, 0.3, 0.4) over -1.5.. (K=... any 4 levels): S = P(>= 2nd) .. = (0.9, 0.7, 0.4)."""
    p = np.array([[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(cumulative(p), [[0.9, 0.7, 0.4]])
    np.testing.assert_allclose(from_cumulative(cumulative(p)), p)


def test_isotonic_maps_are_applied_between_knots_and_kept_monotone():
    """K=1, p̄ = (0.5, 0.2, 0.3): S_0 = P(>= 0) = 0.5, S_1 = P(>= 1) = 0.3.

    Map for S_0: knots (0, 1) -> (0, 0.4): 0.5 -> 0.2. Map for S_1: knots (0, 1) -> (0.2, 0.6):
    0.3 -> 0.32. S_1 may not exceed S_0: it becomes 0.2. So p = (1 - 0.2, 0.2 - 0.2, 0.2).
    """
    maps = (((0.0, 1.0), (0.0, 0.4)), ((0.0, 1.0), (0.2, 0.6)))
    np.testing.assert_allclose(
        apply_isotonic(np.array([[0.5, 0.2, 0.3]]), maps), [[0.8, 0.0, 0.2]], atol=1e-12
    )


def planted_world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scorer probs (N, 2, 7), one human level per task, its one-hot soft target).

    The true level distribution is softmax(z) with z_l = a * l + noise; the human level is one
    draw from it; the scorer is overconfident: softmax(3z), in both orders.
    """
    rng = np.random.default_rng(seed)
    levels = np.arange(-3, 4)
    z = rng.normal(0, 0.6, (n, 1)) * levels + rng.normal(0, 0.5, (n, 7))
    truth = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    human = np.array([rng.choice(levels, p=row) for row in truth])
    scorer = np.exp(3 * z) / np.exp(3 * z).sum(-1, keepdims=True)
    return np.repeat(scorer[:, None], 2, axis=1), human, np.eye(7)[human + 3]


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_calibration_lowers_ece_on_a_planted_miscalibrated_scorer(method):
    fit_probs, _, fit_targets = planted_world(3000, seed=2)
    probs, human, _ = planted_world(3000, seed=3)  # out of sample
    decided = human != 0

    def ece(mapper: RewardMapper) -> float:
        q = p_policy_better(mapper.distribution(probs))[decided]
        return expected_calibration_error(q, human[decided] > 0)

    raw = RewardMapper(k=3)
    calibrated = raw.calibrated(fit_probs, fit_targets, method)
    assert calibrated.calibration == method
    before, after = ece(raw), ece(calibrated)
    print(f"{method}: ECE {before:.3f} -> {after:.3f}")
    assert before > 0.08 and after < before / 2, (before, after)


def test_running_normalisation_and_clipping_hand_worked():
    """Batch 1 has expected levels (1, 2, 3): mean 2, population std sqrt(2/3) = 0.8165, so
    (-1.2247, 0, 1.2247). Batch 2, (-3), joins them: (1, 2, 3, -3) has mean 0.75 and squared
    gaps 0.0625 + 1.5625 + 5.0625 + 14.0625 = 20.75, std sqrt(20.75 / 4) = 2.27761, so
    (-3 - 0.75) / 2.27761 = -1.64646; clipped to [-1.5, 1.5]: -1.5."""
    mapper = RewardMapper(k=3, normalize="running")
    np.testing.assert_allclose(mapper(one_hot([1, 2, 3])), [-1.224745, 0, 1.224745], atol=1e-6)
    assert mapper(one_hot([-3]), update=True)[0] == pytest.approx(-1.64646, abs=1e-5)
    assert (mapper.count, mapper.mean) == (4, pytest.approx(0.75))
    clipped = RewardMapper(k=3, normalize="running", clip=1.5, count=4, mean=0.75, m2=20.75)
    assert clipped(one_hot([-3]), update=False)[0] == -1.5
    assert clipped.count == 4  # update=False leaves the statistics alone


def test_fixed_normalisation_uses_the_reference_set_only():
    """Reference set expected levels (-1, 1): mean 0, std 1; later batches do not move it."""
    mapper = RewardMapper(k=3).with_fixed_normalization(one_hot([-1, 1]))
    np.testing.assert_allclose(mapper(one_hot([2, 3])), [2.0, 3.0])
    np.testing.assert_allclose(mapper(one_hot([2, 3])), [2.0, 3.0])
    assert (mapper.normalize, mapper.count) == ("fixed", 2)


@pytest.mark.parametrize("method", ["temperature", "isotonic"])
def test_save_load_round_trip_gives_identical_rewards(tmp_path, method):
    fit_probs, _, fit_targets = planted_world(400, seed=4)
    probs, _, _ = planted_world(100, seed=5)
    mapper = RewardMapper(k=3, level_values=(-4, -2, -1, 0, 1, 2, 3), clip=2.0, normalize="running")
    mapper = mapper.calibrated(fit_probs, fit_targets, method)
    mapper(fit_probs)  # running statistics to persist
    path = mapper.save(tmp_path)
    assert path == tmp_path / MAPPER_FILE
    saved = json.loads(path.read_text())
    assert saved["normalize"] == "running" and saved["count"] == 400
    if method == "isotonic":  # knots, not a pickle
        assert len(saved["isotonic"]) == 6 and all(len(x) == len(y) for x, y in saved["isotonic"])
    loaded = RewardMapper.load(tmp_path, k=3)
    assert loaded == mapper
    np.testing.assert_array_equal(loaded(probs, update=False), mapper(probs, update=False))


def test_load_gives_the_default_mapper_when_none_was_saved_and_names_bad_files(tmp_path):
    assert RewardMapper.load(tmp_path, k=2) == RewardMapper(k=2)
    RewardMapper(k=3).save(tmp_path)
    with pytest.raises(ValueError, match="k: the mapper has K=3 but the GRM has K=2"):
        RewardMapper.load(tmp_path, k=2)
    (tmp_path / MAPPER_FILE).write_text(json.dumps({"k": 3, "temprature": 2.0}))
    with pytest.raises(ValueError, match=r"reward_mapper.json: .*'temprature'"):
        RewardMapper.load(tmp_path, k=3)
    (tmp_path / MAPPER_FILE).write_text(json.dumps({"k": 3, "clip": -1}))
    with pytest.raises(ValueError, match=r"reward_mapper.json: clip must be > 0"):
        RewardMapper.load(tmp_path, k=3)


def test_bad_settings_and_inputs_are_refused():
    with pytest.raises(ValueError, match="level_values must be 7 strictly increasing"):
        RewardMapper(k=3, level_values=(0, 1, 2))
    with pytest.raises(ValueError, match="choose one calibration"):
        RewardMapper(k=1, temperature=2.0, isotonic=((((0.0,), (0.0,))),) * 2)
    with pytest.raises(ValueError, match="normalize must be"):
        RewardMapper(normalize="batch")
    with pytest.raises(ValueError, match=r"probs must have shape \(tasks, orders, 7\)"):
        RewardMapper(k=3)(np.ones((2, 5)))
    with pytest.raises(ValueError, match="method must be temperature, isotonic or none"):
        RewardMapper(k=3).calibrated(one_hot([1]), np.eye(7)[[4]], "platt")
