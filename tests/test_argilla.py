"""Argilla as the team backend, against a real argilla-server 2.8 over HTTP.

The first tests check the mapping (records, labels, judgments) and the store's upsert without a
server. The rest start one argilla-server for the session (tests/argilla_harness/: its own venv,
cached under ~/.cache/rewardlab; Redis on a free loopback port; SQLite; an in-memory search
engine) and run the real SDK against it: push a project, submit responses as two annotators
through the HTTP API with their own keys, pull, and compare with what was submitted.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from builders import judgment

from annotation_ui import argilla_records
from annotation_ui.argilla_bridge import connect, dataset_settings, pull, push
from annotation_ui.argilla_records import (
    AudioSource,
    batches,
    judgment_from_response,
    record_payload,
    shown_order,
    verdict_labels,
)
from rewardlab.schema import Judgment, Order, RecordError, Task, utc_now
from rewardlab.store import Store

sys.path.insert(0, str(Path(__file__).parent / "argilla_harness"))
from harness import ArgillaServer

# argilla 2.8's own models still use class-based pydantic config
pytestmark = pytest.mark.filterwarnings(
    "ignore:Support for class-based `config`:DeprecationWarning"
)

# ---- the mapping, no server --------------------------------------------------------------------


def shown_in(task: Task, order: str) -> Task:
    """`task` under an id that Argilla shows in `order` (the order is a hash of the id), so a
    test meets each order on purpose, never by the luck of its ids."""
    for n in range(64):  # each id is a fair coin flip: 64 misses would mean a broken hash
        if shown_order(renamed := f"{task.id}-{n}") == order:
            return task.model_copy(update={"id": renamed})
    raise AssertionError(f"no id of the form {task.id}-n is shown {order}")


def test_verdict_labels_carry_level_names_in_level_order():
    assert verdict_labels(3) == {
        "+3": "Response 1 much better",
        "+2": "Response 1 better",
        "+1": "Response 1 slightly better",
        "0": "About the same",
        "-1": "Response 2 slightly better",
        "-2": "Response 2 better",
        "-3": "Response 2 much better",
    }
    assert list(verdict_labels(1)) == ["+1", "0", "-1"]


def test_shown_order_is_stable_per_task_and_balanced():
    orders = [shown_order(f"task-{i}") for i in range(400)]
    assert orders == [shown_order(f"task-{i}") for i in range(400)]  # the same on every push
    # a fair coin: 400 flips land in 170..230 heads with probability > 0.997
    assert 170 <= orders.count("policy_first") <= 230


@pytest.mark.parametrize("order", list(Order))
def test_record_payload_shows_history_swaps_responses_and_embeds_audio(filled: Store, order):
    # turn 2 of d1 (audio turns 0 and 2), policy has audio
    rubric_task = shown_in(filled.task("t2"), order)
    dialogue = filled.dialogue("d1")
    payload = record_payload(rubric_task, dialogue, filled.settings, AudioSource(filled.media_root))
    first, second = ("policy", "reference") if order == "policy_first" else ("reference", "policy")
    assert payload["id"] == rubric_task.id and payload["metadata"] == {"shown_order": order}
    fields = payload["fields"]
    assert fields["dialogue"] == [
        {"role": "user", "content": "User turn 0."},
        {"role": "assistant", "content": "Reply 1."},
        {"role": "user", "content": "User turn 1."},
    ]
    assert fields["response_1"] == getattr(rubric_task, first).text
    assert fields["response_2"] == getattr(rubric_task, second).text
    clips = fields["audio"]["clips"]
    policy_label = "Response 1" if order == "policy_first" else "Response 2"
    assert [c["label"] for c in clips] == ["Turn 1 (user)", "Turn 3 (user)", policy_label]
    refs = [dialogue.turns[0].audio, dialogue.turns[2].audio, rubric_task.policy.audio]
    for clip, ref in zip(clips, refs, strict=True):
        mime, data = clip["src"].removeprefix("data:").split(";base64,")
        assert mime == {".wav": "audio/wav", ".flac": "audio/flac"}[Path(ref.path).suffix]
        assert base64.b64decode(data) == (filled.media_root / ref.path).read_bytes()

    served = record_payload(
        rubric_task, dialogue, filled.settings, AudioSource(filled.media_root, "https://m.x/a/")
    )
    assert served["fields"]["audio"]["clips"][0]["src"] == f"https://m.x/a/{refs[0].path}"


@pytest.mark.parametrize("order", list(Order))
def test_record_payload_hides_transcripts_of_audio_turns(filled: Store, order: str):
    settings = filled.settings.model_copy(update={"show_transcripts": False})
    payload = record_payload(
        filled.task("t1"), filled.dialogue("d1"), settings, AudioSource(filled.media_root)
    )
    assert payload["fields"]["dialogue"] == [
        {"role": "user", "content": "(audio only: listen to Turn 1 (user))"}
    ]
    assert "audio only" not in payload["fields"]["response_1"]  # text-only replies stay

    task = shown_in(filled.task("t1"), order)
    thinking = task.policy.model_copy(update={"reasoning": "The user sounded tired."})
    task = task.model_copy(update={"policy": thinking})
    settings = filled.settings.model_copy(update={"show_reasoning": True})
    fields = record_payload(task, filled.dialogue("d1"), settings, AudioSource(filled.media_root))
    position = 1 if order == "policy_first" else 2
    assert fields["fields"][f"response_{position}"] == (
        "*Reasoning:* The user sounded tired.\n\nA warm, specific reply."
    )


def test_record_payload_errors_name_the_record_and_field(filled: Store, monkeypatch):
    task, dialogue = filled.task("t2"), filled.dialogue("d1")
    audio = AudioSource(filled.media_root)
    clip = filled.media_root / task.policy.audio.path
    original = clip.read_bytes()

    clip.write_bytes(original[:-10])
    with pytest.raises(RecordError, match=r"^task 't2': policy\.audio: .* changed since"):
        record_payload(task, dialogue, filled.settings, audio)
    clip.unlink()
    with pytest.raises(RecordError, match=r"^task 't2': policy\.audio: cannot read"):
        record_payload(task, dialogue, filled.settings, audio)
    clip.write_bytes(original)

    monkeypatch.setattr(argilla_records, "DATA_URI_MAX_CHARS", 1000)
    with pytest.raises(
        RecordError, match=r"turns\.0\.audio: .* over Argilla's 1,000: .*--audio-url"
    ):
        record_payload(task, dialogue, filled.settings, audio)


def test_judgment_from_response_undoes_the_shown_order(filled: Store):
    """Response 1 "better" (+2) is policy +2 when the policy was first, -2 when it was second;
    the scores given to Response 1 belong to whichever side was shown first."""
    task, rubric = filled.task("t2"), filled.rubric("inference_memory")
    values = {
        "verdict": "+2",
        "r1__recalls_relevant_facts": 5,
        "r2__recalls_relevant_facts": 2,
        "r2__no_false_recall": 0,
        "rationale": "Response 1 remembered the colour.",
    }
    made = {
        order: judgment_from_response(
            task, rubric, order, "alice", values, k=3, record="r", created_at=utc_now()
        )
        for order in ("policy_first", "reference_first")
    }
    first, second = made["policy_first"], made["reference_first"]
    assert (first.level, second.level) == (2, -2)
    assert first.rubric_scores == {
        "policy": {"recalls_relevant_facts": 5},
        "reference": {"recalls_relevant_facts": 2, "no_false_recall": 0},
    }
    assert second.rubric_scores == {
        "reference": {"recalls_relevant_facts": 5},
        "policy": {"recalls_relevant_facts": 2, "no_false_recall": 0},
    }
    assert first.id == "argilla:t2:alice" and first.annotator_id == "alice"
    assert second.shown_order == "reference_first" and second.shown_level == 2
    assert second.rationale == "Response 1 remembered the colour."


@pytest.mark.parametrize(
    ("order", "user", "values", "field", "message"),
    [
        ("policy_first", "alice", {"verdict": "+4"}, "verdict", "not a level of -3..3"),
        ("sideways", "alice", {"verdict": "0"}, "metadata.shown_order", "not one of"),
        ("policy_first", "alice", {"verdict": "0", "extra": 1}, "extra", "not a question"),
        ("policy_first", "Jane Doe", {"verdict": "0"}, "username", "should match pattern"),
    ],
)
def test_judgment_from_response_errors_name_the_record_and_field(
    filled: Store, order, user, values, field, message
):
    with pytest.raises(RecordError) as error:
        judgment_from_response(
            filled.task("t1"), None, order, user, values, k=3, record="rec", created_at=utc_now()
        )
    assert (error.value.record, error.value.field) == ("rec", field)
    assert message in error.value.message


def test_batches_stay_under_the_size_and_count_limits():
    """Sizes 32, 32, 72, 32, 32, 32 under 100 characters and 2 records a batch: 32+32+72 is
    over the size, 72+32 too, then 32+32 fills the count."""
    pads = [10, 10, 50, 10, 10, 10]
    payloads = [{"id": str(i), "pad": "x" * pad} for i, pad in enumerate(pads)]
    assert [len(json.dumps(p)) for p in payloads] == [32, 32, 72, 32, 32, 32]
    grouped = [[p["id"] for p in b] for b in batches(payloads, max_chars=100, max_records=2)]
    assert grouped == [["0", "1"], ["2"], ["3", "4"], ["5"]]


def test_upsert_judgment_creates_updates_and_refuses_what_would_lose_data(filled: Store):
    first = judgment("j1", "t1", "ann-1", level=1, rationale="first")
    assert filled.upsert_judgment(first) == "created"
    assert filled.upsert_judgment(first) == "unchanged"
    edited = first.model_copy(update={"level": -2, "rationale": "changed my mind"})
    assert filled.upsert_judgment(edited) == "updated"
    assert filled.judgments() == [edited] and filled.judgment("j1") == edited
    assert filled.judgment("nope") is None
    moved = edited.model_copy(update={"task_id": "t3"})
    with pytest.raises(RecordError, match=r"judgment 'j1': task_id: 't3' differs"):
        filled.upsert_judgment(moved)
    out_of_range = Judgment.model_construct(**(edited.model_dump() | {"level": 5}))
    with pytest.raises(RecordError, match=r"judgment 'j1': level: level 5 is outside -3..3"):
        filled.upsert_judgment(out_of_range)
    with pytest.raises(RecordError, match="already judged task 't1'"):
        filled.upsert_judgment(judgment("j2", "t1", "ann-1"))
    assert filled.judgments() == [edited]
    assert filled.integrity_problems() == []


def test_rewardlab_imports_no_argilla_and_says_how_to_get_it():
    code = (
        "import sys; sys.modules['argilla'] = None\n"  # as if the extra were not installed
        "import rewardlab.cli, annotation_ui.argilla_bridge as a\n"
        "try:\n    a.import_sdk()\n"
        "except a.ArgillaSyncError as error:\n    print(error)\n"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert shown.stdout.strip() == (
        "the Argilla integration needs its extra: pip install 'rewardlab[argilla]'"
    )
    loaded = (
        "import sys, rewardlab.cli, annotation_ui.argilla_bridge; print('argilla' in sys.modules)"
    )
    assert subprocess.run(
        [sys.executable, "-c", loaded], capture_output=True, text=True
    ).stdout == ("False\n")


# ---- a real server -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    with ArgillaServer.start(tmp_path_factory.mktemp("argilla-server")) as running:
        yield running


@pytest.fixture(scope="session")
def owner(server: ArgillaServer):
    return connect(server.url, server.api_key)


@pytest.fixture(scope="session")
def annotators(server: ArgillaServer, owner) -> dict[str, str]:
    """Two Argilla annotators, username -> API key (the SDK does not show keys: ask the API)."""
    import argilla as rg

    keys = {}
    for username, first_name in (("alice", "Alice"), ("bob", "Bob")):
        user = rg.User(
            username=username, first_name=first_name, password=f"{username}-pass", role="annotator"
        )
        user = owner.users.add(user)
        shown = httpx.get(f"{server.url}/api/v1/users/{user.id}", headers=_key(server.api_key))
        keys[username] = shown.json()["api_key"]
    return keys


def _key(api_key: str) -> dict[str, str]:
    return {"X-Argilla-Api-Key": api_key}


def _join(owner, annotators: dict[str, str], workspace: str) -> None:
    space = owner.workspaces(workspace)
    for username in annotators:
        space.add_user(username)


def _records(owner, name: str, workspace: str) -> dict:
    """External id (task id) -> the owner's view of the record, with its server id."""
    return {record.id: record for record in owner.datasets(name, workspace=workspace).records()}


