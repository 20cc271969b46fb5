"""The Argilla mapping as plain data, no SDK: a task becomes a record's payload, a submitted
response becomes a judgment (`annotation_ui.argilla_bridge` documents the mapping in full and
talks to the server).

    payload = record_payload(task, dialogue, settings, AudioSource(store.media_root))
    judgment = judgment_from_response(task, rubric, order, username, values, k=3, ...)
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
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
)

if TYPE_CHECKING:
    pass

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
