"""`rewardlab` command line: one verb per job.

    rewardlab init PROJECT [--k 3]                        create an empty project
    rewardlab import PROJECT --dialogues D --tasks T      validate, then import all or nothing
    rewardlab export PROJECT --format parquet --out F     judgments with their tasks
    rewardlab stats PROJECT                               volume, agreement, bias, gold
    rewardlab demo-data --out DIR --n 240                 the demo world, judged

This module is the composition root: the only rewardlab module that may import
`annotation_ui` (later verbs such as `serve` do, lazily).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rewardlab.audio import AudioError
from rewardlab.schema import RecordError


def cmd_init(args: argparse.Namespace) -> None:
    from rewardlab.schema import ProjectSettings
    from rewardlab.store import Store

    settings = ProjectSettings(
        name=args.name or Path(args.project).name,
        k=args.k,
        annotators_per_task=args.annotators_per_task,
        gold_share=args.gold_share,
        show_transcripts=not args.hide_transcripts,
        require_full_listen=args.require_full_listen,
    )
    with Store.create(Path(args.project), settings) as store:
        print(f"created project {store.root} (K={store.k}, {2 * store.k + 1} levels)")


def cmd_import(args: argparse.Namespace) -> int:
    from rewardlab.rubrics import LIBRARY_DIR
    from rewardlab.store import Store
    from rewardlab.store.importer import import_jsonl

    with Store(Path(args.project)) as store:
        report = import_jsonl(
            store,
            dialogues=args.dialogues,
            tasks=args.tasks,
            media_dir=args.media,
            rubric_dir=args.rubrics or LIBRARY_DIR,
            dry_run=args.dry_run,
            progress=True,
        )
    print(report.summary())
    return 0 if report.ok else 1


def cmd_export(args: argparse.Namespace) -> None:
    from rewardlab.store import Store
    from rewardlab.store.export import export_hf, export_jsonl, export_parquet

    exporter = {"parquet": export_parquet, "jsonl": export_jsonl, "hf": export_hf}[args.format]
    with Store(Path(args.project)) as store:
        path = exporter(store, Path(args.out))
        print(f"exported {store.count('judgments')} judgments to {path}")


def cmd_stats(args: argparse.Namespace) -> None:
    import polars as pl

    from rewardlab.data import per_annotator, project_stats
    from rewardlab.store import Store
    from rewardlab.store.export import judgments_frame

    with Store(Path(args.project)) as store:
        judgments = judgments_frame(store)
        stats = {
            "project": store.settings.name,
            "k": store.k,
            **{table: store.count(table) for table in ("dialogues", "tasks", "annotators")},
            **project_stats(judgments, store.k),
        }
        annotators = per_annotator(judgments, store.k)
    if args.json:
        print(json.dumps(stats | {"per_annotator": annotators.to_dicts()}, indent=2))
    else:
        width = max(len(key) for key in stats)
        for key, value in stats.items():
            print(f"{key:<{width}}  {value}")
        if annotators.height:
            with pl.Config(tbl_rows=100, tbl_hide_dataframe_shape=True, float_precision=3):
                print(annotators)
    if args.plot and judgments.height:
        from rewardlab.eval.annotation_plots import plot_annotation_overview

        print(f"plot: {plot_annotation_overview(judgments, store.k, Path(args.plot))}")


def cmd_demo_data(args: argparse.Namespace) -> None:
    from rewardlab.demo import DemoConfig, build_demo_project

    config = DemoConfig(
        n=args.n,
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rewardlab", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    init = verbs.add_parser("init", help="create an empty project")
    init.add_argument("project", help="folder for the project (created)")
    init.add_argument("--name", help="display name (default: the folder's name)")
    init.add_argument("--k", type=int, default=3, help="levels run -K..K (default 3: seven)")
    init.add_argument("--annotators-per-task", type=int, default=3, help="overlap k (default 3)")
    init.add_argument("--gold-share", type=float, default=0.0, help="share of gold items served")
    init.add_argument("--hide-transcripts", action="store_true", help="annotators judge by ear")
    init.add_argument("--require-full-listen", action="store_true", help="play clips to the end")
    init.set_defaults(run=cmd_init)

    imp = verbs.add_parser("import", help="import dialogues and tasks from JSONL (+ audio)")
    imp.add_argument("project")
    imp.add_argument("--dialogues", type=Path, help="dialogues.jsonl")
    imp.add_argument("--tasks", type=Path, help="tasks.jsonl")
    imp.add_argument(
        "--media", type=Path, help="folder audio paths are relative to (default: the JSONL's)"
    )
    imp.add_argument("--rubrics", type=Path, help="rubric folder (default: the shipped library)")
    imp.add_argument(
        "--dry-run", action="store_true", help="report every bad record, write nothing"
    )
    imp.set_defaults(run=cmd_import)

    exp = verbs.add_parser("export", help="export judgments with their tasks")
    exp.add_argument("project")
    exp.add_argument("--format", choices=["parquet", "jsonl", "hf"], default="parquet")
    exp.add_argument("--out", required=True, help="output file (a folder for --format hf)")
    exp.set_defaults(run=cmd_export)

    stats = verbs.add_parser("stats", help="volume, agreement, position bias, gold accuracy")
    stats.add_argument("project")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--plot", type=Path, help="also write an overview figure (PNG)")
    stats.set_defaults(run=cmd_stats)

    demo = verbs.add_parser("demo-data", help="build the demo world as a judged project")
    demo.add_argument("--out", required=True, type=Path, help="project folder to create")
    demo.add_argument("--n", type=int, default=240, help="dialogues (default 240)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--k", type=int, default=3)
    demo.add_argument("--annotators", type=int, default=8, help="simulated annotators")
    demo.add_argument("--annotators-per-task", type=int, default=3)
    demo.add_argument("--force", action="store_true", help="replace an existing demo project")
    demo.set_defaults(run=cmd_demo_data)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (RecordError, AudioError, FileExistsError, FileNotFoundError, ValueError) as error:
        # RecordError and the store's errors already name the record and the field
        print(f"rewardlab {args.verb}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
