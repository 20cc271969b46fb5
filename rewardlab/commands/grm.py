"""GRM building verbs: a tiny random-init backbone, and GRM training from a recipe.

    rewardlab tiny-grm --project P --out DIR [--family F] a random-init tiny GRM backbone
    rewardlab train-grm --config training/grm_demo.yaml   train + evaluate a GRM
    rewardlab train-rm --config training/rm_demo.yaml     train + evaluate the scalar RM baseline

`train-grm` and `train-rm` pass every other `--field value` flag on to `GRMConfig` /
`RMConfig` (see `parse_config`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardlab.commands.options import Verbs, add_config_verb, add_project, add_tiny_size


def run_tiny_grm(args: argparse.Namespace) -> None:
    from rewardlab.grm.examples import load_examples
    from rewardlab.grm.tiny import TinySize, build_tiny_grm

    data = load_examples(args.project)
    size = TinySize(hidden_size=args.hidden, layers=args.layers)
    out = build_tiny_grm(
        args.out,
        data.examples,
        data.rubrics.values(),
        data.k,
        audio=not args.text_only,
        size=size,
        seed=args.seed,
        family=args.family,
    )
    print(f"tiny {'text' if args.text_only else args.family} GRM backbone at {out}")


def run_train_grm(args: argparse.Namespace) -> None:
    from rewardlab.grm.recipe import parse_config, train_grm

    report = train_grm(parse_config(args.config, args.overrides))
    for name, value in report.items():
        print(f"{name:<34} {value:.3f}")


def run_train_rm(args: argparse.Namespace) -> None:
    from rewardlab.grm.recipe import parse_config
    from rewardlab.grm.rm_config import RMConfig
    from rewardlab.grm.rm_recipe import train_rm

    report = train_rm(parse_config(args.config, args.overrides, RMConfig))
    for name, value in report.items():
        print(f"{name:<34} {value:.3f}")


def add_parsers(verbs: Verbs) -> None:
    tiny = verbs.add_parser("tiny-grm", help="a random-init tiny GRM backbone for a project")
    add_project(tiny, "its texts train the tokenizer")
    tiny.add_argument("--out", required=True, type=Path)
    tiny.add_argument("--text-only", action="store_true", help="a text LM reading transcripts")
    add_tiny_size(tiny, hidden=96, layers=3)
    tiny.set_defaults(run=run_tiny_grm)

    add_config_verb(
        verbs,
        "train-grm",
        "train and evaluate a GRM",
        config="GRMConfig",
        example="--max-steps 50 --project P",
        recipe="a training/grm_*.yaml recipe",
        run=run_train_grm,
    )
    add_config_verb(
        verbs,
        "train-rm",
        "train and evaluate a scalar (Bradley-Terry) reward model, the GRM's baseline",
        config="RMConfig",
        example="--max-steps 50 --project P",
        recipe="a training/rm_*.yaml recipe",
        run=run_train_rm,
    )
