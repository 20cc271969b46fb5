"""The annotation store: one SQLite file per project, media files beside it.

    project/
      project.sqlite    WAL journal, foreign keys, versioned migrations
      media/            audio clips; the store keeps relative paths and sha256 hashes

Every mutation goes through `Store.transaction()`, one ``BEGIN IMMEDIATE`` transaction (a
`rewardlab.store.transaction.Transaction`), so concurrent writers (several processes, several
threads) serialise on SQLite's write lock and a process killed mid-write leaves the last
committed state. The queue and the accounts compose their writes from the same transactions;
reads are `query()` (read-only) and the named methods below. Judgment submit is idempotent: the
client generates the judgment id, a retry with the same id and content is acknowledged without
writing anything twice, and the same id with other content is refused (one rule, owned by
`Transaction.submit_judgment`).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from rewardlab.schema import (
    Dialogue,
    Judgment,
    ProjectSettings,
    RecordError,
    Rubric,
    Task,
    check_level,
)
from rewardlab.store.migrations import migrate
from rewardlab.store.transaction import SubmitResult, Transaction, now_text

DB_NAME = "project.sqlite"
MEDIA_DIR = "media"


class StoreError(ValueError):
    """A write the store refuses; nothing was written."""


class NotAProjectError(StoreError):
    pass


def connect(db_path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection with the store's pragmas; transactions are managed by hand."""
    connection = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA busy_timeout = 60000")
    connection.execute("PRAGMA journal_mode = WAL")
    # FULL: an acknowledged judgment survives power loss too, not only a killed process.
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    connection.execute("PRAGMA foreign_keys = ON")
    return connection