def _respond(server, api_key: str, record, values: dict) -> str:
    """Submit as an annotator, through the API (annotators may not list records with the SDK)."""
    body = {"values": {q: {"value": v} for q, v in values.items()}, "status": "submitted"}
    answer = httpx.post(
        f"{server.url}/api/v1/records/{record._server_id}/responses",
        json=body,
        headers=_key(api_key),
    )
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


@pytest.fixture
def demo(tmp_path: Path, demo_world) -> Store:
    """8 demo dialogues: 6 pairwise tasks, one task each under two rubrics, both orders shown
    (a copy of the shared world: pulls write to it)."""
    world = demo_world(n=8, seed=1, annotators=3, annotators_per_task=2)
    with Store(shutil.copytree(world, tmp_path / "demo")) as built:
        yield built


def _answers(task, rubric, username: str, i: int) -> dict:
    """What `username` answers on the i-th task: varied levels, partial rubric scores."""
    labels = list(verdict_labels(3))
    values = {"verdict": labels[(i * 3 + (username == "bob")) % 7]}
    if username == "alice":
        values["rationale"] = f"alice on {task.id}"
    for criterion in rubric.criteria if rubric else ():
        high = 1 if criterion.scale == "binary" else 5
        values[f"r1__{criterion.id}"] = high
        if username == "alice":  # bob leaves Response 2 unscored
            values[f"r2__{criterion.id}"] = high - 1
    return values


