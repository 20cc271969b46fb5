"""Evaluation of a GRM and its reward: every metric against a hand-worked value, then the real
`rewardlab calibrate` / `rewardlab evaluate` on a tiny trained GRM over the demo world."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from rewardlab.audio_probes import ACOUSTIC_PROBES
from rewardlab.cli import main
from rewardlab.eval.agreement import krippendorff_alpha_ordinal
from rewardlab.eval.judge_metrics import (
    order_disagreement,
    pairwise_accuracy,
    position_consistency,
    quadratic_weighted_kappa,
)
from rewardlab.eval.probe_metrics import PROBE_METRICS
from rewardlab.eval.report import json_safe
from rewardlab.eval.reward_metrics import (
    alpha_with_rater,
    ece_noise_floor,
    evaluation_metrics,
    expected_calibration_error,
    kendall_tau_b,
    p_policy_better,
    pearson,
    position_bias,
    reliability,
)
from rewardlab.grm.examples import load_examples, split_examples
from rewardlab.grm.probes import LENGTH_PROBES
from rewardlab.reward import RewardMapper

# -- metrics against hand-worked values --------------------------------------------------------


def test_accuracy_counts_only_non_tie_pairs():
    """Reference (2, 1, 0, -1): the tie is left out. Expected (1.2, -0.5, 0.3, 2.0): signs
    agree on the first pair only, of three -> 1/3."""
    expected = np.array([1.2, -0.5, 0.3, 2.0])
    assert pairwise_accuracy(expected, np.array([2, 1, 0, -1])) == pytest.approx(1 / 3)


def test_quadratic_weighted_kappa():
    """K=1, reference (-1, 0, 1, 1), GRM (-1, 0, 0, 1). Weights (i - j)^2. Observed weighted
    disagreement: one pair (1 vs 0) at weight 1 -> 1. Expected: row totals r = (1, 1, 2), column
    totals c = (1, 2, 1), N = 4, sum_ij (i - j)^2 r_i c_j / N = (2 + 4 + 1 + 1 + 8 + 4) / 4 = 5.
    kappa = 1 - 1/5 = 0.8."""
    kappa = quadratic_weighted_kappa(np.array([-1.0, 0.1, 0.4, 0.9]), np.array([-1, 0, 1, 1]), 1)
    assert kappa == pytest.approx(0.8)


def test_kendall_tau_b_with_ties():
    """x = (1, 2, 3, 4), y = (1, 1, 3, 2): of the 6 pairs, (1,2) is tied in y, (3,4) is
    discordant, the other 4 concordant. tau-b = (4 - 1) / sqrt((6 - 0)(6 - 1)) = 3/sqrt(30)."""
    tau = kendall_tau_b(np.array([1.0, 2, 3, 4]), np.array([1, 1, 3, 2]))
    assert tau == pytest.approx(3 / math.sqrt(30))
    assert math.isnan(kendall_tau_b(np.ones(4), np.array([1, 1, 3, 2])))


def test_alpha_with_the_grm_as_one_more_rater():
    """K=1, humans: task A (1, 1), task B (-1, 0); the GRM says A: 1, B: -1.

    With the GRM: A = (1, 1, 1) adds 6/2 = 3 to o[1,1]; B = (-1, 0, -1) adds (2, 2; 2, 0)/2 to the
    -1/0 block. n_c = (2, 1, 3), n = 6. Ordinal delta2: (-1,0) = (3 - 1.5)^2 = 2.25,
    (-1,1) = (6 - 2.5)^2 = 12.25, (0,1) = (4 - 2)^2 = 4. Observed 2 * 2.25 = 4.5; expected
    2 * (2*1*2.25 + 2*3*12.25 + 1*3*4) = 180. alpha = 1 - 5 * 4.5 / 180 = 0.875.
    Humans alone: n_c = (1, 1, 2), n = 4, delta2 = 1, 6.25, 2.25; observed 2 * 1 = 2; expected
    2 * (1 + 12.5 + 4.5) = 36; alpha = 1 - 3 * 2 / 36 = 5/6."""
    humans = [[1, 1], [-1, 0]]
    assert alpha_with_rater(humans, [1, -1], 1) == pytest.approx(0.875)
    assert krippendorff_alpha_ordinal(humans, [-1, 0, 1]) == pytest.approx(5 / 6)


def test_position_consistency_and_bias():
    """Expected levels (policy first, policy second): (1, 0.5), (1, -1), (-0.2, -0.3). Same
    winner in rows 1 and 3 -> 2/3. Bias = mean of half-differences (0.25, 1, 0.05) = 1.3/3."""
    by_order = np.array([[1, 0.5], [1, -1], [-0.2, -0.3]])
    assert position_consistency(by_order) == pytest.approx(2 / 3)
    assert position_bias(by_order) == pytest.approx(1.3 / 3)


def test_where_the_orders_part():
    """Rows (policy first, policy second) and truths: a decided pair kept, a decided pair
    flipped, two ties flipped by a hair (rounded: a tie in both orders) and one flipped by a
    level."""
    by_order = np.array([[1.2, 0.8], [1.0, -1.0], [0.1, -0.2], [-0.3, 0.4], [0.9, -0.9]])
    reference = np.array([1, 1, 0, 0, 0])
    parted = order_disagreement(by_order, reference)
    assert parted["judge/consistency_decided"] == pytest.approx(1 / 2)
    # order 1 right on both decided pairs, order 2 on one: independent, 1 * 1/2 + 0 * 1/2
    assert parted["judge/consistency_decided_if_independent"] == pytest.approx(1 / 2)
    assert parted["judge/consistency_ties"] == 0
    # rounded: (1, 1) (1, -1) (0, 0) (0, 0) (1, -1) -> 3 of 5 keep their winner
    assert parted["judge/consistency_levels"] == pytest.approx(3 / 5)
    gaps = by_order[:, 0] - by_order[:, 1]
    assert parted["judge/order_gap_std"] == pytest.approx(gaps.std())
    # an order-blind judge (the same level in both orders) parts nowhere
    blind = order_disagreement(np.repeat(by_order[:, :1], 2, axis=1), reference)
    assert blind["judge/order_gap_std"] == 0 and blind["judge/consistency_levels"] == 1
    # orders that make the same mistake keep their winner where independent ones would not
    shared = order_disagreement(np.array([[1.0, 1.0], [-1.0, -1.0]]), np.array([1, 1]))
    assert shared["judge/consistency_decided"] == 1
    assert shared["judge/consistency_decided_if_independent"] == pytest.approx(1 / 2)


def test_p_policy_better_and_ece_with_a_reliability_table():
    """P(better | not a tie) of (0.2, 0.4, 0.4) over -1..1 = 0.4 / 0.6 = 2/3; all mass on the
    tie -> 0.5. ECE with 2 bins, q = (0.9, 0.8, 0.3, 0.1), y = (1, 0, 0, 0): bin [0, 0.5) has
    mean q 0.2 and frequency 0, bin [0.5, 1] mean q 0.85 and frequency 0.5;
    ECE = 2/4 * 0.2 + 2/4 * 0.35 = 0.275."""
    q = p_policy_better(np.array([[0.2, 0.4, 0.4], [0.0, 1.0, 0.0]]))
    np.testing.assert_allclose(q, [2 / 3, 0.5])
    q, y = np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 0, 0])
    assert expected_calibration_error(q, y, n_bins=2) == pytest.approx(0.275)
    table = reliability(q, y, n_bins=2)
    assert table["count"] == [2, 2] and table["frequency"] == [0.0, 0.5]
    np.testing.assert_allclose(table["confidence"], [0.2, 0.85])
    assert expected_calibration_error(np.array([1.0]), np.array([1])) == 0  # q = 1: last bin


def test_ece_floor_is_the_ece_an_exactly_calibrated_judge_shows_at_that_size():
    """Certain predictions (q = 0 or 1) drawn from themselves never miss: floor 0. At q = 0.5
    on n tasks, all in one bin, the ECE is |mean of n fair coins - 0.5|, whose mean is about
    sqrt(2 / pi) * 0.5 / sqrt(n): 0.040 at n = 100, a quarter of that at 16 times the tasks."""
    assert ece_noise_floor(np.array([0.0, 1.0, 1.0, 0.0])) == 0
    small = ece_noise_floor(np.full(100, 0.5), draws=4000)
    large = ece_noise_floor(np.full(1600, 0.5), draws=4000)
    assert small == pytest.approx(0.5 * (2 / np.pi / 100) ** 0.5, rel=0.05)
    assert large == pytest.approx(small / 4, rel=0.08)
    # it is the mean of the ECEs such outcomes give, not a bound fitted to one case
    rng = np.random.default_rng(5)
    q = rng.beta(0.5, 0.5, 300)
    measured = [expected_calibration_error(q, rng.random(300) < q) for _ in range(2000)]
    assert ece_noise_floor(q) == pytest.approx(np.mean(measured), rel=0.05)
    assert np.isnan(ece_noise_floor(np.array([])))


def test_length_bias_is_a_pearson_correlation():
    """x = (1, 2, 3), y = (2, 4, 7): gaps (-1, 0, 1) and (-7/3, -1/3, 8/3); covariance sum 5,
    norms sqrt(2) and sqrt(114)/3: r = 15 / sqrt(228)."""
    assert pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 7])) == pytest.approx(15 / 228**0.5)


def test_evaluation_metrics_break_down_by_group():
    """K=1, four certain verdicts (rewards = expected levels) +1, -1, +1, 0 against reference
    +1, +1, -1, 0 in groups a, a, b, b. Overall: non-tie pairs 1-3, right on the first only ->
    1/3. Group a: 1 of 2 -> 0.5; group b: pair 3 wrong, pair 4 a tie -> 0 of 1. Lengths
    (policy minus reference words) 1, 2, 3, 4 against rewards (1, -1, 1, 0): gaps from the mean
    0.25: (0.75, -1.25, 0.75, -0.25) and (-1.5, -0.5, 0.5, 1.5), covariance sum -0.5, norms
    sqrt(2.75) and sqrt(5): r = -0.5 / sqrt(13.75)."""
    probs = np.zeros((4, 2, 3))
    for i, level in enumerate([1, -1, 1, 0]):
        probs[i, :, level + 1] = 1
    reference = np.array([1, 1, -1, 0])
    units = [[1, 1], [1, 0], [-1, -1], [0, 0]]
    metrics = evaluation_metrics(
        probs, RewardMapper(k=1), reference, units, np.array([1.0, 2, 3, 4]), {"g": list("aabb")}
    )
    assert metrics["judge/accuracy"] == pytest.approx(1 / 3)
    assert metrics["by_g"]["a"]["accuracy"] == 0.5 and metrics["by_g"]["b"]["accuracy"] == 0
    assert metrics["by_g"]["b"]["n_decided"] == 1
    assert metrics["by_g"]["a"]["consistency"] == 1  # both orders give one level
    probs[0, 1] = [1, 0, 0]  # task 1's second order now says -1: group a parts on 1 task of 2
    parted = evaluation_metrics(
        probs, RewardMapper(k=1), reference, units, np.ones(4), {"g": list("aabb")}
    )
    assert parted["by_g"]["a"]["consistency"] == 0.5 and parted["by_g"]["b"]["consistency"] == 1
    assert metrics["length/corr_reward"] == pytest.approx(-0.5 / 13.75**0.5)
    assert metrics["judge/consistency"] == 1 and metrics["judge/position_bias"] == 0
    assert metrics["calibration/method"] == "none"
    assert metrics["calibration/ece"] == metrics["calibration/ece_raw"]
    assert metrics["calibration/ece_floor"] == 0  # certain verdicts: nothing to draw
    assert json_safe({"x": float("nan"), "y": [np.float64(1.5)]}) == {"x": None, "y": [1.5]}


# -- the commands on a tiny trained GRM --------------------------------------------------------

PROBES = [t.name for t in ACOUSTIC_PROBES] + [p.name for p in LENGTH_PROBES]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo_world):
    """A demo project and a tiny audio GRM trained two steps on half of its leakage groups."""
    root = tmp_path_factory.mktemp("evaluate")
    project = demo_world(n=32, seed=3)
    backbone = root / "backbone"
    tiny = ["--project", project, "--out", backbone, "--hidden", "32", "--layers", "1"]
    assert main(["tiny-grm", *map(str, tiny)]) == 0
    recipe = root / "recipe.yaml"
    recipe.write_text(
        f"model_path: {backbone}\nproject: {project}\noutput_dir: {root / 'run'}\nmax_steps: 2\n"
        "per_device_train_batch_size: 4\nuse_cpu: true\nsave_strategy: 'no'\neval_share: 0.5\n"
        "split_seed: 7\nlearning_rate: 0.003\n"
    )
    assert main(["train-grm", "--config", str(recipe)]) == 0
    return {"project": project, "backbone": backbone, "grm": root / "run" / "final"}


def test_calibrate_and_evaluate_write_a_self_contained_report(trained, tmp_path, capsys):
    grm, project = trained["grm"], trained["project"]
    args = ["--grm", str(grm), "--project", str(project)]
    assert main(["calibrate", *args, "--method", "temperature", "--clip", "3"]) == 0
    printed = capsys.readouterr().out
    assert "ECE of P(policy better)" in printed and "exactly calibrated at this size" in printed
    saved = json.loads((grm / "reward_mapper.json").read_text())
    assert saved["temperature"] > 0 and saved["clip"] == 3.0
    assert saved["provenance"]["eval_share"] == 0.5 and saved["provenance"]["split_seed"] == 7

    out = tmp_path / "report"
    assert main(["evaluate", *args, "--out", str(out), "--truth"]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())

    # the tasks are the second half of the GRM's own held-out split, never training tasks
    train, held = split_examples(load_examples(project).examples, 0.5, 7)
    calibration, test = split_examples(held, 0.5, 7)
    assert metrics["settings"]["tasks"] == [e.task_id for e in test]
    assert not {e.task_id for e in train} & set(metrics["settings"]["tasks"])
    assert metrics["judge/n"] == len(test) and calibration

    for name in (
        "judge/accuracy",
        "judge/qwk",
        "judge/kendall_tau_b",
        "judge/consistency",
        "agreement/alpha_with_grm",
        "calibration/ece",
        "calibration/ece_floor",
        "length/corr_reward",
    ):
        assert metrics[name] is None or isinstance(metrics[name], float), name
    assert metrics["calibration/method"] == "temperature"
    assert {"by_rubric", "by_rubric_axis", "by_axis", "by_audio"} <= set(metrics)
    assert {"audio_only", "text_decidable"} >= set(metrics["by_audio"])
    assert all("consistency" in group for group in metrics["by_axis"].values())
    assert metrics["silence"]["judge/n"] == len(test)  # the audio-removed ablation
    probes = [f"{name}/{key}" for name in PROBES for key in PROBE_METRICS]
    assert [key[len("probes/") :] for key in metrics if key.startswith("probes/")] == probes
    for name in PROBES:  # shifts of an expected level in -3..3; flip rates are shares
        assert abs(metrics[f"probes/{name}/mean_shift"]) <= 6
        assert 0 <= metrics[f"probes/{name}/flip_rate"] <= 1
        assert metrics[f"probes/{name}/n_decided"] <= len(test)
    assert metrics["settings"]["reference"].startswith("ground truth")
    assert metrics["settings"]["mapper"]["temperature"] == saved["temperature"]

    page = (out / "report.html").read_text()
    images = re.findall(r"<img alt='(\w+)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>", page)
    assert [name for name, _ in images] == [
        "confusion",
        "reward_by_level",
        "position",
        "reliability",
        "length",
        "breakdown",
        "audio_ablation",
        "probes",
    ]
    assert page.count("<img") == 8 and all(len(data) > 1000 for _, data in images)
    assert "http" not in page and "src='/" not in page  # nothing to fetch
    for anchor in (
        "agreement",
        "position",
        "calibration",
        "length",
        "breakdowns",
        "audio",
        "probes",
        "reward",
        "settings",
    ):
        assert f"<h2 id='{anchor}'>" in page, anchor


def test_evaluate_without_probes_judges_no_probe(trained, tmp_path):
    out = tmp_path / "report"
    args = ["--grm", str(trained["grm"]), "--project", str(trained["project"])]
    assert main(["evaluate", *args, "--out", str(out), "--no-probes"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["judge/n"] > 0 and not [key for key in metrics if key.startswith("probes/")]
    page = (out / "report.html").read_text()
    assert "<h2 id='probes'>" not in page and "alt='probes'" not in page


def test_isotonic_calibration_with_fixed_normalisation(trained):
    grm, project = trained["grm"], trained["project"]
    args = ["--grm", str(grm), "--project", str(project), "--method", "isotonic"]
    assert main(["calibrate", *args, "--normalize", "fixed", "--clip", "0"]) == 0
    saved = json.loads((grm / "reward_mapper.json").read_text())
    assert saved["isotonic"] and saved["temperature"] is None
    assert saved["normalize"] == "fixed" and saved["count"] > 0 and saved["clip"] is None


def test_bad_input_names_the_file_and_the_fix(trained, capsys):
    untrained = ["--grm", str(trained["backbone"]), "--project", str(trained["project"])]
    assert main(["calibrate", *untrained, "--method", "isotonic"]) == 1
    error = capsys.readouterr().err
    assert "grm_config.yaml not found" in error and "--eval-share" in error
    assert (
        main(["evaluate", *untrained, "--out", "x", "--eval-share", "0.02", "--split-seed", "0"])
        == 1
    )
    assert "at least 2 are needed" in capsys.readouterr().err


def test_calibrate_chooses_by_held_out_folds_and_says_when_a_named_method_hurts(trained, capsys):
    grm, project = trained["grm"], trained["project"]
    args = ["--grm", str(grm), "--project", str(project)]
    assert main(["calibrate", *args, "--folds", "3"]) == 0  # auto
    out = capsys.readouterr().out
    assert "fold 0:" in out and "chosen:" in out and "(asked: auto)" in out
    saved = json.loads((grm / "reward_mapper.json").read_text())["provenance"]
    assert saved["requested"] == "auto" and len(saved["folds"]) == 3
    assert {"none", "temperature x1", "isotonic x0.25"} <= set(saved["cv_ece"])
    assert saved["cv_ece"][saved["chosen"]] <= saved["cv_ece"]["none"]
    assert not saved["worse_than_uncalibrated"]
    for method in ("temperature", "isotonic"):
        assert main(["calibrate", *args, "--method", method, "--folds", "3"]) == 0
        err = capsys.readouterr().err
        saved = json.loads((grm / "reward_mapper.json").read_text())["provenance"]
        assert saved["method"] == method
        assert ("WARNING" in err) == saved["worse_than_uncalibrated"]
