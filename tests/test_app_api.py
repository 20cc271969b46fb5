"""The app's API through `gradio_client`, against `rewardlab serve` running on localhost."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_harness import APP_WORLD, PASSWORDS, make_app_project, running_app
from gradio_client import Client
from gradio_client.exceptions import AppError, AuthenticationError

from rewardlab.store import Store


@pytest.fixture(scope="module")
def app(tmp_path_factory, demo_world) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("api")
    project = make_app_project(root, demo_world(**APP_WORLD), annotators_per_task=2)
    with running_app(project, root / "server.log") as url:
        yield url, project


def client(url: str, name: str) -> Client:
    return Client(url, auth=(name, PASSWORDS[name]), verbose=False, analytics_enabled=False)


def test_the_public_api_lists_the_annotation_endpoints(app):
    url, _ = app
    endpoints = client(url, "ann-1").view_api(print_info=False, return_format="dict")
    assert set(endpoints["named_endpoints"]) == {
        "/next_task",
        "/submit",
        "/save_draft",
        "/skip",
        "/flag",
        "/progress",
    }  # the page's own events stay private


def test_an_annotator_works_through_tasks_and_a_retry_stores_nothing_twice(app):
    url, project = app
    ann = client(url, "ann-1")
    task = ann.predict(api_name="/next_task")
    assert task["task_id"] == "spoken-t" and len(task["levels"]) == 7
    assert ann.predict(api_name="/next_task")["judgment_id"] == task["judgment_id"]  # resumed
    saved = ann.predict(
        task["task_id"], {"level": 1, "rationale": "so far"}, api_name="/save_draft"
    )
    assert saved == {"saved": True}
    assert ann.predict(api_name="/next_task")["draft"] == {"level": 1, "rationale": "so far"}
    args = (task["task_id"], task["judgment_id"], 1, {"response_1": {"pacing": 4}}, "warmer", {})
    assert ann.predict(*args, api_name="/submit") == {
        "judgment_id": task["judgment_id"],
        "created": True,
    }
    assert ann.predict(*args, api_name="/submit")["created"] is False  # the retry
    changed = (*args[:4], "on second thoughts", {})
    with pytest.raises(AppError, match="already stored with different content") as refused:
        ann.predict(*changed, api_name="/submit")
    assert f"judgment {task['judgment_id']!r}: rationale:" in str(refused.value)
    assert ann.predict(api_name="/progress")["text"] == "1 of 40 today"
    following = ann.predict(api_name="/next_task")
    assert following["task_id"] == "xss-t"
    after_skip = ann.predict(following["task_id"], api_name="/skip")
    assert after_skip["task_id"] not in ("spoken-t", "xss-t")
    after_flag = ann.predict(after_skip["task_id"], "no audio", api_name="/flag")
    assert after_flag["task_id"] != after_skip["task_id"]
    with Store(project) as store:
        (stored,) = store.judgments(annotator_id="ann-1")
        order = stored.shown_order
        assert stored.id == task["judgment_id"] and stored.rationale == "warmer"
        assert stored.level == (1 if order == "policy_first" else -1)
        side = "policy" if order == "policy_first" else "reference"
        assert stored.rubric_scores == {side: {"pacing": 4}}


def test_one_annotator_cannot_read_or_write_anothers_work(app):
    url, project = app
    first, second = client(url, "ann-2"), client(url, "ann-3")
    mine = first.predict(api_name="/next_task")
    first.predict(mine["task_id"], {"rationale": "private thoughts"}, api_name="/save_draft")
    theirs = second.predict(api_name="/next_task")
    assert theirs["judgment_id"] != mine["judgment_id"] and theirs["draft"] == {}
    # ann-3 names ann-2's task and judgment id: refused, nothing stored, ann-2's draft intact
    with pytest.raises(
        AppError, match=f"task '{mine['task_id']}' is not open for annotator 'ann-3'"
    ):
        second.predict(mine["task_id"], mine["judgment_id"], 3, {}, "", {}, api_name="/submit")
    second.predict(mine["task_id"], {"rationale": "overwritten"}, api_name="/save_draft")
    assert first.predict(api_name="/next_task")["draft"] == {"rationale": "private thoughts"}
    with pytest.raises(AppError, match="not open for annotator 'ann-3'"):
        second.predict(mine["task_id"], api_name="/skip")
    with Store(project) as store:
        assert store.judgments(annotator_id="ann-3") == []
        assert store.judgment(mine["judgment_id"]) is None


def test_bad_requests_get_errors_naming_the_field(app):
    url, _ = app
    ann = client(url, "ann-4")
    task = ann.predict(api_name="/next_task")
    with pytest.raises(AppError, match=r"level: level 9 is outside -3\.\.3"):
        ann.predict(task["task_id"], task["judgment_id"], 9, {}, "", {}, api_name="/submit")
    with pytest.raises(AppError, match=r"listened\.nope\.flac: not a clip of this task"):
        ann.predict(
            task["task_id"], task["judgment_id"], 1, {}, "", {"nope.flac": 1}, api_name="/submit"
        )
    with pytest.raises(AppError, match=r"rationale: String should have at most 20000"):
        ann.predict(task["task_id"], {"rationale": "x" * 20_001}, api_name="/save_draft")


def test_logging_in_is_required_and_checked(app):
    url, _ = app
    with pytest.raises(AuthenticationError):
        Client(url, auth=("ann-1", "wrong password"), verbose=False, analytics_enabled=False)
    with pytest.raises(AuthenticationError):  # no session: the config itself is refused
        Client(url, verbose=False, analytics_enabled=False)
