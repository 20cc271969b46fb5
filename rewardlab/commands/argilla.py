"""Argilla as the team backend (extra: argilla; ARGILLA_API_URL / ARGILLA_API_KEY).

    rewardlab argilla push PROJECT                        tasks to Argilla as records
    rewardlab argilla pull PROJECT                        submitted Argilla responses as judgments

Part of the composition root: it imports `annotation_ui.argilla_bridge` lazily, inside the
command, so that `import rewardlab.cli` loads neither the bridge nor the Argilla SDK.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rewardlab.commands.options import Verbs


def run_argilla(args: argparse.Namespace) -> int:
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


def add_parsers(verbs: Verbs) -> None:
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
        action.set_defaults(run=run_argilla)
    push.add_argument(
        "--audio-url",
        help="players load URL/<media path> (default: clips embedded as data URIs)",
    )
