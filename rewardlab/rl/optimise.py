"""PPO's learning half: advantages from a rollout, then epochs of clipped-loss updates.

Advantages: per-token rewards are -kl_coef * KL (k1 or k3) on every token plus the score on
the reply's last real token (`ppo_math.token_rewards`); GAE gives advantages (whitened over
the batch's tokens) and returns.

Optimisation: ``num_ppo_epochs`` shuffled passes over the rollout, in mini-batches of
``per_device_train_batch_size * gradient_accumulation_steps`` rows, each split into
micro-batches whose gradients accumulate (``accelerator.no_sync`` on all but the last, so
DDP all-reduces once) before one clipped optimizer step. Loss: clipped policy loss +
``vf_coef`` * clipped value loss, each micro-batch's scaled by 1 / micro-batches.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import nullcontext

import numpy as np
import torch
from accelerate import Accelerator
from torch import nn
from transformers import get_scheduler
from transformers.trainer_pt_utils import get_parameter_names
from trl.trainer.utils import entropy_from_logits

from rewardlab.rl import ppo_math
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.rollout import INVALID_LOGPROB, Rollout, response_logprobs

# parameters kept out of weight decay (transformers' Trainer rule, so settings carry over)
NO_DECAY = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


def build_optimizer(policy: nn.Module, config: AudioPPOConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and norms without weight decay."""
    decay = set(get_parameter_names(policy, [nn.LayerNorm], NO_DECAY))
    named = [(n, p) for n, p in policy.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if n in decay], "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if n not in decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        eps=config.adam_epsilon,
        fused=config.optim == "adamw_torch_fused" or None,
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: AudioPPOConfig
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule over ``max_steps`` updates (one scheduler step each)."""
    return get_scheduler(
        config.lr_scheduler_type,
        optimizer=optimizer,
        num_warmup_steps=config.get_warmup_steps(config.max_steps),
        num_training_steps=config.max_steps,
        scheduler_specific_kwargs=config.lr_scheduler_kwargs,
    )


def compute_advantages(
    rollout: Rollout, config: AudioPPOConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """(advantages (B, R), returns (B, R), objective/* metrics) of a rollout."""
    mask = rollout.mask
    kl = ppo_math.kl_per_token(rollout.logprobs, rollout.ref_logprobs, config.kl_estimator)
    kl = kl.masked_fill(~mask, 0.0)
    rewards = ppo_math.token_rewards(rollout.scores, kl, mask, config.kl_coef)
    if config.whiten_rewards:
        rewards = ppo_math.masked_whiten(rewards, mask, shift_mean=False)
    advantages, returns = ppo_math.gae(rewards, rollout.values, mask, config.gamma, config.lam)
    if int(mask.sum()) > 1:
        advantages = ppo_math.masked_whiten(advantages, mask)
    non_score = (-config.kl_coef * kl).sum(1)
    stats = {
        "objective/kl": kl.sum(1).mean().item(),
        "objective/entropy": (-rollout.logprobs).masked_fill(~mask, 0).sum(1).mean().item(),
        "objective/non_score_reward": non_score.mean().item(),
        "objective/rlhf_reward": (rollout.scores + non_score).mean().item(),
    }
    return advantages, returns, stats


def optimise(
    model: nn.Module,
    accelerator: Accelerator,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    generator: torch.Generator,
    config: AudioPPOConfig,
) -> dict[str, float]:
    """PPO epochs over one rollout with the prepared `model`; returns the means of the
    micro-batches' statistics (TRL's names)."""
    policy = accelerator.unwrap_model(model)
    collected: dict[str, list[float]] = defaultdict(list)
    rows_total = len(rollout.prompts)
    device = rollout.responses.device
    model.train()
    for _ in range(config.num_ppo_epochs):
        order = torch.randperm(rows_total, generator=generator).to(device)
        for mini_start in range(0, rows_total, config.mini_batch_size):
            mini = order[mini_start : mini_start + config.mini_batch_size]
            micros = mini.split(config.per_device_train_batch_size)
            for index, rows in enumerate(micros):
                last = index == len(micros) - 1
                with nullcontext() if last else accelerator.no_sync(model):
                    stats = micro_step(
                        policy, accelerator, rollout, advantages, returns, rows,
                        1 / len(micros), config,
                    )  # fmt: skip
                if last:
                    if config.max_grad_norm:
                        accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                    optimizer.step()
                    optimizer.zero_grad()
                for name, value in stats.items():
                    collected[name].append(value)
    out = {name: float(np.mean(values)) for name, values in collected.items()}
    out["val/ratio_var"] = float(np.var(collected["val/ratio"]))
    return out


def micro_step(
    policy: AudioPolicy,
    accelerator: Accelerator,
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    rows: torch.Tensor,
    loss_scale: float,
    config: AudioPPOConfig,
) -> dict[str, float]:
    """Forward and backward of one micro-batch; the caller steps the optimizer."""
    mask = rollout.mask[rows]
    logprobs, values, logits = response_logprobs(
        policy,
        rollout.query_responses,
        rollout.attention_mask,
        rollout.clips,
        rollout.context_length,
        rows,
        config.temperature,
    )
    logprobs = logprobs.masked_fill(~mask, INVALID_LOGPROB)
    values = values.masked_fill(~mask, 0.0)
    pg_loss, pg_stats = ppo_math.policy_loss(
        logprobs, rollout.logprobs[rows], advantages[rows], mask, config.cliprange
    )
    vf_loss, vf_stats = ppo_math.value_loss(
        values, rollout.values[rows], returns[rows], mask, config.cliprange_value
    )
    loss = pg_loss + config.vf_coef * vf_loss
    accelerator.backward(loss * loss_scale)
    with torch.no_grad():
        entropy = ppo_math.masked_mean(entropy_from_logits(logits), mask)
    return {
        "policy/approxkl_avg": pg_stats["approxkl"].item(),
        "policy/clipfrac_avg": pg_stats["clipfrac"].item(),
        "loss/policy_avg": pg_loss.item(),
        "loss/value_avg": vf_loss.item(),
        "val/clipfrac_avg": vf_stats["clipfrac"].item(),
        "policy/entropy_avg": entropy.item(),
        "val/ratio": pg_stats["ratio"].item(),
    }
