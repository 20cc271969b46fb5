"""`rewardlab serve PROJECT [--port 7860]`: the annotation web app for a project.

Part of the composition root: it imports `annotation_ui` lazily, inside the command, so that
the rest of the CLI (and every other rewardlab module) never loads the app.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rewardlab.commands.options import Verbs

# the login throttle's settings (annotation_ui.guard.ThrottleSettings): flag -> (field, help)
THROTTLE_FLAGS = {
    "--login-free-failures": ("free_failures", "failed logins of one name from one address"
                              " before any delay (default 5)"),
    "--login-address-free-failures": ("address_free_failures", "failed logins from one"
                                      " address, any names, before any delay (default 20)"),
    "--login-first-delay": ("first_delay_s", "seconds of the first delay, doubled at each"
                            " further failure (default 1)"),
    "--login-max-delay": ("max_delay_s", "longest delay in seconds (default 300)"),
    "--login-forget-after": ("forget_after_s", "seconds without a failure after which the"
                             " count starts over (default 3600)"),
}  # fmt: skip


def run_serve(args: argparse.Namespace) -> None:
    from annotation_ui.guard import ThrottleSettings
    from annotation_ui.web import serve

    chosen = {field: getattr(args, field) for field, _ in THROTTLE_FLAGS.values()}
    try:
        throttle = ThrottleSettings(**{k: v for k, v in chosen.items() if v is not None})
    except ValueError as error:
        raise SystemExit(f"rewardlab serve: {error}") from None
    origins = tuple(args.allow_origin or ())
    serve(Path(args.project), host=args.host, port=args.port, throttle=throttle,
          cors_origins=origins)  # fmt: skip


def add_parsers(verbs: Verbs) -> None:
    serve = verbs.add_parser("serve", help="the annotation web app for a project")
    serve.add_argument("project")
    serve.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=7860, help="(default: 7860)")
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="ORIGIN",
        help="another origin (https://host:port) whose pages may call the app with the"
        " user's cookie (CORS with credentials); repeatable; default none",
    )
    for flag, (field, help) in THROTTLE_FLAGS.items():
        kind = int if field.endswith("failures") else float
        serve.add_argument(flag, dest=field, type=kind, default=None, help=help)
    serve.set_defaults(run=run_serve)
