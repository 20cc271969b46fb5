"""The arithmetic of PPO on token sequences, as plain functions of tensors.

Every tensor is (B, T) over response tokens, with a boolean ``mask`` that is True on the tokens
a reply really has (up to and including its EOS) and False on the padding after it. Nothing
here knows about models, audio or accelerate, so each piece is tested against values worked
out by hand (tests/test_ppo_math.py).
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k3"]


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the True entries of `mask` (all tokens of the batch pooled)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance over the True entries of `mask`; Bessel-corrected unless `unbiased` is off."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        count = mask.sum()
        if count < 2:
            raise ValueError(
                f"an unbiased variance needs at least 2 unmasked values, got {int(count)}"
            )
        variance = variance * count / (count - 1)
    return variance


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """(x - mean) / std over the unmasked entries; ``shift_mean=False`` keeps the mean.

    Masked entries are returned as 0, so they carry nothing into later sums.
    """
    mean, variance = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask, whitened, torch.zeros_like(whitened))


def kl_per_token(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator
) -> torch.Tensor:
    """Per-token estimates of KL(policy || reference) from samples of the policy.

    With log r = log pi_ref - log pi: k1 = -log r (unbiased, can be negative per token);
    k3 = (r - 1) - log r (unbiased, never negative, lower variance). See Schulman,
    "Approximating KL divergence" (2020).
    """
    log_ratio = ref_logprobs - logprobs
    if estimator == "k1":
        return -log_ratio
    if estimator == "k3":
        return torch.expm1(log_ratio) - log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}: use 'k1' or 'k3'")


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last unmasked token (0 for an empty row)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return torch.where(mask, positions, torch.zeros_like(positions)).max(dim=1).values


def token_rewards(
    scores: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """Per-token rewards: -kl_coef * KL on every token, plus the sequence score on its last.

    The score sits on the reply's last real token (its EOS), not on the padding after it.
    """
    rewards = torch.where(mask, -kl_coef * kl, torch.zeros_like(kl))
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, last_token_index(mask)] += scores.to(rewards.dtype)
    return rewards


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(advantages, returns) by generalised advantage estimation, backwards over tokens.

    delta_t = r_t + gamma * V_{t+1} - V_t,  A_t = delta_t + gamma * lam * A_{t+1}; the value
    after a reply's last token is 0 (the episode ends there). Returns are A + V. Both are 0 on
    masked tokens.
    """
    zero = torch.zeros_like(values)
    values = torch.where(mask, values, zero)
    rewards = torch.where(mask, rewards, zero)
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    length = values.shape[1]
    for t in reversed(range(length)):
        next_value = values[:, t + 1] if t + 1 < length else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        running = torch.where(mask[:, t], running, torch.zeros_like(running))
        advantages[:, t] = running
    return advantages, torch.where(mask, advantages + values, zero)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate: mean of max(-A * ratio, -A * clip(ratio, 1 - e, 1 + e)).

    Also returns the share of tokens where the clipped term won (``clipfrac``), the
    approximate KL between the old and new policy (``approxkl``, 0.5 * mean(log ratio^2)) and
    the mean probability ratio (``ratio``).
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {
        "clipfrac": masked_mean((clipped > unclipped).float(), mask),
        "approxkl": 0.5 * masked_mean(log_ratio**2, mask),
        "ratio": masked_mean(ratio, mask),
    }
    return loss, {k: v.detach() for k, v in stats.items()}


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * mean of max((V - R)^2, (V_clipped - R)^2), V_clipped within +-c of the old V."""
    clipped_values = old_values + torch.clamp(
        values - old_values, -cliprange_value, cliprange_value
    )
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    return loss, {"clipfrac": masked_mean((clipped_loss > unclipped_loss).float(), mask).detach()}


def response_mask(responses: torch.Tensor, eos_token_id: int, pad_token_id: int) -> torch.Tensor:
    """True on each reply's tokens up to and including its first EOS, False after it.

    A reply cut off by the length limit (no EOS) keeps every generated token except padding;
    a pad id equal to the EOS id (as in some checkpoints) still keeps the first EOS.
    """
    is_eos = responses == eos_token_id
    # tokens strictly after the first EOS: a cumulative count of EOS before this position
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()
    return (eos_before == 0) & ((responses != pad_token_id) | is_eos)
