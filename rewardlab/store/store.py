"""The annotation store: one SQLite file per project, media files beside it.

    project/
      project.sqlite    WAL journal, foreign keys, versioned migrations
      media/            audio clips; the store keeps relative paths and sha256 hashes

Every mutation goes through `Store._write()`, one ``BEGIN IMMEDIATE`` transaction, so
concurrent writers (several processes, several threads) serialise on SQLite's write lock and a
process killed mid-write leaves the last committed state. Judgment submit is idempotent: the
client generates the judgment id, and a retry with the same id and content is acknowledged
without writing anything twice.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from rewardlab.rubrics import validate_rubric_scores
from rewardlab.schema import (
    Dialogue,
    Judgment,
    ProjectSettings,
    RecordError,
    Rubric,
    Task,
    check_level,
    utc_now,
)
from rewardlab.store.migrations import migrate

DB_NAME = "project.sqlite"
MEDIA_DIR = "media"
ANNOTATOR_ROLES = ("annotator", "admin", "simulated")


class StoreError(ValueError):
    """A write the store refuses; nothing was written."""


class NotAProjectError(StoreError):
    pass


class SubmitResult(NamedTuple):
    judgment_id: str
    created: bool  # False: the same judgment was already stored (an idempotent retry)


def _now() -> str:
    return utc_now().isoformat()


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
                "INSERT INTO project (id, settings, created_at) VALUES (1, ?, ?)", (body, _now())
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
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def update_settings(self, **changes: Any) -> ProjectSettings:
        merged = self.settings.model_dump() | changes
        if merged["k"] != self.settings.k and self.count("judgments"):
            raise StoreError("K cannot change once judgments are stored: their levels would shift")
        settings = ProjectSettings.model_validate(merged)
        with self._write() as db:
            db.execute("UPDATE project SET settings = ?", (settings.model_dump_json(),))
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
        if role not in ANNOTATOR_ROLES:
            raise StoreError(
                f"annotator {annotator_id!r}: role {role!r} is not one of {ANNOTATOR_ROLES}"
            )
        with self._write() as db:
            if db.execute("SELECT 1 FROM annotators WHERE id = ?", (annotator_id,)).fetchone():
                raise StoreError(f"annotator {annotator_id!r} already exists")
            db.execute(
                "INSERT INTO annotators (id, display_name, role, password_hash, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (annotator_id, display_name or annotator_id, role, password_hash, _now()),
            )

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
        added = {"rubrics": 0, "dialogues": 0, "tasks": 0}
        with self._write() as db:
            for rubric in rubrics:
                added["rubrics"] += self._insert_new(
                    db,
                    "rubric",
                    rubric,
                    "INSERT INTO rubrics (id, version, body) VALUES (?, ?, ?)",
                    (rubric.id, rubric.version, rubric.model_dump_json()),
                )
            for dialogue in dialogues:
                added["dialogues"] += self._insert_new(
                    db,
                    "dialogue",
                    dialogue,
                    "INSERT INTO dialogues (id, n_turns, body, created_at) VALUES (?, ?, ?, ?)",
                    (dialogue.id, len(dialogue.turns), dialogue.model_dump_json(), _now()),
                )
            for task in tasks:
                self._check_task(db, task)
                added["tasks"] += self._insert_new(
                    db,
                    "task",
                    task,
                    "INSERT INTO tasks (id, dialogue_id, turn_index, rubric_id, gold, body,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        task.id,
                        task.dialogue_id,
                        task.turn_index,
                        task.rubric_id,
                        int(task.gold),
                        task.model_dump_json(),
                        _now(),
                    ),
                )
        return added

    def _insert_new(
        self, db: sqlite3.Connection, kind: str, record: Any, sql: str, row: tuple
    ) -> int:
        table = {"rubric": "rubrics", "dialogue": "dialogues", "task": "tasks"}[kind]
        stored = db.execute(f"SELECT body FROM {table} WHERE id = ?", (record.id,)).fetchone()
        if stored is None:
            db.execute(sql, row)
            return 1
        if type(record).model_validate_json(stored[0], context={"k": self.k}) != record:
            raise RecordError(
                f"{kind} {record.id!r}",
                "id",
                f"a different {kind} with this id is already stored; give the new one another id",
            )
        return 0

    def _check_task(self, db: sqlite3.Connection, task: Task) -> None:
        record = f"task {task.id!r}"
        stored = db.execute("SELECT n_turns FROM dialogues WHERE id = ?", (task.dialogue_id,))
        row = stored.fetchone()
        if row is None:
            raise RecordError(record, "dialogue_id", f"unknown dialogue {task.dialogue_id!r}")
        if task.turn_index >= row[0]:
            raise RecordError(
                record,
                "turn_index",
                f"{task.turn_index} is past the last turn of dialogue {task.dialogue_id!r}"
                f" ({row[0]} turns)",
            )
        if (
            task.rubric_id is not None
            and not db.execute("SELECT 1 FROM rubrics WHERE id = ?", (task.rubric_id,)).fetchone()
        ):
            raise RecordError(record, "rubric_id", f"unknown rubric {task.rubric_id!r}")

    def assign(self, task_id: str, annotator_id: str, status: str = "assigned") -> None:
        with self._write() as db:
            now = _now()
            db.execute(
                "INSERT INTO assignments (task_id, annotator_id, status, assigned_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (task_id, annotator_id)"
                " DO UPDATE SET status = excluded.status, updated_at = excluded.updated_at",
                (task_id, annotator_id, status, now, now),
            )

    def _stored_task(self, db: sqlite3.Connection, task_id: str) -> Task:
        row = db.execute("SELECT body FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise RecordError(f"task {task_id!r}", "id", "unknown task")
        return Task.model_validate_json(row[0], context={"k": self.k})

    def set_task_rubric(self, task_ids: Sequence[str], rubric: Rubric | None) -> None:
        """Judge these tasks under `rubric` (stored if new), or plainly (None); all or none.

        A task that has judgments keeps its rubric: their scores were given under it.
        """
        with self._write() as db:
            if rubric is not None:
                self._insert_new(
                    db,
                    "rubric",
                    rubric,
                    "INSERT INTO rubrics (id, version, body) VALUES (?, ?, ?)",
                    (rubric.id, rubric.version, rubric.model_dump_json()),
                )
            rubric_id = rubric.id if rubric else None
            for task_id in task_ids:
                task = self._stored_task(db, task_id)
                (judged,) = db.execute(
                    "SELECT COUNT(*) FROM judgments WHERE task_id = ?", (task_id,)
                ).fetchone()
                if judged and task.rubric_id != rubric_id:
                    raise RecordError(
                        f"task {task_id!r}",
                        "rubric_id",
                        f"{judged} judgments were made under {task.rubric_id!r}; it stays",
                    )
                updated = task.model_copy(update={"rubric_id": rubric_id})
                db.execute(
                    "UPDATE tasks SET rubric_id = ?, body = ? WHERE id = ?",
                    (rubric_id, updated.model_dump_json(), task_id),
                )
        self._rubric_cache.clear()

    def set_gold(self, task_id: str, gold_level: int | None) -> None:
        """Make a task a gold item whose known answer is `gold_level`, or (None) an ordinary one."""
        record = f"task {task_id!r}"
        if gold_level is not None:
            try:
                check_level(gold_level, self.k, "gold_level")
            except ValueError as error:
                raise RecordError(record, "gold_level", str(error)) from None
        with self._write() as db:
            task = self._stored_task(db, task_id)
            gold = {"gold": gold_level is not None, "gold_level": gold_level}
            db.execute(
                "UPDATE tasks SET gold = ?, body = ? WHERE id = ?",
                (int(gold["gold"]), task.model_copy(update=gold).model_dump_json(), task_id),
            )

    def submit_judgment(self, judgment: Judgment) -> SubmitResult:
        return self.submit_judgments([judgment])[0]

    def submit_judgments(self, judgments: Iterable[Judgment]) -> list[SubmitResult]:
        """Store judgments atomically: all are stored, or none (the error names the record)."""
        results = []
        with self._write() as db:
            for judgment in judgments:
                results.append(self._submit_one(db, judgment))
        return results

    def _submit_one(self, db: sqlite3.Connection, judgment: Judgment) -> SubmitResult:
        record = f"judgment {judgment.id!r}"
        stored = db.execute("SELECT body FROM judgments WHERE id = ?", (judgment.id,)).fetchone()
        if stored is not None:
            if Judgment.model_validate_json(stored[0], context={"k": self.k}) == judgment:
                return SubmitResult(judgment.id, created=False)
            raise RecordError(record, "id", "already stored with different content")
        self._check_judgment(db, judgment, record)
        earlier = db.execute(
            "SELECT id FROM judgments WHERE task_id = ? AND annotator_id = ?",
            (judgment.task_id, judgment.annotator_id),
        ).fetchone()
        if earlier is not None:
            raise RecordError(
                record,
                "task_id",
                f"annotator {judgment.annotator_id!r} already judged task {judgment.task_id!r}"
                f" (judgment {earlier[0]!r})",
            )
        now = _now()
        db.execute(
            "INSERT INTO judgments (id, task_id, annotator_id, level, body, received_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                judgment.id,
                judgment.task_id,
                judgment.annotator_id,
                judgment.level,
                judgment.model_dump_json(),
                now,
            ),
        )
        db.execute(
            "INSERT INTO assignments (task_id, annotator_id, status, assigned_at, updated_at)"
            " VALUES (?, ?, 'done', ?, ?) ON CONFLICT (task_id, annotator_id)"
            " DO UPDATE SET status = 'done', updated_at = excluded.updated_at",
            (judgment.task_id, judgment.annotator_id, now, now),
        )
        return SubmitResult(judgment.id, created=True)

    def _check_judgment(self, db: sqlite3.Connection, judgment: Judgment, record: str) -> None:
        """Raise RecordError unless the level, task, annotator and rubric scores fit the project."""
        try:
            check_level(judgment.level, self.k)
        except ValueError as error:
            raise RecordError(record, "level", str(error)) from None
        task_row = db.execute(
            "SELECT rubric_id FROM tasks WHERE id = ?", (judgment.task_id,)
        ).fetchone()
        if task_row is None:
            raise RecordError(record, "task_id", f"unknown task {judgment.task_id!r}")
        if not db.execute(
            "SELECT 1 FROM annotators WHERE id = ?", (judgment.annotator_id,)
        ).fetchone():
            raise RecordError(
                record, "annotator_id", f"unknown annotator {judgment.annotator_id!r}"
            )
        if judgment.rubric_scores:
            if task_row[0] is None:
                raise RecordError(record, "rubric_scores", "the task has no rubric to score")
            validate_rubric_scores(self.rubric(task_row[0]), judgment.rubric_scores, record)

    def upsert_judgment(self, judgment: Judgment) -> str:
        """Store `judgment`, or replace the one stored with its id; say which happened.

        Returns "created", "updated" or "unchanged" (the same content was stored already).

        For judgments kept elsewhere that can change there (an Argilla response edited after a
        pull). A new id goes through the same checks as `submit_judgment`; a replacement is
        checked the same way and must keep its task and annotator.
        """
        record = f"judgment {judgment.id!r}"
        with self._write() as db:
            stored = db.execute(
                "SELECT task_id, annotator_id, body FROM judgments WHERE id = ?", (judgment.id,)
            ).fetchone()
            if stored is None:
                self._submit_one(db, judgment)
                return "created"
            if Judgment.model_validate_json(stored[2], context={"k": self.k}) == judgment:
                return "unchanged"
            for field, before in zip(("task_id", "annotator_id"), stored[:2], strict=True):
                if getattr(judgment, field) != before:
                    raise RecordError(
                        record,
                        field,
                        f"{getattr(judgment, field)!r} differs from the stored {before!r}:"
                        " a judgment keeps its task and annotator",
                    )
            self._check_judgment(db, judgment, record)
            db.execute(
                "UPDATE judgments SET level = ?, body = ?, received_at = ? WHERE id = ?",
                (judgment.level, judgment.model_dump_json(), _now(), judgment.id),
            )
        return "updated"

    # ---- reads --------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._connection.execute(sql, params).fetchall()

    def count(self, table: str) -> int:
        if table not in {"annotators", "rubrics", "dialogues", "tasks", "assignments", "judgments"}:
            raise ValueError(f"unknown table {table!r}")
        return self._rows(f"SELECT COUNT(*) FROM {table}")[0][0]

    def rubric(self, rubric_id: str) -> Rubric:
        if rubric_id not in self._rubric_cache:
            rows = self._rows("SELECT body FROM rubrics WHERE id = ?", (rubric_id,))
            if not rows:
                raise KeyError(f"no rubric {rubric_id!r} in {self.root}")
            self._rubric_cache[rubric_id] = Rubric.model_validate_json(rows[0][0])
        return self._rubric_cache[rubric_id]

    def rubrics(self) -> list[Rubric]:
        return [Rubric.model_validate_json(b) for (b,) in self._rows("SELECT body FROM rubrics")]

    def dialogue(self, dialogue_id: str) -> Dialogue:
        rows = self._rows("SELECT body FROM dialogues WHERE id = ?", (dialogue_id,))
        if not rows:
            raise KeyError(f"no dialogue {dialogue_id!r} in {self.root}")
        return Dialogue.model_validate_json(rows[0][0])

    def dialogues(self) -> list[Dialogue]:
        rows = self._rows("SELECT body FROM dialogues ORDER BY id")
        return [Dialogue.model_validate_json(body) for (body,) in rows]

    def task(self, task_id: str) -> Task:
        rows = self._rows("SELECT body FROM tasks WHERE id = ?", (task_id,))
        if not rows:
            raise KeyError(f"no task {task_id!r} in {self.root}")
        return Task.model_validate_json(rows[0][0], context={"k": self.k})

    def tasks(self) -> list[Task]:
        rows = self._rows("SELECT body FROM tasks ORDER BY id")
        return [Task.model_validate_json(body, context={"k": self.k}) for (body,) in rows]

    def annotators(self) -> list[dict[str, str]]:
        rows = self._rows("SELECT id, display_name, role, created_at FROM annotators ORDER BY id")
        return [
            dict(zip(("id", "display_name", "role", "created_at"), r, strict=True)) for r in rows
        ]

    def judgment(self, judgment_id: str) -> Judgment | None:
        rows = self._rows("SELECT body FROM judgments WHERE id = ?", (judgment_id,))
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
        rows = self._rows(sql + " ORDER BY rowid", tuple(params))
        return [Judgment.model_validate_json(body, context={"k": self.k}) for (body,) in rows]

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
        problems = [r[0] for r in self._rows("PRAGMA integrity_check") if r[0] != "ok"]
        problems += [f"foreign key: {r}" for r in self._rows("PRAGMA foreign_key_check")]
        return problems
