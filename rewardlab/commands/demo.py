"""The synthetic demo world (real espeak-ng speech, simulated annotators); `rewardlab.demo`
documents the world.

    rewardlab demo-data --out DIR --n 240               the world, built as a judged project
    rewardlab demo-annotate DIR --tasks round2.jsonl    a next round (a policy's replies, from
                                                        `rewardlab sample`) labelled by the
                                                        world's rules and its annotators
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardlab.commands.options import Verbs


def run_demo_data(args: argparse.Namespace) -> None:
    from rewardlab.demo import DemoConfig, build_demo_project

    config = DemoConfig(
        n=args.n,
        pairs_per_dialogue=args.pairs,
        audio_only_share=args.audio_only_share,
        seed=args.seed,
        k=args.k,
        annotators=args.annotators,
        annotators_per_task=args.annotators_per_task,
    )
    with build_demo_project(Path(args.out), config, force=args.force) as store:
        print(
            f"demo project at {store.root}: {store.count('dialogues')} dialogues,"
            f" {store.count('tasks')} tasks, {store.count('judgments')} judgments"
            f" from {store.count('annotators')} simulated annotators"
        )


def run_demo_annotate(args: argparse.Namespace) -> None:
    from rewardlab.demo.rounds import label_round
    from rewardlab.store import Store

    with Store(args.project) as store:
        report = label_round(store, args.tasks, seed=args.seed, annotators=args.annotators)
    print(f"{args.project}: {report.summary()}")


def add_parsers(verbs: Verbs) -> None:
    annotate = verbs.add_parser(
        "demo-annotate",
        help="import new tasks into a demo project, labelled by its rules and annotators",
    )
    annotate.add_argument("project", type=Path, help="a project `demo-data` built")
    annotate.add_argument(
        "--tasks", required=True, type=Path, help="tasks .jsonl (`rewardlab sample` writes one)"
    )
    annotate.add_argument("--seed", type=int, default=0, help="the world's seed (its annotators)")
    annotate.add_argument("--annotators", type=int, default=8, help="the world's annotators")
    annotate.set_defaults(run=run_demo_annotate)

    demo = verbs.add_parser("demo-data", help="build the demo world as a judged project")
    demo.add_argument("--out", required=True, type=Path, help="project folder to create")
    demo.add_argument("--n", type=int, default=240, help="dialogues (default 240)")
    demo.add_argument(
        "--pairs", type=int, default=1, help="tasks per dialogue: candidate pairs (default 1)"
    )
    demo.add_argument(
        "--audio-only-share",
        type=float,
        default=0.3,
        help="share of dialogues in audio-only twins (default 0.3)",
    )
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--k", type=int, default=3)
    demo.add_argument("--annotators", type=int, default=8, help="simulated annotators")
    demo.add_argument("--annotators-per-task", type=int, default=3)
    demo.add_argument("--force", action="store_true", help="replace an existing demo project")
    demo.set_defaults(run=run_demo_data)
