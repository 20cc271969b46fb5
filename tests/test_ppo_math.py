"""The PPO arithmetic of `rewardlab.rl.ppo_math`, checked against values worked out by hand.

Every expected number below is written as a literal or as plain scalar arithmetic on the inputs
(the working is in the comments); nothing is computed by calling the function under test.
Tensors are float64 so that the hand values can be compared tightly (GAE is also run in float32).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from rewardlab.rl.ppo_math import (
    gae,
    kl_per_token,
    last_token_index,
    masked_mean,
    masked_var,
    masked_whiten,
    policy_loss,
    response_mask,
    token_rewards,
    value_loss,
)

T, F = True, False


def floats(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def bools(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def scalar(value: float) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float64)


def fraction(value: float) -> torch.Tensor:
    """A clipfrac: a share of tokens, float32 whatever the inputs' dtype."""
    return torch.tensor(value, dtype=torch.float32)


# --- gae -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gae_by_hand_with_a_masked_row(dtype):
    def floats(rows):
        return torch.tensor(rows, dtype=dtype)

    gamma, lam = 0.9, 0.8  # gamma * lam = 0.72
    # row 1's padding holds junk rewards and values, which must not leak into anything
    rewards = floats([[1.0, 0.0, 0.0, 2.0], [0.5, 1.0, 9.0, 9.0]])
    values = floats([[0.5, 0.4, 0.3, 0.2], [1.0, 2.0, 7.0, 7.0]])
    mask = bools([[T, T, T, T], [T, T, F, F]])

    advantages, returns = gae(rewards, values, mask, gamma, lam)

    # row 0, backwards; the value after the last token is 0
    a03 = 2.0 + 0.9 * 0.0 - 0.2  # delta_3 = 1.8
    a02 = (0.0 + 0.9 * 0.2 - 0.3) + 0.72 * a03  # -0.12 + 1.296 = 1.176
    a01 = (0.0 + 0.9 * 0.3 - 0.4) + 0.72 * a02  # -0.13 + 0.84672 = 0.71672
    a00 = (1.0 + 0.9 * 0.4 - 0.5) + 0.72 * a01  # 0.86 + 0.5160384 = 1.3760384
    # row 1 ends after 2 tokens: V after token 1 is 0 (not the junk 7.0), and A_2 does not
    # flow back into A_1
    a11 = 1.0 + 0.9 * 0.0 - 2.0  # -1.0
    a10 = (0.5 + 0.9 * 2.0 - 1.0) + 0.72 * a11  # 1.3 - 0.72 = 0.58

    assert_close(
        advantages,
        floats([[1.3760384, 0.71672, 1.176, 1.8], [0.58, -1.0, 0.0, 0.0]]),
    )
    # the same, from the working above
    assert_close(advantages, floats([[a00, a01, a02, a03], [a10, a11, 0.0, 0.0]]))
    # returns = A + V on real tokens, 0 on padding
    assert_close(
        returns,
        floats([[1.3760384 + 0.5, 0.71672 + 0.4, 1.176 + 0.3, 1.8 + 0.2], [1.58, 1.0, 0.0, 0.0]]),
    )


def test_gae_single_token_rows_and_gamma_one():
    # gamma = lam = 1: the advantage is the sum of future rewards minus the current value
    rewards = floats([[3.0, 0.0, 0.0], [1.0, 2.0, 4.0]])
    values = floats([[1.0, 5.0, 5.0], [0.5, 0.25, 2.0]])
    mask = bools([[T, F, F], [T, T, T]])

    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)

    assert_close(
        advantages,
        floats([[3.0 - 1.0, 0.0, 0.0], [1.0 + 2.0 + 4.0 - 0.5, 2.0 + 4.0 - 0.25, 4.0 - 2.0]]),
    )
    assert_close(returns, floats([[3.0, 0.0, 0.0], [7.0, 6.0, 4.0]]))


# --- masked statistics -----------------------------------------------------------------------

# unmasked entries are 1, 3, 5: mean 3, squared deviations 4, 0, 4 (sum 8)
STAT_VALUES = [[1.0, 3.0, 100.0], [5.0, -7.0, 0.0]]
STAT_MASK = [[T, T, F], [T, F, F]]


