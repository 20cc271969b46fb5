"""Judgments from elsewhere into a project: `rewardlab import PROJECT --judgments FILE`.

A judged demo world is exported (JSONL and Parquet) and imported into a fresh project holding
the same dialogues and tasks: the judgments come back identical. Every kind of bad row is
refused with its field, and a refused file leaves the store as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from builders import write_jsonl

from rewardlab.cli import main
from rewardlab.schema import ProjectSettings
from rewardlab.store import Store
from rewardlab.store.export import export_jsonl, export_parquet
from rewardlab.store.importer import import_jsonl
from rewardlab.store.judgment_import import JudgmentImportRejected, import_judgments

WORLD = {"n": 12, "seed": 3}


def fresh_copy(world: Path, root: Path) -> Store:
    """A project with the world's dialogues and tasks and none of its judgments."""
    with Store(world) as judged:
        settings = judged.settings
    store = Store.create(root, ProjectSettings.model_validate(settings.model_dump()))
    source = world / "source"
    import_jsonl(store, dialogues=source / "dialogues.jsonl", tasks=source / "tasks.jsonl",
                 media_dir=world / "media")  # fmt: skip
    return store


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_an_export_imports_back_into_a_fresh_project_identically(demo_world, tmp_path, fmt):
    world = demo_world(**WORLD)
    with Store(world) as judged:
        original = sorted(judged.judgments(), key=lambda j: j.id)
        exported = {"jsonl": export_jsonl, "parquet": export_parquet}[fmt](
            judged, tmp_path / f"judgments.{fmt}"
        )
    assert len(original) > 30 and any(j.rubric_scores for j in original)
    with fresh_copy(world, tmp_path / "fresh") as store:
        report = import_judgments(store, exported, annotator_role="simulated")
        assert (report.created, report.unchanged) == (len(original), 0)
        assert sorted(store.judgments(), key=lambda j: j.id) == original
        again = import_judgments(store, exported)  # a file imported twice changes nothing
        assert (again.created, again.unchanged) == (0, len(original))
        roles = {a: r for a, r in store.query("SELECT id, role FROM annotators")}
        assert set(roles) == {j.annotator_id for j in original}
        assert set(roles.values()) == {"simulated"}


def good_row(task_id: str, annotator: str, judgment_id: str, **fields) -> dict:
    return {"id": judgment_id, "task_id": task_id, "annotator_id": annotator, "level": 1} | fields


def test_every_bad_row_is_named_with_its_field_and_nothing_is_written(demo_world, tmp_path):
    world = demo_world(**WORLD)
    with Store(world) as judged:
        stored = judged.judgments()[0]
        tasks = judged.tasks()
    plain = next(t.id for t in tasks if t.rubric_id is None)
    rubric_task = next(t for t in tasks if t.rubric_id is not None)
    project = tmp_path / "project"
    shutil.copytree(world, project)
    rows = [
        good_row(plain, "new-person", "ok-1"),  # fine: its annotator would be created
        good_row("no-such-task", "ann-x", "bad-task"),
        good_row(plain, "ann-x", "bad-level", level=9),
        good_row(plain, "ann-y", "bad-order", shown_order="left_first"),
        good_row(plain, "ann-z", "naive-time", created_at="2026-01-01T12:00:00"),
        good_row(
            rubric_task.id,
            "ann-x",
            "bad-criterion",
            rubric_scores={"policy": {"no-such-criterion": 1}},
        ),
        good_row(plain, "new-person", "twice-on-a-task"),
        good_row(plain, "ann-w", "ok-1"),  # an id the file already used
        stored.model_dump(mode="json") | {"rationale": "changed since"},
        {"id": "no-level", "task_id": plain, "annotator_id": "ann-v"},
    ]
    path = tmp_path / "judgments.jsonl"
    write_jsonl(path, rows)
    with path.open("a") as out:
        out.write("{not json\n")
    expected_fields = [
        "task_id", "level", "shown_order", "created_at",
        "rubric_scores.policy.no-such-criterion", "task_id", "id", "rationale", "level", "<line>",
    ]  # fmt: skip
    with Store(project) as store:
        before = (store.count("judgments"), store.count("annotators"))
        dry = import_judgments(store, path, dry_run=True)
        assert [e.field for e in dry.errors] == expected_fields, dry.summary()
        assert "line 2" in dry.errors[0].record and "'bad-task'" in dry.errors[0].record
        with pytest.raises(JudgmentImportRejected) as caught:
            import_judgments(store, path)
        assert [e.field for e in caught.value.report.errors] == expected_fields
        assert (store.count("judgments"), store.count("annotators")) == before
        assert store.judgment(stored.id) == stored


def test_the_cli_imports_parquet_checks_k_and_creates_annotators(demo_world, tmp_path, capsys):
    world = demo_world(**WORLD)
    project = tmp_path / "project"
    shutil.copytree(world, project)
    with Store(project) as store:
        task = next(t.id for t in store.tasks() if t.rubric_id is None)
        k = store.k
    rows = [good_row(task, "vendor-1", "v-1", level=-k), good_row(task, "vendor-2", "v-2")]
    pl.DataFrame(rows).write_parquet(tmp_path / "delivery.parquet")
    args = ["import", str(project), "--judgments", str(tmp_path / "delivery.parquet")]
    assert main([*args, "--dry-run"]) == 0
    assert "dry run: 2 judgments are valid, 2 new annotators" in capsys.readouterr().out
    assert main(args) == 0
    assert "imported 2 judgments: 2 new, 0 already stored" in capsys.readouterr().out
    with Store(project) as store:
        assert store.judgment("v-1").level == -k
        roles = dict(store.query("SELECT id, role FROM annotators WHERE id LIKE 'vendor-%'"))
        assert roles == {"vendor-1": "annotator", "vendor-2": "annotator"}
    rows[1] |= {"id": "v-3", "annotator_id": "vendor-3", "level": k + 1}
    write_jsonl(tmp_path / "late.jsonl", rows)
    assert main(["import", str(project), "--judgments", str(tmp_path / "late.jsonl")]) == 1
    printed = capsys.readouterr().err
    assert "1 bad rows of 2; nothing was imported" in printed and "level" in printed
