"""Accounts, sessions and the annotation queue on real SQLite files."""

from __future__ import annotations

import random
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from app_harness import make_project

from rewardlab.schema import Dialogue, Judgment, ProjectSettings, RecordError, Task, Turn
from rewardlab.store import Store, StoreError, queue
from rewardlab.store.accounts import (
    add_account,
    authenticate,
    hash_password,
    open_session,
    session_account,
    set_active,
    set_password,
    verify_password,
)
from rewardlab.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from rewardlab.store.store import connect


def judge(store: Store, assignment: queue.Assignment, level: int = 1) -> Judgment:
    judgment = Judgment(
        id=assignment.judgment_id,
        task_id=assignment.task_id,
        annotator_id=assignment.annotator_id,
        level=level,
        shown_order=assignment.shown_order,
    )
    assert queue.submit_assigned(store, judgment).created
    return judgment


@pytest.fixture
def project(tmp_path: Path) -> Store:
    with make_project(tmp_path / "p", 6, annotators_per_task=2) as store:
        for name in ("ann-1", "ann-2", "ann-3"):
            store.add_annotator(name)
        yield store


# ---- accounts and sessions ----------------------------------------------------------------


def test_passwords_are_stored_as_salted_scrypt_hashes(store: Store):
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", first) and not verify_password("correct hors", first)
    assert not verify_password("anything", "plain-text-in-the-column")
    add_account(store, "ann-1", "correct horse", role="annotator")
    (stored,) = store.query("SELECT password_hash FROM annotators WHERE id = 'ann-1'")[0]
    assert "correct horse" not in stored and verify_password("correct horse", stored)
    with pytest.raises(StoreError, match="'ann-2': password: give at least 8"):
        add_account(store, "ann-2", "short")
    with pytest.raises(StoreError, match="'bad id': id:"):
        add_account(store, "bad id", "long enough")
    with pytest.raises(StoreError, match="role 'simulated'"):
        add_account(store, "sim", "long enough", role="simulated")
    assert store.count("annotators") == 1


def test_sessions_live_until_logout_expiry_password_change_or_deactivation(store: Store):
    add_account(store, "ann-1", "correct horse")
    store.add_annotator("sim-1", role="simulated")
    assert authenticate(store, "ann-1", "wrong horse") is None
    assert authenticate(store, "nobody", "correct horse") is None
    assert authenticate(store, "sim-1", "") is None  # no password: never logs in
    account = authenticate(store, "ann-1", "correct horse")
    assert account is not None and account.role == "annotator" and not account.is_admin

    token = open_session(store, "ann-1")
    assert session_account(store, token).id == "ann-1"
    # only the token's hash is stored
    assert token not in str(store.query("SELECT * FROM sessions"))
    assert session_account(store, token + "x") is None
    expired = open_session(store, "ann-1", lifetime=timedelta(seconds=-1))
    assert session_account(store, expired) is None

    set_password(store, "ann-1", "new horse battery")
    assert session_account(store, token) is None  # a new password ends every session
    assert authenticate(store, "ann-1", "correct horse") is None
    token = open_session(store, "ann-1")
    set_active(store, "ann-1", False)
    assert session_account(store, token) is None
    assert authenticate(store, "ann-1", "new horse battery") is None
    set_active(store, "ann-1", True)
    assert authenticate(store, "ann-1", "new horse battery") is not None
    with pytest.raises(StoreError, match="no such annotator"):
        set_password(store, "nobody", "long enough")


