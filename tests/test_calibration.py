"""Choosing the reward mapper's calibration by cross-validated ECE (`rewardlab.grm.calibration`).

Two planted worlds, one annotator per task answering from a true level distribution: an
overconfident scorer (its logits 3x the truth's), which calibration must fix on held-out folds,
and a scorer that is the truth, where "auto" must never do worse than no calibration."""

from __future__ import annotations

import numpy as np
import pytest
from test_reward import planted_world

from rewardlab.grm.calibration import choose_calibration, fold_of
from rewardlab.reward import RewardMapper, temper

LEVELS = np.arange(-3, 4)


def honest_world(n: int, seed: int):
    """The scorer's distributions are the ones the annotator's level is drawn from."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 0.6, (n, 1)) * LEVELS + rng.normal(0, 0.5, (n, 7))
    truth = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    human = np.array([rng.choice(LEVELS, p=row) for row in truth])
    return np.repeat(truth[:, None], 2, axis=1), np.eye(7)[human + 3]


def groups(n: int) -> list[str]:
    return [f"g{i}" for i in range(n)]


def test_an_overconfident_scorer_gets_a_calibration_that_wins_on_every_held_out_fold():
    probs, _, targets = planted_world(600, seed=2)
    choice = choose_calibration(RewardMapper(k=3), probs, targets, groups(600))
    assert choice.chosen.method != "none" and not choice.worse_than_none
    assert choice.cv_ece[str(choice.chosen)] < 0.7 * choice.cv_ece["none"]
    assert len(choice.folds) == 5 and all(f["after"] < f["before"] for f in choice.folds)
    assert sum(f["n"] for f in choice.folds) == int((targets @ LEVELS != 0).sum())


@pytest.mark.parametrize("seed", range(4))
def test_auto_is_never_worse_held_out_and_a_named_method_says_when_it_is(seed):
    """On a scorer that is already calibrated, what calibration can still win on held-out
    folds is noise and the binned ECE's own bias (fewer distinct values, fewer occupied
    bins); "auto" keeps none unless a map wins by more than a standard error, and is never
    worse than none; a named method is flagged exactly when it is worse."""
    probs, targets = honest_world(300, seed=seed)
    auto = choose_calibration(RewardMapper(k=3), probs, targets, groups(300))
    assert auto.cv_ece[str(auto.chosen)] <= auto.cv_ece["none"] and not auto.worse_than_none
    # an honest scorer's folds sit at the floor an exactly calibrated one shows at their size
    after, floor = (np.mean([fold[key] for fold in auto.folds]) for key in ("after", "floor"))
    assert 0.7 * floor < after < 1.4 * floor
    for method in ("temperature", "isotonic"):
        named = choose_calibration(RewardMapper(k=3), probs, targets, groups(300), method=method)
        assert named.chosen.method == method
        assert named.worse_than_none == (named.cv_ece[str(named.chosen)] > named.cv_ece["none"])


def test_strength_blends_the_calibrated_distribution_with_the_raw_one():
    probs, _, _ = planted_world(5, seed=1)
    half = RewardMapper(k=3, temperature=2.0, strength=0.5).distribution(probs)
    raw, tempered = probs.mean(axis=1), temper(probs, 2.0).mean(axis=1)
    np.testing.assert_allclose(half, 0.5 * raw + 0.5 * tempered)
    with pytest.raises(ValueError, match="strength must be in"):
        RewardMapper(k=3, strength=0.0)


def test_a_leakage_group_never_straddles_two_folds():
    names = [f"g{i // 3}" for i in range(60)]  # 20 groups of 3 tasks
    fold = fold_of(names, 5, seed=4)
    assert all(len({fold[i] for i in range(len(names)) if names[i] == g}) == 1 for g in names)
    assert sorted(np.bincount(fold)) == [12] * 5
