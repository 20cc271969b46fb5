"""The annotation store: SQLite (WAL) per project, migrations, import and export."""

from rewardlab.store.store import (
    DB_NAME,
    MEDIA_DIR,
    NotAProjectError,
    Store,
    StoreError,
)
from rewardlab.store.transaction import SubmitResult, Transaction

__all__ = [
    "DB_NAME",
    "MEDIA_DIR",
    "NotAProjectError",
    "Store",
    "StoreError",
    "SubmitResult",
    "Transaction",
]
