"""HF datasets in: `rewardlab import PROJECT --hf PATH [--map MAP.yaml]`.

A judged demo world (with an unjudged task and a task-less dialogue added) goes out with
`export --format hf` and comes back into an empty project equal: dialogues, tasks, judgments
and every clip's bytes at its media path. A flat dataset of someone else's making (one row per
rated pair, clips embedded in Parquet or named by path) comes in through a small map. Bad maps
and bad rows are named, and a refused import leaves the project as it was."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from builders import speechlike

from rewardlab.cli import main
from rewardlab.schema import ProjectSettings
from rewardlab.store import Store
from rewardlab.store.export import export_hf
from rewardlab.store.hf_import import HFImportRejected, import_hf
from rewardlab.store.hf_map import MapError

WORLD = {"n": 12, "seed": 3}


def media_hashes(store: Store) -> dict[str, str]:
    return {
        path.relative_to(store.media_root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in store.media_root.rglob("*")
        if path.is_file()
    }


def contents(store: Store) -> tuple:
    def by_id(records):
        return sorted(records, key=lambda record: record.id)

    return (
        by_id(store.dialogues()),
        by_id(store.tasks()),
        by_id(store.judgments()),
        media_hashes(store),
        sorted(store.query("SELECT id, role FROM annotators")),
    )


def empty_like(project: Path, root: Path) -> Store:
    with Store(project) as source:
        settings = ProjectSettings.model_validate(source.settings.model_dump())
    return Store.create(root, settings)


@pytest.fixture
def whole_project(demo_world, tmp_path) -> Path:
    """The demo world plus a task nobody judged and a dialogue without tasks."""
    project = tmp_path / "world"
    shutil.copytree(demo_world(**WORLD), project)
    with Store(project) as store:
        dialogue, task = store.dialogues()[0], store.tasks()[0]
        lonely = dialogue.model_copy(update={"id": "lonely", "metadata": {"note": "no tasks"}})
        unjudged = task.model_copy(update={"id": "unjudged"})
        store.add_records(dialogues=[lonely], tasks=[unjudged])
    return project


def test_an_hf_export_imports_back_into_an_empty_project_equal(whole_project, tmp_path):
    with Store(whole_project) as original:
        expected = contents(original)
        folder = export_hf(original, tmp_path / "hf")
    assert any(t.audio is None for d in expected[0] for t in d.turns)  # text-only turns too
    assert len(expected[2]) == 36
    assert len(expected[3]) > 20  # clips in subfolders: their media paths must come back

    with empty_like(whole_project, tmp_path / "fresh") as fresh:
        report = import_hf(fresh, folder, annotator_role="simulated")
        assert report.ok and report.rows == 36 + 2
        assert report.records.added == {"rubrics": 3, "dialogues": 13, "tasks": 13}
        assert report.judgments.created == 36
        dialogues, tasks, judgments, media, roles = contents(fresh)
        assert (dialogues, tasks, judgments, media) == expected[:4]
        assert {role for _, role in roles} == {"simulated"}
        assert [p.name for p in fresh.root.iterdir() if p.name.startswith(".")] == []  # staging

        again = import_hf(fresh, folder)  # the same dataset twice changes nothing
        assert report.ok and again.records.added == {"rubrics": 0, "dialogues": 0, "tasks": 0}
        assert (again.judgments.created, again.judgments.unchanged) == (0, 36)
        assert contents(fresh)[:4] == expected[:4]


def test_the_cli_imports_an_hf_export_and_a_dry_run_writes_nothing(whole_project, tmp_path, capsys):
    with Store(whole_project) as original:
        folder = export_hf(original, tmp_path / "hf")
        expected = contents(original)
    empty_like(whole_project, tmp_path / "fresh").close()
    fresh = str(tmp_path / "fresh")
    assert main(["import", fresh, "--hf", str(folder), "--dry-run"]) == 0
    assert "dry run: 38 rows: 13 dialogues, 13 tasks" in capsys.readouterr().out
    with Store(tmp_path / "fresh") as store:
        assert store.count("dialogues") == store.count("judgments") == 0
        assert media_hashes(store) == {}
    assert main(["import", fresh, "--hf", str(folder), "--map", "rewardlab"]) == 0
    assert "36 new judgments, 8 new annotators" in capsys.readouterr().out
    with Store(tmp_path / "fresh") as store:
        assert contents(store)[:4] == expected[:4]


# ---- someone else's dataset: one row per rated pair, a map ---------------------------------

FLAT_MAP = """
dialogue:
  id: conv_id
  turns:
    - {role: user, text: question, audio: question_audio}
  metadata: [speaker]
