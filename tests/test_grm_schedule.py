"""`GRMSchedule` against values worked out by hand (no model, no data)."""

from __future__ import annotations

import math

import pytest

from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.schedule import GRMSchedule, StepSettings

A, BC = frozenset({"a"}), frozenset({"b", "c"})


def schedule(**overrides) -> GRMSchedule:
    """10 steps; 5 tasks (10 rows) in batches of 4 rows, 2 batches a step; fixed-order share
    0.5 annealed over 0.4 of the run; 3 last-turn steps then a restart at half the peak;
    2 warm-up steps; curriculum: 2 steps of rubric a, 1 step of rubrics b and c."""
    values = dict(
        max_steps=10,
        examples=5,
        batch_rows=4,
        batches_per_step=2,
        fixed_order_share=0.5,
        fixed_order_anneal=0.4,
        history_warmup_steps=3,
        restart_peak=0.5,
        warmup_steps=2,
        stages=((A, 2), (BC, 1)),
    )
    return GRMSchedule(**(values | overrides))


def test_fixed_order_share_falls_linearly_to_zero():
    """Horizon max(1, 0.4 * 10) = 4 steps: 0.5 * (1 - s/4) = 0.5, 0.375, 0.25, 0.125, then 0."""
    shares = [schedule().fixed_order_share_at(s) for s in range(10)]
    assert shares == [0.5, 0.375, 0.25, 0.125, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert schedule(fixed_order_share=0.0).fixed_order_share_at(0) == 0.0
    # a horizon under one step is one step: 0.5 * (1 - 0/1), then 0
    short = schedule(fixed_order_anneal=0.05)
    assert [short.fixed_order_share_at(s) for s in range(2)] == [0.5, 0.0]


def test_history_warm_up_curriculum_and_moment_reset_by_step():
    s = schedule()
    assert [s.last_turns(step) for step in range(5)] == [1, 1, 1, None, None]
    assert [s.rubrics(step) for step in range(5)] == [A, A, BC, None, None]
    assert [step for step in range(10) if s.resets_moments(step)] == [3]
    assert not any(schedule(restart_peak=0.0).resets_moments(step) for step in range(10))


def test_two_cycle_learning_rate():
    """Cycle 1 over steps 0-2 (switch 3), peak 1: warm-up (0+1)/2, (1+1)/2, then the cosine at
    progress (2-2)/max(1, 3-2) = 0 -> 1. Cycle 2 over steps 3-9, peak 0.5: warm-up 0.5 * 1/2,
    0.5 * 2/2, then progress (d-2)/5 for d = 2..6: 0.5 * (1 + cos(pi q)) / 2 at q = 0, 1/5,
    2/5, 3/5, 4/5 with cos(pi/5) = 0.809017, cos(2pi/5) = 0.309017."""
    factors = [schedule().lr_factor(step) for step in range(10)]
    expected = [
        0.5,
        1.0,
        1.0,
        0.25,
        0.5,
        0.5,
        0.25 * 1.809017,
        0.25 * 1.309017,
        0.25 * 0.690983,
        0.25 * 0.190983,
    ]
    assert factors == pytest.approx(expected, abs=1e-6)
    plain = schedule(restart_peak=0.0, trainer_lr_factor=lambda step: 1 - step / 10)
    assert plain.lr_factor(4) == pytest.approx(0.6)  # without a restart: the Trainer's own


def test_steps_of_batches_across_epochs():
    """Epoch 0: 10 task rows + 3 stage steps x 2 batches x 4 rows = 34 rows -> 9 batches
    (the last of 2 rows) -> 5 steps (the last of one batch). Later epochs: 10 rows -> 3
    batches -> 2 steps."""
    s = schedule()
    assert s.stage_batches == [4, 2]
    assert [s.batches_in_epoch(e) for e in (0, 1, 2)] == [9, 3, 3]
    assert [s.steps_in_epoch(e) for e in (0, 1)] == [5, 2]
    assert [s.step_of_batch(0, i) for i in range(9)] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    assert [s.step_of_batch(1, i) for i in range(3)] == [5, 5, 6]
    assert [s.step_of_batch(2, i) for i in range(3)] == [7, 7, 8]
    # drop_last: 34 // 4 = 8 and 10 // 4 = 2 batches; two processes: 9 batches -> 5 rounds
    assert [schedule(drop_last=True).batches_in_epoch(e) for e in (0, 1)] == [8, 2]
    assert [schedule(processes=2).batches_in_epoch(e) for e in (0, 1)] == [10, 4]


def test_at_gathers_one_step():
    assert schedule().at(3) == StepSettings(0.125, None, None, 0.25)
    assert schedule().at(0) == StepSettings(0.5, 1, A, 0.5)


def test_from_config_counts_steps_as_the_trainer_does(tmp_path):
    """Two epochs of 5 tasks in batches of 4 rows: 10 rows -> 3 batches = 3 steps an epoch,
    6 in all. Linear decay without warm-up: (6 - s) / 6."""
    config = GRMConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        max_steps=-1,
        num_train_epochs=2,
        per_device_train_batch_size=4,
        fixed_order_share=0.0,
    )
    s = GRMSchedule.from_config(config, examples=5)
    assert (s.max_steps, s.batch_rows, s.batches_per_step, s.warmup_steps) == (6, 4, 1, 0)
    assert [s.lr_factor(step) for step in range(6)] == pytest.approx(
        [1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]
    )
    cosine = GRMConfig(
        output_dir=str(tmp_path), use_cpu=True, max_steps=4, lr_scheduler_type="cosine"
    )
    factors = [GRMSchedule.from_config(cosine, 5).lr_factor(step) for step in range(4)]
    assert factors == pytest.approx([1, 0.5 * (1 + math.cos(math.pi / 4)), 0.5, 0.1464466])
    plateau = GRMConfig(
        output_dir=str(tmp_path),
        use_cpu=True,
        max_steps=4,
        lr_scheduler_type="reduce_lr_on_plateau",
        eval_strategy="steps",
    )
    with pytest.raises(ValueError, match="'reduce_lr_on_plateau' has no per-step"):
        GRMSchedule.from_config(plateau, 5)
    with pytest.raises(ValueError, match="train_sampling_strategy 'random'"):
        GRMConfig(output_dir=str(tmp_path), use_cpu=True, train_sampling_strategy="random")
