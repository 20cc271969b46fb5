"""Held-out evaluation of a policy: replies sampled with a fixed seed, scored, compared.

Before and after training the same prompts get the same seed, so the two evaluations differ
only by the policy; `paired_gain` takes the difference per prompt. With ``audio="silence"``
the policy hears a second of silence in place of every clip while the judge still hears the
dialogue: a gain that survives it did not come from listening.

Each prompt is of a *kind*, ``rubric`` (judged under a rubric) or ``plain``, and gains are
reported per kind too: a run that trains both must not buy one with the other. With a truth
scorer (a world that knows what people prefer, such as the demo world) every reply is also
scored by that truth, so a gain in GRM reward can be checked against a gain in real quality.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from rewardlab.grm.encoding import AudioMode
from rewardlab.rl.grm_reward import split_reasoning
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig, resolve_truth_scorer
from rewardlab.rl.prompts import PPOPrompt, PromptBatch
from rewardlab.rl.rollout import RolloutCollector

# (dialogue, reply) -> {axis: score, ..., 'total': ...}, or None for a dialogue it cannot score
TruthScorer = Callable[[Any, str], dict[str, float] | None]


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
    truth_scorer: TruthScorer | None = None,
) -> dict[str, Any]:
    """Sample `samples` replies per prompt and score them (and by `truth_scorer`, when given);
    the reward source's normalisation is not updated. Means and standard errors are over
    prompts, each prompt's samples averaged first."""
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
    truth = truth_scores(repeated, texts, collector.config.separator, truth_scorer, samples)
    return truth | {
        "prompts": len(prompts),
        "samples_per_prompt": samples,
        "score_mean": float(score.mean()),
        "score_sem": _sem(score),
        "reward_mean": float(reward.mean()),
        "reward_sem": _sem(reward),
        "reward_per_prompt": reward.tolist(),
        "kind_per_prompt": [prompt_kind(prompt) for prompt in prompts],
        "samples": texts[: 5 * samples : samples],
    }


def prompt_kind(prompt: PPOPrompt) -> str:
    return "plain" if prompt.rubric is None else "rubric"


def truth_scores(
    prompts: Sequence[PPOPrompt],
    texts: Sequence[str],
    separator: str,
    scorer: TruthScorer | None,
    samples: int,
) -> dict[str, Any]:
    """{truth_per_prompt, truth_mean, truth_sem, truth_axes, and per axis truth_<axis>_mean and
    truth_<axis>_per_prompt} of replies (their reasoning cut off), each prompt's samples
    averaged; {} without a scorer or when it knows no prompt."""
    if scorer is None:
        return {}
    rows = [
        scorer(prompt.dialogue, split_reasoning(text, separator)[1])
        for prompt, text in zip(prompts, texts, strict=True)
    ]
    if any(row is None for row in rows):
        return {}  # a truth is only meaningful over the whole held-out set
    axes = sorted(rows[0])
    table = np.array([[row[axis] for axis in axes] for row in rows], dtype=float)
    per_prompt = table.reshape(len(rows) // samples, samples, len(axes)).mean(axis=1)
    out: dict[str, Any] = {"truth_axes": [axis for axis in axes if axis != "total"]}
    for i, axis in enumerate(axes):
        if axis != "total":
            out[f"truth_{axis}_mean"] = float(per_prompt[:, i].mean())
            out[f"truth_{axis}_per_prompt"] = per_prompt[:, i].tolist()
    total = per_prompt[:, axes.index("total")] if "total" in axes else per_prompt.sum(axis=1)
    return out | {
        "truth_per_prompt": total.tolist(),
        "truth_mean": float(total.mean()),
        "truth_sem": _sem(total),
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
    truth_scorer = resolve_truth_scorer(config.truth_scorer) if config.truth_scorer else None
    modes = ["audio"] + (["silence"] if config.eval_silence and collector.encoder.is_audio else [])
    out = {}
    for mode in modes:
        key = when if mode == "audio" else f"{when}_silence"
        out[key] = evaluate_prompts(
            collector,
            policy,
            held,
            seed=config.seed,
            samples=config.eval_samples,
            audio=mode,
            truth_scorer=truth_scorer,
        )
        print(describe(key.replace("_", ", policy hearing "), out[key]))
    return out


def paired_gain(
    before: dict[str, Any], after: dict[str, Any], key: str = "reward", kind: str | None = None
) -> dict[str, float]:
    """After minus before of ``<key>_per_prompt``, per prompt (of one kind, when given): its
    mean, standard error and the number of prompts."""
    keep = np.ones(len(before[f"{key}_per_prompt"]), dtype=bool)
    if kind is not None:
        keep = np.asarray(before["kind_per_prompt"]) == kind
    diff = (
        np.asarray(after[f"{key}_per_prompt"])[keep] - np.asarray(before[f"{key}_per_prompt"])[keep]
    )
    if not len(diff):
        return {"mean": float("nan"), "sem": float("nan"), "n": 0}
    return {"mean": float(diff.mean()), "sem": _sem(diff), "n": len(diff)}


def describe(when: str, result: dict[str, Any]) -> str:
    truth = (
        f", truth {result['truth_mean']:+.3f} ± {result['truth_sem']:.3f}"
        if "truth_mean" in result
        else ""
    )
    return (
        f"held-out {when}: score {result['score_mean']:+.3f} ± {result['score_sem']:.3f}"
        f" (GRM reward {result['reward_mean']:+.3f} ± {result['reward_sem']:.3f}{truth},"
        f" {result['prompts']} prompts x {result['samples_per_prompt']} replies)"
    )


def _sem(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
