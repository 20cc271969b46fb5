"""One write transaction on the project store, and the rules every stored record obeys.

    with store.transaction() as tx:          # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)
        tx.execute("UPDATE assignments SET draft = NULL WHERE task_id = ?", (task_id,))
        result = tx.submit_judgment(judgment)

`Store.transaction()` is the store's one write path: the store's own methods, the queue and
the accounts all compose their writes from a `Transaction`, so concurrent writers serialise
on SQLite's write lock and a process killed mid-write leaves the last committed state.

The retry rule has one owner, `Transaction.submit_judgment` (with `retry_conflicts`): the
client generates a judgment's id, so a submit of an id already stored is a retry. Sent again
with the same content it is acknowledged (``created=False``) and nothing is written; with other
content it is refused, and the error names the record and the fields that differ. The clock
fields (`CLOCK_FIELDS`: when it was sent, how long it took) are not content: a retry is sent
later, and the web app stamps both on the server.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, NamedTuple

from rewardlab.rubrics import validate_rubric_scores
from rewardlab.schema import Dialogue, Judgment, RecordError, Rubric, Task, check_level, utc_now

ANNOTATOR_ROLES = ("annotator", "admin", "simulated")

CLOCK_FIELDS = frozenset({"created_at", "time_spent_s"})


class RollBack(Exception):
    """Raised inside ``with store.transaction()`` to leave it without writing (a dry run,
    or a batch with bad rows); the caller catches it outside the block."""


class SubmitResult(NamedTuple):
    judgment_id: str
    created: bool  # False: the same judgment was already stored (an idempotent retry)


def now_text() -> str:
    """The store's timestamp format (ISO 8601, UTC): text columns compare in time order."""
    return utc_now().isoformat()


def retry_conflicts(stored: Judgment, sent: Judgment) -> list[str]:
    """The fields in which `sent` differs from the `stored` judgment of the same id.

    Empty: `sent` is a retry of `stored`. Clock fields do not count (see the module docstring).
    """
    before = stored.model_dump(exclude=CLOCK_FIELDS)
    after = sent.model_dump(exclude=CLOCK_FIELDS)
    return [field for field in before if before[field] != after[field]]


# per kind of record: its table, and the columns stored beside its JSON body
_RECORD_ROWS: dict[type, tuple[str, str, Callable[[Any], tuple]]] = {
    Rubric: ("rubrics", "id, version, body", lambda r: (r.id, r.version, r.model_dump_json())),
    Dialogue: (
        "dialogues",
        "id, n_turns, body, created_at",
        lambda d: (d.id, len(d.turns), d.model_dump_json(), now_text()),
    ),
    Task: (
        "tasks",
        "id, dialogue_id, turn_index, rubric_id, gold, body, created_at",
        lambda t: (
            t.id,
            t.dialogue_id,
            t.turn_index,
            t.rubric_id,
            int(t.gold),
            t.model_dump_json(),
            now_text(),
        ),
    ),
}