task:
  id: {format: "{conv_id}.{pair}"}
  turn_index: {value: 0}
  policy: {text: reply_a, source: model_a, audio: reply_a_audio}
  reference: {text: reply_b, source: {value: reference}}
judgment:
  id: {format: "{conv_id}.{pair}.{rater}"}
  annotator_id: rater
  level: {column: preferred, map: {a: 2, b: -2, same: 0}}
  rationale: why
"""


def flat_rows(folder: Path, n: int = 6) -> list[dict]:
    """Clips of the question embedded as bytes; replies' clips by path, relative to the data."""
    rows = []
    for i in range(n):
        clip = io.BytesIO()
        sf.write(clip, speechlike(0.5 + 0.1 * i, seed=i), 16_000, format="FLAC")
        reply = folder / "replies" / f"r{i}.wav"
        reply.parent.mkdir(parents=True, exist_ok=True)
        sf.write(reply, speechlike(0.4, seed=100 + i), 16_000)
        for pair in ("p0", "p1"):
            rows.append(
                {
                    "conv_id": f"c{i}",
                    "speaker": f"s{i % 3}",
                    "question": f"question {i}",
                    "question_audio": {"bytes": clip.getvalue(), "path": f"q{i}.flac"},
                    "pair": f"{pair}-{i}",
                    "reply_a": f"reply A {i} {pair}",
                    "reply_a_audio": f"replies/r{i}.wav",
                    "model_a": "ckpt-7",
                    "reply_b": f"reply B {i}",
                    "rater": f"rater-{(i + len(pair)) % 4}",
                    "preferred": ["a", "b", "same"][(i + (pair == "p1")) % 3],
                    "why": None if i % 2 else "clearer",
                }
            )
    return rows


def write_flat(folder: Path, rows: list[dict]) -> Path:
    from datasets import Audio, Dataset

    dataset = Dataset.from_list(rows).cast_column("question_audio", Audio(decode=False))
    folder.mkdir(parents=True, exist_ok=True)
    dataset.to_parquet(str(folder / "train-00000.parquet"))
    (folder / "map.yaml").write_text(FLAT_MAP)
    return folder


def test_a_flat_parquet_dataset_comes_in_through_a_map(store, tmp_path):
    data = write_flat(tmp_path / "data", flat_rows(tmp_path / "data"))
    report = import_hf(store, data, data / "map.yaml")
    assert report.ok, report.summary()
    assert report.records.added == {"rubrics": 0, "dialogues": 6, "tasks": 12}
    assert report.judgments.created == 12 and len(report.judgments.new_annotators) == 4

    dialogue = store.dialogue("c2")
    assert dialogue.metadata == {"speaker": "s2"} and dialogue.turns[0].text == "question 2"
    clip = dialogue.turns[0].audio
    stored, rate = sf.read(store.media_root / clip.path)
    assert clip.path.startswith("hf/") and clip.path.endswith(".flac") and rate == 16_000
    assert np.allclose(stored, speechlike(0.7, seed=2), atol=1e-4)
    task = store.task("c2.p1-2")
    assert (task.policy.text, task.policy.source, task.reference.source) == (
        "reply A 2 p1",
        "ckpt-7",
        "reference",
    )
    assert (
        task.policy.audio.sha256
        == hashlib.sha256((data / "replies/r2.wav").read_bytes()).hexdigest()
    )
    levels = {j.id: (j.level, j.rationale) for j in store.judgments()}
    assert levels["c2.p0-2.rater-0"] == (0, "clearer")  # (2 + 0) % 3 = 2: "same"
    assert levels["c2.p1-2.rater-0"] == (2, "clearer")  # (2 + 1) % 3 = 0: "a"
    assert levels["c1.p0-1.rater-3"] == (-2, "")  # (1 + 0) % 3 = 1: "b"; rationale left out


