"""Project verbs: create a project, import dialogues and tasks into it, export its judgments.

rewardlab init PROJECT [--k 3]                        create an empty project
rewardlab import PROJECT --dialogues D --tasks T      validate, then import all or nothing
rewardlab import PROJECT --judgments J                judgments (JSONL or Parquet), the same way
rewardlab import PROJECT --hf PATH [--map MAP.yaml]   an HF dataset (saved folder or Parquet)
rewardlab export PROJECT --format parquet --out F     judgments with their tasks
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardlab.commands.options import Verbs


def run_init(args: argparse.Namespace) -> None:
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


def run_import(args: argparse.Namespace) -> int:
    """Records first, then judgments (which may name the tasks just imported); each part is
    all or nothing, and judgments are not tried when the records failed."""
    from rewardlab.rubrics import LIBRARY_DIR
    from rewardlab.store import Store
    from rewardlab.store.importer import import_jsonl
    from rewardlab.store.judgment_import import import_judgments

    if args.hf:
        return run_import_hf(args)
    if args.map or args.split:
        raise SystemExit("rewardlab import: --map and --split go with --hf")
    if not (args.dialogues or args.tasks or args.judgments):
        raise SystemExit("rewardlab import: give --dialogues, --tasks and/or --judgments, or --hf")
    # a refused part raises (ImportRejected, JudgmentImportRejected): the CLI prints its
    # report, every bad record named, and exits 1
    with Store(Path(args.project)) as store:
        if args.dialogues or args.tasks:
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
            if not report.ok:
                return 1
        if args.judgments:
            judged = import_judgments(
                store,
                args.judgments,
                annotator_role=args.annotator_role,
                dry_run=args.dry_run,
                progress=True,
            )
            print(judged.summary())
            return 0 if judged.ok else 1
    return 0


def run_import_hf(args: argparse.Namespace) -> int:
    from rewardlab.rubrics import LIBRARY_DIR
    from rewardlab.store import Store
    from rewardlab.store.hf_import import import_hf

    if args.dialogues or args.tasks or args.judgments or args.media:
        raise SystemExit("rewardlab import: --hf comes alone (its map gives every record kind)")
    with Store(Path(args.project)) as store:
        report = import_hf(
            store,
            args.hf,
            args.map or "rewardlab",
            split=args.split,
            annotator_role=args.annotator_role,
            rubric_dir=args.rubrics or LIBRARY_DIR,
            dry_run=args.dry_run,
            progress=True,
        )
        print(report.summary())
        return 0 if report.ok else 1


def run_export(args: argparse.Namespace) -> None:
    from rewardlab.store import Store
    from rewardlab.store.export import (
        export_hf,
        export_jsonl,
        export_parquet,
        export_trl_preference,
    )

    exporter = {
        "parquet": export_parquet,
        "jsonl": export_jsonl,
        "hf": export_hf,
        "trl-preference": export_trl_preference,
    }[args.format]
    with Store(Path(args.project)) as store:
        path = exporter(store, Path(args.out))
        if args.format == "trl-preference":
            ((pairs,),) = store.query("SELECT COUNT(*) FROM judgments WHERE level != 0")
            print(f"exported {pairs} preference pairs (ties left out) to {path}")
        else:
            print(f"exported {store.count('judgments')} judgments to {path}")


def add_parsers(verbs: Verbs) -> None:
    init = verbs.add_parser("init", help="create an empty project")
    init.add_argument("project", help="folder for the project (created)")
    init.add_argument("--name", help="display name (default: the folder's name)")
    init.add_argument("--k", type=int, default=3, help="levels run -K..K (default 3: seven)")
    init.add_argument("--annotators-per-task", type=int, default=3, help="overlap k (default 3)")
    init.add_argument("--gold-share", type=float, default=0.0, help="share of gold items served")
    init.add_argument("--hide-transcripts", action="store_true", help="annotators judge by ear")
    init.add_argument("--require-full-listen", action="store_true", help="play clips to the end")
    init.set_defaults(run=run_init)

    imp = verbs.add_parser(
        "import", help="import dialogues and tasks from JSONL (+ audio), and judgments"
    )
    imp.add_argument("project")
    imp.add_argument("--dialogues", type=Path, help="dialogues.jsonl")
    imp.add_argument("--tasks", type=Path, help="tasks.jsonl")
    imp.add_argument(
        "--judgments",
        type=Path,
        help="judgments .jsonl or .parquet (the data model's fields, or an export's rows)",
    )
    imp.add_argument(
        "--hf",
        type=Path,
        help="an HF dataset: a save_to_disk folder, a .parquet file or a folder of them",
    )
    imp.add_argument(
        "--map",
        help="YAML map of the --hf dataset's columns to records (default: rewardlab, the"
        " layout of `export --format hf`)",
    )
    imp.add_argument("--split", help="the split of a --hf DatasetDict folder")
    imp.add_argument(
        "--annotator-role",
        default="annotator",
        choices=["annotator", "admin", "simulated"],
        help="role of annotators first seen in judgments (default annotator; no password)",
    )
    imp.add_argument(
        "--media", type=Path, help="folder audio paths are relative to (default: the JSONL's)"
    )
    imp.add_argument("--rubrics", type=Path, help="rubric folder (default: the shipped library)")
    imp.add_argument(
        "--dry-run", action="store_true", help="report every bad record, write nothing"
    )
    imp.set_defaults(run=run_import)

    exp = verbs.add_parser("export", help="export judgments with their tasks")
    exp.add_argument("project")
    exp.add_argument(
        "--format",
        choices=["parquet", "jsonl", "hf", "trl-preference"],
        default="parquet",
        help="trl-preference: prompt/chosen/rejected/margin for TRL's RewardTrainer and"
        " DPOTrainer (ties left out; .parquet or .jsonl by the --out suffix)",
    )
    exp.add_argument("--out", required=True, help="output file (a folder for --format hf)")
    exp.set_defaults(run=run_export)
