"""Login accounts with known passwords, for trying the annotation app on the demo project.

    rewardlab demo-accounts demo_out    # then: rewardlab serve demo_out

Never use these on real data: anyone who reads this file can log in.
"""

from __future__ import annotations

from rewardlab.store import Store
from rewardlab.store.accounts import add_account, set_active, set_password

# (id, role, password)
DEMO_ACCOUNTS = (
    ("admin", "admin", "admin-demo"),
    ("annotator-1", "annotator", "annotate-demo"),
    ("annotator-2", "annotator", "annotate-demo"),
    ("annotator-3", "annotator", "annotate-demo"),
)


def add_demo_accounts(store: Store) -> tuple[tuple[str, str, str], ...]:
    """Create the demo accounts, or reset their passwords and reactivate them if they exist."""
    existing = {annotator["id"] for annotator in store.annotators()}
    for annotator_id, role, password in DEMO_ACCOUNTS:
        if annotator_id in existing:
            set_password(store, annotator_id, password)
            set_active(store, annotator_id, True)
        else:
            add_account(store, annotator_id, password, role=role)
    return DEMO_ACCOUNTS
