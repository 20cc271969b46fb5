"""The annotation queue: which task an annotator gets next; their draft, skip, flag and submit.

    assignment = next_assignment(store, "ann-1")   # their open task, a new one, or None
    save_draft(store, "ann-1", assignment.task_id, {"rationale": "..."})
    submit_assigned(store, judgment)               # judgment.id == assignment.judgment_id

The rules, each call one write transaction so that app workers running at once never
over-assign:
- An annotator holds at most one open assignment; asking again returns it, so a reload or a
  second tab resumes the same task with its draft.
- A task goes to `annotators_per_task` different people: their judgments plus the live
  reservations of others must leave room. Judgments by simulated annotators (the demo world's)
  take no places. Tasks are served in import order, so started tasks fill up first.
- Nobody gets a task twice. A skipped task comes back once its annotator has submitted
  `SKIP_RETURN_AFTER` other judgments, or when nothing else is left for them.
- With probability `gold_share` the next task is a gold item the annotator has not seen (and
  only then). Gold items are outside the overlap: every annotator may meet each one once,
  which is what makes gold accuracy per annotator measurable.
- A reservation lapses after `LEASE` without a visit or a draft save, so an abandoned task goes
  back to the pool; its holder keeps it only if room is left when they come back.
- A task flagged as broken is withdrawn from everyone until an admin returns it.
- Each served assignment carries a random presentation order and the judgment id its form
  submits with: submitting that id again (a double click, a retry) stores nothing twice, and
  the same id with other content is refused (the store's one retry rule).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from rewardlab.schema import Judgment, Order, RecordError, utc_now
from rewardlab.store.store import Store, StoreError
from rewardlab.store.transaction import SubmitResult, Transaction, now_text

LEASE = timedelta(hours=1)
SKIP_RETURN_AFTER = 5
MAX_DRAFT_CHARS = 100_000

_RESERVED_BY_OTHERS = """(SELECT COUNT(*) FROM assignments r WHERE r.task_id = t.id
    AND r.status = 'assigned' AND r.annotator_id != :me AND r.updated_at > :lease_start)"""
# A task `t` may be served to :me: a gold item, or room left; and nobody flagged it.
# (tasks.people_judgments is kept by a trigger: judgments by people, not simulated annotators)
_SERVABLE = f"""(t.gold = 1 OR t.people_judgments + {_RESERVED_BY_OTHERS} < :k)
    AND NOT EXISTS (SELECT 1 FROM assignments f WHERE f.task_id = t.id AND f.status = 'flagged')"""
_NEVER_SERVED_TO_ME = (
    "NOT EXISTS (SELECT 1 FROM assignments m WHERE m.task_id = t.id AND m.annotator_id = :me)"
)


@dataclass(frozen=True)
class Assignment:
    task_id: str
    annotator_id: str
    judgment_id: str  # the id the form submits with
    shown_order: Order  # POLICY_FIRST: the policy response is Response 1
    assigned_at: datetime  # when it was served: time on task runs from here
    draft: dict | None


@dataclass(frozen=True)
class Flag:
    task_id: str
    annotator_id: str
    reason: str
    flagged_at: str


def next_assignment(
    store: Store, annotator_id: str, rng: random.Random | None = None
) -> Assignment | None:
    """The annotator's open assignment, else a newly served task; None when none is left."""
    rng = rng or random.Random()
    now = utc_now()
    params = {
        "me": annotator_id,
        "k": store.settings.annotators_per_task,
        "lease_start": (now - LEASE).isoformat(),
        "after": SKIP_RETURN_AFTER,
    }
    with store.transaction() as tx:
        task_id = _open_task(tx, params)
        if task_id is not None:
            tx.execute(
                "UPDATE assignments SET updated_at = ? WHERE task_id = ? AND annotator_id = ?",
                (now.isoformat(), task_id, annotator_id),
            )
        else:
            task_id = _rested_skip(tx, params) or _fresh_task(tx, params, store, rng)
            task_id = task_id or _any_skip(tx, params)
            if task_id is None:
                return None
            _serve(tx, task_id, annotator_id, rng.choice(list(Order)), now.isoformat())
        return _assignment(tx, task_id, annotator_id)


def _open_task(tx: Transaction, params: dict) -> str | None:
    """The open assignment still servable; open ones that are not (full, flagged) are released."""
    rows = tx.execute(
        "SELECT task_id FROM assignments WHERE annotator_id = :me AND status = 'assigned'"
        " ORDER BY assigned_at",
        params,
    ).fetchall()
    for (task_id,) in rows:
        servable = tx.execute(
            f"SELECT 1 FROM tasks t WHERE t.id = :task AND {_SERVABLE}", params | {"task": task_id}
        ).fetchone()
        if servable:
            return task_id
        # others filled it while this reservation had lapsed, or it was flagged
        tx.execute(
            "DELETE FROM assignments WHERE task_id = ? AND annotator_id = ?",
            (task_id, params["me"]),
        )
    return None


