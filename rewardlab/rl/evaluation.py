"""Held-out evaluation of a policy: replies sampled with a fixed seed, scored, compared.

Before and after training the same prompts get the same seed, so the two evaluations differ
only by the policy; `paired_gain` takes the difference per prompt. With ``audio="silence"``
the policy hears a second of silence in place of every clip while the judge still hears the
dialogue: a gain that survives it did not come from listening.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rewardlab.grm.encoding import AudioMode
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.prompts import PPOPrompt, PromptBatch
from rewardlab.rl.rollout import RolloutCollector


@torch.no_grad()
def evaluate_prompts(
    collector: RolloutCollector,
    policy: AudioPolicy,
    prompts: Sequence[PPOPrompt],
    *,
    seed: int = 1234,
    samples: int = 1,
    batch_size: int = 16,
    audio: AudioMode = "audio",
) -> dict[str, Any]:
    """Sample `samples` replies per prompt and score them; the reward source's normalisation
    is not updated. Means and standard errors are over prompts, each prompt's samples
    averaged first."""
    was_training = policy.training
    policy.eval()
    generator = torch.Generator(device=collector.device).manual_seed(seed)
    repeated = [prompt for prompt in prompts for _ in range(samples)]
    scores, rewards, texts = [], [], []
    for start in range(0, len(repeated), batch_size):
        chunk = repeated[start : start + batch_size]
        batch = collector.encode(chunk, audio)
        clips = batch.clips.to(collector.device) if batch.clips is not None else None
        batch = PromptBatch(batch.input_ids, batch.attention_mask, policy.encode_audio(clips))
        responses = collector.generate(policy, batch, generator)
        decoded, score, reward, _, _ = collector.score_responses(chunk, responses, update=False)
        scores.append(score)
        rewards.append(reward)
        texts += decoded
    policy.train(was_training)
    score = torch.cat(scores).numpy().reshape(len(prompts), samples).mean(axis=1)
    reward = torch.cat(rewards).numpy().reshape(len(prompts), samples).mean(axis=1)
    return {
        "prompts": len(prompts),
        "samples_per_prompt": samples,
        "score_mean": float(score.mean()),
        "score_sem": _sem(score),
        "reward_mean": float(reward.mean()),
        "reward_sem": _sem(reward),
        "reward_per_prompt": reward.tolist(),
        "samples": texts[: 5 * samples : samples],
    }


def evaluate_held_out(
    collector: RolloutCollector,
    policy: AudioPolicy,
    held: list[PPOPrompt],
    config: AudioPPOConfig,
    when: str,
) -> dict[str, Any]:
    """{when: ...} and, for an audio policy with eval_silence, {when_silence: ...}; prints
    one line each."""
    modes = ["audio"] + (["silence"] if config.eval_silence and collector.encoder.is_audio else [])
    out = {}
    for mode in modes:
        key = when if mode == "audio" else f"{when}_silence"
        out[key] = evaluate_prompts(
            collector, policy, held, seed=config.seed, samples=config.eval_samples, audio=mode
        )
        print(describe(key.replace("_", ", policy hearing "), out[key]))
    return out


def paired_gain(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """After minus before, per prompt: its mean and standard error."""
    diff = np.asarray(after["reward_per_prompt"]) - np.asarray(before["reward_per_prompt"])
    sem = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return {"mean": float(diff.mean()), "sem": sem}


def describe(when: str, result: dict[str, Any]) -> str:
    return (
        f"held-out {when}: score {result['score_mean']:+.3f} ± {result['score_sem']:.3f}"
        f" (GRM reward {result['reward_mean']:+.3f} ± {result['reward_sem']:.3f},"
        f" {result['prompts']} prompts x {result['samples_per_prompt']} replies)"
    )


def _sem(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
