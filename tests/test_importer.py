"""JSONL import with real audio files: all or nothing, every bad record reported."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from builders import dialogue, task, write_clips, write_jsonl

from rewardlab.audio import sha256_file
from rewardlab.store import Store
from rewardlab.store.importer import ImportRejected, import_jsonl


def run(store: Store, source: Path, **kwargs):
    return import_jsonl(
        store, dialogues=source / "dialogues.jsonl", tasks=source / "tasks.jsonl", **kwargs
    )


def test_import_fills_audio_refs_and_copies_media(store: Store, source: Path):
    report = run(store, source)
    assert report.ok and report.added == {"rubrics": 1, "dialogues": 2, "tasks": 3}
    assert report.audio_files == 4
    ref = store.dialogue("d1").turns[2].audio
    assert ref.path == "sub/b.flac"
    assert ref.sample_rate == 16_000 and ref.duration_s == pytest.approx(1.5)
    copied = store.media_root / "sub/b.flac"
    assert ref.sha256 == sha256_file(copied) == sha256_file(source / "sub/b.flac")
    assert store.task("t2").policy.audio.path == "cand.wav"
    assert store.rubric("inference_memory").id == "inference_memory"


def test_reimporting_the_same_files_adds_nothing(store: Store, source: Path):
    run(store, source)
    again = run(store, source)
    assert again.ok and again.added == {"rubrics": 0, "dialogues": 0, "tasks": 0}
    assert store.count("tasks") == 3


def test_dry_run_validates_and_writes_nothing(store: Store, source: Path):
    report = run(store, source, dry_run=True)
    assert report.ok and len(report.tasks) == 3
    assert "nothing was written" in report.summary()
    assert store.count("dialogues") == 0
    assert not any(store.media_root.iterdir())


@pytest.fixture
def bad_source(source: Path) -> Path:
    """One file with a bad record of every kind, and some good ones between them."""
    write_clips(source, {"long.wav": 3.0, "quiet.wav": 0.5})
    sf.write(source / "quiet.wav", np.zeros(8000, dtype=np.float32), 16000)
    nan = np.full(8000, 0.1, dtype=np.float32)
    nan[100] = np.nan
    sf.write(source / "nan.wav", nan, 16000, subtype="FLOAT")
    whole = (source / "a.wav").read_bytes()
    (source / "cut.wav").write_bytes(whole[: len(whole) // 2])
    no_content = dialogue("bad-content", ["a.wav"])
    no_content["turns"][0] = {"role": "user"}
    user_reasoning = dialogue("bad-reasoning", ["a.wav"])
    user_reasoning["turns"][0]["reasoning"] = "hmm"
    wrong_hash = dialogue("bad-hash", ["a.wav"])
    wrong_hash["turns"][0]["audio"]["sha256"] = "0" * 64
    write_jsonl(
        source / "dialogues.jsonl",
        [
            dialogue("d1", ["a.wav", "sub/b.flac"]),
            "{not json",
            "[1, 2]",
            {"turns": [{"role": "user", "text": "no id"}]},
            {"id": "bad-role", "turns": [{"role": "robot", "text": "beep"}]},
            no_content,
            user_reasoning,
            dialogue("bad-abs", ["/etc/hostname"]),
            dialogue("bad-escape", ["../outside.wav"]),
            dialogue("bad-missing", ["missing.wav"]),
            dialogue("bad-cut", ["cut.wav"]),
            dialogue("bad-nan", ["nan.wav"]),
            dialogue("bad-quiet", ["quiet.wav"]),
            dialogue("bad-long", ["long.wav"]),
            wrong_hash,
            dialogue("d1", ["a.wav"]),
            dialogue("d2", ["c.ogg"]),
        ],
    )
    write_jsonl(
        source / "tasks.jsonl",
        [
            task("t1", "d1", 0),
            task("bad-dialogue", "d-none", 0),
            task("bad-turn", "d2", 5),
            task("bad-rubric", "d1", 0, rubric_id="no_such_rubric"),
            task("bad-gold", "d1", 0, gold=True),
            task("bad-gold-range", "d1", 0, gold=True, gold_level=4),
            task("t1", "d1", 0),
            task("bad-link", "bad-role", 0),
        ],
    )
    return source


EXPECTED_ERRORS = [  # (record label contains, field, message contains)
    ("dialogues.jsonl line 2", "<line>", "invalid JSON"),
    ("dialogues.jsonl line 3", "<line>", "JSON object"),
    ("dialogues.jsonl line 4", "id", "Field required"),
    ("'bad-role'", "turns.0.role", "'user', 'assistant' or 'system'"),
    ("'bad-content'", "turns.0", "needs text or audio"),
    ("'bad-reasoning'", "turns.0", "only allowed on assistant"),
    ("'bad-abs'", "turns.0.audio.path", "absolute"),
    ("'bad-escape'", "turns.0.audio.path", ".."),
    ("'bad-missing'", "turns.0.audio.path", "missing"),
    ("'bad-cut'", "turns.0.audio.path", "truncated"),
    ("'bad-nan'", "turns.0.audio.path", "non-finite"),
    ("'bad-quiet'", "turns.0.audio.path", "silent"),
    ("'bad-long'", "turns.0.audio.path", "too long"),
    ("'bad-hash'", "turns.0.audio.sha256", "does not match"),
    ("dialogues.jsonl line 16 ('d1')", "id", "duplicate dialogue id"),
    ("'bad-dialogue'", "dialogue_id", "unknown dialogue"),
    ("'bad-turn'", "turn_index", "past the last turn"),
    ("'bad-rubric'", "rubric_id", "unknown rubric"),
    ("'bad-gold'", "<record>", "gold_level is required"),
    ("'bad-gold-range'", "<record>", "outside -3..3"),
    ("tasks.jsonl line 7 ('t1')", "id", "duplicate task id"),
    ("'bad-link'", "dialogue_id", "dialogue 'bad-role' is itself invalid"),
]


def test_dry_run_reports_every_bad_record(store: Store, bad_source: Path):
    store.update_settings(max_clip_s=2.0)
    report = run(store, bad_source, dry_run=True)
    found = [(e.record, e.field, e.message) for e in report.errors]
    for record, field, words in EXPECTED_ERRORS:
        assert any(record in r and f == field and words in m for r, f, m in found), (
            f"no error for {record} {field} {words!r} in:\n" + "\n".join(map(str, report.errors))
        )
    assert len(report.errors) == len(EXPECTED_ERRORS)
    assert store.count("dialogues") == store.count("tasks") == 0


def test_a_bad_import_stores_nothing_and_keeps_what_was_there(store: Store, source: Path, tmp_path):
    run(store, source)
    before = (store.dialogues(), store.tasks(), sorted(p.name for p in store.media_root.rglob("*")))
    write_clips(source, {"new.wav": 0.5})
    write_jsonl(source / "more.jsonl", [dialogue("d9", ["new.wav"]), dialogue("d8", ["gone.wav"])])
    with pytest.raises(ImportRejected, match="nothing was imported") as caught:
        import_jsonl(store, dialogues=source / "more.jsonl")
    assert [e.record for e in caught.value.report.errors] == ["more.jsonl line 2 ('d8')"]
    after = (store.dialogues(), store.tasks(), sorted(p.name for p in store.media_root.rglob("*")))
    assert after == before


def test_changed_records_and_clashing_media_are_refused(store: Store, source: Path):
    run(store, source)
    changed = dialogue("d1", ["a.wav"])  # same id, different turns
    write_jsonl(source / "changed.jsonl", [changed])
    report = import_jsonl(store, dialogues=source / "changed.jsonl", dry_run=True)
    assert [(e.field, "already stored" in e.message) for e in report.errors] == [("id", True)]
    # a different clip under a media path the project already uses
    other = source / "other"
    write_clips(other, {"a.wav": 2.0})
    write_jsonl(other / "d.jsonl", [dialogue("d5", ["a.wav"])])
    report = import_jsonl(store, dialogues=other / "d.jsonl", dry_run=True)
    assert report.errors[0].field == "turns.0.audio.path"
    assert "different file is already stored" in report.errors[0].message


def test_tasks_can_follow_dialogues_imported_earlier(store: Store, source: Path):
    import_jsonl(store, dialogues=source / "dialogues.jsonl")
    report = import_jsonl(store, tasks=source / "tasks.jsonl")
    assert report.added["tasks"] == 3
