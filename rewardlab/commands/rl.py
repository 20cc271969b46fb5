"""RL verbs: a tiny audio policy to start from, and PPO of a policy against a GRM.

    rewardlab tiny-policy --project P --out DIR           a tiny audio policy, warm-started
    rewardlab ppo --config training/ppo_demo.yaml         PPO of a policy against a GRM
    rewardlab sample --policy CKPT --project P --out T    its replies as tasks, for annotation

`ppo` passes every other `--field value` flag on to `AudioPPOConfig` (see `parse_config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardlab.commands.options import (
    Verbs,
    add_config_verb,
    add_grm,
    add_project,
    add_tiny_size,
)


def run_tiny_policy(args: argparse.Namespace) -> None:
    from rewardlab.grm.tiny import TinySize
    from rewardlab.rl.warm_start import build_tiny_policy

    size = TinySize(hidden_size=args.hidden, layers=args.layers)
    result = build_tiny_policy(
        args.project, args.out, steps=args.steps, grm_path=args.grm, size=size, seed=args.seed
    )
    print(
        f"tiny audio policy at {args.out}: warm start on {result['pairs']} replies, loss"
        f" {result['first_loss']:.2f} -> {result['last_loss']:.2f}"
    )


def run_ppo(args: argparse.Namespace) -> None:
    from rewardlab.rl.ppo_config import parse_ppo_config
    from rewardlab.rl.ppo_recipe import train

    report = train(parse_ppo_config(args.config, args.overrides))
    if "gain" in report:
        before, after, gain = report["before"], report["after"], report["gain"]
        print(
            f"held-out GRM reward ({report['eval_prompts']} prompts x"
            f" {before['samples_per_prompt']} replies): before {before['reward_mean']:+.3f} ±"
            f" {before['reward_sem']:.3f}, after {after['reward_mean']:+.3f} ±"
            f" {after['reward_sem']:.3f}; gain {gain['mean']:+.3f} ± {gain['sem']:.3f}"
        )


def run_sample(args: argparse.Namespace) -> None:
    from rewardlab.rl.sampling import SampleSettings, sample_tasks

    settings = SampleSettings(
        n_per_prompt=args.n_per_prompt,
        temperature=args.temperature,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        round=args.round,
        limit=args.limit,
    )
    report = sample_tasks(args.policy, args.project, args.out, settings)
    print(report.summary(args.out))
    print(f"import them with: rewardlab import {args.project} --tasks {args.out}")


def add_sample_parser(verbs: Verbs) -> None:
    sample = verbs.add_parser(
        "sample", help="a policy's replies to a project's prompts, as tasks to annotate"
    )
    sample.add_argument("--policy", required=True, type=Path, help="a policy checkpoint folder")
    add_project(sample, "dialogues, turns and references")
    sample.add_argument("--out", required=True, type=Path, help="tasks .jsonl (appended: resumes)")
    sample.add_argument("--n-per-prompt", type=int, default=1, help="replies per prompt (1)")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--top-k", type=int, default=0, help="sample among the top k; 0: all")
    sample.add_argument("--max-new-tokens", type=int, default=48)
    sample.add_argument("--batch-size", type=int, default=8, help="prompts per batch (8)")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--round", type=int, default=2, help="annotation round, in metadata (2)")
    sample.add_argument("--limit", type=int, help="the first N prompts only")
    sample.set_defaults(run=run_sample)


def add_parsers(verbs: Verbs) -> None:
    add_sample_parser(verbs)
    policy = verbs.add_parser(
        "tiny-policy", help="a tiny audio policy for a project, warm-started on its replies"
    )
    add_project(policy, "texts, replies, audio")
    policy.add_argument("--out", required=True, type=Path)
    add_grm(
        policy,
        "a trained GRM whose held-out split stays unseen (default: GRMConfig's 0.2, seed 0)",
        required=False,
    )
    policy.add_argument("--steps", type=int, default=300, help="warm-start steps (default 300)")
    add_tiny_size(policy, hidden=128, layers=4)
    policy.set_defaults(run=run_tiny_policy)

    add_config_verb(
        verbs,
        "ppo",
        "PPO of an audio policy against a GRM",
        config="AudioPPOConfig",
        example="--max-steps 10 --grm CKPT",
        recipe="a training/ppo_*.yaml recipe",
        run=run_ppo,
    )
