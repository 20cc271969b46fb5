"""Versioned schema migrations for the project store.

The schema version lives in SQLite's ``PRAGMA user_version``. Each migration runs in its own
transaction together with the version bump, so a crash mid-migration leaves the previous
version intact. Add a migration by appending to `MIGRATIONS`; never edit a released one.

Records are stored as validated JSON (``body``) plus the columns queries need, so the data
model can grow fields without a migration for each.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 1: the initial schema
    """
    CREATE TABLE project (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        settings TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE annotators (
        id TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('annotator', 'admin', 'simulated')),
        password_hash TEXT,
        created_at TEXT NOT NULL
    );
    CREATE TABLE rubrics (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        body TEXT NOT NULL
    );
    CREATE TABLE dialogues (
        id TEXT PRIMARY KEY,
        n_turns INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        dialogue_id TEXT NOT NULL REFERENCES dialogues (id),
        turn_index INTEGER NOT NULL,
        rubric_id TEXT REFERENCES rubrics (id),
        gold INTEGER NOT NULL,
        body TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX tasks_by_dialogue ON tasks (dialogue_id);
    CREATE TABLE assignments (
        task_id TEXT NOT NULL REFERENCES tasks (id),
        annotator_id TEXT NOT NULL REFERENCES annotators (id),
        status TEXT NOT NULL CHECK (status IN ('assigned', 'skipped', 'done', 'flagged')),
        assigned_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (task_id, annotator_id)
    );
    CREATE INDEX assignments_by_annotator ON assignments (annotator_id, status);
    CREATE TABLE judgments (
        id TEXT PRIMARY KEY,
        task_id TEXT NOT NULL REFERENCES tasks (id),
        annotator_id TEXT NOT NULL REFERENCES annotators (id),
        level INTEGER NOT NULL,
        body TEXT NOT NULL,
        received_at TEXT NOT NULL,
        UNIQUE (task_id, annotator_id)
    );
    CREATE INDEX judgments_by_annotator ON judgments (annotator_id);
    """,
    # 2: the annotation web app: login accounts, sessions, and each assignment's state (the
    # presentation order and judgment id it was served with, the annotator's draft, a flag);
    # each task counts the judgments people (not simulated annotators) gave it, kept by a
    # trigger on every write path, so the queue finds tasks with room without counting
    """
    ALTER TABLE annotators ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE sessions (
        token_sha256 TEXT PRIMARY KEY,
        annotator_id TEXT NOT NULL REFERENCES annotators (id),
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL
    );
    CREATE INDEX sessions_by_annotator ON sessions (annotator_id);
    ALTER TABLE assignments ADD COLUMN shown_order TEXT
        CHECK (shown_order IN ('policy_first', 'reference_first'));
    ALTER TABLE assignments ADD COLUMN judgment_id TEXT;
    ALTER TABLE assignments ADD COLUMN draft TEXT;
    ALTER TABLE assignments ADD COLUMN flag_reason TEXT;
    CREATE INDEX assignments_by_status ON assignments (status, task_id);
    ALTER TABLE tasks ADD COLUMN people_judgments INTEGER NOT NULL DEFAULT 0;
    UPDATE tasks SET people_judgments = (
        SELECT COUNT(*) FROM judgments j JOIN annotators a ON a.id = j.annotator_id
        WHERE j.task_id = tasks.id AND a.role != 'simulated'
    );
    CREATE TRIGGER judgments_count_people AFTER INSERT ON judgments
    WHEN (SELECT role FROM annotators WHERE id = NEW.annotator_id) != 'simulated'
    BEGIN
        UPDATE tasks SET people_judgments = people_judgments + 1 WHERE id = NEW.task_id;
    END;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNewError(RuntimeError):
    pass


def _statements(script: str) -> list[str]:
    """The script's statements; a trigger's body (``BEGIN ...; END``) stays whole."""
    statements, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending)
            pending = ""
    return statements


def schema_version(connection: sqlite3.Connection) -> int:
    return connection.execute("PRAGMA user_version").fetchone()[0]


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the database to `SCHEMA_VERSION`; return the version it started at."""
    start = schema_version(connection)
    if start > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the store has schema version {start}, this rewardlab knows up to {SCHEMA_VERSION}:"
            " upgrade rewardlab"
        )
    for version in range(start + 1, SCHEMA_VERSION + 1):
        # executescript would COMMIT on its own; run statement by statement inside one
        # transaction so the DDL and the version bump land together or not at all.
        connection.execute("BEGIN IMMEDIATE")
        try:
            # another process may have migrated while we waited for the write lock
            if schema_version(connection) < version:
                for statement in _statements(MIGRATIONS[version - 1]):
                    connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return start