def _expected(task, values: dict) -> dict:
    """The judgment those answers mean, policy vs reference, worked out independently."""
    flip = shown_order(task.id) == "reference_first"
    first, second = ("reference", "policy") if flip else ("policy", "reference")
    scores: dict[str, dict[str, int]] = {}
    for question, value in values.items():
        if question.startswith(("r1__", "r2__")):
            side = first if question.startswith("r1__") else second
            scores.setdefault(side, {})[question[4:]] = value
    level = int(values["verdict"])
    return {
        "level": -level if flip else level,
        "rubric_scores": scores,
        "rationale": values.get("rationale", ""),
        "shown_order": "reference_first" if flip else "policy_first",
    }


def _stored(store: Store, username: str) -> dict[str, dict]:
    fields = ("level", "rubric_scores", "rationale", "shown_order")
    return {
        j.task_id: {f: getattr(j, f) for f in fields}
        for j in store.judgments(annotator_id=username)
    }


def test_push_submit_pull_round_trip(server, owner, annotators, demo: Store):
    tasks = demo.tasks()
    assert {shown_order(t.id) for t in tasks} == {"policy_first", "reference_first"}
    rubrics = sorted({t.rubric_id for t in tasks} - {None})
    assert len(rubrics) == 2

    report = push(demo, owner, workspace="team", prefix="demo")
    assert report.ok and dict(report.counts) == {
        "added to 'demo'": 6,
        **{f"added to 'demo-rubric-{r}'": 1 for r in rubrics},
    }
    again = push(demo, owner, workspace="team", prefix="demo")
    assert again.ok and dict(again.counts) == {"already in Argilla": 8}
    _join(owner, annotators, "team")

    dataset = owner.datasets("demo", workspace="team")
    assert dataset.settings.distribution.min_submitted == 2  # the project's overlap
    assert demo.settings.guidelines in dataset.settings.guidelines
    assert dataset.settings.questions["verdict"].labels == list(verdict_labels(3))
    records = {name: _records(owner, name, "team") for name in _dataset_names(rubrics)}
    assert sum(map(len, records.values())) == 8  # the second push added nothing
    by_task = {task_id: rec for named in records.values() for task_id, rec in named.items()}
    for task in tasks:
        record = by_task[task.id]
        assert record.metadata["shown_order"] == shown_order(task.id)
        first = task.policy if shown_order(task.id) == "policy_first" else task.reference
        assert record.fields["response_1"] == first.text
        assert len(record.fields["dialogue"]) == task.turn_index + 1
    visible = httpx.get(
        f"{server.url}/api/v1/me/datasets/{dataset.id}/metadata-properties",
        headers=_key(annotators["alice"]),
    ).json()["items"]
    assert visible == []  # shown_order is hidden from annotators

    expected: dict[str, dict[str, dict]] = {"alice": {}, "bob": {}}
    response_ids = {}
    for i, task in enumerate(tasks):
        rubric = demo.rubric(task.rubric_id) if task.rubric_id else None
        for username, key in annotators.items():
            values = _answers(task, rubric, username, i)
            response_ids[task.id, username] = _respond(server, key, by_task[task.id], values)
            expected[username][task.id] = _expected(task, values)
    progress = httpx.get(
        f"{server.url}/api/v1/datasets/{dataset.id}/progress", headers=_key(server.api_key)
    ).json()
    assert (progress["total"], progress["completed"]) == (6, 6)  # two submissions each
    mine = httpx.get(
        f"{server.url}/api/v1/me/datasets/{dataset.id}/metrics", headers=_key(annotators["bob"])
    ).json()["responses"]
    assert (mine["submitted"], mine["pending"]) == (6, 0)

    simulated = demo.count("judgments")
    pulled = pull(demo, owner, workspace="team", prefix="demo")
    assert pulled.ok and dict(pulled.counts) == {"created": 16}
    assert _stored(demo, "alice") == expected["alice"]
    assert _stored(demo, "bob") == expected["bob"]
    assert any(
        e["level"] != 0 and e["shown_order"] == "reference_first"
        for e in expected["alice"].values()
    )
    assert {a["id"]: a["display_name"] for a in demo.annotators()}.items() >= {
        "alice": "Alice",
        "bob": "Bob",
    }.items()
    assert demo.count("judgments") == simulated + 16

    before = {j.id: j for j in demo.judgments()}
    repulled = pull(demo, owner, workspace="team", prefix="demo")
    assert repulled.ok and dict(repulled.counts) == {"unchanged": 16}
    assert {j.id: j for j in demo.judgments()} == before  # created_at included

    edited_task = tasks[0]
    record = by_task[edited_task.id]
    answer = httpx.put(
        f"{server.url}/api/v1/responses/{response_ids[edited_task.id, 'alice']}",
        json={"values": {"verdict": {"value": "-3"}}, "status": "submitted"},
        headers=_key(annotators["alice"]),
    )
    assert answer.status_code == 200, answer.text
    updated = pull(demo, owner, workspace="team", prefix="demo")
    assert updated.ok and dict(updated.counts) == {"updated": 1, "unchanged": 15}
    now = demo.judgment(f"argilla:{edited_task.id}:alice")
    flip = record.metadata["shown_order"] == "reference_first"
    assert (now.level, now.rationale) == (3 if flip else -3, "")
    assert demo.count("judgments") == simulated + 16
    assert {j.id: j for j in demo.judgments()} == before | {now.id: now}


