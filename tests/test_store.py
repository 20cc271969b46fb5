"""The SQLite store on real files: migrations, the write path, idempotent submit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from builders import judgment

from rewardlab.schema import Order, ProjectSettings, RecordError, utc_now
from rewardlab.store import NotAProjectError, Store, StoreError
from rewardlab.store.migrations import SCHEMA_VERSION, SchemaTooNewError
from rewardlab.store.transaction import retry_conflicts


def test_create_sets_wal_foreign_keys_and_schema_version(store: Store):
    db = sqlite3.connect(store.db_path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.query("PRAGMA foreign_keys") == [(1,)]
    assert store.media_root.is_dir()
    assert store.integrity_problems() == []


def test_open_refuses_what_is_not_a_project(tmp_path: Path):
    with pytest.raises(NotAProjectError, match="rewardlab init"):
        Store(tmp_path / "nowhere")
    Store.create(tmp_path / "p").close()
    with pytest.raises(StoreError, match="already exists"):
        Store.create(tmp_path / "p")


def test_a_store_from_a_newer_rewardlab_is_refused(store: Store):
    with store.transaction() as tx:
        tx.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(SchemaTooNewError, match="upgrade rewardlab"):
        Store(store.root)


def test_settings_persist_and_k_is_frozen_once_judged(filled: Store):
    filled.update_settings(annotators_per_task=5, guidelines="# Listen first")
    with Store(filled.root) as reopened:
        assert reopened.settings.annotators_per_task == 5
        assert reopened.settings.guidelines == "# Listen first"
    filled.submit_judgment(judgment("j1", "t1", "ann-1"))
    with pytest.raises(StoreError, match="K cannot change"):
        filled.update_settings(k=2)


def test_submit_is_idempotent_on_the_client_id(filled: Store):
    first = judgment("j1", "t1", "ann-1", level=2, rationale="clearer")
    assert filled.submit_judgment(first).created is True
    assert filled.submit_judgment(first).created is False  # the retry
    assert filled.judgments() == [first]
    assert filled.count("judgments") == 1
    later = first.model_copy(update={"created_at": utc_now(), "time_spent_s": 30.0})
    assert filled.submit_judgment(later).created is False  # sent again later: still a retry
    changed = first.model_copy(update={"level": -2})
    with pytest.raises(RecordError, match="already stored with different content") as caught:
        filled.submit_judgment(changed)
    assert (caught.value.record, caught.value.field) == ("judgment 'j1'", "level")
    assert filled.judgments() == [first]


@pytest.mark.parametrize(
    ("update", "fields"),
    [
        ({"rationale": "other words"}, ["rationale"]),
        ({"listened": {"a.wav": 0.5}}, ["listened"]),
        ({"shown_order": Order.REFERENCE_FIRST}, ["shown_order"]),
        ({"annotator_id": "ann-2", "level": 0}, ["annotator_id", "level"]),
        ({"created_at": utc_now(), "time_spent_s": 99.0}, []),
    ],
)
def test_the_retry_rule_names_every_field_that_differs(update: dict, fields: list[str]):
    first = judgment("j1", "t1", "ann-1", level=2, rationale="clearer", time_spent_s=3.0)
    assert retry_conflicts(first, first.model_copy(update=update)) == fields


def test_one_judgment_per_annotator_and_task(filled: Store):
    filled.submit_judgment(judgment("j1", "t1", "ann-1"))
    with pytest.raises(RecordError, match="already judged task 't1'") as caught:
        filled.submit_judgment(judgment("j2", "t1", "ann-1"))
    assert caught.value.record == "judgment 'j2'"
    filled.submit_judgment(judgment("j3", "t1", "ann-2"))
    assert {j.annotator_id for j in filled.judgments(task_id="t1")} == {"ann-1", "ann-2"}


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        (judgment("jx", "t-none", "ann-1"), "task_id", "unknown task"),
        (judgment("jx", "t1", "nobody"), "annotator_id", "unknown annotator"),
        (
            judgment("jx", "t1", "ann-1", rubric_scores={"policy": {"x": 1}}),
            "rubric_scores",
            "no rubric",
        ),
        (
            judgment("jx", "t2", "ann-1", rubric_scores={"policy": {"not_a_criterion": 1}}),
            "rubric_scores.policy.not_a_criterion",
            "has no criterion",
        ),
    ],
)
def test_bad_judgments_name_the_record_and_field(filled: Store, bad, field, words):
    with pytest.raises(RecordError, match=words) as caught:
        filled.submit_judgment(bad)
    assert caught.value.record == "judgment 'jx'"
    assert caught.value.field == field
    assert filled.count("judgments") == 0


def test_level_is_checked_against_the_store_k(tmp_path: Path, source: Path):
    from rewardlab.store.importer import import_jsonl

    with Store.create(tmp_path / "k1", ProjectSettings(k=1)) as store:
        # t3 is a gold item at level 2, which K=1 does not have: import the other two
        tasks = (source / "tasks.jsonl").read_text().splitlines()[:2]
        (source / "k1.jsonl").write_text("\n".join(tasks) + "\n")
        import_jsonl(store, dialogues=source / "dialogues.jsonl", tasks=source / "k1.jsonl")
        store.add_annotator("ann-1")
        with pytest.raises(RecordError, match=r"outside -1\.\.1") as caught:
            store.submit_judgment(judgment("j1", "t1", "ann-1", level=2))
        assert caught.value.field == "level"


def test_a_batch_is_all_or_nothing(filled: Store):
    good = [judgment(f"j{i}", "t1" if i % 2 else "t3", f"ann-{i}") for i in (1, 2)]
    bad = judgment("j9", "t-none", "ann-1")
    with pytest.raises(RecordError, match="j9"):
        filled.submit_judgments([*good, bad])
    assert filled.count("judgments") == 0
    assert [r.created for r in filled.submit_judgments(good)] == [True, True]


def test_rubric_scores_are_checked_and_kept(filled: Store):
    rubric = filled.rubric("inference_memory")
    scores = {
        side: {c.id: (1 if c.scale == "binary" else 4) for c in rubric.criteria}
        for side in ("policy", "reference")
    }
    stored = judgment("j1", "t2", "ann-1", rubric_scores=scores)
    filled.submit_judgment(stored)
    assert filled.judgments(annotator_id="ann-1")[0].rubric_scores == scores
    likert = next(c for c in rubric.criteria if c.scale == "likert5")
    too_high = {"policy": {likert.id: 6}}
    with pytest.raises(RecordError, match=r"outside 1\.\.5"):
        filled.submit_judgment(judgment("j2", "t2", "ann-2", rubric_scores=too_high))


def test_submit_marks_the_assignment_done(filled: Store):
    filled.assign("t1", "ann-1")
    filled.submit_judgment(judgment("j1", "t1", "ann-1"))
    rows = filled.query(
        "SELECT status FROM assignments WHERE task_id='t1' AND annotator_id='ann-1'"
    )
    assert rows == [("done",)]


def test_reads_return_validated_models(filled: Store):
    assert [t.id for t in filled.tasks()] == ["t1", "t2", "t3"]
    assert filled.task("t3").gold_level == 2
    assert len(filled.dialogue("d1").turns) == 3
    with pytest.raises(KeyError, match="no task"):
        filled.task("t-none")
    assert [a["id"] for a in filled.annotators()] == ["ann-1", "ann-2"]
    with pytest.raises(StoreError, match="already exists"):
        filled.add_annotator("ann-1")
    with pytest.raises(RecordError, match="not one of") as caught:
        filled.add_annotator("x", role="boss")
    assert (caught.value.record, caught.value.field) == ("annotator 'x'", "role")
    assert "x" not in [a["id"] for a in filled.annotators()]


def test_concurrent_openers_migrate_once(tmp_path: Path):
    """Two processes opening a version-0 file at once: one migrates, the other finds it done."""
    import subprocess
    import sys

    from rewardlab.store.migrations import migrate, schema_version

    db = tmp_path / "old.sqlite"
    sqlite3.connect(db).close()
    code = (
        "import sys; from rewardlab.store.store import connect; "
        "from rewardlab.store.migrations import migrate; migrate(connect(sys.argv[1]))"
    )
    runs = [subprocess.Popen([sys.executable, "-c", code, str(db)]) for _ in range(4)]
    assert [run.wait(timeout=60) for run in runs] == [0, 0, 0, 0]
    connection = sqlite3.connect(db, isolation_level=None)
    assert schema_version(connection) == SCHEMA_VERSION
    assert migrate(connection) == SCHEMA_VERSION  # nothing left to do


def test_reads_cannot_write_and_a_failed_transaction_writes_nothing(filled: Store):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        filled.query("DELETE FROM annotators")
    assert filled.count("annotators") == 2
    with pytest.raises(RecordError, match="unknown task"), filled.transaction() as tx:
        tx.execute("DELETE FROM annotators WHERE id = 'ann-2'")
        tx.submit_judgment(judgment("j1", "t-none", "ann-1"))
    assert filled.count("annotators") == 2  # rolled back with the refused judgment
    filled.add_annotator("ann-3")  # and the store takes writes again


def test_named_reads_for_the_admin_page(filled: Store):
    filled.submit_judgments(
        [
            judgment("j1", "t1", "ann-1"),
            judgment("j2", "t3", "ann-1"),
            judgment("j3", "t1", "ann-2"),
        ]
    )
    assert filled.judgment_counts_by_annotator() == {"ann-1": 2, "ann-2": 1}
    assert filled.judgment_counts_by_annotator(since=utc_now()) == {}  # none received since
    assert filled.judged_task_ids() == {"t1", "t3"}
