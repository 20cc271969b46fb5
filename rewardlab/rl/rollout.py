"""Rollouts: prompts in, sampled replies out with their log-probs, values and scores.

1. encode the prompts (left-padded; audio clips as features) and, with a frozen tower, run it
   once on every clip (`AudioPolicy.encode_audio`): every later pass reuses those states;
2. sample replies in chunks of ``local_rollout_forward_batch_size`` (audio special tokens
   suppressed: the next pass would expect clips for them);
3. one no-grad pass per chunk gives the policy's log-probs and values, one more with the
   reference policy its log-probs (skipped when ``kl_coef`` is 0);
4. decode each reply, split the reasoning trace off at ``separator``, score the reply with the
   reward source; subtract ``missing_eos_penalty`` from replies without EOS and
   ``missing_separator_penalty`` from replies without the separator.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from accelerate import Accelerator
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import selective_log_softmax

from rewardlab.grm.encoding import AudioMode
from rewardlab.rl import ppo_math
from rewardlab.rl.grm_reward import split_reasoning
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.prompts import (
    Clips,
    PolicyPromptEncoder,
    PPOPrompt,
    PromptBatch,
    collate_prompts,
    decode_replies,
)
from rewardlab.rl.rewards import RewardSource

INVALID_LOGPROB = 1.0  # stands in for log-probs of padding; masked out of every sum


@dataclass
class Rollout:
    """One update's rollouts, everything PPO needs, rows aligned."""

    prompts: list[PPOPrompt]
    query_responses: torch.Tensor  # (B, Tq + R)
    attention_mask: torch.Tensor  # (B, Tq + R)
    clips: Clips | None
    context_length: int  # Tq
    responses: torch.Tensor  # (B, R)
    mask: torch.Tensor  # (B, R) True on real reply tokens
    logprobs: torch.Tensor  # (B, R)
    ref_logprobs: torch.Tensor  # (B, R)
    values: torch.Tensor  # (B, R)
    scores: torch.Tensor  # (B,) what PPO optimises: reward minus penalties
    rewards: torch.Tensor  # (B,) the reward source's score alone
    has_eos: torch.Tensor  # (B,)
    has_separator: torch.Tensor  # (B,)