def _skipped(tx: Transaction, params: dict, rested: bool) -> str | None:
    rest = (
        " AND (SELECT COUNT(*) FROM judgments j WHERE j.annotator_id = :me"
        " AND j.received_at > a.updated_at) >= :after"
        if rested
        else ""
    )
    row = tx.execute(
        "SELECT a.task_id FROM assignments a JOIN tasks t ON t.id = a.task_id"
        f" WHERE a.annotator_id = :me AND a.status = 'skipped' AND {_SERVABLE}{rest}"
        " ORDER BY a.updated_at LIMIT 1",
        params,
    ).fetchone()
    return row[0] if row else None


def _rested_skip(tx: Transaction, params: dict) -> str | None:
    return _skipped(tx, params, rested=True)


def _any_skip(tx: Transaction, params: dict) -> str | None:
    return _skipped(tx, params, rested=False)


def _fresh_task(tx: Transaction, params: dict, store: Store, rng: random.Random) -> str | None:
    """A task never served to the annotator: with probability gold_share a gold item (an
    ordinary task when none is left), else an ordinary task. Gold items are not handed out
    once the real work has run out: they would only cost annotators time."""
    want_gold = rng.random() < store.settings.gold_share
    for gold in (True, False) if want_gold else (False,):
        order = "random()" if gold else "t.rowid"  # gold items in no fixed order
        # the cheap test first: a full task is passed over without looking further
        room = "" if gold else "t.people_judgments < :k AND "
        row = tx.execute(
            f"SELECT t.id FROM tasks t WHERE t.gold = :gold AND {room}{_NEVER_SERVED_TO_ME}"
            f" AND {_SERVABLE} ORDER BY {order} LIMIT 1",
            params | {"gold": int(gold)},
        ).fetchone()
        if row:
            return row[0]
    return None


def _serve(tx: Transaction, task_id: str, annotator_id: str, order: str, now: str) -> None:
    """Open an assignment; a skipped task returning keeps its order, judgment id and draft."""
    tx.execute(
        "INSERT INTO assignments (task_id, annotator_id, status, assigned_at, updated_at,"
        " shown_order, judgment_id) VALUES (?, ?, 'assigned', ?, ?, ?, ?)"
        " ON CONFLICT (task_id, annotator_id) DO UPDATE SET status = 'assigned',"
        " assigned_at = excluded.assigned_at, updated_at = excluded.updated_at,"
        " shown_order = COALESCE(assignments.shown_order, excluded.shown_order),"
        " judgment_id = COALESCE(assignments.judgment_id, excluded.judgment_id)",
        (task_id, annotator_id, now, now, order, uuid.uuid4().hex),
    )


def _assignment(tx: Transaction, task_id: str, annotator_id: str) -> Assignment:
    row = tx.execute(
        "SELECT judgment_id, shown_order, assigned_at, draft FROM assignments"
        " WHERE task_id = ? AND annotator_id = ?",
        (task_id, annotator_id),
    ).fetchone()
    judgment_id, shown_order, assigned_at, draft = row
    if judgment_id is None:  # opened by Store.assign, which sets no order or id
        judgment_id, shown_order = uuid.uuid4().hex, random.choice(list(Order))
        tx.execute(
            "UPDATE assignments SET judgment_id = ?, shown_order = ?"
            " WHERE task_id = ? AND annotator_id = ?",
            (judgment_id, shown_order, task_id, annotator_id),
        )
    return Assignment(
        task_id=task_id,
        annotator_id=annotator_id,
        judgment_id=judgment_id,
        shown_order=Order(shown_order),
        assigned_at=datetime.fromisoformat(assigned_at),
        draft=json.loads(draft) if draft else None,
    )


def open_assignment(store: Store, annotator_id: str, task_id: str) -> Assignment:
    """The annotator's open assignment of `task_id`; StoreError if it is not open for them."""
    return _assignment_in(store, annotator_id, task_id, ("assigned",))


def submitted_or_open_assignment(store: Store, annotator_id: str, task_id: str) -> Assignment:
    """The annotator's assignment of `task_id`, open or already submitted: a form sent again
    after its submit (a retry) is read in the order its task was shown, like the first."""
    return _assignment_in(store, annotator_id, task_id, ("assigned", "done"))


def _assignment_in(
    store: Store, annotator_id: str, task_id: str, statuses: tuple[str, ...]
) -> Assignment:
    with store.transaction() as tx:
        row = tx.execute(
            "SELECT status FROM assignments WHERE task_id = ? AND annotator_id = ?",
            (task_id, annotator_id),
        ).fetchone()
        if row is None or row[0] not in statuses:
            raise StoreError(f"task {task_id!r} is not open for annotator {annotator_id!r}")
        return _assignment(tx, task_id, annotator_id)


