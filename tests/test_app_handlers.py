"""The annotation app's handlers (`AnnotationService`) and page rendering on a real project:
demo-world speech, spoken responses, a rubric, HTML in the data."""

from __future__ import annotations

import random
import shutil
import zipfile
from pathlib import Path

import pytest
from app_harness import APP_WORLD, XSS_TEXT, make_app_project

from annotation_ui import render
from annotation_ui.admin import import_uploads
from annotation_ui.service import AnnotationService
from rewardlab.schema import Order, RecordError
from rewardlab.store import Store, StoreError, queue


@pytest.fixture(scope="module")
def built(tmp_path_factory, demo_world) -> Path:
    return make_app_project(
        tmp_path_factory.mktemp("app"), demo_world(**APP_WORLD), annotators_per_task=3
    )


@pytest.fixture
def service(built: Path, tmp_path: Path):
    shutil.copytree(built, tmp_path / "project")
    with Store(tmp_path / "project") as store:
        yield AnnotationService(store, rng=random.Random(0))


def order_of(service: AnnotationService, annotator: str, task_id: str) -> str:
    return queue.open_assignment(service.store, annotator, task_id).shown_order


def test_a_view_shows_the_task_blind(service: AnnotationService):
    view = service.next_task("ann-1")
    task = service.store.task("spoken-t")
    assert view["task_id"] == "spoken-t"
    order = order_of(service, "ann-1", "spoken-t")
    first, second = ("policy", "reference") if order == "policy_first" else ("reference", "policy")
    assert [r["label"] for r in view["responses"]] == ["Response 1", "Response 2"]
    assert view["responses"][0]["text"] == getattr(task, first).text
    assert view["responses"][1]["audio"]["media_path"] == getattr(task, second).audio.path
    text = str(view)
    for secret in ("demo-policy", "'reference'", "truth", "gold", "shown_order", "source"):
        assert secret not in text, secret
    assert [lv["label"] for lv in view["levels"]][::3] == [
        "Response 1 much better",
        "About the same",
        "Response 2 much better",
    ]
    assert [lv["level"] for lv in view["levels"]] == [3, 2, 1, 0, -1, -2, -3]
    assert view["rubric"]["id"] == "prosodic_naturalness" and len(view["rubric"]["criteria"]) == 5
    history = view["history"]
    assert [t["role"] for t in history] == ["user", "assistant", "user", "assistant", "user"]
    assert all(t["audio"] and t["text"] for t in history if t["role"] == "user")
    assert view["progress"] == {"done_today": 0, "daily_goal": 40, "text": "0 of 40 today"}


def test_transcripts_and_reasoning_follow_the_project_settings(service: AnnotationService):
    service.store.update_settings(show_transcripts=False)
    view = service.next_task("ann-1")
    assert all(t["text"] is None for t in view["history"] if t["audio"])
    assert all(t["text"] for t in view["history"] if not t["audio"])  # text-only turns stay
    assert all(r["text"] is None for r in view["responses"])  # both responses are spoken
    html = render.timeline_html(view) + render.response_html(view["responses"][0])
    assert "Transcript hidden" in html and "My favourite colour" not in html
    assert all(r["reasoning"] is None for r in view["responses"])


def served_in_order(service: AnnotationService, annotator: str, order: str) -> dict:
    """The annotator's next task, its presentation order set to `order` before it is shown."""
    task_id = service.next_task(annotator)["task_id"]
    with service.store.transaction() as tx:
        tx.execute(
            "UPDATE assignments SET shown_order = ? WHERE task_id = ? AND annotator_id = ?",
            (order, task_id, annotator),
        )
    return service.next_task(annotator)  # a reload: the open task, now in that order


@pytest.mark.parametrize("order", list(Order))
def test_submit_undoes_the_presentation_order(service: AnnotationService, order: str):
    view = served_in_order(service, "ann-2", order)
    assert order_of(service, "ann-2", view["task_id"]) == order
    shown = {r["key"]: r["text"] for r in view["responses"]}
    task = service.store.task(view["task_id"])
    sides = ("policy", "reference") if order == "policy_first" else ("reference", "policy")
    assert [shown["response_1"], shown["response_2"]] == [getattr(task, s).text for s in sides]
    scores = {"response_1": {"pacing": 5}, "response_2": {"pacing": 2}}
    result = service.submit(
        "ann-2",
        {
            "task_id": view["task_id"],
            "judgment_id": view["judgment_id"],
            "level": 2,  # Response 1 better
            "rubric_scores": scores,
            "rationale": "clearer",
        },
    )
    stored = service.store.judgment(result.judgment_id)
    policy_first = order == "policy_first"
    assert stored.shown_order == order and stored.shown_level == 2
    assert stored.level == (2 if policy_first else -2)
    assert stored.rubric_scores == {
        "policy": {"pacing": 5 if policy_first else 2},
        "reference": {"pacing": 2 if policy_first else 5},
    }
    assert stored.time_spent_s >= 0 and stored.annotator_id == "ann-2"


