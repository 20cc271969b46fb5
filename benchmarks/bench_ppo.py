"""Time per PPO update, split into rollout, reward and optimisation, for four set-ups.

    .venv/bin/python benchmarks/bench_ppo.py [--updates 4] [--rollouts 16] [--per-prompt 4]

One demo world, one tiny Qwen2-Audio policy (warm-started on the world's replies), the same
seeds and settings in every run:

- (a) GRM reward: the tiny audio GRM judges each reply against the reference, both orders,
  through the reward mapper (the rewardlab path)
- (b) scalar reward: a sequence-classification model of the GRM's size reads the dialogue's
  transcript and the reply and returns one logit (the classic RLHF reward, the cost floor)
- (c) as (a) with the frozen audio tower re-run on every pass (generation, log-probs, values,
  every PPO epoch and micro-batch) instead of once per rollout
- (d) as (a) with the GRM's dialogue history run once per reply (both orders sharing it), not
  once per prompt for its G replies: the judge before group sharing

Each update samples --per-prompt (G) replies for each of rollouts / G prompts. Prints
per-update seconds per phase, the reward phase's share of the update for (a) and (d), the
(a)/(b) ratio, and the speed-up of (a) over (c). The first update of each run is a warm-up and
is left out of the means.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from transformers import Qwen2Config, Qwen2ForSequenceClassification

from rewardlab.demo import DemoConfig, build_demo_project
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.tiny import TinySize, build_tiny_backbone, corpus_texts
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.rl.policy import load_policy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.ppo_trainer import AudioPPOTrainer
from rewardlab.rl.prompt_split import load_prompts
from rewardlab.rl.rewards import GRMPromptReward, ScalarModelReward
from rewardlab.rl.warm_start import build_tiny_policy

PHASES = ("time/rollout_s", "time/reward_s", "time/optimize_s")


def run(name, world, args, reward_kind: str, cache_audio: bool, share: str) -> dict[str, float]:
    split = load_prompts(world["project"], 0.25, 0)
    policy, template = load_policy(world["policy"])
    grm_reward = GRMReward.from_checkpoint(
        world["grm"], project=world["project"], share_history=share
    )
    if reward_kind == "grm":
        reward = GRMPromptReward(grm_reward)
    else:
        tokenizer = grm_reward.grm.tokenizer
        text = grm_reward.grm.model.config.get_text_config()
        fields = {k: v for k, v in text.to_dict().items() if k not in ("id2label", "label2id")}
        config = Qwen2Config(**fields, num_labels=1)
        config.pad_token_id = tokenizer.pad_token_id
        reward = ScalarModelReward(Qwen2ForSequenceClassification(config), tokenizer)
    config = AudioPPOConfig(
        output_dir=str(world["root"] / name),
        use_cpu=True,
        seed=0,
        max_steps=args.updates + 1,
        per_device_train_batch_size=args.rollouts // 4,
        gradient_accumulation_steps=2,
        num_mini_batches=2,
        num_ppo_epochs=2,
        response_length=args.response_length,
        learning_rate=1e-4,
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
        cache_audio=cache_audio,
        rollouts_per_prompt=args.per_prompt,
        local_rollout_forward_batch_size=args.rollouts,
    )
    trainer = AudioPPOTrainer(
        config,
        policy=policy,
        reward=reward,
        train_prompts=split.train,
        processing_class=template,
        media_root=split.media_root,
    )
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    logs = [log for log in trainer.state.log_history if PHASES[0] in log][1:]  # no warm-up
    means = {phase: float(np.mean([log[phase] for log in logs])) for phase in PHASES}
    means["total"] = sum(means.values())
    means["wall"] = wall
    return means


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=4, help="timed updates per run")
    parser.add_argument("--rollouts", type=int, default=16, help="prompts per update")
    parser.add_argument("--per-prompt", type=int, default=4, help="replies per prompt (G)")
    parser.add_argument("--response-length", type=int, default=32)
    parser.add_argument("--window", type=int, default=10, help="audio window in seconds")
    parser.add_argument("--dialogues", type=int, default=48)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = root / "project"
        build_demo_project(project, DemoConfig(n=args.dialogues, seed=0), progress=False).close()
        data = load_examples(project)
        examples, rubrics = data.examples, data.rubrics
        size = replace(TinySize(), chunk_length=args.window)
        texts = corpus_texts(examples, JudgeFormat(), rubrics.values())
        world = {
            "root": root,
            "project": project,
            "grm": build_tiny_backbone(root / "grm", texts, size=size),
            "policy": root / "policy",
        }
        build_tiny_policy(project, world["policy"], steps=40, size=size, progress=False)
        runs = {
            "(a) GRM reward, audio cached": ("grm", True, "group"),
            "(b) scalar RM reward, audio cached": ("scalar", True, "group"),
            "(c) GRM reward, audio re-encoded": ("grm", False, "group"),
            "(d) as (a), history per reply": ("grm", True, "item"),
        }
        results = {}
        for label, (kind, cache, share) in runs.items():
            results[label] = run(label[1], world, args, kind, cache, share)
    print(
        f"\n{args.rollouts} rollouts/update ({args.per_prompt} per prompt),"
        f" {args.response_length}-token responses,"
        f" {args.window} s audio window, mean of {args.updates} updates (s/update)"
    )
    print(f"{'':38}{'rollout':>9}{'reward':>9}{'optimise':>10}{'total':>9}")
    for label, r in results.items():
        print(
            f"{label:38}{r['time/rollout_s']:9.2f}{r['time/reward_s']:9.2f}"
            f"{r['time/optimize_s']:10.2f}{r['total']:9.2f}"
        )
    a, b, c, d = results.values()
    print(
        f"\nreward phase share of the update: {a['time/reward_s'] / a['total']:.0%} with the"
        f" history shared by each prompt's {args.per_prompt} replies (a),"
        f" {d['time/reward_s'] / d['total']:.0%} with one history per reply (d);"
        f" reward phase {d['time/reward_s'] / a['time/reward_s']:.2f}x faster"
    )
    print(f"\nGRM / scalar RM: reward phase {a['time/reward_s'] / b['time/reward_s']:.1f}x,")
    print(f"                 whole update {a['total'] / b['total']:.2f}x")
    print(
        f"audio tower once per rollout vs on every pass: rollout"
        f" {c['time/rollout_s'] / a['time/rollout_s']:.2f}x, optimise"
        f" {c['time/optimize_s'] / a['time/optimize_s']:.2f}x, update"
        f" {(c['total'] - c['time/reward_s']) / (a['total'] - a['time/reward_s']):.2f}x faster"
        " (policy passes only)"
    )


if __name__ == "__main__":
    main()