def test_masked_mean_pools_the_unmasked_tokens():
    assert_close(masked_mean(floats(STAT_VALUES), bools(STAT_MASK)), scalar(3.0))
    assert_close(
        masked_mean(floats([[1.0, 2.0], [4.0, 8.0]]), bools([[T, T], [T, F]])),
        scalar((1.0 + 2.0 + 4.0) / 3),
    )


def test_masked_mean_of_an_empty_mask_is_zero():
    assert_close(masked_mean(floats([[1.0, 2.0]]), bools([[F, F]])), scalar(0.0))


def test_masked_var_unbiased_and_biased():
    values, mask = floats(STAT_VALUES), bools(STAT_MASK)
    assert_close(masked_var(values, mask), scalar(8.0 / 2))
    assert_close(masked_var(values, mask, unbiased=True), scalar(8.0 / 2))
    assert_close(masked_var(values, mask, unbiased=False), scalar(8.0 / 3))
    # 1, 2, 4: mean 7/3, squared deviations 16/9, 1/9, 25/9 (sum 42/9 = 14/3)
    values2 = floats([[1.0, 2.0], [4.0, 8.0]])
    mask2 = bools([[T, T], [T, F]])
    assert_close(masked_var(values2, mask2), scalar((14.0 / 3) / 2))
    assert_close(masked_var(values2, mask2, unbiased=False), scalar((14.0 / 3) / 3))


def test_masked_var_unbiased_needs_two_values():
    one = bools([[F, T, F]])
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(floats([[1.0, 2.0, 3.0]]), one)
    with pytest.raises(ValueError, match="at least 2"):
        masked_var(floats([[1.0, 2.0, 3.0]]), bools([[F, F, F]]))
    # the biased variance of a single value is simply 0
    assert_close(masked_var(floats([[1.0, 2.0, 3.0]]), one, unbiased=False), scalar(0.0))


