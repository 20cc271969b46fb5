"""`rewardlab` command line: one verb per job.

    rewardlab init PROJECT [--k 3]                        create an empty project
    rewardlab import PROJECT --dialogues D --tasks T      validate, then import all or nothing
    rewardlab export PROJECT --format parquet --out F     judgments with their tasks
    rewardlab stats PROJECT                               volume, agreement, bias, gold
    rewardlab demo-data --out DIR --n 240                 the demo world, judged
    rewardlab tiny-grm --project P --out DIR              a random-init tiny GRM backbone
    rewardlab train-grm --config training/grm_demo.yaml   train + evaluate a GRM
    rewardlab judge MODEL --project P --out scores.jsonl  score tasks with a trained GRM
    rewardlab calibrate --grm CKPT --data P --method M    fit the reward mapper's calibration
    rewardlab evaluate --grm CKPT --data P --out DIR      report.html + metrics.json
    rewardlab tiny-policy --project P --out DIR           a tiny audio policy, warm-started
    rewardlab ppo --config training/ppo_demo.yaml         PPO of a policy against a GRM
    rewardlab argilla push PROJECT                        tasks to Argilla (ARGILLA_API_URL/KEY)
    rewardlab argilla pull PROJECT                        submitted Argilla responses as judgments
    rewardlab add-annotator PROJECT ID [--admin]          a login account for the web app
    rewardlab demo-accounts PROJECT                       demo logins with known passwords
    rewardlab serve PROJECT [--port 7860]                 the annotation web app

This module is the composition root: the only rewardlab module that may import
`annotation_ui` (`serve` and `argilla` do, lazily).
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


def cmd_tiny_grm(args: argparse.Namespace) -> None:
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
    )
    print(f"tiny {'text' if args.text_only else 'audio'} GRM backbone at {out}")


def cmd_train_grm(args: argparse.Namespace) -> None:
    from rewardlab.grm.recipe import parse_config, train_grm

    report = train_grm(parse_config(args.config, args.overrides))
    for name, value in report.items():
        print(f"{name:<34} {value:.3f}")


def cmd_tiny_policy(args: argparse.Namespace) -> None:
    from rewardlab.grm.tiny import TinySize
    from rewardlab.rl.recipe import build_tiny_policy

    size = TinySize(hidden_size=args.hidden, layers=args.layers)
    result = build_tiny_policy(
        args.project, args.out, steps=args.steps, grm_path=args.grm, size=size, seed=args.seed
    )
    print(
        f"tiny audio policy at {args.out}: warm start on {result['pairs']} replies, loss"
        f" {result['first_loss']:.2f} -> {result['last_loss']:.2f}"
    )


def cmd_ppo(args: argparse.Namespace) -> None:
    from rewardlab.rl.recipe import parse_ppo_config, run_ppo

    report = run_ppo(parse_ppo_config(args.config, args.overrides))
    if "gain" in report:
        before, after, gain = report["before"], report["after"], report["gain"]
        print(
            f"held-out GRM reward ({report['eval_prompts']} prompts x"
            f" {before['samples_per_prompt']} replies): before {before['reward_mean']:+.3f} ±"
            f" {before['reward_sem']:.3f}, after {after['reward_mean']:+.3f} ±"
            f" {after['reward_sem']:.3f}; gain {gain['mean']:+.3f} ± {gain['sem']:.3f}"
        )


def cmd_judge(args: argparse.Namespace) -> None:
    from rewardlab.grm.scoring import judge_project, write_scores

    dist = judge_project(
        args.model, args.project, tasks_file=args.tasks, mode=args.mode, batch_size=args.batch_size
    )
    write_scores(dist, args.out)
    print(f"judged {len(dist.task_ids)} tasks ({args.mode}) -> {args.out}")


def cmd_calibrate(args: argparse.Namespace) -> None:
    from rewardlab.grm.checkpoint import GRMCheckpoint
    from rewardlab.grm.evaluate import calibrate

    mapper, summary = calibrate(
        args.grm,
        args.data,
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


def cmd_evaluate(args: argparse.Namespace) -> None:
    from rewardlab.grm.evaluate import HEADLINE_METRICS, evaluate

    report, metrics = evaluate(
        args.grm,
        args.data,
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


def cmd_argilla(args: argparse.Namespace) -> int:
    from annotation_ui.argilla_bridge import ArgillaSyncError, connect, pull, push, sdk_error
    from rewardlab.store import Store

    try:
        with Store(Path(args.project)) as store:
            client = connect()
            prefix = args.dataset or store.root.resolve().name
            place = {"workspace": args.workspace, "prefix": prefix}
            try:
                if args.action == "push":
                    report = push(store, client, audio_url=args.audio_url, **place)
                else:
                    report = pull(store, client, **place)
            except sdk_error() as error:  # e.g. a key whose role may not create datasets
                raise ArgillaSyncError(f"Argilla refused: {error}") from None
    except ArgillaSyncError as error:  # no extra, no server, a refused key: one line
        print(f"rewardlab argilla: error: {error}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.ok else 1


def cmd_add_annotator(args: argparse.Namespace) -> None:
    import secrets

    from rewardlab.store import Store
    from rewardlab.store.accounts import add_account

    if args.password_stdin:
        password, generated = sys.stdin.readline().rstrip("\n"), False
    else:
        password, generated = secrets.token_urlsafe(12), True
    role = "admin" if args.admin else "annotator"
    with Store(Path(args.project)) as store:
        add_account(store, args.id, password, display_name=args.name, role=role)
    print(f"added {role} {args.id!r} to {args.project}")
    if generated:
        print(f"password (shown once): {password}")


def cmd_demo_accounts(args: argparse.Namespace) -> None:
    from rewardlab.demo.accounts import add_demo_accounts
    from rewardlab.store import Store

    with Store(Path(args.project)) as store:
        created = add_demo_accounts(store)
    print(f"start the annotation app: rewardlab serve {args.project}")
    print("then open http://127.0.0.1:7860/ and log in as (id, password, role):")
    for annotator_id, role, password in created:
        print(f"  {annotator_id:<12} {password:<14} {role}")


def cmd_serve(args: argparse.Namespace) -> None:
    from annotation_ui.web import serve

    serve(Path(args.project), host=args.host, port=args.port)


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
    demo.set_defaults(run=cmd_demo_data)

    tiny = verbs.add_parser("tiny-grm", help="a random-init tiny GRM backbone for a project")
    tiny.add_argument("--project", required=True, type=Path, help="its texts train the tokenizer")
    tiny.add_argument("--out", required=True, type=Path)
    tiny.add_argument("--text-only", action="store_true", help="a text LM reading transcripts")
    tiny.add_argument("--hidden", type=int, default=96, help="hidden size (default 96)")
    tiny.add_argument("--layers", type=int, default=3, help="decoder layers (default 3)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=cmd_tiny_grm)

    train = verbs.add_parser(
        "train-grm",
        help="train and evaluate a GRM",
        epilog="any GRMConfig field as a flag overrides the YAML, e.g. --max_steps 50",
    )
    train.add_argument("--config", required=True, type=Path, help="a training/*.yaml recipe")
    train.set_defaults(run=cmd_train_grm)

    policy = verbs.add_parser(
        "tiny-policy", help="a tiny audio policy for a project, warm-started on its replies"
    )
    policy.add_argument("--project", required=True, type=Path, help="texts, replies, audio")
    policy.add_argument("--out", required=True, type=Path)
    policy.add_argument(
        "--grm", type=Path, help="a trained GRM whose held-out split stays unseen (default 0.2/0)"
    )
    policy.add_argument("--steps", type=int, default=300, help="warm-start steps (default 300)")
    policy.add_argument("--hidden", type=int, default=128, help="hidden size (default 128)")
    policy.add_argument("--layers", type=int, default=4, help="decoder layers (default 4)")
    policy.add_argument("--seed", type=int, default=0)
    policy.set_defaults(run=cmd_tiny_policy)

    ppo = verbs.add_parser(
        "ppo",
        help="PPO of an audio policy against a GRM",
        epilog="any AudioPPOConfig field as a flag overrides the YAML, e.g. --max_steps 10",
    )
    ppo.add_argument("--config", required=True, type=Path, help="a training/ppo_*.yaml recipe")
    ppo.set_defaults(run=cmd_ppo)

    judge = verbs.add_parser("judge", help="score a project's tasks with a trained GRM")
    judge.add_argument("model", type=Path, help="a saved GRM (e.g. runs/grm/final)")
    judge.add_argument("--project", required=True, type=Path, help="dialogues, rubrics, media")
    judge.add_argument("--tasks", type=Path, help="tasks.jsonl to score (default: all tasks)")
    judge.add_argument("--out", required=True, type=Path, help="scores, one JSON line per task")
    judge.add_argument("--mode", choices=["direct", "reasoning"], default="direct")
    judge.add_argument("--batch-size", type=int, default=16)
    judge.set_defaults(run=cmd_judge)

    for verb, help_text in (
        ("calibrate", "fit a GRM's reward calibration on held-out judgments"),
        ("evaluate", "a GRM and its reward on held-out tasks: report + JSON"),
    ):
        held = verbs.add_parser(
            verb,
            help=help_text,
            epilog="tasks: the GRM's held-out split (eval_share, split_seed from CKPT's"
            " grm_config.yaml unless given), halved: calibrate fits on one half, evaluate"
            " reports on the other",
        )
        held.add_argument("--grm", required=True, type=Path, help="a trained GRM checkpoint")
        held.add_argument("--data", required=True, type=Path, help="project or Parquet export")
        held.add_argument("--eval-share", type=float, help="held-out share (1: all of --data)")
        held.add_argument("--split-seed", type=int, help="seed of the train/held-out split")
        held.add_argument("--batch-size", type=int, default=16)
        if verb == "calibrate":
            held.add_argument("--method", required=True, choices=["isotonic", "temperature"])
            held.add_argument(
                "--normalize",
                choices=["none", "running", "fixed"],
                help="reward normalisation (default: keep the saved mapper's, else none);"
                " fixed: mean and std of these tasks' rewards",
            )
            held.add_argument("--clip", type=float, help="clip rewards to [-C, C] (0: no clip)")
            held.set_defaults(run=cmd_calibrate)
        else:
            held.add_argument("--out", required=True, type=Path, help="folder for the report")
            held.add_argument(
                "--truth",
                action="store_true",
                help="score against task metadata truth.level where present (the demo"
                " world) instead of the annotators' levels",
            )
            held.set_defaults(run=cmd_evaluate)

    argilla = verbs.add_parser("argilla", help="Argilla as the team backend (extra: argilla)")
    actions = argilla.add_subparsers(dest="action", required=True, metavar="ACTION")
    push = actions.add_parser("push", help="add the project's tasks to Argilla as records")
    pull = actions.add_parser("pull", help="store submitted Argilla responses as judgments")
    for action in (push, pull):
        action.add_argument("project")
        action.add_argument("--workspace", default="rewardlab", help="(default: rewardlab)")
        action.add_argument(
            "--dataset",
            help="dataset name (default: the project folder's); rubric tasks go to"
            " NAME-rubric-<rubric id>",
        )
        action.set_defaults(run=cmd_argilla)
    push.add_argument(
        "--audio-url",
        help="players load URL/<media path> (default: clips embedded as data URIs)",
    )

    add = verbs.add_parser("add-annotator", help="add a login account for the web app")
    add.add_argument("project")
    add.add_argument("id", help="the login name and annotator id")
    add.add_argument("--name", help="display name (default: the id)")
    add.add_argument("--admin", action="store_true", help="may use the admin pages")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from stdin (default: generate one and print it once)",
    )
    add.set_defaults(run=cmd_add_annotator)

    demo_accounts = verbs.add_parser(
        "demo-accounts", help="demo logins with known passwords (never on real data)"
    )
    demo_accounts.add_argument("project")
    demo_accounts.set_defaults(run=cmd_demo_accounts)

    serve = verbs.add_parser("serve", help="the annotation web app for a project")
    serve.add_argument("project")
    serve.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=7860, help="(default: 7860)")
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.verb not in ("train-grm", "ppo"):  # these pass flags on to their config
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
