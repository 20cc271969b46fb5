"""Verbs that use a trained GRM: score tasks, fit the reward calibration, evaluate.

    rewardlab judge --grm CKPT --project P --out scores.jsonl    score tasks with a trained GRM
    rewardlab calibrate --grm CKPT --project P [--method auto]   fit the reward mapper's calibration
    rewardlab evaluate --grm CKPT --project P --out DIR          report.html + metrics.json
    rewardlab evaluate --grm CKPT --baseline RM --project P --out DIR   ... beside a baseline

`--grm` (and `--baseline`) may be a GRM or a scalar RM that `train-rm` saved: the folder says
which.

`calibrate` and `evaluate` take the GRM's held-out split (from its grm_config.yaml unless
`--eval-share` / `--split-seed` are given), halved: calibrate fits on one half, evaluate
reports on the other.
"""

from __future__ import annotations

import argparse
import sys
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
        folds=args.folds,
    )
    print(f"held-out ECE of P(policy better), {len(summary['folds'])} folds of"
          f" {int(summary['tasks'])} calibration tasks, by leakage group:")  # fmt: skip
    for name, ece in summary["cv_ece"].items():
        print(f"  {name:<18} {ece:.3f}")
    for number, fold in enumerate(summary["folds"]):
        print(f"  fold {number}: {fold['n']} decided tasks, ECE {fold['before']:.3f} (none)"
              f" -> {fold['after']:.3f} ({summary['chosen']}); exactly calibrated at this size:"
              f" {fold['floor']:.3f}")  # fmt: skip
    fitted = f", T={mapper.temperature:.3f}" if mapper.temperature else ""
    print(f"chosen: {summary['chosen']}{fitted}"
          f" (asked: {args.method}); ECE on the whole calibration half"
          f" {summary['ece_before']:.3f} -> {summary['ece_after']:.3f} (in sample)")  # fmt: skip
    if summary["worse_than_uncalibrated"]:
        print(
            f"WARNING: {args.method} calibration makes held-out calibration WORSE than none"
            f" ({summary['cv_ece'][summary['chosen']]:.3f} vs {summary['cv_ece']['none']:.3f});"
            " saved because it was asked for by name."
            " Use --method auto to let the held-out folds decide.",
            file=sys.stderr,
        )
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
        probes=args.probes,
        baseline=args.baseline,
    )
    for name in HEADLINE_METRICS:
        value = metrics[name]
        print(f"{name:<22} {'n/a' if value is None else f'{value:.3f}'}")
    for model, row in metrics.get("comparison", {}).items():
        shown = (f"{k} {'n/a' if v is None else f'{v:.3f}'}" for k, v in row.items() if k != "kind")
        print(f"{model}: {', '.join(shown)}")
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
    calibrate.add_argument(
        "--method",
        default="auto",
        choices=["auto", "temperature", "isotonic", "none"],
        help="auto (default): the method and strength with the lowest cross-validated ECE"
        " (no calibration included); a named method gets its best strength",
    )
    calibrate.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds, by leakage group"
    )
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
        "--baseline",
        type=Path,
        metavar="CKPT",
        help="a second model trained with the same split (the scalar RM of train-rm, or"
        " another GRM), scored on the same tasks: a comparison table in both files",
    )
    evaluate.add_argument(
        "--truth",
        action="store_true",
        help="score against task metadata truth.level where present (the demo"
        " world) instead of the annotators' levels",
    )
    evaluate.add_argument(
        "--no-probes",
        dest="probes",
        action="store_false",
        help="skip the bias probes (gain, padding, time-stretch of the user's clips; a filler"
        " sentence appended to a response): each is one more pass over the test tasks",
    )
    evaluate.set_defaults(run=run_evaluate)


def add_held_out_options(parser: argparse.ArgumentParser) -> None:
    """What calibrate and evaluate share: the GRM, its data and the held-out split."""
    add_grm(parser, "a trained GRM checkpoint")
    add_project(parser, "project or Parquet export")
    parser.add_argument("--eval-share", type=float, help="held-out share (1: all of --project)")
    parser.add_argument("--split-seed", type=int, help="seed of the train/held-out split")
    parser.add_argument("--batch-size", type=int, default=16)