def test_masked_whiten_shifts_scales_and_zeroes_padding():
    values, mask = floats(STAT_VALUES), bools(STAT_MASK)
    # mean 3, unbiased std sqrt(4) = 2: (1 - 3) / 2, (3 - 3) / 2, (5 - 3) / 2
    assert_close(masked_whiten(values, mask), floats([[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]))
    # shift_mean=False adds the mean back: -1 + 3, 0 + 3, 1 + 3; padding is still 0
    assert_close(
        masked_whiten(values, mask, shift_mean=False),
        floats([[2.0, 3.0, 0.0], [4.0, 0.0, 0.0]]),
    )


def test_masked_whiten_eps_guards_a_constant_input():
    values = floats([[2.0, 2.0, 9.0]])
    mask = bools([[T, T, F]])
    # variance 0: (2 - 2) / sqrt(0 + eps) = 0, not nan
    assert_close(masked_whiten(values, mask), floats([[0.0, 0.0, 0.0]]))
    assert_close(masked_whiten(values, mask, shift_mean=False), floats([[2.0, 2.0, 0.0]]))


# --- KL estimates ----------------------------------------------------------------------------


def test_kl_per_token_k1_and_k3():
    logprobs = floats([[-1.0, -2.0, -0.5]])
    ref_logprobs = floats([[-1.0, -1.5, -1.5]])
    # log r = ref - logprob = 0, 0.5, -1.0
    # k1 = -log r; negative where the reference is more likely than the policy
    assert_close(kl_per_token(logprobs, ref_logprobs, "k1"), floats([[0.0, -0.5, 1.0]]))
    # k3 = (r - 1) - log r
    k3 = kl_per_token(logprobs, ref_logprobs, "k3")
    assert_close(
        k3,
        floats([[0.0, (math.exp(0.5) - 1) - 0.5, (math.exp(-1.0) - 1) + 1.0]]),
    )
    assert_close(k3, floats([[0.0, 0.1487212707001282, 0.36787944117144233]]))
    assert (k3 >= 0).all()


def test_kl_k3_is_never_negative_even_for_large_log_ratios():
    logprobs = floats([[-0.1, -8.0, -3.0, -3.0]])
    ref_logprobs = floats([[-8.0, -0.1, -3.0 + 1e-6, -3.0 - 1e-6]])
    assert (kl_per_token(logprobs, ref_logprobs, "k3") >= 0).all()
    # k1 of the first token: -(-8.0 - -0.1) = 7.9; of the second: -7.9
    assert_close(kl_per_token(logprobs, ref_logprobs, "k1")[0, :2], floats([7.9, -7.9]))


def test_kl_unknown_estimator_raises():
    with pytest.raises(ValueError, match="unknown KL estimator"):
        kl_per_token(floats([[0.0]]), floats([[0.0]]), "k2")  # type: ignore[arg-type]


# --- token rewards ---------------------------------------------------------------------------


def test_token_rewards_penalise_kl_and_add_the_score_on_the_last_real_token():
    scores = floats([1.0, -2.0])
    # row 1's padding holds junk KL that must not become a reward
    kl = floats([[0.1, 0.2, 0.3, 0.4], [0.5, -0.2, 7.0, 7.0]])
    mask = bools([[T, T, T, T], [T, T, F, F]])

    rewards = token_rewards(scores, kl, mask, kl_coef=0.5)

    expected = floats(
        [
            # all-True row: the score lands on the final position
            [-0.5 * 0.1, -0.5 * 0.2, -0.5 * 0.3, -0.5 * 0.4 + 1.0],
            # score on token 1 (the EOS), not on the padding; a negative KL gives a bonus
            [-0.5 * 0.5, -0.5 * -0.2 + -2.0, 0.0, 0.0],
        ]
    )
    assert_close(rewards, expected)
    assert_close(rewards, floats([[-0.05, -0.1, -0.15, 0.8], [-0.25, -1.9, 0.0, 0.0]]))


def test_token_rewards_with_no_kl_coef_is_the_score_alone():
    rewards = token_rewards(floats([3.0]), floats([[1.0, 1.0, 1.0]]), bools([[T, F, F]]), 0.0)
    assert_close(rewards, floats([[3.0, 0.0, 0.0]]))


# --- policy loss -----------------------------------------------------------------------------


def test_policy_loss_clips_by_hand():
    cliprange = 0.2  # ratios are clipped to [0.8, 1.2]
    ratios = [[1.5, 0.5, 1.1], [0.7, 1.5, math.exp(3.0)]]
    advantages = floats([[1.0, 1.0, -2.0], [-1.0, -1.0, 5.0]])
    mask = bools([[T, T, T], [T, T, F]])
    old_logprobs = floats([[-1.0, -2.0, -0.5], [-1.2, -0.3, -4.0]])
    logprobs = (old_logprobs + torch.log(floats(ratios))).requires_grad_(True)

    loss, stats = policy_loss(logprobs, old_logprobs, advantages, mask, cliprange)

    # per token: max(-A * r, -A * clip(r))
    #   r=1.5, A=+1: max(-1.5, -1.2) = -1.2   clipped term wins
    #   r=0.5, A=+1: max(-0.5, -0.8) = -0.5   unclipped (a worse ratio is not clipped)
    #   r=1.1, A=-2: max( 2.2,  2.2) =  2.2   inside the range, equal
    #   r=0.7, A=-1: max( 0.7,  0.8) =  0.8   clipped term wins
    #   r=1.5, A=-1: max( 1.5,  1.2) =  1.5   unclipped
    #   the masked token (r=e^3, A=5) counts for nothing
    assert_close(loss, scalar((-1.2 - 0.5 + 2.2 + 0.8 + 1.5) / 5))
    assert_close(loss, scalar(0.56))
    assert_close(stats["clipfrac"], fraction(2 / 5))
    log_sq = math.log(1.5) ** 2 + math.log(0.5) ** 2 + math.log(1.1) ** 2
    log_sq += math.log(0.7) ** 2 + math.log(1.5) ** 2
    assert_close(stats["approxkl"], scalar(0.5 * log_sq / 5))
    assert_close(stats["ratio"], scalar((1.5 + 0.5 + 1.1 + 0.7 + 1.5) / 5))
    assert_close(stats["ratio"], scalar(1.06))
    assert all(not value.requires_grad for value in stats.values())

    # d loss / d logprob = -A * r / 5 where the unclipped term is used, 0 where the clip won
    loss.backward()
    assert_close(
        logprobs.grad,
        floats([[0.0, -1.0 * 0.5 / 5, 2.0 * 1.1 / 5], [0.0, 1.0 * 1.5 / 5, 0.0]]),
    )


def test_policy_loss_on_policy_is_minus_the_mean_advantage():
    logprobs = floats([[-1.0, -2.0, -3.0]])
    advantages = floats([[1.0, -3.0, 100.0]])
    mask = bools([[T, T, F]])
    loss, stats = policy_loss(logprobs, logprobs.clone(), advantages, mask, 0.2)
    # r = 1 everywhere: loss = mean(-A) = -(1 - 3) / 2
    assert_close(loss, scalar(1.0))
    assert_close(stats["clipfrac"], fraction(0.0))
    assert_close(stats["approxkl"], scalar(0.0))
    assert_close(stats["ratio"], scalar(1.0))


# --- value loss ------------------------------------------------------------------------------


def test_value_loss_clipped_by_hand():
    cliprange_value = 0.25  # dyadic numbers throughout, so the ties below are exact
    old_values = floats([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    values = floats([[1.5, 1.125, 0.5], [1.5, 10.0, 0.0]])
    returns = floats([[2.0, 1.0, 0.0], [1.125, -10.0, 0.0]])
    mask = bools([[T, T, T], [T, F, F]])

    loss, stats = value_loss(values, old_values, returns, mask, cliprange_value)

    # per token: max((V - R)^2, (V_clip - R)^2), V_clip = old + clip(V - old, -0.25, 0.25)
    #   V=1.5,   R=2.0:   V_clip=1.25:  max(0.25,     0.5625)   = 0.5625    clip wins
    #   V=1.125, R=1.0:   V_clip=1.125: max(0.015625, 0.015625) = 0.015625  inside the range
    #   V=0.5,   R=0.0:   V_clip=0.75:  max(0.25,     0.5625)   = 0.5625    clip wins
    #   V=1.5,   R=1.125: V_clip=1.25:  max(0.140625, 0.015625) = 0.140625  unclipped
    assert_close(loss, scalar(0.5 * (0.5625 + 0.015625 + 0.5625 + 0.140625) / 4))
    assert_close(loss, scalar(0.16015625))
    assert_close(stats["clipfrac"], fraction(2 / 4))


def test_value_loss_unclipped_is_half_the_mean_squared_error():
    old_values = floats([[0.0, 0.0, 0.0]])
    values = floats([[0.125, -0.25, 3.0]])
    returns = floats([[1.0, 0.5, 0.0]])
    mask = bools([[T, T, F]])

    loss, stats = value_loss(values, old_values, returns, mask, cliprange_value=0.5)

    # both moves are inside +-0.5: 0.5 * ((0.125 - 1)^2 + (-0.25 - 0.5)^2) / 2
    assert_close(loss, scalar(0.5 * (0.765625 + 0.5625) / 2))
    assert_close(loss, scalar(0.33203125))
    assert_close(stats["clipfrac"], fraction(0.0))


# --- masks -----------------------------------------------------------------------------------


def test_response_mask_eos_pad_and_truncation():
    eos, pad = 2, 0
    responses = torch.tensor(
        [
            [5, 2, 0, 0],  # EOS mid-row, then padding
            [5, 6, 7, 8],  # no EOS: truncated by the length limit, every token kept
            [2, 5, 6, 0],  # EOS first: what follows it is dropped, padding or not
            [5, 2, 6, 2],  # a second EOS after the first is dropped too
            [5, 6, 7, 0],  # no EOS, padded to the batch length
        ]
    )
    assert_close(
        response_mask(responses, eos_token_id=eos, pad_token_id=pad),
        bools(
            [
                [T, T, F, F],
                [T, T, T, T],
                [T, F, F, F],
                [T, T, F, F],
                [T, T, T, F],
            ]
        ),
    )


def test_response_mask_pad_id_equal_to_eos_id_keeps_the_first_eos():
    eos = pad = 2
    responses = torch.tensor([[5, 2, 2, 2], [5, 6, 7, 8], [2, 2, 2, 2]])
    assert_close(
        response_mask(responses, eos_token_id=eos, pad_token_id=pad),
        bools([[T, T, F, F], [T, T, T, T], [T, F, F, F]]),
    )


def test_last_token_index():
    mask = bools(
        [
            [T, T, F, F],
            [T, T, T, T],
            [T, F, F, F],
            [F, F, F, F],  # empty row: 0
        ]
    )
    assert_close(last_token_index(mask), torch.tensor([1, 3, 0, 0]))