def test_full_listening_is_required_and_clips_must_belong_to_the_task(service: AnnotationService):
    service.store.update_settings(require_full_listen=True)
    view = service.next_task("ann-1")
    r1, r2 = (r["audio"]["media_path"] for r in view["responses"])
    form = {"task_id": "spoken-t", "judgment_id": view["judgment_id"], "level": 0}
    with pytest.raises(RecordError, match="play Response 1 to the end") as caught:
        service.submit("ann-1", form | {"listened": {r1: 0.5, r2: 1.0}})
    assert caught.value.field == "listened" and "50% played" in caught.value.message
    with pytest.raises(RecordError, match="play Response 2 to the end"):
        service.submit("ann-1", form | {"listened": {r1: 1.0}})
    with pytest.raises(RecordError, match="not a clip of this task") as caught:
        service.submit("ann-1", form | {"listened": {r1: 1, r2: 1, "tts/other.flac": 1}})
    assert caught.value.field == "listened.tts/other.flac"
    with pytest.raises(RecordError, match="less than or equal to 1"):
        service.submit("ann-1", form | {"listened": {r1: 1.5, r2: 1}})
    assert service.store.count("judgments") == 0
    history_clip = view["history"][0]["audio"]["media_path"]
    listened = {r1: 1.0, r2: 0.99, history_clip: 0.4}
    result = service.submit("ann-1", form | {"listened": listened})
    assert service.store.judgment(result.judgment_id).listened == listened


def test_form_errors_name_the_field_in_the_terms_shown(service: AnnotationService):
    view = service.next_task("ann-1")
    form = {"task_id": "spoken-t", "judgment_id": view["judgment_id"], "level": 1}
    with pytest.raises(RecordError, match=r"outside -3\.\.3") as caught:
        service.submit("ann-1", form | {"level": 4})
    assert (caught.value.record, caught.value.field) == ("submit of task 'spoken-t'", "level")
    bad_scores = {"response_2": {"pacing": 9}}
    with pytest.raises(RecordError, match=r"outside 1\.\.5") as caught:
        service.submit("ann-1", form | {"rubric_scores": bad_scores})
    assert caught.value.field == "rubric_scores.response_2.pacing"  # not "policy"
    with pytest.raises(RecordError) as caught:
        service.submit("ann-1", form | {"rubric_scores": {"policy": {"x": 1}}})
    assert caught.value.field.startswith("rubric_scores.policy")  # keys are response_1/2
    with pytest.raises(RecordError) as caught:
        service.submit("ann-1", {"task_id": "spoken-t", "judgment_id": view["judgment_id"]})
    assert caught.value.field == "level"
    service.skip("ann-1", "spoken-t")
    xss = service.next_task("ann-1")
    scored = {"response_1": {"pacing": 3}}  # but xss-t has no rubric
    with pytest.raises(RecordError, match="no rubric to score"):
        service.submit(
            "ann-1",
            {
                "task_id": "xss-t",
                "judgment_id": xss["judgment_id"],
                "level": 0,
                "rubric_scores": scored,
            },
        )
    assert service.store.count("judgments") == 0


def test_annotators_touch_only_their_own_assignment(service: AnnotationService):
    mine = service.next_task("ann-1")
    theirs = service.next_task("ann-2")
    assert mine["judgment_id"] != theirs["judgment_id"]
    stolen = {"task_id": theirs["task_id"], "judgment_id": theirs["judgment_id"], "level": 3}
    # ann-3 holds no assignment of that task: refused, whatever ids the form names
    with pytest.raises(StoreError, match="not open for annotator 'ann-3'"):
        service.submit("ann-3", stolen)
    assert not service.save_draft("ann-3", theirs["task_id"], {"rationale": "overwritten"})
    with pytest.raises(StoreError, match="not open"):
        service.skip("ann-3", "xss-t")
    # ann-1 holds the same task but its own judgment id: the other one is refused
    with pytest.raises(RecordError, match="not the id this task was served with"):
        service.submit("ann-1", stolen)
    assert service.store.count("judgments") == 0
    assert service.next_task("ann-2")["draft"] == {}


def test_a_resubmit_is_acknowledged_once_and_drafts_round_trip(service: AnnotationService):
    view = service.next_task("ann-1")
    draft = {"level": -1, "rationale": "typing…", "rubric_scores": {"response_1": {"pacing": 2}}}
    assert service.save_draft("ann-1", "spoken-t", draft)
    assert service.next_task("ann-1")["draft"] == draft  # what a reload shows
    form = {"task_id": "spoken-t", "judgment_id": view["judgment_id"], "level": -1}
    assert service.submit("ann-1", form).created is True
    assert service.submit("ann-1", form).created is False  # a double click or a retry
    with pytest.raises(RecordError, match="already stored with different content") as caught:
        service.submit("ann-1", form | {"rationale": "again"})
    assert caught.value.field == "rationale"
    assert service.store.count("judgments") == 1
    assert service.store.judgment(view["judgment_id"]).rationale == ""
    assert not service.save_draft("ann-1", "spoken-t", draft)  # a late autosave: ignored
    assert service.next_task("ann-1")["task_id"] == "xss-t"
    assert service.progress("ann-1")["text"] == "1 of 40 today"
    with pytest.raises(RecordError) as caught:
        service.save_draft("ann-1", "xss-t", {"unknown": 1})
    assert caught.value.field == "unknown"