def test_a_map_naming_a_missing_column_is_refused_before_any_row(store, tmp_path):
    data = write_flat(tmp_path / "data", flat_rows(tmp_path / "data", n=2))
    (data / "bad.yaml").write_text(FLAT_MAP.replace("rationale: why", "rationale: reason"))
    with pytest.raises(MapError, match=r"judgment\.rationale: the dataset has no column 'reason'"):
        import_hf(store, data, data / "bad.yaml")
    (data / "typo.yaml").write_text(FLAT_MAP.replace("annotator_id:", "annotator:"))
    with pytest.raises(MapError, match=r"judgment\.annotator: unknown field"):
        import_hf(store, data, data / "typo.yaml")
    with pytest.raises(FileNotFoundError, match="built-in maps: rewardlab"):
        import_hf(store, data, "no-such-map")
    assert store.count("dialogues") == 0 and media_hashes(store) == {}


def test_every_bad_row_is_named_and_nothing_is_written(whole_project, store, tmp_path):
    rows = flat_rows(tmp_path / "data")
    rows[1]["preferred"] = "maybe"  # not in the map's table
    rows[2]["reply_a_audio"] = "replies/missing.wav"  # no such file
    rows[5]["conv_id"] = rows[2]["conv_id"]  # the same dialogue id, another dialogue
    rows[6]["reply_a"] = ""  # a candidate needs text
    for row in rows[8:10]:  # both rows of conversation c4
        row["question_audio"] = {"bytes": b"not audio at all", "path": "q4.wav"}
    data = write_flat(tmp_path / "data", rows)
    with Store(whole_project) as world:
        store.add_records(dialogues=world.dialogues()[:1])
    before = contents(store)
    with pytest.raises(HFImportRejected) as refused:
        import_hf(store, data, data / "map.yaml")
    errors = {(e.record.split(" (")[0], e.field) for e in refused.value.report.all_errors}
    assert ("data row 1", "preferred") in errors
    assert ("data row 2", "reply_a_audio") in errors
    assert ("data row 8", "turns.0.audio.path") in errors
    assert ("data row 5", "dialogue.metadata") in errors
    assert ("data row 6", "policy.text") in errors
    assert contents(store) == before
    assert [p.name for p in store.root.iterdir() if p.name.startswith(".")] == []

    # judgments the store refuses: a level past K, an unknown task
    rows = flat_rows(tmp_path / "data2", n=2)
    data = write_flat(tmp_path / "data2", rows)
    bad_level = FLAT_MAP.replace("a: 2, b: -2", "a: 9, b: -2")
    (data / "level.yaml").write_text(bad_level)
    with pytest.raises(HFImportRejected) as refused:
        import_hf(store, data, data / "level.yaml")
    assert any(e.field == "level" for e in refused.value.report.all_errors)
    (data / "task.yaml").write_text(FLAT_MAP.replace("  rationale: why", "  task_id: pair"))
    with pytest.raises(HFImportRejected) as refused:
        import_hf(store, data, data / "task.yaml")
    assert any(
        e.field == "task_id" and "unknown task" in e.message
        for e in refused.value.report.all_errors
    )
    assert contents(store) == before


def test_a_dataset_dict_needs_its_split_named(store, tmp_path):
    from datasets import Dataset, DatasetDict

    rows = [{"conv_id": "c0", "question": "hi"}]
    table = Dataset.from_list(rows)
    DatasetDict({"train": table, "test": table}).save_to_disk(str(tmp_path / "dd"))
    (tmp_path / "map.yaml").write_text(
        "dialogue:\n  id: conv_id\n  turns: [{role: user, text: question}]\n"
    )
    with pytest.raises(ValueError, match="splits train, test: choose one with --split"):
        import_hf(store, tmp_path / "dd", tmp_path / "map.yaml")
    report = import_hf(store, tmp_path / "dd", tmp_path / "map.yaml", split="test")
    assert report.records.added["dialogues"] == 1 and report.judgments is None
    assert store.dialogue("c0").turns[0].text == "hi"


def test_an_export_row_is_plain_json_for_other_tools(whole_project, tmp_path):
    """The columns the round trip needs are readable without rewardlab."""
    with Store(whole_project) as original:
        folder = export_hf(original, tmp_path / "hf")
    from datasets import load_from_disk

    rows = load_from_disk(str(folder)).to_polars()
    lonely = rows.filter(pl.col("dialogue_id") == "lonely").row(0, named=True)
    assert lonely["task_id"] is None and lonely["level"] is None
    assert json.loads(lonely["dialogue_metadata"]) == {"note": "no tasks"}
    unjudged = rows.filter(pl.col("task_id") == "unjudged")
    assert unjudged.height == 1 and unjudged["judgment_id"][0] is None