def response_logprobs(
    policy: AudioPolicy,
    query_responses: torch.Tensor,
    attention_mask: torch.Tensor,
    clips: Clips | None,
    context_length: int,
    rows: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log-probs (b, R), values (b, R), logits (b, R, V)) of the response tokens of `rows`,
    one pass; logits divided by the sampling temperature, as they were sampled."""
    sub_clips = clips.select(rows) if clips is not None else None
    logits, values, _ = policy(query_responses[rows], attention_mask[rows], sub_clips)
    logits = logits[:, context_length - 1 : -1].float() / (temperature + 1e-7)
    responses = query_responses[rows, context_length:]
    return selective_log_softmax(logits, responses), values[:, context_length - 1 : -1], logits


class RolloutCollector:
    """What turns prompts into scored replies: the prompt encoder, the token ids that frame
    a reply, the reward source and the run's generation and penalty settings."""

    def __init__(
        self,
        config: AudioPPOConfig,
        encoder: PolicyPromptEncoder,
        reward: RewardSource,
        device: torch.device,
    ):
        self.config, self.encoder, self.reward, self.device = config, encoder, reward, device
        self.tokenizer = encoder.tokenizer
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.eos_id
        self.suppress_ids = encoder.suppressed_token_ids()
        share = getattr(reward, "share_clip_features", None)
        if share is not None:  # one log-mel cache for the policy and the judge where they agree
            share(encoder.clip_features)

    def encode(self, prompts: Sequence[PPOPrompt], audio: AudioMode = "audio") -> PromptBatch:
        """Left-padded prompts; ``audio="silence"`` puts the same second of silence in every
        clip's place (what the policy does without hearing the user)."""
        encoded = [self.encoder.encode(p, audio=audio) for p in prompts]
        return collate_prompts(encoded, self.pad_id)

    def generate(
        self, policy: AudioPolicy, batch: PromptBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """(B, response_length) sampled responses, in chunks of the forward batch size."""
        config, device = self.config, self.device
        chunk = config.local_rollout_forward_batch_size
        out = []
        for start in range(0, len(batch.input_ids), chunk):
            rows = torch.arange(start, min(start + chunk, len(batch.input_ids)))
            clips = batch.clips.select(rows).to(device) if batch.clips is not None else None
            out.append(
                policy.sample(
                    batch.input_ids[rows].to(device),
                    batch.attention_mask[rows].to(device),
                    clips,
                    max_new_tokens=config.response_length,
                    eos_token_id=self.eos_id,
                    pad_token_id=self.pad_id,
                    temperature=config.temperature,
                    top_k=config.top_k,
                    suppress_token_ids=self.suppress_ids,
                    generator=generator,
                )
            )
        width = max(r.shape[1] for r in out)
        padded = [
            torch.nn.functional.pad(r, (0, width - r.shape[1]), value=self.pad_id) for r in out
        ]
        return torch.cat(padded)

    @torch.no_grad()
    def collect(
        self,
        model: torch.nn.Module,
        accelerator: Accelerator,
        prompts: Sequence[PPOPrompt],
        generator: torch.Generator,
    ) -> tuple[Rollout, float]:
        """Sampled replies of the prepared `model` with their log-probs, values and scores;
        also the seconds the reward source took."""
        config, device = self.config, self.device
        batch = self.encode(prompts)
        with unwrap_model_for_generation(
            model, accelerator, gather_deepspeed3_params=True
        ) as unwrapped:
            policy: AudioPolicy = unwrapped
            clips = batch.clips.to(device) if batch.clips is not None else None
            if config.cache_audio:
                clips = policy.encode_audio(clips)
            batch = PromptBatch(batch.input_ids, batch.attention_mask, clips)
            responses = self.generate(policy, batch, generator)
        context = batch.input_ids.shape[1]
        mask = ppo_math.response_mask(responses, self.eos_id, self.pad_id)
        query_responses = torch.cat([batch.input_ids.to(device), responses], dim=1)
        attention_mask = torch.cat([batch.attention_mask.to(device), mask.long()], dim=1)
        logprobs, ref_logprobs, values = self.old_passes(
            accelerator.unwrap_model(model), query_responses, attention_mask, clips, context
        )
        start = time.perf_counter()
        _, scores, rewards, has_eos, has_separator = self.score_responses(prompts, responses)
        reward_s = time.perf_counter() - start
        rollout = Rollout(
            list(prompts),
            query_responses,
            attention_mask,
            clips,
            context,
            responses,
            mask,
            logprobs.masked_fill(~mask, INVALID_LOGPROB),
            ref_logprobs.masked_fill(~mask, INVALID_LOGPROB),
            values.masked_fill(~mask, 0.0),
            scores.to(device),
            rewards.to(device),
            has_eos.to(device),
            has_separator.to(device),
        )
        return rollout, reward_s

    def old_passes(
        self,
        policy: AudioPolicy,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        clips: Clips | None,
        context: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, reference log-probs, values), each (B, R), of the sampled replies: the
        policy's and the reference's, chunk by chunk."""
        logprobs, ref_logprobs, values = [], [], []
        chunk, temperature = self.config.local_rollout_forward_batch_size, self.config.temperature
        passes = (query_responses, attention_mask, clips, context)
        for start in range(0, len(query_responses), chunk):
            end = min(start + chunk, len(query_responses))
            rows = torch.arange(start, end, device=self.device)
            lp, value, _ = response_logprobs(policy, *passes, rows, temperature)
            logprobs.append(lp)
            values.append(value)
            if self.config.kl_coef:
                with policy.reference_mode():
                    ref, _, _ = response_logprobs(policy, *passes, rows, temperature)
            else:
                ref = lp
            ref_logprobs.append(ref)
        return torch.cat(logprobs), torch.cat(ref_logprobs), torch.cat(values)

    def score_responses(
        self, prompts: Sequence[PPOPrompt], responses: torch.Tensor, *, update: bool = True
    ) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(texts, scores less both penalties, reward-source scores, has-EOS, has-separator)
        of sampled responses (B, R), padded after their EOS."""
        texts = decode_replies(self.tokenizer, responses, self.eos_id, self.pad_id)
        scores, rewards, has_separator = self.score(prompts, texts, update=update)
        has_eos = (responses == self.eos_id).any(dim=1).cpu()
        scores = scores - self.config.missing_eos_penalty * (~has_eos).float()
        return texts, scores, rewards, has_eos, has_separator

    def score(
        self, prompts: Sequence[PPOPrompt], texts: Sequence[str], *, update: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores less the separator penalty, reward-source scores, has-separator) of
        decoded responses; EOS is judged on tokens, in `score_responses`."""
        separator = self.config.separator
        has_separator = torch.tensor([separator in t for t in texts])
        split = [split_reasoning(t, separator) for t in texts]
        reasoning = [trace for trace, _ in split]
        replies = [reply for _, reply in split]
        rewards = torch.as_tensor(
            self.reward(prompts, replies, reasoning, update=update), dtype=torch.float32
        )
        scores = rewards - self.config.missing_separator_penalty * (~has_separator).float()
        return scores, rewards, has_separator