class Transaction:
    """The writes (and the reads they depend on) of one open transaction.

    Made by `Store.transaction()`, valid until its ``with`` block ends. `k` is the project's
    number of levels a side; `rubric` looks a stored rubric up by id.
    """

    def __init__(self, connection: sqlite3.Connection, k: int, rubric: Callable[[str], Rubric]):
        self._connection, self.k, self._rubric = connection, k, rubric

    def execute(self, sql: str, params: tuple | dict = ()) -> sqlite3.Cursor:
        """Run one SQL statement inside the transaction (queue and accounts tables)."""
        return self._connection.execute(sql, params)

    # ---- records: rubrics, dialogues, tasks ---------------------------------------------------

    def add_record(self, record: Rubric | Dialogue | Task) -> int:
        """Insert a rubric, dialogue or task; 1 if new, 0 if stored already with this content.

        A different record stored under the same id is an error naming the record.
        """
        table, columns, row = _RECORD_ROWS[type(record)]
        kind = type(record).__name__.lower()
        if isinstance(record, Task):
            self._check_task(record)
        stored = self.execute(f"SELECT body FROM {table} WHERE id = ?", (record.id,)).fetchone()
        if stored is None:
            marks = ", ".join("?" * len(columns.split(",")))
            self.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", row(record))
            return 1
        if type(record).model_validate_json(stored[0], context={"k": self.k}) != record:
            raise RecordError(
                f"{kind} {record.id!r}",
                "id",
                f"a different {kind} with this id is already stored; give the new one another id",
            )
        return 0

    def _check_task(self, task: Task) -> None:
        record = f"task {task.id!r}"
        row = self.execute(
            "SELECT n_turns FROM dialogues WHERE id = ?", (task.dialogue_id,)
        ).fetchone()
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
            and not self.execute("SELECT 1 FROM rubrics WHERE id = ?", (task.rubric_id,)).fetchone()
        ):
            raise RecordError(record, "rubric_id", f"unknown rubric {task.rubric_id!r}")

    def task(self, task_id: str) -> Task:
        """The stored task; RecordError if there is none."""
        row = self.execute("SELECT body FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise RecordError(f"task {task_id!r}", "id", "unknown task")
        return Task.model_validate_json(row[0], context={"k": self.k})

    def replace_task(self, task: Task) -> None:
        """Store new content for a stored task (its rubric, whether it is gold)."""
        self.execute(
            "UPDATE tasks SET rubric_id = ?, gold = ?, body = ? WHERE id = ?",
            (task.rubric_id, int(task.gold), task.model_dump_json(), task.id),
        )

    # ---- annotators ------------------------------------------------------------------------

    def has_annotator(self, annotator_id: str) -> bool:
        found = self.execute("SELECT 1 FROM annotators WHERE id = ?", (annotator_id,))
        return found.fetchone() is not None

    def add_annotator(
        self,
        annotator_id: str,
        display_name: str | None = None,
        *,
        role: str = "annotator",
        password_hash: str | None = None,
    ) -> None:
        """A new account (without a password hash it cannot log in)."""
        if role not in ANNOTATOR_ROLES:
            message = f"{role!r} is not one of {ANNOTATOR_ROLES}"
            raise RecordError(f"annotator {annotator_id!r}", "role", message)
        self.execute(
            "INSERT INTO annotators (id, display_name, role, password_hash, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (annotator_id, display_name or annotator_id, role, password_hash, now_text()),
        )

    # ---- judgments -------------------------------------------------------------------------

    def judgment(self, judgment_id: str) -> Judgment | None:
        row = self.execute("SELECT body FROM judgments WHERE id = ?", (judgment_id,)).fetchone()
        return None if row is None else Judgment.model_validate_json(row[0], context={"k": self.k})

    def submit_judgment(self, judgment: Judgment) -> SubmitResult:
        """Store a new judgment, or acknowledge a retry of a stored one (the retry rule)."""
        record = f"judgment {judgment.id!r}"
        stored = self.judgment(judgment.id)
        if stored is not None:
            differ = retry_conflicts(stored, judgment)
            if differ:
                raise RecordError(
                    record,
                    ", ".join(differ),
                    "already stored with different content: a retry must send what was sent"
                    " first, and a new judgment needs a new id",
                )
            return SubmitResult(judgment.id, created=False)
        self._check_judgment(judgment, record)
        earlier = self.execute(
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
        now = now_text()
        self.execute(
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
        self.execute(
            "INSERT INTO assignments (task_id, annotator_id, status, assigned_at, updated_at)"
            " VALUES (?, ?, 'done', ?, ?) ON CONFLICT (task_id, annotator_id)"
            " DO UPDATE SET status = 'done', updated_at = excluded.updated_at",
            (judgment.task_id, judgment.annotator_id, now, now),
        )
        return SubmitResult(judgment.id, created=True)

    def _check_judgment(self, judgment: Judgment, record: str) -> None:
        """Raise RecordError unless the level, task, annotator and rubric scores fit the project."""
        try:
            check_level(judgment.level, self.k)
        except ValueError as error:
            raise RecordError(record, "level", str(error)) from None
        task_row = self.execute(
            "SELECT rubric_id FROM tasks WHERE id = ?", (judgment.task_id,)
        ).fetchone()
        if task_row is None:
            raise RecordError(record, "task_id", f"unknown task {judgment.task_id!r}")
        if not self.execute(
            "SELECT 1 FROM annotators WHERE id = ?", (judgment.annotator_id,)
        ).fetchone():
            raise RecordError(
                record, "annotator_id", f"unknown annotator {judgment.annotator_id!r}"
            )
        if judgment.rubric_scores:
            if task_row[0] is None:
                raise RecordError(record, "rubric_scores", "the task has no rubric to score")
            validate_rubric_scores(self._rubric(task_row[0]), judgment.rubric_scores, record)

    def upsert_judgment(self, judgment: Judgment) -> str:
        """Store `judgment` or replace the one stored with its id: "created", "updated" or
        "unchanged". For judgments mirrored from elsewhere (see `Store.upsert_judgment`)."""
        record = f"judgment {judgment.id!r}"
        stored = self.judgment(judgment.id)
        if stored is None:
            self.submit_judgment(judgment)
            return "created"
        if stored == judgment:
            return "unchanged"
        for field in ("task_id", "annotator_id"):
            before, after = getattr(stored, field), getattr(judgment, field)
            if after != before:
                raise RecordError(
                    record,
                    field,
                    f"{after!r} differs from the stored {before!r}:"
                    " a judgment keeps its task and annotator",
                )
        self._check_judgment(judgment, record)
        self.execute(
            "UPDATE judgments SET level = ?, body = ?, received_at = ? WHERE id = ?",
            (judgment.level, judgment.model_dump_json(), now_text(), judgment.id),
        )
        return "updated"