def test_a_version_1_store_migrates_and_keeps_its_data(tmp_path: Path):
    """A project made before the web app (schema 1) opens under this version and loses
    nothing; the per-task count of people's judgments is filled in from what is stored."""
    db = tmp_path / "p" / "project.sqlite"
    db.parent.mkdir()
    connection = sqlite3.connect(db, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.execute("PRAGMA user_version = 1")
    stamp = "2026-01-01T00:00:00+00:00"
    settings = ProjectSettings().model_dump_json(exclude={"daily_goal"})
    connection.execute("INSERT INTO project VALUES (1, ?, ?)", (settings, stamp))
    for name, role in (("ann-1", "annotator"), ("ann-2", "annotator"), ("sim-1", "simulated")):
        connection.execute(
            "INSERT INTO annotators VALUES (?, ?, ?, NULL, ?)", (name, name.upper(), role, stamp)
        )
    dialogue = Dialogue(id="d", turns=[Turn(role="user", text="Hello?")])
    connection.execute(
        "INSERT INTO dialogues VALUES ('d', 1, ?, ?)", (dialogue.model_dump_json(), stamp)
    )
    candidate = {"text": "Hi.", "source": "reference"}
    task = Task(id="t", dialogue_id="d", turn_index=0, policy=candidate, reference=candidate)
    connection.execute(
        "INSERT INTO tasks VALUES ('t', 'd', 0, NULL, 0, ?, ?)", (task.model_dump_json(), stamp)
    )
    for name in ("ann-1", "sim-1"):
        judgment = Judgment(id=f"j-{name}", task_id="t", annotator_id=name, level=1)
        connection.execute(
            "INSERT INTO judgments VALUES (?, 't', ?, 1, ?, ?)",
            (judgment.id, name, judgment.model_dump_json(), stamp),
        )
    connection.close()
    with Store(tmp_path / "p") as store:
        assert migrate(connect(store.db_path)) == SCHEMA_VERSION
        assert store.settings.daily_goal == 40  # a setting the old file did not have
        assert [j.id for j in store.judgments()] == ["j-ann-1", "j-sim-1"]
        assert store.query("SELECT people_judgments FROM tasks") == [(1,)]  # sim-1 not counted
        store.update_settings(annotators_per_task=2)
        assert queue.next_assignment(store, "ann-2").task_id == "t"  # one place left
        set_password(store, "ann-1", "correct horse")
        assert authenticate(store, "ann-1", "correct horse").display_name == "ANN-1"
        assert store.integrity_problems() == []


# ---- the queue ----------------------------------------------------------------------------


def test_each_task_goes_to_k_different_annotators_and_never_twice(project: Store):
    rng = random.Random(0)
    served: dict[str, list[str]] = {}
    while True:
        progressed = False
        for name in ("ann-1", "ann-2", "ann-3"):
            assignment = queue.next_assignment(project, name, rng)
            if assignment is None:
                continue
            served.setdefault(assignment.task_id, []).append(name)
            judge(project, assignment)
            progressed = True
        if not progressed:
            break
    assert sorted(served) == [f"t{i:02d}" for i in range(6)]
    for task_id, names in served.items():
        assert len(names) == 2 and len(set(names)) == 2, task_id
    assert project.count("judgments") == 12
    # tasks fill up in import order: nobody starts t02 before t00 and t01 have their two
    assert served["t00"] == ["ann-1", "ann-2"] and served["t01"] == ["ann-3", "ann-1"]


def test_the_open_assignment_is_resumed_with_its_draft(project: Store):
    first = queue.next_assignment(project, "ann-1")
    assert queue.save_draft(project, "ann-1", first.task_id, {"rationale": "half typed"})
    again = queue.next_assignment(project, "ann-1")  # a reload
    assert again.task_id == first.task_id and again.judgment_id == first.judgment_id
    assert again.shown_order == first.shown_order
    assert again.draft == {"rationale": "half typed"}
    # nobody else can save a draft into it
    assert not queue.save_draft(project, "ann-2", first.task_id, {"rationale": "mine"})
    assert queue.next_assignment(project, "ann-1").draft == {"rationale": "half typed"}
    with pytest.raises(StoreError, match="over 100,000"):
        queue.save_draft(project, "ann-1", first.task_id, {"rationale": "x" * 100_001})


def test_presentation_orders_are_random_and_stored(tmp_path: Path):
    with make_project(tmp_path / "p", 40, annotators_per_task=1) as store:
        store.add_annotator("ann-1")
        orders = []
        for _ in range(40):
            assignment = queue.next_assignment(store, "ann-1", random.Random(len(orders)))
            orders.append(assignment.shown_order)
            judge(store, assignment)
        assert 10 < orders.count("policy_first") < 30
        stored = [j.shown_order for j in store.judgments()]
        assert stored == orders


def test_reservations_prevent_over_assignment_and_lapse(project: Store):
    project.update_settings(annotators_per_task=1)
    held = queue.next_assignment(project, "ann-1")
    assert queue.next_assignment(project, "ann-2").task_id != held.task_id
    # ann-1 walks away: after the lease the task goes back to the pool
    lapsed = (queue.utc_now() - queue.LEASE - timedelta(minutes=1)).isoformat()
    with project.transaction() as tx:
        tx.execute("UPDATE assignments SET updated_at = ? WHERE annotator_id = 'ann-1'", (lapsed,))
    taken = queue.next_assignment(project, "ann-3")
    assert taken.task_id == held.task_id
    judge(project, taken)
    # ann-1 comes back: their task is full, so they are released from it and get another
    back = queue.next_assignment(project, "ann-1")
    assert back.task_id != held.task_id
    with pytest.raises(RecordError, match="not open for annotator 'ann-1'"):
        judge(project, held)
    assert len(project.judgments(task_id=held.task_id)) == 1


def test_a_submit_over_the_overlap_is_refused_and_keeps_the_draft(project: Store):
    project.update_settings(annotators_per_task=1)
    held = queue.next_assignment(project, "ann-1")
    queue.save_draft(project, "ann-1", held.task_id, {"level": 2})
    # another annotator judges the same task through the plain write path (an import)
    project.submit_judgment(
        Judgment(id="other", task_id=held.task_id, annotator_id="ann-2", level=0)
    )
    with pytest.raises(RecordError, match="already has its 1 judgments") as caught:
        judge(project, held)
    assert caught.value.field == "task_id"
    assert project.count("judgments") == 1
    rows = project.query(
        "SELECT draft FROM assignments WHERE task_id = ? AND annotator_id = 'ann-1'",
        (held.task_id,),
    )
    assert rows == [('{"level": 2}',)]


def test_submit_checks_id_and_order_and_a_resubmit_stores_nothing_twice(project: Store):
    held = queue.next_assignment(project, "ann-1")
    other_order = "reference_first" if held.shown_order == "policy_first" else "policy_first"
    base = {"task_id": held.task_id, "annotator_id": "ann-1", "level": 1}
    with pytest.raises(RecordError, match="not the id this task was served with") as caught:
        queue.submit_assigned(project, Judgment(id="made-up", shown_order=held.shown_order, **base))
    assert caught.value.field == "id"
    with pytest.raises(RecordError, match="but the task was shown") as caught:
        queue.submit_assigned(
            project, Judgment(id=held.judgment_id, shown_order=other_order, **base)
        )
    assert caught.value.field == "shown_order"
    judgment = judge(project, held)
    retry = judgment.model_copy(update={"created_at": queue.utc_now(), "time_spent_s": 9.0})
    assert queue.submit_assigned(project, retry).created is False
    assert project.judgments() == [judgment]
    changed = retry.model_copy(update={"level": -1, "rationale": "second thoughts"})
    with pytest.raises(RecordError, match="already stored with different content") as caught:
        queue.submit_assigned(project, changed)
    assert (caught.value.record, caught.value.field) == (
        f"judgment {held.judgment_id!r}",
        "level, rationale",
    )
    assert project.judgments() == [judgment]
    queue.next_assignment(project, "ann-2")
    stolen = judgment.model_copy(update={"annotator_id": "ann-2"})
    with pytest.raises(RecordError, match="already stored with different content") as caught:
        queue.submit_assigned(project, stolen)
    assert caught.value.field == "annotator_id"


def test_a_skipped_task_comes_back_later(tmp_path: Path):
    with make_project(tmp_path / "p", 8, annotators_per_task=1) as store:
        store.add_annotator("ann-1")
        skipped = queue.next_assignment(store, "ann-1")
        queue.save_draft(store, "ann-1", skipped.task_id, {"rationale": "unsure"})
        queue.skip(store, "ann-1", skipped.task_id)
        seen = []
        for _ in range(queue.SKIP_RETURN_AFTER):
            assignment = queue.next_assignment(store, "ann-1")
            seen.append(assignment.task_id)
            judge(store, assignment)
        assert skipped.task_id not in seen
        back = queue.next_assignment(store, "ann-1")  # after SKIP_RETURN_AFTER judgments
        assert back.task_id == skipped.task_id
        assert (back.judgment_id, back.shown_order) == (skipped.judgment_id, skipped.shown_order)
        assert back.draft == {"rationale": "unsure"}
        with pytest.raises(StoreError, match="not open"):
            queue.skip(store, "ann-1", seen[0])  # done: cannot be skipped any more


def test_a_skipped_task_returns_when_nothing_else_is_left(tmp_path: Path):
    with make_project(tmp_path / "p", 3, annotators_per_task=1) as store:
        store.add_annotator("ann-1")
        first = queue.next_assignment(store, "ann-1")
        queue.skip(store, "ann-1", first.task_id)
        for _ in range(2):  # fewer than SKIP_RETURN_AFTER
            assert judge(store, queue.next_assignment(store, "ann-1")).task_id != first.task_id
        assert queue.next_assignment(store, "ann-1").task_id == first.task_id


def test_gold_items_are_mixed_in_once_per_annotator_outside_the_overlap(tmp_path: Path):
    with make_project(tmp_path / "p", 10, gold=2, annotators_per_task=1, gold_share=1.0) as store:
        names = [f"ann-{i}" for i in range(4)]
        for name in names:
            store.add_annotator(name)
        rng = random.Random(3)
        for name in names:
            while (assignment := queue.next_assignment(store, name, rng)) is not None:
                judge(store, assignment)
        # every draw asks for gold: each annotator met both gold items first, once each
        for name in names:
            judged = [j.task_id for j in store.judgments(annotator_id=name)]
            assert sorted(judged[:2]) == ["t08", "t09"] and judged.count("t08") == 1
        assert [len(store.judgments(task_id=t)) for t in ("t08", "t09")] == [4, 4]  # k is 1
        ordinary = [t.id for t in store.tasks() if not t.gold]
        assert all(len(store.judgments(task_id=t)) == 1 for t in ordinary)
    with make_project(tmp_path / "q", 4, gold=2, gold_share=0.0) as store:
        store.add_annotator("ann-1")
        served = []
        while (assignment := queue.next_assignment(store, "ann-1", rng)) is not None:
            served.append(judge(store, assignment).task_id)
        assert served == ["t00", "t01"]  # no gold share: gold items are never handed out


def test_a_flagged_task_is_withdrawn_until_an_admin_returns_it(project: Store):
    broken = queue.next_assignment(project, "ann-1")
    queue.flag(project, "ann-1", broken.task_id, "  the audio is silent  ")
    assert [(f.task_id, f.annotator_id, f.reason) for f in queue.flags(project)] == [
        (broken.task_id, "ann-1", "the audio is silent")
    ]
    served = set()
    while (assignment := queue.next_assignment(project, "ann-2")) is not None:
        served.add(assignment.task_id)
        judge(project, assignment)
    assert broken.task_id not in served and len(served) == 5
    assert queue.return_flagged(project, broken.task_id) == 1
    assert queue.flags(project) == []
    assert queue.next_assignment(project, "ann-2").task_id == broken.task_id


def test_simulated_judgments_take_no_places(project: Store):
    project.add_annotator("sim-1", role="simulated")
    project.add_annotator("sim-2", role="simulated")
    for i, name in enumerate(("sim-1", "sim-2")):
        project.submit_judgment(Judgment(id=f"s{i}", task_id="t00", annotator_id=name, level=1))
    assert queue.next_assignment(project, "ann-1").task_id == "t00"


def test_writers_on_separate_connections_never_over_assign(tmp_path: Path):
    """Six annotators in threads, each with its own Store (connection) on one file."""
    make_project(tmp_path / "p", 30, gold=3, annotators_per_task=2, gold_share=0.3).close()
    names = [f"ann-{i}" for i in range(6)]
    with Store(tmp_path / "p") as store:
        for name in names:
            store.add_annotator(name)
    acknowledged: list[str] = []
    errors: list[BaseException] = []

    def work(name: str, seed: int) -> None:
        try:
            with Store(tmp_path / "p") as mine:
                rng = random.Random(seed)
                while (assignment := queue.next_assignment(mine, name, rng)) is not None:
                    acknowledged.append(judge(mine, assignment, level=rng.randint(-3, 3)).id)
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(n, i)) for i, n in enumerate(names)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [t.name for t in threads if t.is_alive()] == []  # every writer finished its work
    assert errors == []
    with Store(tmp_path / "p") as store:
        stored = [j.id for j in store.judgments()]
        assert sorted(stored) == sorted(acknowledged) and len(set(stored)) == len(stored)
        gold_judgments = 0
        for task in store.tasks():
            judged_by = [j.annotator_id for j in store.judgments(task_id=task.id)]
            assert len(set(judged_by)) == len(judged_by)  # never twice to the same annotator
            if task.gold:
                gold_judgments += len(judged_by)
            else:
                assert len(judged_by) == 2, task.id  # exactly k: all done, none over
        assert gold_judgments > 0
        assert store.integrity_problems() == []


