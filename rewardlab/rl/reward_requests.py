"""What a client of the reward service sends, checked and turned into judge items.

One item of ``POST /v1/reward``:

    {"dialogue_id": "d1", "turn_index": 2, "reference": "Any colour you like.",
     "rubric_id": "inference_memory", "response": "<think>...</think>Paint it green."}

- the dialogue: ``dialogue_id`` (a dialogue of the served project), or ``dialogue``, inline:
  ``{"turns": [{"role": "user", "text": "...", "audio": {"base64": "<WAV or FLAC bytes>"}}]}``,
  its clips checked as an import checks them (readable, complete, finite, not too long);
- ``turn_index``: the turn the response answers (default: the dialogue's last);
- the reference: ``reference`` (text), or ``task_id``, a task of the project, which also gives
  the dialogue, turn and rubric (then leave those out);
- ``rubric_id`` (optional): a rubric of the project or the shipped library;
- ``response``: the policy's output; text before the last ``</think>`` is its reasoning trace,
  kept apart, as `GRMReward` does. An empty reply gets a certain "much worse".

A bad item raises `ItemError`, naming the item's index and the field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rewardlab.audio import AudioError, load_audio
from rewardlab.grm.encoding import JudgeItem
from rewardlab.rl.grm_reward import judge_item, split_reasoning
from rewardlab.schema import (
    THINK_END,
    AudioRef,
    Dialogue,
    RecordError,
    Rubric,
    Task,
    parse_record,
)


class ItemError(ValueError):
    """A request item the service cannot judge: answered 4xx, naming item and field."""

    def __init__(self, item: int, field: str, message: str):
        self.item, self.field, self.message = item, field, message
        super().__init__(f"item {item}: {field}: {message}")

    def detail(self) -> dict[str, Any]:
        return {"item": self.item, "field": self.field, "message": self.message}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InlineClip(_Strict):
    base64: str | None = Field(None, description="the clip file's bytes (WAV, FLAC, OGG)")
    path: str | None = None  # refused: the service reads no files a request names


class InlineTurn(_Strict):
    role: str
    text: str | None = None
    audio: InlineClip | None = None


class InlineDialogue(_Strict):
    turns: list[InlineTurn] = Field(min_length=1)


class RewardItem(_Strict):
    dialogue_id: str | None = None
    dialogue: InlineDialogue | None = None
    turn_index: int | None = None
    task_id: str | None = None
    reference: str | None = None
    rubric_id: str | None = None
    response: str


class RewardRequest(_Strict):
    items: list[RewardItem] = Field(min_length=1)


@dataclass
class ServiceLimits:
    max_items: int = 256  # items per request
    max_response_chars: int = 8000
    max_clip_s: float = 120.0
    max_inline_clip_bytes: int = 16 * 2**20


@dataclass
class ResolvedItem:
    """A judge item (None: an empty reply) and the inline clips it holds pinned."""

    item: JudgeItem | None
    pinned: list[str]


class ItemResolver:
    """Turns request items into judge items against one project's records."""

    def __init__(
        self,
        dialogues: Mapping[str, Dialogue],
        tasks: Mapping[str, Task],
        rubrics: Mapping[str, Rubric],
        *,
        k: int,
        limits: ServiceLimits,
        pin: Any,  # ClipFeatures of the GRM's encoder: holds inline clips' samples
    ):
        self.dialogues, self.tasks, self.rubrics = dialogues, tasks, rubrics
        self.k, self.limits, self.clips = k, limits, pin

    def parse(self, body: Any) -> list[RewardItem]:
        items = body.get("items") if isinstance(body, dict) else None
        if isinstance(items, list) and len(items) > self.limits.max_items:
            raise ItemError(-1, "items", f"at most {self.limits.max_items} items a request")
        try:
            return RewardRequest.model_validate(body).items
        except ValidationError as error:
            first = error.errors()[0]
            location = [str(part) for part in first["loc"]]
            index = int(location[1]) if len(location) > 1 and location[1].isdigit() else -1
            field = ".".join(location[2:] if index >= 0 else location) or "<body>"
            raise ItemError(index, field, first["msg"]) from None

    def resolve(self, index: int, item: RewardItem) -> ResolvedItem:
        """The judge item of request item `index`; pins its inline clips (the caller unpins)."""
        if len(item.response) > self.limits.max_response_chars:
            message = f"{len(item.response)} characters; at most {self.limits.max_response_chars}"
            raise ItemError(index, "response", message)
        dialogue, turn_index, reference, rubric_id, pinned = self._context(index, item)
        try:
            rubric = self._rubric(index, rubric_id)
            if turn_index is None:
                turn_index = len(dialogue.turns) - 1
            if not 0 <= turn_index < len(dialogue.turns):
                message = f"{turn_index} is not a turn of a {len(dialogue.turns)}-turn dialogue"
                raise ItemError(index, "turn_index", message)
            reasoning, reply = split_reasoning(item.response, THINK_END)
            if not reply:
                return ResolvedItem(None, pinned)
            built = judge_item(f"{dialogue.id}.r{index}", dialogue, turn_index, reply, reasoning,
                               reference, rubric, k=self.k)  # fmt: skip
            return ResolvedItem(built, pinned)
        except BaseException:
            self.release(pinned)
            raise

    def release(self, pinned: list[str]) -> None:
        for sha256 in pinned:
            self.clips.unpin(sha256)

    def _context(self, index: int, item: RewardItem):
        """(dialogue, turn index, reference text, rubric id, pinned clips) of an item."""
        if item.task_id is not None:
            for name in ("dialogue_id", "dialogue", "turn_index", "reference", "rubric_id"):
                if getattr(item, name) is not None:
                    raise ItemError(index, name, "leave it out: task_id gives it")
            task = self.tasks.get(item.task_id)
            if task is None:
                raise ItemError(index, "task_id", f"unknown task {item.task_id!r}")
            dialogue = self.dialogues[task.dialogue_id]
            return dialogue, task.turn_index, task.reference.text, task.rubric_id, []
        if item.reference is None or not item.reference.strip():
            raise ItemError(index, "reference", "give the reference reply, or a task_id")
        if (item.dialogue_id is None) == (item.dialogue is None):
            raise ItemError(index, "dialogue_id", "give one of dialogue_id and dialogue")
        if item.dialogue_id is not None:
            if item.dialogue_id not in self.dialogues:
                raise ItemError(index, "dialogue_id", f"unknown dialogue {item.dialogue_id!r}")
            dialogue, pinned = self.dialogues[item.dialogue_id], []
        else:
            dialogue, pinned = self._inline(index, item.dialogue)
        return dialogue, item.turn_index, item.reference, item.rubric_id, pinned

    def _rubric(self, index: int, rubric_id: str | None) -> Rubric | None:
        if not rubric_id:
            return None
        if rubric_id not in self.rubrics:
            known = ", ".join(sorted(self.rubrics))
            raise ItemError(index, "rubric_id", f"unknown rubric {rubric_id!r}; known: {known}")
        return self.rubrics[rubric_id]

    def _inline(self, index: int, given: InlineDialogue) -> tuple[Dialogue, list[str]]:
        turns, pinned = [], []
        try:
            for number, turn in enumerate(given.turns):
                record = {"role": turn.role, "text": turn.text}
                if turn.audio is not None:
                    field = f"dialogue.turns.{number}.audio"
                    if turn.audio.path is not None or turn.audio.base64 is None:
                        message = "send the clip's bytes as base64; the service reads no paths"
                        raise ItemError(index, f"{field}.path", message)
                    ref, samples = self._clip(index, f"{field}.base64", turn.audio.base64)
                    self.clips.pin(ref.sha256, samples)
                    pinned.append(ref.sha256)
                    record["audio"] = ref.model_dump()
                turns.append(record)
            # the id comes from the content: the same inline dialogue groups in the judge
            content = json.dumps(turns, sort_keys=True).encode()
            dialogue_id = f"inline-{hashlib.sha256(content).hexdigest()[:24]}"
            try:
                dialogue = parse_record(Dialogue, {"id": dialogue_id, "turns": turns}, "dialogue")
            except RecordError as error:
                raise ItemError(index, f"dialogue.{error.field}", error.message) from None
        except BaseException:
            self.release(pinned)
            raise
        return dialogue, pinned

    def _clip(self, index: int, field: str, text: str) -> tuple[AudioRef, Any]:
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ItemError(index, field, "not base64") from None
        if len(data) > self.limits.max_inline_clip_bytes:
            message = f"{len(data)} bytes; at most {self.limits.max_inline_clip_bytes}"
            raise ItemError(index, field, message)
        with tempfile.TemporaryDirectory(prefix="rewardlab-clip-") as folder:
            path = Path(folder) / "clip"
            path.write_bytes(data)
            try:
                clip = load_audio(path, max_duration_s=self.limits.max_clip_s)
            except AudioError as error:
                raise ItemError(index, field, error.reason) from None
        ref = AudioRef(path=f"inline/{clip.sha256}", sha256=clip.sha256,
                       sample_rate=clip.source_sample_rate, duration_s=clip.duration_s)  # fmt: skip
        return ref, clip.samples


def label_fields(label: str | dict, index: int = 0) -> dict[str, Any]:
    """A label naming what to judge against (OpenRLHF's ``labels``, veRL's ``ground_truth``):
    a task id, or a JSON object (text or dict) of item fields without ``response``."""
    if isinstance(label, str) and not label.lstrip().startswith("{"):
        return {"task_id": label}
    fields = label
    if isinstance(label, str):
        try:
            fields = json.loads(label)
        except json.JSONDecodeError as error:
            raise ItemError(index, "labels", f"invalid JSON: {error.msg}") from None
    if not isinstance(fields, dict) or "response" in fields:
        raise ItemError(index, "labels", "a task id, or a JSON object of item fields, no response")
    return dict(fields)
