"""`GRMTrainer`: a `transformers.Trainer` whose loss is on the verdict distribution.

Per example, with ``q`` the soft target over the 2K+1 levels *as shown* and ``z`` the logits of
the verdict tokens at the verdict slot::

    verdict_loss  = -sum_i q_i * log_softmax(z)_i            (cross-entropy to a soft target)
    critique_loss = mean token NLL of the critique (rationale), where the example has one
    order_loss    = symmetric KL between the two orders' distributions (policy vs reference)
    loss          = verdict_loss + critique_weight * critique_loss
                    + order_consistency_weight * order_loss

Every example appears in both presentation orders (`SwappedPairs`): shown reference-first,
its target is reversed (level negated) and its critique re-labelled. Early in training a
share of examples is shown policy-first whatever their order (`GRMSchedule`'s fixed-order
share): which slot holds the better reply and what the audio says form an XOR that a
random-init model does not start on; learning the cue in one order first, then both, does.

Both orders of a task share one batch, so the order term compares them directly: without
it a judge learns each order's verdict separately, and on pairs it is unsure of the two
orders disagree in sign (position consistency about 0.7 on the demo world), which the
order-averaged reward hides but pays for in signal.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from transformers import Trainer, TrainerCallback

from rewardlab.grm.batches import (
    GRMCollator,
    PairedBatchSampler,
    SwappedPairs,
    prompt_lengths,
    stage_examples,
)
from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.encoding import PromptEncoder
from rewardlab.grm.examples import GRMExample
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import verdict_logits
from rewardlab.grm.schedule import GRMSchedule


def order_consistency_loss(
    log_p: torch.Tensor, reference_first: torch.Tensor, partner: torch.Tensor
) -> torch.Tensor:
    """Symmetric KL between the two orders' verdict distributions, both policy vs reference.

    `log_p` (B, L) is over levels *as shown*; a reference-first row's distribution is reversed
    to policy vs reference first. Each row with a twin (`partner` >= 0) adds KL(row || twin),
    so a pair adds both directions; the mean is over those rows (0 when no row has a twin).
    """
    canonical = torch.where(reference_first[:, None], log_p.flip(-1), log_p)
    rows = (partner >= 0).nonzero().squeeze(-1)
    if rows.numel() == 0:
        return log_p.sum() * 0.0
    mine, theirs = canonical[rows], canonical[partner[rows]]
    return (mine.exp() * (mine - theirs)).sum(-1).mean()


class HistoryRestart(TrainerCallback):
    """With `history_restart_lr`: when the history warm-up ends, the optimizer forgets its
    moment estimates, which measured gradients of last-turn prompts; the second phase starts
    as a fresh run from the warm-up's weights would (audio-only demo world, 700 steps:
    held-out 0.881 with the reset, 0.856 without).
    """

    def __init__(self, schedule: GRMSchedule):
        self.schedule = schedule

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if self.schedule.resets_moments(state.global_step):
            optimizer.state.clear()


class SaveJudgeFiles(TrainerCallback):
    """Every checkpoint also holds the judge format and the resolved config."""

    def __init__(self, fmt: JudgeFormat):
        self.format = fmt

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            GRMCheckpoint(checkpoint).save_settings(args, self.format)


class GRMTrainer(Trainer):
    """`lengths`: each example's prompt length (`prompt_lengths`), measured here if not given.

    Everything that depends on the step comes from one `GRMSchedule` (``self.schedule``):
    the sampler labels each batch with its step, the collator and the learning-rate scheduler
    read their settings for that step from it.
    """

    def __init__(
        self,
        model,
        args: GRMConfig,
        encoder: PromptEncoder,
        train_examples: list[GRMExample],
        *,
        lengths: list[int] | None = None,
        **kwargs,
    ):
        self.schedule = GRMSchedule.from_config(args, len(train_examples))
        self.stages = stage_examples(train_examples, self.schedule)
        self.lengths = prompt_lengths(encoder, train_examples) if lengths is None else lengths
        self.collator = GRMCollator(encoder, args.critique_share, args.seed, self.schedule)
        super().__init__(
            model=model,
            args=args,
            train_dataset=SwappedPairs(train_examples),
            data_collator=self.collator,
            processing_class=encoder.template,
            callbacks=[HistoryRestart(self.schedule), SaveJudgeFiles(encoder.format)],
            **kwargs,
        )
        self.verdict_ids = torch.tensor(encoder.format.verdict_token_ids(encoder.tokenizer))
        self.step_metrics: dict[str, list[float]] = defaultdict(list)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The schedule's learning-rate factor per step (see `GRMSchedule.lr_factor`)."""
        if num_training_steps != self.schedule.max_steps:
            raise ValueError(
                f"the Trainer plans {num_training_steps} steps but the GRM schedule"
                f" {self.schedule.max_steps}: their counts of batches per epoch differ"
            )
        if self.lr_scheduler is None:
            self.lr_scheduler = self.schedule.lr_scheduler(
                optimizer if optimizer is not None else self.optimizer
            )
        return self.lr_scheduler

    def batch_sampler(self) -> PairedBatchSampler:
        """The training batches: both orders together, grouped by length, step-labelled."""
        return PairedBatchSampler(self.lengths, self.schedule, self.args.seed, self.stages)

    def get_train_dataloader(self) -> DataLoader:
        """A loader over `batch_sampler`, prepared by accelerate (devices, processes)."""
        args = self.args
        loader = DataLoader(
            self.train_dataset,
            batch_sampler=self.batch_sampler(),
            collate_fn=self.data_collator,
            num_workers=args.dataloader_num_workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers,
            prefetch_factor=args.dataloader_prefetch_factor,
            multiprocessing_context=args.dataloader_multiprocessing_context,
            in_order=args.dataloader_in_order,
        )
        return self.accelerator.prepare(loader)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target = inputs["target"]  # (B, L)
        logits, lm_logits = verdict_logits(model, inputs, self.verdict_ids.to(target.device))
        log_p = F.log_softmax(logits.float(), dim=-1)  # (B, L)
        verdict_loss = -(target * log_p).sum(-1).mean()
        loss = verdict_loss
        if self.args.order_consistency_weight and self.schedule.compares_orders(
            self.state.global_step
        ):
            consistency = order_consistency_loss(
                log_p, inputs["reference_first"], inputs["partner"]
            )
            loss = loss + self.args.order_consistency_weight * consistency
            self.step_metrics["order_consistency_loss"].append(consistency.item())
        labels = inputs["labels"]  # (B, T), -100 outside critiques
        if self.args.critique_weight and (labels != -100).any():
            critique_loss = F.cross_entropy(
                lm_logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
            loss = loss + self.args.critique_weight * critique_loss
            self.step_metrics["critique_loss"].append(critique_loss.item())
        levels = torch.arange(logits.shape[-1], device=logits.device) - logits.shape[-1] // 2
        predicted, wanted = log_p.exp() @ levels.float(), target @ levels.float()
        decided = wanted.abs() > 0.5
        if decided.any():
            agree = (predicted[decided].sign() == wanted[decided].sign()).float().mean()
            self.step_metrics["judge/train_accuracy"].append(agree.item())
        self.step_metrics["verdict_loss"].append(verdict_loss.item())
        share = self.schedule.fixed_order_share_at(self.state.global_step)
        self.step_metrics["fixed_order_share"].append(share)
        return (loss, {"logits": logits}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for name, values in self.step_metrics.items():
            logs[name] = round(float(np.mean(values)), 4)
        self.step_metrics.clear()
        super().log(logs, *args, **kwargs)
