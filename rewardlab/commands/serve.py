"""`rewardlab serve PROJECT [--port 7860]`: the annotation web app for a project.

Part of the composition root: it imports `annotation_ui` lazily, inside the command, so that
the rest of the CLI (and every other rewardlab module) never loads the app.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardlab.commands.options import Verbs


def run_serve(args: argparse.Namespace) -> None:
    from annotation_ui.web import serve

    serve(Path(args.project), host=args.host, port=args.port)


def add_parsers(verbs: Verbs) -> None:
    serve = verbs.add_parser("serve", help="the annotation web app for a project")
    serve.add_argument("project")
    serve.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=7860, help="(default: 7860)")
    serve.set_defaults(run=run_serve)
