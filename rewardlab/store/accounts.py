"""Login accounts and sessions for the annotation web app, kept in the project's store.

    add_account(store, "ann-1", "correct horse battery")       # role "annotator" or "admin"
    account = authenticate(store, "ann-1", "correct horse battery")   # None when wrong
    token = open_session(store, account.id)                      # the browser cookie's value
    session_account(store, token)                                # the Account, or None

Passwords are stored as scrypt hashes (stdlib `hashlib.scrypt`, a fresh 16-byte salt each),
encoded ``scrypt$n$r$p$<salt>$<hash>``. A session token is 32 random bytes; the store keeps
only its sha256, so a copy of the project file lets nobody log in. Changing a password or
deactivating an account ends its sessions. Writes go through the store's one write path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

from pydantic import TypeAdapter, ValidationError

from rewardlab.schema import Identifier, utc_now
from rewardlab.store.store import Store, StoreError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1  # about 16 MiB and 40 ms per hash
MIN_PASSWORD_LENGTH = 8
SESSION_LIFETIME = timedelta(hours=12)  # a working day; then log in again
LOGIN_ROLES = ("annotator", "admin")  # simulated annotators never log in


@dataclass(frozen=True)
class Account:
    id: str
    display_name: str
    role: str
    active: bool

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    fields = [str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P)]
    fields += [base64.b64encode(salt).decode(), base64.b64encode(digest).decode()]
    return "$".join(["scrypt", *fields])


def verify_password(password: str, encoded: str) -> bool:
    """True when `password` matches `encoded` (a `hash_password` result); constant time."""
    try:
        scheme, n, r, p, salt, digest = encoded.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p)
        )
    except ValueError:  # not our format: no password can match it
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


@cache
def _no_account_hash() -> str:
    """Checked when the account does not exist, so a wrong name costs as long as a wrong
    password and response times do not tell which names exist."""
    return hash_password(secrets.token_urlsafe(16))


def _checked_password(annotator_id: str, password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StoreError(
            f"annotator {annotator_id!r}: password: give at least {MIN_PASSWORD_LENGTH} characters"
        )
    return hash_password(password)


def add_account(
    store: Store,
    annotator_id: str,
    password: str,
    *,
    display_name: str | None = None,
    role: str = "annotator",
) -> Account:
    """A new annotator who can log in (`role` "annotator" or "admin")."""
    try:
        TypeAdapter(Identifier).validate_python(annotator_id)
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        raise StoreError(f"annotator {annotator_id!r}: id: {message}") from None
    if role not in LOGIN_ROLES:
        raise StoreError(f"annotator {annotator_id!r}: role {role!r} is not one of {LOGIN_ROLES}")
    hashed = _checked_password(annotator_id, password)
    store.add_annotator(annotator_id, display_name, role=role, password_hash=hashed)
    return Account(annotator_id, display_name or annotator_id, role, active=True)


def _update_account(store: Store, annotator_id: str, sql: str, params: tuple) -> None:
    """Run an UPDATE of one annotator row and end their sessions, in one transaction."""
    with store.transaction() as tx:
        if tx.execute(sql, (*params, annotator_id)).rowcount == 0:
            raise StoreError(f"annotator {annotator_id!r}: no such annotator")
        tx.execute("DELETE FROM sessions WHERE annotator_id = ?", (annotator_id,))


def set_password(store: Store, annotator_id: str, password: str) -> None:
    """Set or change a password; the annotator's open sessions end."""
    hashed = _checked_password(annotator_id, password)
    _update_account(
        store, annotator_id, "UPDATE annotators SET password_hash = ? WHERE id = ?", (hashed,)
    )


def set_active(store: Store, annotator_id: str, active: bool) -> None:
    """(De)activate an account: an inactive one cannot log in, its sessions end at once."""
    sql = "UPDATE annotators SET active = ? WHERE id = ?"
    _update_account(store, annotator_id, sql, (int(active),))


def _account(row: tuple) -> Account:
    return Account(id=row[0], display_name=row[1], role=row[2], active=bool(row[3]))


def account(store: Store, annotator_id: str) -> Account | None:
    rows = store.query(
        "SELECT id, display_name, role, active FROM annotators WHERE id = ?", (annotator_id,)
    )
    return _account(rows[0]) if rows else None


def accounts(store: Store) -> list[Account]:
    rows = store.query("SELECT id, display_name, role, active FROM annotators ORDER BY id")
    return [_account(row) for row in rows]


def authenticate(store: Store, annotator_id: str, password: str) -> Account | None:
    """The account when the password is right and the account may log in, else None."""
    rows = store.query(
        "SELECT id, display_name, role, active, password_hash FROM annotators WHERE id = ?",
        (annotator_id,),
    )
    encoded = rows[0][4] if rows and rows[0][4] else _no_account_hash()
    matches = verify_password(password, encoded)
    if not rows or not rows[0][4] or not matches:
        return None
    account = _account(rows[0])
    return account if account.active and account.role in LOGIN_ROLES else None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def open_session(store: Store, annotator_id: str, lifetime: timedelta = SESSION_LIFETIME) -> str:
    """A new session for the annotator; returns the token (only its hash is stored)."""
    token = secrets.token_urlsafe(32)
    now = utc_now()
    with store.transaction() as tx:
        tx.execute("DELETE FROM sessions WHERE expires_at < ?", (now.isoformat(),))
        tx.execute(
            "INSERT INTO sessions (token_sha256, annotator_id, created_at, expires_at)"
            " VALUES (?, ?, ?, ?)",
            (_token_hash(token), annotator_id, now.isoformat(), (now + lifetime).isoformat()),
        )
    return token


def session_account(store: Store, token: str) -> Account | None:
    """The account a live session token belongs to; None if unknown, expired or inactive."""
    rows = store.query(
        "SELECT a.id, a.display_name, a.role, a.active FROM sessions s"
        " JOIN annotators a ON a.id = s.annotator_id"
        " WHERE s.token_sha256 = ? AND s.expires_at > ?",
        (_token_hash(token), utc_now().isoformat()),
    )
    if not rows:
        return None
    account = _account(rows[0])
    return account if account.active else None


def close_session(store: Store, token: str) -> None:
    with store.transaction() as tx:
        tx.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_token_hash(token),))
