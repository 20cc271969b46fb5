"""`GRMSchedule`: everything in a GRM run that depends on the training step, in one pure object.

    schedule = GRMSchedule.from_config(config, examples=len(train))
    schedule.at(step)  # StepSettings(fixed_order_share, last_turns, rubrics, lr_factor)

A step is an optimizer step, counted from 0. With S = `max_steps`:

    fixed-order share   f(s) = f0 * max(0, 1 - s / max(1, a * S))      (0 where f0 = 0)
                        f0 = fixed_order_share, a = fixed_order_anneal
    last turn only      s < H                                           H = history_warmup_steps
    order term on       f(s) = 0 and s >= H
    curriculum subset   stage i's rubrics for sum_{j<i} n_j <= s < sum_{j<=i} n_j, then None
                        (every task); n_j = steps of stage j
    lr factor           with history_restart_lr r (two cycles that meet at H), W warm-up steps:
                          (t0, t1, p) = (0, H, 1) for s < H, else (H, S, r / learning_rate)
                          d = s - t0, L = max(1, t1 - t0)
                          d < W:  p * (d + 1) / W
                          else:   p * (1 + cos(pi * min(1, (d - W) / max(1, L - W)))) / 2
                        without it: the Trainer's `lr_scheduler_type` over S steps with W warm-up
                        steps (transformers' own factor, so a GRM run keeps the usual schedules)

Which step a batch trains in is part of the schedule too, so that no collator or sampler counts
batches (a data-loader worker holds a copy of the collator, and its count would be wrong): an
epoch is cut into device batches of `batch_rows` rows (both orders of `examples` tasks, and in
the first epoch the curriculum stages' batches first), `batches_per_step` device batches make one
optimizer step (gradient accumulation x processes), and an epoch's last step may have fewer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import SchedulerType, get_scheduler


@dataclass(frozen=True)
class StepSettings:
    fixed_order_share: float  # share of rows shown policy-first whatever their order
    last_turns: int | None  # keep only this many turns of each dialogue; None: all
    rubrics: frozenset[str] | None  # the curriculum stage's rubrics; None: every task
    lr_factor: float  # multiplies learning_rate


def _constant(step: int) -> float:
    return 1.0


@dataclass(frozen=True)
class GRMSchedule:
    max_steps: int
    examples: int  # training tasks; each is two rows (both orders)
    batch_rows: int  # rows per device batch (even: both orders of a task stay together)
    batches_per_step: int = 1  # device batches per optimizer step, all processes together
    processes: int = 1
    drop_last: bool = False
    fixed_order_share: float = 0.0
    fixed_order_anneal: float = 0.0
    history_warmup_steps: int = 0
    restart_peak: float = 0.0  # history_restart_lr / learning_rate; 0: one schedule
    warmup_steps: int = 0
    stages: tuple[tuple[frozenset[str], int], ...] = ()  # (rubric ids, steps)
    trainer_lr_factor: Callable[[int], float] = _constant  # the factor without a restart

    def __post_init__(self) -> None:
        if self.batch_rows % 2:
            raise ValueError(
                f"batch size must be even to keep both orders together: {self.batch_rows}"
            )

    @classmethod
    def from_config(cls, config, examples: int) -> GRMSchedule:
        """The schedule of a `GRMConfig` run over `examples` training tasks."""
        per_step = config.gradient_accumulation_steps * config.world_size
        schedule = cls(
            max_steps=max(config.max_steps, 0),
            examples=examples,
            batch_rows=config.train_batch_size,
            batches_per_step=per_step,
            processes=config.world_size,
            drop_last=config.dataloader_drop_last,
            fixed_order_share=config.fixed_order_share,
            fixed_order_anneal=config.fixed_order_anneal,
            history_warmup_steps=config.history_warmup_steps,
            restart_peak=(
                config.history_restart_lr / config.learning_rate
                if config.history_restart_lr
                else 0.0
            ),
            stages=tuple(config.curriculum_stages()),
        )
        if config.max_steps <= 0:  # as the Trainer counts: epochs x steps of the first epoch
            steps = math.ceil(config.num_train_epochs * max(schedule.steps_in_epoch(0), 1))
            schedule = replace(schedule, max_steps=steps)
        warmup = config.get_warmup_steps(schedule.max_steps)
        schedule = replace(schedule, warmup_steps=warmup)
        if schedule.restart_peak:  # its own two cycles
            return schedule
        return replace(
            schedule, trainer_lr_factor=trainer_lr_factor(config, schedule.max_steps, warmup)
        )

    # -- per step ------------------------------------------------------------------------------

    def at(self, step: int) -> StepSettings:
        return StepSettings(
            self.fixed_order_share_at(step),
            self.last_turns(step),
            self.rubrics(step),
            self.lr_factor(step),
        )

    def fixed_order_share_at(self, step: int) -> float:
        if not self.fixed_order_share:
            return 0.0
        horizon = max(1.0, self.fixed_order_anneal * self.max_steps)
        return self.fixed_order_share * max(0.0, 1 - step / horizon)

    def last_turns(self, step: int) -> int | None:
        return 1 if step < self.history_warmup_steps else None

    def compares_orders(self, step: int) -> bool:
        """Whether the order-consistency term applies: only once every row is shown in its own
        order and with its whole dialogue. Before that the judge cannot yet tell the two
        orders apart, and agreement between orders is cheapest bought by saying "tie" to
        everything, which a random-init judge then does not leave (demo world seed 1, weight 4
        from step 0 of grm_demo.yaml: held-out accuracy 0.58 and kappa 0 after its 700 steps)."""
        return self.fixed_order_share_at(step) == 0 and self.last_turns(step) is None

    def rubrics(self, step: int) -> frozenset[str] | None:
        end = 0
        for rubric_ids, steps in self.stages:
            end += steps
            if step < end:
                return rubric_ids
        return None

    def lr_factor(self, step: int) -> float:
        if not self.restart_peak:
            return self.trainer_lr_factor(step)
        switch, total, warmup = self.history_warmup_steps, self.max_steps, self.warmup_steps
        start, end, peak = (0, switch, 1.0) if step < switch else (switch, total, self.restart_peak)
        done, length = step - start, max(1, end - start)
        if done < warmup:
            return peak * (done + 1) / warmup
        progress = (done - warmup) / max(1, length - warmup)
        return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def resets_moments(self, step: int) -> bool:
        """With a restart, the optimizer forgets its moments as the second cycle begins."""
        return bool(self.restart_peak) and step == self.history_warmup_steps

    def lr_scheduler(self, optimizer: torch.optim.Optimizer) -> LambdaLR:
        return LambdaLR(optimizer, self.lr_factor)

    # -- batches -> steps ----------------------------------------------------------------------

    @property
    def stage_batches(self) -> list[int]:
        """Device batches of each curriculum stage."""
        return [steps * self.batches_per_step for _, steps in self.stages]

    def batches_in_epoch(self, epoch: int) -> int:
        """Device batches of all processes in `epoch`: rows cut into batches (a short last one
        unless `drop_last`), then a whole number per process (accelerate's even batches)."""
        rows = 2 * self.examples + (self.batch_rows * sum(self.stage_batches) if epoch == 0 else 0)
        cut = rows // self.batch_rows if self.drop_last else math.ceil(rows / self.batch_rows)
        rounds = cut // self.processes if self.drop_last else math.ceil(cut / self.processes)
        return rounds * self.processes

    def steps_in_epoch(self, epoch: int) -> int:
        return math.ceil(self.batches_in_epoch(epoch) / self.batches_per_step)

    def step_of_batch(self, epoch: int, index: int) -> int:
        """The optimizer step that device batch `index` of `epoch` trains in."""
        before = self.steps_in_epoch(0) + (epoch - 1) * self.steps_in_epoch(1) if epoch else 0
        return before + index // self.batches_per_step


def trainer_lr_factor(config, max_steps: int, warmup: int) -> Callable[[int], float]:
    """The factor of the Trainer's own `lr_scheduler_type`, from `transformers.get_scheduler`
    on a probe optimizer: the same function the Trainer would build, not a copy of it."""
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = get_scheduler(
        config.lr_scheduler_type,
        optimizer=probe,
        num_warmup_steps=warmup,
        num_training_steps=max_steps,
        scheduler_specific_kwargs=config.lr_scheduler_kwargs,
    )
    if not isinstance(scheduler, LambdaLR):
        raise ValueError(
            f"lr_scheduler_type {SchedulerType(config.lr_scheduler_type).value!r} has no per-step"
            " learning-rate factor; a GRM run takes one that does (linear, cosine, constant, ...)"
        )
    (factor,) = scheduler.lr_lambdas
    return factor
