"""Reward sources for `AudioPPOTrainer`: what scores a batch of replies to a batch of prompts.

A reward source is any callable ``reward(prompts, replies, reasoning) -> (N,) array`` with
``state_dict()`` / ``load_state_dict(state)``: the JSON-able state a run changes (a GRM's
running normalisation), saved in every PPO checkpoint so a resumed run scores as a straight
one would.

    GRMPromptReward    the GRM judges each reply against the prompt's reference reply in the
                       full dialogue (its audio heard), both presentation orders, through the
                       `RewardMapper` saved with it: the rewardlab path
    ScalarModelReward  a sequence-classification reward model reads the dialogue's transcript
                       and the reply and returns one logit: the classic RLHF cost floor, kept
                       for comparison (benchmarks/bench_ppo.py)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from rewardlab.grm.encoding import ClipFeatures
from rewardlab.rl.grm_reward import GRMReward, judge_item
from rewardlab.rl.prompts import PPOPrompt


class RewardSource(Protocol):
    def __call__(
        self,
        prompts: Sequence[PPOPrompt],
        replies: Sequence[str],
        reasoning: Sequence[str | None],
        *,
        update: bool = True,
    ) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class GRMPromptReward:
    """The GRM's verdict on each reply, mapped to a scalar; an empty reply scores as a
    certain "much worse"."""

    def __init__(self, reward: GRMReward):
        self.reward = reward

    def share_clip_features(self, features: ClipFeatures) -> bool:
        """Read clips through `features` (the policy's cache: PPO judges the clips its policy
        has just heard) when they give the GRM the same features; True if shared."""
        encoder = self.reward.grm.encoder
        if encoder.clip_features is features or not encoder.clip_features.same_features_as(
            features
        ):
            return False
        encoder.clip_features = features
        return True

    def state_dict(self) -> dict[str, Any]:
        return self.reward.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reward.load_state_dict(state)

    def __call__(
        self,
        prompts: Sequence[PPOPrompt],
        replies: Sequence[str],
        reasoning: Sequence[str | None],
        *,
        update: bool = True,
    ) -> np.ndarray:
        k = self.reward.mapper.k
        items = [
            judge_item(
                f"{prompt.id}.r{row}",
                prompt.dialogue,
                prompt.turn_index,
                reply,
                trace,
                prompt.reference,
                prompt.rubric,
                k=k,
            )
            if reply.strip()
            else None
            for row, (prompt, reply, trace) in enumerate(
                zip(prompts, replies, reasoning, strict=True)
            )
        ]
        return self.reward.reward_items(items, update=update)


class ScalarModelReward:
    """A sequence-classification model's logit for (dialogue transcript, reply)."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int = 32, max_tokens: int = 1024):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_tokens = batch_size, max_tokens

    def state_dict(self) -> dict[str, Any]:
        """Nothing changes while it scores: a frozen model, no normalisation."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"ScalarModelReward keeps no state, got {sorted(state)}")

    def text(self, prompt: PPOPrompt, reply: str) -> str:
        turns = prompt.dialogue.turns[: prompt.turn_index + 1]
        history = "\n".join(f"{t.role}: {t.text or '(audio)'}" for t in turns)
        return f"{history}\nassistant: {reply}"

    @torch.no_grad()
    def __call__(
        self,
        prompts: Sequence[PPOPrompt],
        replies: Sequence[str],
        reasoning: Sequence[str | None],
        *,
        update: bool = True,
    ) -> np.ndarray:
        texts = [self.text(p, r) for p, r in zip(prompts, replies, strict=True)]
        device = next(self.model.parameters()).device
        scores = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_tokens,
            ).to(device)
            scores.append(self.model(**batch).logits[:, 0].float().cpu())
        return torch.cat(scores).numpy().astype(np.float64)