def test_push_reports_the_records_argilla_refuses(owner, filled: Store):
    """A pairwise dataset made by hand without the hidden ``shown_order`` property: Argilla
    refuses its records (no extra metadata allowed); the report names each, and the rubric
    task still reaches its own dataset."""
    import argilla as rg

    made = dataset_settings(filled.settings, None)
    owner.workspaces.add(rg.Workspace(name="refuse"))
    settings = rg.Settings(
        guidelines=made.guidelines,
        fields=made.fields,
        questions=made.questions,
        allow_extra_metadata=False,
    )
    rg.Dataset(name="old", workspace="refuse", settings=settings, client=owner).create()

    report = push(filled, owner, workspace="refuse", prefix="old")
    assert dict(report.counts) == {"added to 'old-rubric-inference_memory'": 1}
    assert [(f.record, f.field) for f in report.failures] == [
        ("task 't1'", "<record>"),
        ("task 't3'", "<record>"),
    ]
    assert all(
        "Argilla refused" in f.message and "shown_order" in f.message for f in report.failures
    )
    assert len(list(owner.datasets("old", workspace="refuse").records())) == 0

    verdict_only = rg.Settings(
        fields=[rg.TextField(name="text")], questions=[rg.LabelQuestion("verdict", ["a", "b"])]
    )
    rg.Dataset(name="other", workspace="refuse", settings=verdict_only, client=owner).create()
    with pytest.raises(
        RecordError, match=r"^Argilla dataset 'other': questions: has \['verdict'\]"
    ):
        push(filled, owner, workspace="refuse", prefix="other")


