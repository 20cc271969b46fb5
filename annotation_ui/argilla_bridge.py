"""Argilla as the team backend: push a project's tasks to Argilla, pull the judgments back.

    pip install "rewardlab[argilla]"
    export ARGILLA_API_URL=https://argilla.example.org ARGILLA_API_KEY=...  # an owner's or admin's
    rewardlab argilla push PROJECT [--workspace rewardlab] [--dataset NAME] [--audio-url URL]
    rewardlab argilla pull PROJECT [--workspace rewardlab] [--dataset NAME]

Built on the argilla 2.x SDK (tested against argilla-server 2.8). The SDK is imported inside the
functions that talk to a server, so rewardlab works without the extra.

Mapping
- One Argilla dataset per kind of task, since questions are per dataset: NAME for plain pairwise
  tasks, NAME-rubric-<rubric id> for each rubric's tasks (NAME defaults to the project folder).
- A record per task; its id is the task id, so a push never adds a task twice: records already
  in the dataset are left as they are (with their responses), new tasks are added.
- Fields: ``dialogue``, a ChatField with the history up to the task's turn; ``audio``, a
  CustomField whose template renders one <audio> player per clip (history, then Response 1 and
  2); ``response_1`` and ``response_2``, the candidate replies (markdown TextFields). With
  ``show_transcripts`` off, turns and candidates that have audio show no text.
- The order of the two responses is pseudo-random per task (a hash of its id, so a re-push
  keeps it) and stored in the metadata property ``shown_order``, hidden from annotators.
- ``verdict``: a LabelQuestion with the 2K+1 levels as labels, from "Response 1 much better" to
  "Response 2 much better". Each label carries its level's name, in level order, and its value
  is the signed level as shown ("+2", "0", "-1"); pull undoes the order, so judgments are
  stored policy-vs-reference (the sign flips when the reference was shown first). A
  RatingQuestion would fit worse: its options are integers 0..10 with no names, so the level
  names could only sit in a legend in the description, and a two-sided scale would need an
  offset (-3..3 shown as 1..7) that annotators must decode.
- Rubric criteria: two RatingQuestions each, ``r1__<criterion>`` and ``r2__<criterion>``
  (binary: 0/1, likert5: 1..5), optional because criteria may be left unscored.
- ``rationale``: an optional TextQuestion. Guidelines: the project's guidelines plus the rubric.
- ``TaskDistribution(min_submitted=annotators_per_task)``: the project's overlap.

Pull reads the records with submitted responses (``dataset.records(query)``) and turns each
user's submitted response into a Judgment with id ``argilla:<task id>:<username>``, by the
rewardlab annotator whose id is the Argilla username (created if missing). Pulling twice stores
nothing twice; a response edited in Argilla replaces ours (`Store.upsert_judgment`). Argilla's
SDK gives no response timestamps, so ``created_at`` is when a pull first saw that version. A
response taken back in Argilla (discarded, or back to draft) is not deleted here.

Audio: Argilla has no audio field. By default each clip is embedded as a data URI, read from the
project's media and checked against its sha256, and held to Argilla's limit for media data URIs
(5,000,000 characters, which it enforces on image fields; about 3.7 MB of audio): a longer clip
is refused, naming the record and the field. With ``--audio-url URL`` the players point at
URL/<media path> instead (at most 2,038 characters, Argilla's limit for media URLs), for audio
served elsewhere. Records are grouped into requests of about 8 MB at most (one record with
several long clips can be larger); a proxy in front of Argilla may cap requests lower (nginx
allows 1 MB by default: use --audio-url there). Argilla 2.8's web UI renders the template in an
iframe whose players load such data URIs (checked by hand in Chromium).

Partial failures: a task that cannot become a record, or a response that cannot become a
judgment, is reported (record and field) and the others go through.
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pydantic import TypeAdapter, ValidationError

from annotation_ui.presentation import AUDIO_MIME, verdict_labels
from rewardlab.rubrics import format_rubric
from rewardlab.schema import (
    AudioRef,
    Candidate,
    Dialogue,
    Identifier,
    Judgment,
    Order,
    ProjectSettings,
    RecordError,
    Rubric,
    Task,
    errors_of,
    utc_now,
)

if TYPE_CHECKING:
    import argilla as rg

    from rewardlab.store import Store

VERDICT, RATIONALE, SHOWN_ORDER = "verdict", "rationale", "shown_order"
DATA_URI_MAX_CHARS = 5_000_000  # argilla-server 2.8: IMAGE_FIELD_DATA_URL_MAX_LENGTH
WEB_URL_MAX_CHARS = 2_038  # argilla-server 2.8: IMAGE_FIELD_WEB_URL_MAX_LENGTH
CHAT_MESSAGE_MAX_CHARS = 20_000  # argilla-server 2.8: ChatFieldValue.content
GUIDELINES_MAX_CHARS = 10_000  # argilla-server 2.8: DatasetGuidelines
BATCH_MAX_CHARS, BATCH_MAX_RECORDS = 8_000_000, 100
AUDIO_TEMPLATE = """
<div style="display:flex;flex-direction:column;gap:8px">
{{#each record.fields.audio.clips}}
  <div><div style="font-weight:600">{{this.label}}</div>
  <audio controls preload="metadata" src="{{this.src}}"></audio></div>
{{/each}}
</div>
"""


class ArgillaSyncError(RuntimeError):
    """Argilla cannot be used: the extra is missing, the server unreachable, the key refused."""


# ---- the mapping: plain data in and out, no SDK ------------------------------------------------


def dataset_name(prefix: str, rubric_id: str | None) -> str:
    return prefix if rubric_id is None else f"{prefix}-rubric-{rubric_id}"


def shown_order(task_id: str) -> Order:
    """The order a task is shown in: a coin flip seeded by its id, the same on every push."""
    return tuple(Order)[hashlib.sha256(task_id.encode()).digest()[0] & 1]


def criterion_question(position: int, criterion_id: str) -> str:
    """Name of the question scoring `criterion_id` for Response `position` (1 or 2)."""
    return f"r{position}__{criterion_id}"


def guidelines(settings: ProjectSettings, rubric: Rubric | None) -> str:
    parts = [
        settings.guidelines.strip()
        or "Judge Response 1 against Response 2 as the reply to the last turn of the dialogue.",
        "The two responses come in a random order: judge what you read and hear, not the order.",
    ]
    if rubric is not None:
        parts.append(f"## Rubric: {format_rubric(rubric)}")
        if rubric.description:
            parts.append(rubric.description)
    text = "\n\n".join(parts)
    if len(text) > GUIDELINES_MAX_CHARS:
        raise RecordError(
            "project settings",
            "guidelines",
            f"{len(text)} characters with the rubric; Argilla allows {GUIDELINES_MAX_CHARS}",
        )
    return text


@dataclass(frozen=True)
class AudioSource:
    """Where players find clips: embedded from `media_root` (default), or under `base_url`."""

    media_root: Path
    base_url: str | None = None

    def src(self, ref: AudioRef, record: str, field: str) -> str:
        if self.base_url is not None:
            url = f"{self.base_url.rstrip('/')}/{quote(ref.path)}"
            if len(url) > WEB_URL_MAX_CHARS:
                limit = f"over Argilla's {WEB_URL_MAX_CHARS:,}"
                raise RecordError(record, field, f"URL of {len(url):,} characters, {limit}")
            return url
        path = self.media_root / ref.path
        try:
            data = path.read_bytes()
        except OSError as error:
            raise RecordError(record, field, f"cannot read {path}: {error.strerror}") from None
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise RecordError(record, field, f"{path} changed since it was imported (sha256)")
        mime = AUDIO_MIME.get(path.suffix.lower(), "application/octet-stream")
        uri = f"data:{mime};base64,{base64.b64encode(data).decode()}"
        if len(uri) > DATA_URI_MAX_CHARS:
            raise RecordError(
                record,
                field,
                f"{path.name} embeds as {len(uri):,} characters, over Argilla's"
                f" {DATA_URI_MAX_CHARS:,}: serve the media and push with --audio-url",
            )
        return uri


def _shown_text(text: str | None, has_audio: bool, settings: ProjectSettings, label: str) -> str:
    if text and (settings.show_transcripts or not has_audio):
        return text
    return f"(audio only: listen to {label})"


def _candidate_text(candidate: Candidate, settings: ProjectSettings, label: str) -> str:
    text = _shown_text(candidate.text, candidate.audio is not None, settings, label)
    if settings.show_reasoning and candidate.reasoning:
        return f"*Reasoning:* {candidate.reasoning}\n\n{text}"
    return text


def record_payload(
    task: Task, dialogue: Dialogue, settings: ProjectSettings, audio: AudioSource
) -> dict[str, Any]:
    """The Argilla record of a task, ``{"id", "fields", "metadata"}``, or a RecordError."""
    record = f"task {task.id!r}"
    order = shown_order(task.id)
    messages, clips = [], []
    for i, turn in enumerate(dialogue.turns[: task.turn_index + 1]):
        label = f"Turn {i + 1} ({turn.role})"
        if turn.audio is not None:
            src = audio.src(turn.audio, record, f"dialogue {dialogue.id!r} turns.{i}.audio")
            clips.append({"label": label, "src": src})
        content = _shown_text(turn.text, turn.audio is not None, settings, label)
        if len(content) > CHAT_MESSAGE_MAX_CHARS:
            raise RecordError(
                record,
                f"dialogue {dialogue.id!r} turns.{i}.text",
                f"{len(content)} characters; Argilla's chat messages hold {CHAT_MESSAGE_MAX_CHARS}",
            )
        messages.append({"role": turn.role, "content": content})
    fields: dict[str, Any] = {"dialogue": messages}
    for position, side in enumerate(order.sides, 1):
        candidate, label = getattr(task, side), f"Response {position}"
        if candidate.audio is not None:
            clips.append(
                {"label": label, "src": audio.src(candidate.audio, record, f"{side}.audio")}
            )
        fields[f"response_{position}"] = _candidate_text(candidate, settings, label)
    if clips:
        fields["audio"] = {"clips": clips}
    return {"id": task.id, "fields": fields, "metadata": {SHOWN_ORDER: order.value}}


def judgment_id(task_id: str, username: str) -> str:
    return f"argilla:{task_id}:{username}"


def judgment_from_response(
    task: Task,
    rubric: Rubric | None,
    order: str | Order,
    username: str,
    values: Mapping[str, Any],
    *,
    k: int,
    record: str,
    created_at: datetime,
) -> Judgment:
    """One user's submitted answers (question name -> value) as a policy-vs-reference Judgment.

    `order` is the record's ``shown_order``; `record` labels errors (RecordError names it and
    the field: a question, ``metadata.shown_order``, ``username``).
    """
    try:
        TypeAdapter(Identifier).validate_python(username)
    except ValidationError as error:
        message = error.errors()[0]["msg"]
        problem = f"not usable as a rewardlab annotator id: {message}"
        raise RecordError(record, "username", problem) from None
    try:
        order = Order(order)
    except ValueError:
        problem = f"{order!r} is not one of {tuple(o.value for o in Order)}"
        raise RecordError(record, f"metadata.{SHOWN_ORDER}", problem) from None
    verdict = values.get(VERDICT)
    if verdict not in verdict_labels(k):
        raise RecordError(record, VERDICT, f"{verdict!r} is not a level of -{k}..{k}")
    shown_level = int(verdict)
    scores: dict[str, dict[str, int]] = {}
    known = {VERDICT, RATIONALE}
    for position, side in enumerate(order.sides, 1):
        for criterion in rubric.criteria if rubric else ():
            name = criterion_question(position, criterion.id)
            known.add(name)
            if values.get(name) is not None:
                scores.setdefault(side, {})[criterion.id] = values[name]
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecordError(record, unknown[0], "not a question rewardlab asks in this dataset")
    data = {
        "id": judgment_id(task.id, username),
        "task_id": task.id,
        "annotator_id": username,
        "level": order.to_canonical(shown_level),
        "rubric_scores": scores,
        "rationale": values.get(RATIONALE) or "",
        "shown_order": order,
        "created_at": created_at,
    }
    try:
        return Judgment.model_validate(data, context={"k": k})
    except ValidationError as error:
        raise errors_of(error, record)[0] from None


def batches(payloads: list[dict], max_chars: int, max_records: int) -> Iterator[list[dict]]:
    """Consecutive payloads grouped so a request stays under `max_chars` of JSON (and records)."""
    batch, size = [], 0
    for payload in payloads:
        chars = len(json.dumps(payload))
        if batch and (size + chars > max_chars or len(batch) == max_records):
            yield batch
            batch, size = [], 0
        batch.append(payload)
        size += chars
    if batch:
        yield batch


@dataclass
class SyncReport:
    verb: str
    counts: Counter = field(default_factory=Counter)
    failures: list[RecordError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        counts = ", ".join(f"{n} {what}" for what, n in self.counts.items()) or "nothing to do"
        lines = [f"argilla {self.verb}: {counts}"]
        if self.failures:
            lines.append(f"{len(self.failures)} failed (the rest went through):")
            lines += [f"  {failure}" for failure in self.failures]
        return "\n".join(lines)


# ---- talking to Argilla: the SDK, imported when used ----------------------------------------


def import_sdk():
    """The argilla SDK, or an ArgillaSyncError saying how to install it."""
    try:
        import argilla
    except ImportError:
        raise ArgillaSyncError(
            "the Argilla integration needs its extra: pip install 'rewardlab[argilla]'"
        ) from None
    return argilla


def sdk_error() -> type[Exception]:
    """The SDK's base exception (argilla 2.8 exports it only from `argilla._exceptions`)."""
    import_sdk()
    from argilla._exceptions import ArgillaError

    return ArgillaError


def connect(api_url: str | None = None, api_key: str | None = None) -> rg.Argilla:
    """A client for ARGILLA_API_URL / ARGILLA_API_KEY (or the given ones), checked by one call."""
    rg = import_sdk()
    try:
        given = {"api_url": api_url, "api_key": api_key}  # None: the SDK reads the environment
        client = rg.Argilla(**{name: value for name, value in given.items() if value is not None})
        client.me  # noqa: B018  (the first request: fails here on a bad URL or key)
    except Exception as error:  # the SDK raises httpx and its own errors alike
        raise ArgillaSyncError(f"cannot use the Argilla server: {error}") from None
    return client


def dataset_settings(settings: ProjectSettings, rubric: Rubric | None) -> rg.Settings:
    rg = import_sdk()
    k = settings.k
    questions = [
        rg.LabelQuestion(
            name=VERDICT,
            title="Which response is the better reply?",
            labels=verdict_labels(k),
            visible_labels=2 * k + 1,
            description="Levels run from Response 1 much better to Response 2 much better.",
        )
    ]
    for position in (1, 2):
        for criterion in rubric.criteria if rubric else ():
            questions.append(
                rg.RatingQuestion(
                    name=criterion_question(position, criterion.id),
                    title=f"Response {position}: {criterion.id}",
                    description=criterion.description,
                    values=[0, 1] if criterion.scale == "binary" else [1, 2, 3, 4, 5],
                    required=False,
                )
            )
    questions.append(rg.TextQuestion(name=RATIONALE, title="Why? (optional)", required=False))
    return rg.Settings(
        guidelines=guidelines(settings, rubric),
        fields=[
            rg.ChatField(name="dialogue", title="Dialogue", use_markdown=False),
            rg.CustomField(name="audio", title="Listen", template=AUDIO_TEMPLATE, required=False),
            rg.TextField(name="response_1", title="Response 1", use_markdown=True),
            rg.TextField(name="response_2", title="Response 2", use_markdown=True),
        ],
        questions=questions,
        metadata=[
            rg.TermsMetadataProperty(
                name=SHOWN_ORDER, options=[o.value for o in Order], visible_for_annotators=False
            )
        ],
        distribution=rg.TaskDistribution(min_submitted=settings.annotators_per_task),
        allow_extra_metadata=False,
    )


def _groups(store: Store) -> dict[str | None, list[Task]]:
    """The project's tasks by rubric id (None: plain pairwise), one Argilla dataset each."""
    groups: dict[str | None, list[Task]] = {}
    for task in store.tasks():
        groups.setdefault(task.rubric_id, []).append(task)
    return groups


def _find_dataset(client: rg.Argilla, name: str, workspace: str) -> rg.Dataset | None:
    with warnings.catch_warnings():  # the SDK warns when a lookup finds nothing
        warnings.simplefilter("ignore")
        if client.workspaces(workspace) is None:
            return None
        return client.datasets(name=name, workspace=workspace)


def _dataset(client: rg.Argilla, name: str, workspace: str, settings: rg.Settings) -> rg.Dataset:
    """The dataset `name`, created with `settings` if missing; refused if it asks otherwise."""
    rg = import_sdk()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if client.workspaces(workspace) is None:
            rg.Workspace(name=workspace, client=client).create()
    dataset = _find_dataset(client, name, workspace)
    if dataset is None:
        return rg.Dataset(name=name, workspace=workspace, settings=settings, client=client).create()
    asked = [question.name for question in settings.questions]
    found = [question.name for question in dataset.settings.questions]
    if found != asked:
        raise RecordError(
            f"Argilla dataset {name!r}",
            "questions",
            f"has {found}, the project asks {asked}: push under another --dataset name",
        )
    return dataset


def push(
    store: Store, client: rg.Argilla, *, workspace: str, prefix: str, audio_url: str | None = None
) -> SyncReport:
    """Add the tasks not yet in Argilla as records; report what was added and what failed."""
    rg = import_sdk()
    report = SyncReport("push")
    audio = AudioSource(store.media_root, audio_url)
    for rubric_id, tasks in _groups(store).items():
        rubric = store.rubric(rubric_id) if rubric_id else None
        name = dataset_name(prefix, rubric_id)
        dataset = _dataset(client, name, workspace, dataset_settings(store.settings, rubric))
        present = {r.id for r in dataset.records(with_responses=False, with_suggestions=False)}
        payloads = []
        for task in tasks:
            if task.id in present:
                report.counts["already in Argilla"] += 1
                continue
            try:
                dialogue = store.dialogue(task.dialogue_id)
                payloads.append(record_payload(task, dialogue, store.settings, audio))
            except RecordError as error:
                report.failures.append(error)
        for batch in batches(payloads, BATCH_MAX_CHARS, BATCH_MAX_RECORDS):
            try:
                dataset.records.log([rg.Record(**p) for p in batch], batch_size=len(batch))
            except sdk_error() as error:
                report.failures += [
                    RecordError(f"task {p['id']!r}", "<record>", f"Argilla refused: {error}")
                    for p in batch
                ]
            else:
                report.counts[f"added to {name!r}"] += len(batch)
    return report


def _submitted(record: rg.Record) -> dict[Any, dict[str, Any]]:
    """Argilla user id -> {question name: value} of each submitted response of a record."""
    answers: dict[Any, dict[str, Any]] = {}
    for response in record.responses:
        if response.status == "submitted":
            answers.setdefault(response.user_id, {})[response.question_name] = response.value
    return answers


def pull(store: Store, client: rg.Argilla, *, workspace: str, prefix: str) -> SyncReport:
    """Store every submitted response as a judgment; report created, updated, unchanged, failed."""
    rg = import_sdk()
    report = SyncReport("pull")
    users = {user.id: user for user in client.users}
    tasks = {task.id: task for task in store.tasks()}
    annotators = {annotator["id"] for annotator in store.annotators()}
    submitted = rg.Query(filter=rg.Filter([("response.status", "==", "submitted")]))
    for rubric_id in _groups(store):
        name = dataset_name(prefix, rubric_id)
        dataset = _find_dataset(client, name, workspace)
        if dataset is None:
            continue
        rubric = store.rubric(rubric_id) if rubric_id else None
        for record in dataset.records(query=submitted, with_suggestions=False):
            task = tasks.get(record.id)
            for user_id, values in _submitted(record).items():
                user = users.get(user_id)
                username = user.username if user else f"<unknown user {user_id}>"
                label = f"Argilla record {record.id!r} in {name!r} by {username!r}"
                try:
                    if user is None:
                        raise RecordError(label, "user_id", "no such user in Argilla")
                    if task is None or task.rubric_id != rubric_id:
                        raise RecordError(label, "id", f"no task of {name!r} has this id")
                    order = record.metadata.get(SHOWN_ORDER)
                    judgment = judgment_from_response(
                        task,
                        rubric,
                        order,
                        username,
                        values,
                        k=store.k,
                        record=label,
                        created_at=utc_now(),
                    )
                    if username not in annotators:
                        store.add_annotator(username, _display_name(user), role="annotator")
                        annotators.add(username)
                    report.counts[_store(store, judgment)] += 1
                except RecordError as error:
                    report.failures.append(error)
    return report


def _display_name(user: Any) -> str:
    return " ".join(filter(None, (user.first_name, user.last_name))) or user.username


def _store(store: Store, judgment: Judgment) -> str:
    """Upsert, keeping the stored created_at when nothing else changed (pulls are idempotent)."""
    stored = store.judgment(judgment.id)
    if stored is not None and stored == judgment.model_copy(
        update={"created_at": stored.created_at}
    ):
        return "unchanged"
    return store.upsert_judgment(judgment)
