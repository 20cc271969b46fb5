"""Verbs that use a trained GRM: score tasks, fit the reward calibration, evaluate.

    rewardlab judge --grm CKPT --project P --out scores.jsonl    score tasks with a trained GRM
    rewardlab calibrate --grm CKPT --project P --method M        fit the reward mapper's calibration
    rewardlab evaluate --grm CKPT --project P --out DIR          report.html + metrics.json

`calibrate` and `evaluate` take the GRM's held-out split (from its grm_config.yaml unless
`--eval-share` / `--split-seed` are given), halved: calibrate fits on one half, evaluate
reports on the other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardlab.commands.options import Verbs, add_grm, add_project


def run_judge(args: argparse.Namespace) -> None:
    from rewardlab.grm.scoring import judge_project, write_scores

    dist = judge_project(
        args.grm, args.project, tasks_file=args.tasks, mode=args.mode, batch_size=args.batch_size
    )
    write_scores(dist, args.out)
    print(f"judged {len(dist.task_ids)} tasks ({args.mode}) -> {args.out}")


def run_calibrate(args: argparse.Namespace) -> None:
    from rewardlab.grm.checkpoint import GRMCheckpoint
    from rewardlab.grm.evaluate import calibrate

    mapper, summary = calibrate(
        args.grm,
        args.project,
        args.method,
        normalize=args.normalize,
        clip=args.clip,
        eval_share=args.eval_share,
        split_seed=args.split_seed,
        batch_size=args.batch_size,
    )
    fitted = f"T={mapper.temperature:.3f}" if mapper.temperature else "one map per level"
    print(f"calibrated ({args.method}, {fitted}) on {int(summary['tasks'])} held-out tasks")
    before, after = summary["ece_before"], summary["ece_after"]
    print(f"ECE of P(policy better) on them: {before:.3f} -> {after:.3f}")
    print(f"saved {GRMCheckpoint(args.grm).mapper_path}")


def run_evaluate(args: argparse.Namespace) -> None:
    from rewardlab.grm.evaluate import HEADLINE_METRICS, evaluate

    report, metrics = evaluate(
        args.grm,
        args.project,
        args.out,
        truth=args.truth,
        eval_share=args.eval_share,
        split_seed=args.split_seed,
        batch_size=args.batch_size,
    )
    for name in HEADLINE_METRICS:
        value = metrics[name]
        print(f"{name:<22} {'n/a' if value is None else f'{value:.3f}'}")
    print(f"report: {report}")


def add_parsers(verbs: Verbs) -> None:
    judge = verbs.add_parser("judge", help="score a project's tasks with a trained GRM")
    add_grm(judge, "a trained GRM checkpoint (e.g. runs/grm/final)")
    add_project(judge, "dialogues, rubrics, media")
    judge.add_argument("--tasks", type=Path, help="tasks.jsonl to score (default: all tasks)")
    judge.add_argument("--out", required=True, type=Path, help="scores, one JSON line per task")
    judge.add_argument("--mode", choices=["direct", "reasoning"], default="direct")
    judge.add_argument("--batch-size", type=int, default=16)
    judge.set_defaults(run=run_judge)

    held_out = {
        "epilog": "tasks: the GRM's held-out split (--eval-share, --split-seed from CKPT's\n"
        "grm_config.yaml unless given), halved: calibrate fits on one half,\n"
        "evaluate reports on the other",
        "formatter_class": argparse.RawDescriptionHelpFormatter,
    }
    calibrate = verbs.add_parser(
        "calibrate", help="fit a GRM's reward calibration on held-out judgments", **held_out
    )
    add_held_out_options(calibrate)
    calibrate.add_argument("--method", required=True, choices=["isotonic", "temperature"])
    calibrate.add_argument(
        "--normalize",
        choices=["none", "running", "fixed"],
        help="reward normalisation (default: keep the saved mapper's, else none);"
        " fixed: mean and std of these tasks' rewards",
    )
    calibrate.add_argument("--clip", type=float, help="clip rewards to [-C, C] (0: no clip)")
    calibrate.set_defaults(run=run_calibrate)

    evaluate = verbs.add_parser(
        "evaluate", help="a GRM and its reward on held-out tasks: report + JSON", **held_out
    )
    add_held_out_options(evaluate)
    evaluate.add_argument("--out", required=True, type=Path, help="folder for the report")
    evaluate.add_argument(
        "--truth",
        action="store_true",
        help="score against task metadata truth.level where present (the demo"
        " world) instead of the annotators' levels",
    )
    evaluate.set_defaults(run=run_evaluate)


def add_held_out_options(parser: argparse.ArgumentParser) -> None:
    """What calibrate and evaluate share: the GRM, its data and the held-out split."""
    add_grm(parser, "a trained GRM checkpoint")
    add_project(parser, "project or Parquet export")
    parser.add_argument("--eval-share", type=float, help="held-out share (1: all of --project)")
    parser.add_argument("--split-seed", type=int, help="seed of the train/held-out split")
    parser.add_argument("--batch-size", type=int, default=16)
