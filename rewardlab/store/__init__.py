"""The annotation store: SQLite (WAL) per project, migrations, import and export."""

from rewardlab.store.store import (
    DB_NAME,
    MEDIA_DIR,
    NotAProjectError,
    Store,
    StoreError,
    SubmitResult,
)

__all__ = ["DB_NAME", "MEDIA_DIR", "NotAProjectError", "Store", "StoreError", "SubmitResult"]
