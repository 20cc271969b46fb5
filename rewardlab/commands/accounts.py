"""Login accounts for the annotation web app.

rewardlab add-annotator PROJECT ID [--admin]          a login account for the web app
rewardlab demo-accounts PROJECT                       demo logins with known passwords
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rewardlab.commands.options import Verbs


def run_add_annotator(args: argparse.Namespace) -> None:
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


def run_demo_accounts(args: argparse.Namespace) -> None:
    from rewardlab.demo.accounts import add_demo_accounts
    from rewardlab.store import Store

    with Store(Path(args.project)) as store:
        created = add_demo_accounts(store)
    print(f"start the annotation app: rewardlab serve {args.project}")
    print("then open http://127.0.0.1:7860/ and log in as (id, password, role):")
    for annotator_id, role, password in created:
        print(f"  {annotator_id:<12} {password:<14} {role}")


def add_parsers(verbs: Verbs) -> None:
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
    add.set_defaults(run=run_add_annotator)

    demo_accounts = verbs.add_parser(
        "demo-accounts", help="demo logins with known passwords (never on real data)"
    )
    demo_accounts.add_argument("project")
    demo_accounts.set_defaults(run=run_demo_accounts)
