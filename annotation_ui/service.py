"""The annotation app's handlers in plain Python over the store, one method per action.

    service = AnnotationService(store)
    view = service.next_task("ann-1")    # the task as this annotator sees it (JSON-able), or None
    service.save_draft("ann-1", view["task_id"], {"level": 2, "rationale": "warmer"})
    service.submit("ann-1", {"task_id": ..., "judgment_id": view["judgment_id"], "level": 2})

The web layer (`annotation_ui.web`, the Gradio pages and API) passes the logged-in
annotator's id and nothing else decides whose work is touched: every method acts on that
annotator's own assignment only.

A view hides what would bias or leak: which response is the policy (they come as Response 1
and 2 in the assignment's stored random order), candidate sources, task metadata, whether the
task is gold; transcripts of audio turns when the project hides them; reasoning traces unless
the project shows them. Forms speak the same language: the level as shown (positive when
Response 1 is better) and rubric scores per shown response. `submit` undoes the order, so the
judgment is stored policy vs reference with its `shown_order`.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, time
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from annotation_ui.presentation import verdict_labels
from rewardlab.rubrics import validate_rubric_scores
from rewardlab.schema import (
    AudioRef,
    Identifier,
    Judgment,
    Order,
    RecordError,
    Rubric,
    Task,
    check_level,
    errors_of,
    utc_now,
)
from rewardlab.store import Store, SubmitResult, queue
from rewardlab.store.accounts import Account, account

MEDIA_ROUTE = "media"  # served by annotation_ui.web, relative to the app's root
FULL_LISTEN = 0.98  # played share that counts as "to the end" (players report in steps)
ResponseKey = Literal["response_1", "response_2"]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Draft(BaseModel):
    """The form as the annotator left it, in the order it was shown."""

    model_config = ConfigDict(extra="forbid")

    level: int | None = Field(default=None, description="as shown: > 0 when Response 1 is better")
    rubric_scores: dict[ResponseKey, dict[str, int]] = Field(default_factory=dict)
    rationale: str = Field(default="", max_length=20_000)
    listened: dict[str, Fraction] = Field(
        default_factory=dict, description="share of each clip played, by media path"
    )


class Form(Draft):
    """A submitted form: a draft's fields with a level, for the task and judgment id served."""

    task_id: Identifier
    judgment_id: Identifier
    level: int


def _parse(model: type[Draft], data: Any, record: str) -> Draft:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise errors_of(error, record)[0] from None


def media_url(path: str) -> str:
    return f"{MEDIA_ROUTE}/{quote(path)}"


def start_of_today() -> datetime:
    return datetime.combine(utc_now().date(), time(), tzinfo=UTC)


