"""RL verbs: a tiny audio policy to start from, and PPO of a policy against a GRM.

    rewardlab tiny-policy --project P --out DIR [--family F] a tiny audio policy, warm-started
    rewardlab ppo --config training/ppo_demo.yaml         PPO of a policy against a GRM
    rewardlab sample --policy CKPT --project P --out T    its replies as tasks, for annotation
    rewardlab loop-report --ppo RUN --out DIR             PPO and the next round's judges, one page

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
        args.project,
        args.out,
        steps=args.steps,
        grm_path=args.grm,
        size=size,
        seed=args.seed,
        family=args.family,
    )
    print(
        f"tiny {args.family} policy at {args.out}: warm start on {result['pairs']} replies, loss"
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
    from rewardlab.rl.prompt_split import split_like_grm
    from rewardlab.rl.sampling import SampleSettings, sample_tasks

    dialogues = None
    if args.held_out_of is not None:
        held = split_like_grm(args.project, grm_path=args.held_out_of).held_out
        dialogues = frozenset(example.item.task.dialogue_id for example in held)

    settings = SampleSettings(
        n_per_prompt=args.n_per_prompt,
        temperature=args.temperature,
        top_k=args.top_k,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
        round=args.round,
        limit=args.limit,
        dialogues=dialogues,
    )
    report = sample_tasks(args.policy, args.project, args.out, settings)
    print(report.summary(args.out))
    print(f"import them with: rewardlab import {args.project} --tasks {args.out}")


def run_loop_report(args: argparse.Namespace) -> None:
    from rewardlab.rl.loop_report import write_loop_report

    judges = {"round-1 judge": args.grm} if args.grm else {}
    if args.grm_round2:
        judges["round-2 judge"] = args.grm_round2
    page, numbers = write_loop_report(
        args.out, args.ppo, project=args.project, judges=judges, round_number=args.round
    )
    for name, gain in numbers.items():
        if isinstance(gain, dict) and "mean" in gain:
            print(f"{name:<20} {gain['mean']:+.3f} ± {gain['sem']:.3f} ({gain['n']} prompts)")
    for judge, groups in numbers.get("judges", {}).items():
        for group, v in groups.items():
            print(f"{judge} on round {args.round}, {group}: accuracy {v['accuracy']:.3f} ±"
                  f" {v['se']:.3f} ({v['n']} pairs)")  # fmt: skip
    print(f"loop report: {page}")


def add_loop_report_parser(verbs: Verbs) -> None:
    loop = verbs.add_parser(
        "loop-report", help="one page: PPO against the judge, and the judges on the next round"
    )
    loop.add_argument("--ppo", required=True, type=Path, help="a `rewardlab ppo` output_dir")
    loop.add_argument("--project", type=Path, help="the project holding the new round's tasks")
    add_grm(loop, "the judge PPO ran against (its split picks the held-out pairs)", required=False)
    loop.add_argument("--grm-round2", type=Path, metavar="CKPT", help="the next round's judge")
    loop.add_argument("--round", type=int, default=2, help="the new round's number (2)")
    loop.add_argument("--out", required=True, type=Path, help="folder for loop.html, loop.json")
    loop.set_defaults(run=run_loop_report)


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
    sample.add_argument(
        "--held-out-of",
        type=Path,
        metavar="CKPT",
        help="only the dialogues this GRM held out (split as it was trained)",
    )
    sample.set_defaults(run=run_sample)


def add_parsers(verbs: Verbs) -> None:
    add_sample_parser(verbs)
    add_loop_report_parser(verbs)
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
