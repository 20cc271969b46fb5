"""`rewardlab` command line: one verb per job.

    rewardlab init PROJECT [--k 3]                        create an empty project
    rewardlab import PROJECT --dialogues D --tasks T      validate, then import all or nothing
    rewardlab import PROJECT --judgments J                judgments made elsewhere, the same way
    rewardlab import PROJECT --hf PATH [--map MAP.yaml]   an HF audio dataset, through a map
    rewardlab export PROJECT --format parquet --out F     judgments with their tasks (or hf,
                                                          jsonl, trl-preference)
    rewardlab stats PROJECT                               volume, agreement, bias, gold
    rewardlab demo-data --out DIR --n 240                 the demo world, judged
    rewardlab backbone-info PATH_OR_CONFIG                parameters, audio tokens/s, memory
    rewardlab tiny-grm --project P --out DIR              a random-init tiny GRM backbone
    rewardlab train-grm --config training/grm_demo.yaml   train + evaluate a GRM
    rewardlab train-rm --config training/rm_demo.yaml     a scalar reward model, the baseline
    rewardlab judge --grm CKPT --project P --out F        score tasks with a trained GRM
    rewardlab calibrate --grm CKPT --project P --method M fit the reward mapper's calibration
    rewardlab evaluate --grm CKPT --project P --out DIR   report.html + metrics.json
    rewardlab tiny-policy --project P --out DIR           a tiny audio policy, warm-started
    rewardlab ppo --config training/ppo_demo.yaml         PPO of a policy against a GRM
    rewardlab sample --policy CKPT --project P --out T    a policy's replies as tasks to judge
    rewardlab demo-annotate PROJECT --tasks T             ... judged by the demo world's rules
    rewardlab loop-report --ppo RUN --out DIR             PPO and the next round's judges
    rewardlab serve-reward GRM --project P                the GRM as a reward service over HTTP
    rewardlab argilla push PROJECT                        tasks to Argilla (ARGILLA_API_URL/KEY)
    rewardlab argilla pull PROJECT                        submitted Argilla responses as judgments
    rewardlab add-annotator PROJECT ID [--admin]          a login account for the web app
    rewardlab demo-accounts PROJECT                       demo logins with known passwords
    rewardlab serve PROJECT [--port 7860]                 the annotation web app

Options are `--kebab-case` (`--snake_case` is read the same). One name per concept: `--grm` is
a reward-model checkpoint (a GRM, or the scalar RM that `train-rm` saves), `--project` a
project folder or Parquet export read beside a verb's subject, `--config` a recipe in
training/ whose other flags (`train-grm`, `train-rm`, `ppo`) override its fields.

This module is the composition root: it assembles the verbs of `rewardlab.commands` (each
parser beside its command) and maps library errors to one line and exit status 1. No
rewardlab module imports `annotation_ui` except the `serve` and `argilla` commands, lazily,
inside the command (tests/test_cli.py holds this).
"""

from __future__ import annotations

import argparse
import sys

from rewardlab.audio import AudioError
from rewardlab.commands import (
    accounts,
    argilla,
    backbone,
    demo,
    grm,
    judge,
    project,
    reward,
    rl,
    serve,
    stats,
)
from rewardlab.commands.options import kebab_flags
from rewardlab.schema import RecordError

# in the order `rewardlab --help` lists their verbs
COMMANDS = (project, stats, demo, backbone, grm, judge, rl, reward, argilla, accounts, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewardlab", description=__doc__.split("\n\n")[0])
    parser.set_defaults(config_overrides=False)  # `add_config_verb` turns it on for its verb
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for command in COMMANDS:
        command.add_parsers(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(kebab_flags(sys.argv[1:] if argv is None else argv))
    if extra and not args.config_overrides:  # only config verbs pass flags on to their config
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        return args.run(args) or 0
    except (RecordError, AudioError, FileExistsError, FileNotFoundError, ValueError) as error:
        # RecordError and the store's errors already name the record and the field
        print(f"rewardlab {args.verb}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