class Store:
    def __init__(self, root: Path, *, synchronous: str = "FULL"):
        """Open the project at `root` (see `Store.create` to make one)."""
        self.root = Path(root)
        self.db_path = self.root / DB_NAME
        self.media_root = self.root / MEDIA_DIR
        if not self.db_path.is_file():
            raise NotAProjectError(
                f"no rewardlab project at {self.root} (missing {DB_NAME}):"
                f" create one with `rewardlab init {self.root}`"
            )
        self._lock = threading.RLock()
        self._connection = connect(self.db_path, synchronous=synchronous)
        migrate(self._connection)
        row = self._connection.execute("SELECT settings FROM project").fetchone()
        if row is None:
            raise NotAProjectError(f"{self.db_path} has no project row: it was never initialised")
        self.settings = ProjectSettings.model_validate_json(row[0])
        self._rubric_cache: dict[str, Rubric] = {}

    @classmethod
    def create(cls, root: Path, settings: ProjectSettings | None = None, **kwargs: Any) -> Store:
        root = Path(root)
        if (root / DB_NAME).exists():
            raise StoreError(f"a project already exists at {root}")
        (root / MEDIA_DIR).mkdir(parents=True, exist_ok=True)
        connection = connect(root / DB_NAME)
        try:
            migrate(connection)
            body = (settings or ProjectSettings()).model_dump_json()
            connection.execute(
                "INSERT INTO project (id, settings, created_at) VALUES (1, ?, ?)",
                (body, now_text()),
            )
        finally:
            connection.close()
        return cls(root, **kwargs)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def k(self) -> int:
        return self.settings.k

    # ---- the one write path -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One ``BEGIN IMMEDIATE`` transaction: committed when the block ends, rolled back
        (nothing written) when it raises. Every write to the store goes through here."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._connection, self.k, self.rubric)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def update_settings(self, **changes: Any) -> ProjectSettings:
        merged = self.settings.model_dump() | changes
        if merged["k"] != self.settings.k and self.count("judgments"):
            raise StoreError("K cannot change once judgments are stored: their levels would shift")
        settings = ProjectSettings.model_validate(merged)
        with self.transaction() as tx:
            tx.execute("UPDATE project SET settings = ?", (settings.model_dump_json(),))
        self.settings = settings
        return settings

    def add_annotator(
        self,
        annotator_id: str,
        display_name: str | None = None,
        *,
        role: str = "annotator",
        password_hash: str | None = None,
    ) -> None:
        with self.transaction() as tx:
            if tx.has_annotator(annotator_id):
                raise StoreError(f"annotator {annotator_id!r} already exists")
            tx.add_annotator(annotator_id, display_name, role=role, password_hash=password_hash)

    def add_records(
        self,
        *,
        rubrics: Sequence[Rubric] = (),
        dialogues: Sequence[Dialogue] = (),
        tasks: Sequence[Task] = (),
    ) -> dict[str, int]:
        """Insert rubrics, dialogues and tasks in one transaction; return how many were new.

        A record already stored with identical content is skipped (re-importing a file is
        harmless); one stored with different content is an error and nothing is written.
        """
        kinds = {"rubrics": rubrics, "dialogues": dialogues, "tasks": tasks}
        with self.transaction() as tx:
            return {kind: sum(map(tx.add_record, records)) for kind, records in kinds.items()}

    def assign(self, task_id: str, annotator_id: str, status: str = "assigned") -> None:
        with self.transaction() as tx:
            now = now_text()
            tx.execute(
                "INSERT INTO assignments (task_id, annotator_id, status, assigned_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id, annotator_id)"
                " DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
                (task_id, annotator_id, status, now, now),
            )

    def set_task_rubric(self, task_ids: Sequence[str], rubric: Rubric | None) -> None:
        """Judge these tasks under `rubric` (stored if new), or plainly (None); all or none.

        A task that has judgments keeps its rubric: their scores were given under it.
        """
        with self.transaction() as tx:
            if rubric is not None:
                tx.add_record(rubric)
            rubric_id = rubric.id if rubric else None
            for task_id in task_ids:
                task = tx.task(task_id)
                (judged,) = tx.execute(
                    "SELECT COUNT(*) FROM judgments WHERE task_id = ?", (task_id,)
                ).fetchone()
                if judged and task.rubric_id != rubric_id:
                    raise RecordError(
                        f"task {task_id!r}",
                        "rubric_id",
                        f"{judged} judgments were made under {task.rubric_id!r}; it stays",
                    )
                tx.replace_task(task.model_copy(update={"rubric_id": rubric_id}))
        self._rubric_cache.clear()

    def set_gold(self, task_id: str, gold_level: int | None) -> None:
        """Make a task a gold item whose known answer is `gold_level`, or (None) an ordinary one."""
        if gold_level is not None:
            try:
                check_level(gold_level, self.k, "gold_level")
            except ValueError as error:
                raise RecordError(f"task {task_id!r}", "gold_level", str(error)) from None
        gold = {"gold": gold_level is not None, "gold_level": gold_level}
        with self.transaction() as tx:
            tx.replace_task(tx.task(task_id).model_copy(update=gold))

    def submit_judgment(self, judgment: Judgment) -> SubmitResult:
        return self.submit_judgments([judgment])[0]

    def submit_judgments(self, judgments: Iterable[Judgment]) -> list[SubmitResult]:
        """Store judgments atomically: all are stored, or none (the error names the record).

        A judgment whose id is stored already is a retry: acknowledged when its content is the
        same, refused when not (`rewardlab.store.transaction` owns that rule).
        """
        with self.transaction() as tx:
            return [tx.submit_judgment(judgment) for judgment in judgments]

    def upsert_judgment(self, judgment: Judgment) -> str:
        """Store `judgment`, or replace the one stored with its id; say which happened.

        Returns "created", "updated" or "unchanged" (the same content was stored already).

        For judgments kept elsewhere that can change there (an Argilla response edited after a
        pull). A new id goes through the same checks as `submit_judgment`; a replacement is
        checked the same way and must keep its task and annotator.
        """
        with self.transaction() as tx:
            return tx.upsert_judgment(judgment)

    # ---- reads --------------------------------------------------------------------------

    def query(self, sql: str, params: tuple | dict = ()) -> list[tuple]:
        """The rows of one read-only statement (SELECT, or a PRAGMA that reads).

        SQLite refuses a write here (``PRAGMA query_only``): writes go through `transaction()`.
        """
        with self._lock:
            self._connection.execute("PRAGMA query_only = ON")
            try:
                return self._connection.execute(sql, params).fetchall()
            finally:
                self._connection.execute("PRAGMA query_only = OFF")

    def count(self, table: str) -> int:
        if table not in {"annotators", "rubrics", "dialogues", "tasks", "assignments", "judgments"}:
            raise ValueError(f"unknown table {table!r}")
        return self.query(f"SELECT COUNT(*) FROM {table}")[0][0]

    def rubric(self, rubric_id: str) -> Rubric:
        if rubric_id not in self._rubric_cache:
            rows = self.query("SELECT body FROM rubrics WHERE id = ?", (rubric_id,))
            if not rows:
                raise KeyError(f"no rubric {rubric_id!r} in {self.root}")
            self._rubric_cache[rubric_id] = Rubric.model_validate_json(rows[0][0])
        return self._rubric_cache[rubric_id]

    def rubrics(self) -> list[Rubric]:
        return [Rubric.model_validate_json(b) for (b,) in self.query("SELECT body FROM rubrics")]

    def dialogue(self, dialogue_id: str) -> Dialogue:
        rows = self.query("SELECT body FROM dialogues WHERE id = ?", (dialogue_id,))
        if not rows:
            raise KeyError(f"no dialogue {dialogue_id!r} in {self.root}")
        return Dialogue.model_validate_json(rows[0][0])

    def dialogues(self) -> list[Dialogue]:
        rows = self.query("SELECT body FROM dialogues ORDER BY id")
        return [Dialogue.model_validate_json(body) for (body,) in rows]

    def task(self, task_id: str) -> Task:
        rows = self.query("SELECT body FROM tasks WHERE id = ?", (task_id,))
        if not rows:
            raise KeyError(f"no task {task_id!r} in {self.root}")
        return Task.model_validate_json(rows[0][0], context={"k": self.k})

    def tasks(self) -> list[Task]:
        rows = self.query("SELECT body FROM tasks ORDER BY id")
        return [Task.model_validate_json(body, context={"k": self.k}) for (body,) in rows]

    def annotators(self) -> list[dict[str, str]]:
        rows = self.query("SELECT id, display_name, role, created_at FROM annotators ORDER BY id")
        return [
            dict(zip(("id", "display_name", "role", "created_at"), r, strict=True)) for r in rows
        ]

    def judgment(self, judgment_id: str) -> Judgment | None:
        rows = self.query("SELECT body FROM judgments WHERE id = ?", (judgment_id,))
        return Judgment.model_validate_json(rows[0][0], context={"k": self.k}) if rows else None

    def judgments(
        self, *, task_id: str | None = None, annotator_id: str | None = None
    ) -> list[Judgment]:
        sql, params = "SELECT body FROM judgments", []
        clauses = []
        if task_id is not None:
            clauses.append("task_id = ?")
            params.append(task_id)
        if annotator_id is not None:
            clauses.append("annotator_id = ?")
            params.append(annotator_id)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = self.query(sql + " ORDER BY rowid", tuple(params))
        return [Judgment.model_validate_json(body, context={"k": self.k}) for (body,) in rows]

    def judgment_counts_by_annotator(self, since: datetime | None = None) -> dict[str, int]:
        """Judgments stored per annotator id (only those received at or after `since`)."""
        since_text = "" if since is None else since.isoformat()  # every timestamp sorts after ""
        rows = self.query(
            "SELECT annotator_id, COUNT(*) FROM judgments WHERE received_at >= ? GROUP BY 1",
            (since_text,),
        )
        return dict(rows)

    def judged_task_ids(self) -> set[str]:
        """Ids of the tasks that hold at least one judgment."""
        return {task_id for (task_id,) in self.query("SELECT DISTINCT task_id FROM judgments")}

    def snapshot(self, sql: str, batch: int = 50_000) -> Iterator[list[tuple]]:
        """Rows of a read-only query in batches, for exports of any size.

        Reads through its own read-only connection: WAL gives it a consistent snapshot while
        writers go on, and the store's lock is not held across the caller's loop.
        """
        reader = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            cursor = reader.execute(sql)
            while rows := cursor.fetchmany(batch):
                yield rows
        finally:
            reader.close()

    def integrity_problems(self) -> list[str]:
        """Empty when SQLite's integrity and foreign-key checks pass."""
        problems = [r[0] for r in self.query("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {r}" for r in self.query("PRAGMA foreign_key_check")]
        return problems