def _dataset_names(rubrics: list[str]) -> list[str]:
    return ["demo", *(f"demo-rubric-{r}" for r in rubrics)]


def _cli(server: ArgillaServer, *args: object) -> subprocess.CompletedProcess:
    env = os.environ | {"ARGILLA_API_URL": server.url, "ARGILLA_API_KEY": server.api_key}
    command = [sys.executable, "-m", "rewardlab.cli", "argilla", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_cli_reports_failed_records_and_keeps_the_rest(server, owner, annotators, filled: Store):
    """A missing clip fails one task's push; a stray Argilla record fails one pull; the rest
    go through, the command exits 1 naming them, and a later run finishes the job."""
    import argilla as rg

    clip = filled.media_root / filled.dialogue("d2").turns[0].audio.path
    original = clip.read_bytes()
    clip.unlink()
    project = filled.root
    pushed = _cli(server, "push", project, "--workspace", "cli", "--dataset", "small")
    assert pushed.returncode == 1, pushed.stderr
    assert "argilla push: 1 added to 'small', 1 added to 'small-rubric-inference_memory'" in (
        pushed.stdout
    )
    assert "task 't3': dialogue 'd2' turns.0.audio: cannot read" in pushed.stdout
    clip.write_bytes(original)
    pushed = _cli(server, "push", project, "--workspace", "cli", "--dataset", "small")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    assert "2 already in Argilla, 1 added to 'small'" in pushed.stdout

    _join(owner, annotators, "cli")
    dataset = owner.datasets("small", workspace="cli")
    stray = {"dialogue": [{"role": "user", "content": "hi"}], "response_1": "a", "response_2": "b"}
    dataset.records.log(
        [rg.Record(id="stray", fields=stray, metadata={"shown_order": "policy_first"})]
    )
    records = _records(owner, "small", "cli")
    for task_id in ("t1", "stray"):
        _respond(server, annotators["alice"], records[task_id], {"verdict": "+1"})
    filled.submit_judgment(judgment("j-local", "t3", "ann-1", level=2))
    pulled = _cli(server, "pull", project, "--workspace", "cli", "--dataset", "small")
    assert pulled.returncode == 1
    assert "argilla pull: 1 created" in pulled.stdout
    assert (
        "Argilla record 'stray' in 'small' by 'alice': id: no task of 'small' has this id"
        in pulled.stdout
    )
    level = 1 if shown_order("t1") == "policy_first" else -1
    assert [(j.id, j.level) for j in filled.judgments()] == [
        ("j-local", 2),
        ("argilla:t1:alice", level),
    ]


def test_cli_says_when_argilla_cannot_be_used(filled: Store, server):
    env = os.environ | {"ARGILLA_API_URL": server.url, "ARGILLA_API_KEY": "wrong.key"}
    command = [sys.executable, "-m", "rewardlab.cli", "argilla", "pull", str(filled.root)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("rewardlab argilla: error: cannot use the Argilla server:")