def save_draft(store: Store, annotator_id: str, task_id: str, draft: dict) -> bool:
    """Keep the annotator's unfinished form; False if the task is no longer open for them."""
    body = json.dumps(draft)
    if len(body) > MAX_DRAFT_CHARS:
        raise StoreError(
            f"draft of task {task_id!r}: {len(body):,} characters, over {MAX_DRAFT_CHARS:,}"
        )
    with store.transaction() as tx:
        cursor = tx.execute(
            "UPDATE assignments SET draft = ?, updated_at = ?"
            " WHERE task_id = ? AND annotator_id = ? AND status = 'assigned'",
            (body, now_text(), task_id, annotator_id),
        )
    return cursor.rowcount == 1


def _close(store: Store, annotator_id: str, task_id: str, status: str, reason: str | None) -> None:
    with store.transaction() as tx:
        cursor = tx.execute(
            "UPDATE assignments SET status = ?, updated_at = ?, flag_reason = COALESCE(?,"
            " flag_reason) WHERE task_id = ? AND annotator_id = ? AND status = 'assigned'",
            (status, now_text(), reason, task_id, annotator_id),
        )
        if cursor.rowcount == 0:
            raise StoreError(f"task {task_id!r} is not open for annotator {annotator_id!r}")


def skip(store: Store, annotator_id: str, task_id: str) -> None:
    """Put the task back; it returns to this annotator later (see the module docstring)."""
    _close(store, annotator_id, task_id, "skipped", None)


def flag(store: Store, annotator_id: str, task_id: str, reason: str) -> None:
    """Report the task as broken: it is withdrawn from everyone until an admin returns it."""
    _close(store, annotator_id, task_id, "flagged", reason.strip())


def flags(store: Store) -> list[Flag]:
    rows = store.query(
        "SELECT task_id, annotator_id, COALESCE(flag_reason, ''), updated_at FROM assignments"
        " WHERE status = 'flagged' ORDER BY updated_at"
    )
    return [Flag(*row) for row in rows]


def return_flagged(store: Store, task_id: str) -> int:
    """Put a flagged task back in the queue; its flaggers get it back later, like a skip."""
    with store.transaction() as tx:
        cursor = tx.execute(
            "UPDATE assignments SET status = 'skipped', updated_at = ?"
            " WHERE task_id = ? AND status = 'flagged'",
            (now_text(), task_id),
        )
    return cursor.rowcount


def submit_assigned(store: Store, judgment: Judgment) -> SubmitResult:
    """Store the judgment of an open assignment, checked like every judgment (one transaction).

    The judgment must carry the id and presentation order its task was served with. A
    judgment id already stored is a retry, answered by the store's one retry rule
    (`Transaction.submit_judgment`): the same content is acknowledged with ``created=False``,
    other content is refused. A task that has meanwhile reached its overlap is refused (the
    draft stays), so no task ever holds more than `annotators_per_task` judgments by people.
    """
    with store.transaction() as tx:
        if tx.judgment(judgment.id) is None:
            _check_open(tx, judgment, store.settings.annotators_per_task)
            tx.execute(
                "UPDATE assignments SET draft = NULL WHERE task_id = ? AND annotator_id = ?",
                (judgment.task_id, judgment.annotator_id),
            )
        return tx.submit_judgment(judgment)


def _check_open(tx: Transaction, judgment: Judgment, overlap: int) -> None:
    """RecordError unless `judgment` fits an open assignment of a task with room left."""
    record = f"judgment {judgment.id!r}"
    row = tx.execute(
        "SELECT status, judgment_id, shown_order FROM assignments"
        " WHERE task_id = ? AND annotator_id = ?",
        (judgment.task_id, judgment.annotator_id),
    ).fetchone()
    if row is None or row[0] != "assigned":
        raise RecordError(
            record,
            "task_id",
            f"task {judgment.task_id!r} is not open for annotator {judgment.annotator_id!r}",
        )
    if row[1] != judgment.id:
        raise RecordError(record, "id", "is not the id this task was served with")
    if row[2] != judgment.shown_order:
        shown = f"{judgment.shown_order.value!r}, but the task was shown {row[2]}"
        raise RecordError(record, "shown_order", shown)
    full = tx.execute(
        "SELECT gold = 0 AND people_judgments >= ? FROM tasks WHERE id = ?",
        (overlap, judgment.task_id),
    ).fetchone()
    if full and full[0]:
        raise RecordError(
            record, "task_id", f"task {judgment.task_id!r} already has its {overlap} judgments"
        )


def judged_since(store: Store, annotator_id: str, since: datetime) -> int:
    rows = store.query(
        "SELECT COUNT(*) FROM judgments WHERE annotator_id = ? AND received_at >= ?",
        (annotator_id, since.isoformat()),
    )
    return rows[0][0]