class AnnotationService:
    def __init__(self, store: Store, rng: random.Random | None = None):
        self.store = store
        self.rng = rng or random.Random()

    # ---- accounts --------------------------------------------------------------------------

    def account(self, annotator_id: str) -> Account | None:
        return account(self.store, annotator_id)

    # ---- what the annotator sees -----------------------------------------------------------

    def next_task(self, annotator_id: str) -> dict[str, Any] | None:
        """The annotator's open task (with its draft), else the next one served; None if none."""
        assignment = queue.next_assignment(self.store, annotator_id, self.rng)
        return None if assignment is None else self.view(assignment)

    def progress(self, annotator_id: str) -> dict[str, Any]:
        done = queue.judged_since(self.store, annotator_id, start_of_today())
        goal = self.store.settings.daily_goal
        return {"done_today": done, "daily_goal": goal, "text": f"{done} of {goal} today"}

    def view(self, assignment: queue.Assignment) -> dict[str, Any]:
        settings = self.store.settings
        task = self.store.task(assignment.task_id)
        dialogue = self.store.dialogue(task.dialogue_id)

        def shown_text(text: str | None, audio: AudioRef | None) -> str | None:
            return text if settings.show_transcripts or audio is None else None

        def reasoning(text: str | None) -> str | None:
            return text if settings.show_reasoning else None

        history = [
            {
                "turn": i + 1,
                "role": turn.role,
                "text": shown_text(turn.text, turn.audio),
                "audio": _clip(turn.audio),
                "reasoning": reasoning(turn.reasoning),
            }
            for i, turn in enumerate(dialogue.turns[: task.turn_index + 1])
        ]
        responses = []
        for position, side in enumerate(assignment.shown_order.sides, 1):
            candidate = getattr(task, side)
            responses.append(
                {
                    "key": f"response_{position}",
                    "label": f"Response {position}",
                    "text": shown_text(candidate.text, candidate.audio),
                    "audio": _clip(candidate.audio),
                    "reasoning": reasoning(candidate.reasoning),
                }
            )
        return {
            "task_id": task.id,
            "judgment_id": assignment.judgment_id,
            "levels": [
                {"key": i + 1, "level": int(value), "label": label}
                for i, (value, label) in enumerate(verdict_labels(settings.k).items())
            ],
            "history": history,
            "responses": responses,
            "rubric": _rubric_view(self.store.rubric(task.rubric_id)) if task.rubric_id else None,
            "require_full_listen": settings.require_full_listen,
            "draft": assignment.draft or {},
            "progress": self.progress(assignment.annotator_id),
        }

    # ---- what the annotator does -----------------------------------------------------------

    def save_draft(self, annotator_id: str, task_id: Any, draft: Any) -> bool:
        """Keep the unfinished form; False when the task is no longer open (already submitted).

        A draft is checked like a submit, short of completeness: its clips must be the task's
        and its rubric scores the task's criteria on their scales.
        """
        record = f"draft of task {task_id!r}"
        if not isinstance(task_id, str):
            raise RecordError(record, "task_id", "must be a task id (text)")
        parsed = _parse(Draft, draft, record)
        try:
            task = self.store.task(task_id)
        except KeyError:
            return False  # no such task: nothing open to keep a draft of
        self._check_contents(parsed, task, record)
        body = parsed.model_dump(exclude_defaults=True)
        return queue.save_draft(self.store, annotator_id, task_id, body)

    def skip(self, annotator_id: str, task_id: str) -> None:
        queue.skip(self.store, annotator_id, task_id)

    def flag(self, annotator_id: str, task_id: str, reason: str) -> None:
        queue.flag(self.store, annotator_id, task_id, reason[:2000])

    def submit(self, annotator_id: str, form: Any) -> SubmitResult:
        """Store the form as a policy-vs-reference judgment; RecordError names what is wrong.

        The same form sent again (a double click, a retry) is acknowledged with
        ``created=False``; the same judgment id with other answers is refused.
        """
        task_label = form.get("task_id") if isinstance(form, dict) else None
        record = f"submit of task {task_label!r}"
        parsed = _parse(Form, form, record)
        # a double click or a retry finds its task submitted: the store's retry rule decides
        assignment = queue.submitted_or_open_assignment(self.store, annotator_id, parsed.task_id)
        task = self.store.task(parsed.task_id)
        self._check_form(parsed, task, assignment.shown_order, record)
        sides = assignment.shown_order.sides
        data = {
            "id": parsed.judgment_id,
            "task_id": task.id,
            "annotator_id": annotator_id,
            "level": assignment.shown_order.to_canonical(parsed.level),
            "rubric_scores": {
                sides[int(key[-1]) - 1]: scores
                for key, scores in parsed.rubric_scores.items()
                if scores
            },
            "rationale": parsed.rationale,
            "time_spent_s": max(0.0, (utc_now() - assignment.assigned_at).total_seconds()),
            "listened": parsed.listened,
            "shown_order": assignment.shown_order,
        }
        try:
            judgment = Judgment.model_validate(data, context={"k": self.store.k})
        except ValidationError as error:
            raise errors_of(error, record)[0] from None
        return queue.submit_assigned(self.store, judgment)

    def _check_form(self, form: Form, task: Task, order: Order, record: str) -> None:
        """Checks made in the terms the annotator saw (an error must not reveal the order)."""
        try:
            check_level(form.level, self.store.k)
        except ValueError as error:
            raise RecordError(record, "level", str(error)) from None
        self._check_contents(form, task, record)
        if not self.store.settings.require_full_listen:
            return
        for position, side in enumerate(order.sides, 1):
            audio = getattr(task, side).audio
            played = form.listened.get(audio.path, 0.0) if audio else 1.0
            if played < FULL_LISTEN:
                raise RecordError(
                    record,
                    "listened",
                    f"play Response {position} to the end before submitting"
                    f" ({played:.0%} played so far)",
                )

    def _check_contents(self, form: Draft, task: Task, record: str) -> None:
        """The scores name the task's rubric criteria and the clips are the task's."""
        scored = {key: scores for key, scores in form.rubric_scores.items() if scores}
        if scored and task.rubric_id is None:
            raise RecordError(record, "rubric_scores", "this task has no rubric to score")
        if scored:
            validate_rubric_scores(self.store.rubric(task.rubric_id), scored, record)
        dialogue = self.store.dialogue(task.dialogue_id)
        clips = {ref.path for ref in dialogue.audio_refs()} | {r.path for r in task.audio_refs()}
        for path in form.listened:
            if path not in clips:
                raise RecordError(record, f"listened.{path}", "not a clip of this task")


def _clip(ref: AudioRef | None) -> dict[str, Any] | None:
    """A clip as views show it ("path" would make gradio_client take it for a file to fetch)."""
    if ref is None:
        return None
    return {"media_path": ref.path, "url": media_url(ref.path), "duration_s": ref.duration_s}


def _rubric_view(rubric: Rubric) -> dict[str, Any]:
    return {
        "id": rubric.id,
        "title": rubric.title,
        "description": rubric.description,
        "criteria": [
            {"id": c.id, "description": c.description, "scale": c.scale} for c in rubric.criteria
        ],
    }