def test_a_draft_is_checked_against_its_task_like_a_submit(service: AnnotationService):
    view = service.next_task("ann-1")
    assert view["task_id"] == "spoken-t"
    bad_drafts = {
        "listened.tts/other.flac": {"listened": {"tts/other.flac": 1.0}},
        "rubric_scores.response_1.warmth": {"rubric_scores": {"response_1": {"warmth": 3}}},
        "rubric_scores.response_2.pacing": {"rubric_scores": {"response_2": {"pacing": 9}}},
        "task_id": None,  # (sent as a list below)
    }
    for field, draft in bad_drafts.items():
        task_id = ["spoken-t"] if draft is None else "spoken-t"
        with pytest.raises(RecordError) as caught:
            service.save_draft("ann-1", task_id, draft or {})
        assert caught.value.field == field
    with pytest.raises(RecordError, match="has no rubric to score") as caught:
        service.save_draft("ann-2", "xss-t", {"rubric_scores": {"response_1": {"pacing": 2}}})
    assert service.next_task("ann-1")["draft"] == {}  # nothing of them was kept
    assert not service.save_draft("ann-1", "no-such-task", {"rationale": "x"})


def test_rendering_escapes_everything_from_the_data(service: AnnotationService):
    service.skip("ann-1", service.next_task("ann-1")["task_id"])
    view = service.next_task("ann-1")
    assert view["task_id"] == "xss-t"
    view["draft"] = {"rationale": XSS_TEXT}
    html = "".join(
        [render.timeline_html(view), *map(render.response_html, view["responses"])]
    ) + render.header_html("<i>p</i>", "<b>me</b>", "1 of 2 today", is_admin=True)
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html
    assert "{{value}} ${window.__xss = 3}" in html  # Gradio inserts values, never evaluates


def test_admin_import_of_a_zip_and_archive_escape(service: AnnotationService, tmp_path: Path):
    source = tmp_path / "upload"
    source.mkdir()
    (source / "dialogues.jsonl").write_text(
        '{"id": "new-d", "turns": [{"role": "user", "text": "Hi", "audio": {"path": "a.flac"}}]}\n'
    )
    (source / "tasks.jsonl").write_text(
        '{"id": "new-t", "dialogue_id": "new-d", "turn_index": 0,'
        ' "policy": {"text": "Hello!", "source": "p"},'
        ' "reference": {"text": "Hi.", "source": "reference"}}\n'
    )
    clip = next((service.store.media_root / "tts").iterdir())
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for name in ("dialogues.jsonl", "tasks.jsonl"):
            out.write(source / name, f"batch/{name}")
        out.write(clip, "batch/a.flac")
    report = import_uploads([archive], service, dry_run=True)
    assert report.startswith("dry run: 1 dialogues, 1 tasks, 1 audio files are valid")
    assert "imported 1 dialogues, 1 tasks" in import_uploads([archive], service, dry_run=False)
    assert service.store.task("new-t").dialogue_id == "new-d"
    assert (service.store.media_root / "a.flac").read_bytes() == clip.read_bytes()

    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as out:
        out.writestr("../escaped.jsonl", "{}")
    with pytest.raises(RecordError, match="outside the folder") as caught:
        import_uploads([evil], service, dry_run=False)
    assert caught.value.field == "../escaped.jsonl"
    assert not (tmp_path / "escaped.jsonl").exists()
    bad = tmp_path / "tasks-bad.jsonl"
    bad.write_text('{"id": "t-bad", "dialogue_id": "nowhere", "turn_index": 0}\n')
    report = import_uploads([bad], service, dry_run=False)
    assert "nothing was imported" in report and "tasks-bad.jsonl line 1 ('t-bad')" in report


def test_the_page_shows_a_task_or_says_nothing_is_left(service: AnnotationService):
    from annotation_ui.annotate import page_state

    view = service.next_task("ann-1")
    shown = page_state(service, "ann-1", view)
    assert shown["form"]["visible"] is True and shown["empty"]["visible"] is False
    assert shown["task_id"] == "spoken-t" and len(shown["level"]["choices"]) == 7
    assert "0 of 40 today" in shown["header"] and "Admin" not in shown["header"]
    done = page_state(service, "admin", None)
    assert set(done) == set(shown)  # every part of the page gets a value either way
    assert done["form"]["visible"] is False and "No tasks left" in done["empty"]["value"]
    assert done["task_id"] == "" and 'href="admin/"' in done["header"]