# ---- admin edits of tasks -----------------------------------------------------------------


def test_rubric_and_gold_edits_keep_judged_tasks_consistent(filled: Store):
    from rewardlab.rubrics import load_library

    rubric = load_library()["overall_preference"]
    filled.set_task_rubric(["t1", "t3"], rubric)
    assert filled.task("t1").rubric_id == "overall_preference"
    assert filled.rubric("overall_preference") == rubric
    filled.submit_judgment(Judgment(id="j1", task_id="t1", annotator_id="ann-1", level=1))
    with pytest.raises(RecordError, match="1 judgments were made under 'overall_preference'"):
        filled.set_task_rubric(["t3", "t1"], None)
    assert filled.task("t3").rubric_id == "overall_preference"  # all or none
    filled.set_task_rubric(["t3"], None)
    assert filled.task("t3").rubric_id is None

    filled.set_gold("t1", -2)
    assert (filled.task("t1").gold, filled.task("t1").gold_level) == (True, -2)
    assert filled.query("SELECT gold FROM tasks WHERE id = 't1'") == [(1,)]
    filled.set_gold("t1", None)
    assert filled.task("t1").gold is False
    with pytest.raises(RecordError, match=r"outside -3\.\.3") as caught:
        filled.set_gold("t1", 4)
    assert caught.value.field == "gold_level"
    with pytest.raises(RecordError, match="unknown task"):
        filled.set_gold("t-none", 1)
