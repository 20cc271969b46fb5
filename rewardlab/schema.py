"""The data model: the contract between the store, the annotation apps, the GRM and PPO.

Everything that crosses a boundary (a JSONL line, an HTTP request, a row of the store) is
validated into one of these types. `parse_record` turns pydantic's error into a `RecordError`
that names the record and the field, e.g.::

    RecordError: tasks.jsonl line 7 (task 't-0042'): policy.text: Field required

Levels are ordinal in ``-K..K`` (positive: the policy response is better than the reference),
with ``K`` a project setting (default 3, seven levels). Models that carry a level check it
against the ``k`` given in the pydantic validation context, e.g.
``Judgment.model_validate(data, context={"k": 2})``; without a context they use ``DEFAULT_K``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

DEFAULT_K = 3
MAX_K = 10
# A policy completion is ``<think>trace</think>reply``: the trace becomes a candidate's (or
# turn's) `reasoning`, the reply its `text`; the GRM judges only the reply.
THINK_START, THINK_END = "<think>", "</think>"
SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
Identifier = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")
]


_NEGATIVE_LEVEL_NAMES = {
    1: ["worse"],
    2: ["much worse", "slightly worse"],
    3: ["much worse", "worse", "slightly worse"],
}


def level_names(k: int) -> list[str]:
    """Labels for levels -k..k, most negative first: the policy response is "much worse" ..."""
    if not 1 <= k <= MAX_K:
        raise ValueError(f"K must be in 1..{MAX_K}, got {k}")
    negative = _NEGATIVE_LEVEL_NAMES.get(k) or [f"worse by {i}" for i in range(k, 0, -1)]
    positive = [name.replace("worse", "better") for name in reversed(negative)]
    return [*negative, "about the same", *positive]


def check_level(level: int, k: int, field: str = "level") -> int:
    """Raise ValueError unless `level` lies in -k..k."""
    if not -k <= level <= k:
        raise ValueError(f"{field} {level} is outside -{k}..{k} (the project's K is {k})")
    return level


def _k_from(info: ValidationInfo) -> int:
    return (info.context or {}).get("k", DEFAULT_K)


class _Model(BaseModel):
    # Unknown fields are errors: a typo in a JSONL file should not silently drop data.
    model_config = ConfigDict(extra="forbid", frozen=True)


class AudioRef(_Model):
    """A clip stored under a project's media root; the store keeps references, never bytes."""

    path: str = Field(description="POSIX path relative to the media root")
    sha256: str
    sample_rate: int = Field(gt=0)
    duration_s: float = Field(gt=0)

    @field_validator("path")
    @classmethod
    def _relative_inside_root(cls, path: str) -> str:
        if not path or "\\" in path or "\x00" in path:
            raise ValueError(f"audio path {path!r} must be a non-empty POSIX path")
        pure = PurePosixPath(path)
        if pure.is_absolute():
            raise ValueError(f"audio path {path!r} is absolute; give it relative to the media root")
        if ".." in pure.parts:
            raise ValueError(f"audio path {path!r} contains '..' and could escape the media root")
        return path

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str) -> str:
        if not SHA256_PATTERN.match(value):
            raise ValueError("sha256 must be 64 lowercase hex characters")
        return value


class Turn(_Model):
    role: Literal["user", "assistant", "system"]
    text: str | None = None
    audio: AudioRef | None = None
    reasoning: str | None = Field(default=None, description="assistant turns only")

    @model_validator(mode="after")
    def _has_content(self) -> Turn:
        if not (self.text and self.text.strip()) and self.audio is None:
            raise ValueError("a turn needs text or audio (both are empty)")
        if self.reasoning is not None and self.role != "assistant":
            raise ValueError(f"reasoning is only allowed on assistant turns, not {self.role!r}")
        return self


class Dialogue(_Model):
    id: Identifier
    turns: list[Turn] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    def audio_refs(self) -> list[AudioRef]:
        return [turn.audio for turn in self.turns if turn.audio is not None]


class Candidate(_Model):
    """A response to judge: the reply, optionally its reasoning trace and audio."""

    text: str = Field(min_length=1)
    reasoning: str | None = None
    audio: AudioRef | None = None
    source: str = Field(min_length=1, description="'reference', a checkpoint name, ...")


class Criterion(_Model):
    id: Identifier
    description: str = Field(min_length=1)
    scale: Literal["binary", "likert5"]
    weight: float = Field(default=1.0, gt=0)

    def check_score(self, score: int) -> int:
        low, high = (0, 1) if self.scale == "binary" else (1, 5)
        if not low <= score <= high:
            raise ValueError(f"score {score} for criterion {self.id!r} is outside {low}..{high}")
        return score


class Rubric(_Model):
    id: Identifier
    version: int = Field(ge=1)
    title: str = Field(min_length=1)
    description: str = ""
    axis: Literal["audiomultichallenge", "paralinguistic", "general"] = "general"
    requires_audio: bool = Field(
        default=False, description="judge by ear: the criteria cannot be decided from transcripts"
    )
    criteria: list[Criterion] = Field(min_length=1)

    @field_validator("criteria")
    @classmethod
    def _unique_ids(cls, criteria: list[Criterion]) -> list[Criterion]:
        ids = [c.id for c in criteria]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"criterion ids must be unique, repeated: {duplicated}")
        return criteria

    def criterion(self, criterion_id: str) -> Criterion:
        for criterion in self.criteria:
            if criterion.id == criterion_id:
                return criterion
        raise KeyError(f"rubric {self.id!r} has no criterion {criterion_id!r}")


class Task(_Model):
    """Judge `policy` against `reference` as the reply after turn `turn_index` of a dialogue."""

    id: Identifier
    dialogue_id: Identifier
    turn_index: int = Field(ge=0, description="the history is turns[0..turn_index], inclusive")
    policy: Candidate
    reference: Candidate
    rubric_id: Identifier | None = None
    gold: bool = False
    gold_level: int | None = Field(default=None, description="the known answer of a gold item")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _gold_has_answer(self, info: ValidationInfo) -> Task:
        if self.gold and self.gold_level is None:
            raise ValueError("gold_level is required when gold is true")
        if not self.gold and self.gold_level is not None:
            raise ValueError("gold_level is only allowed on gold items (gold: true)")
        if self.gold_level is not None:
            check_level(self.gold_level, _k_from(info), "gold_level")
        return self

    def audio_refs(self) -> list[AudioRef]:
        return [c.audio for c in (self.policy, self.reference) if c.audio is not None]


Side = Literal["policy", "reference"]
RubricScores = dict[Side, dict[str, int]]
T = TypeVar("T")
Level = TypeVar("Level", int, float)


class Order(StrEnum):
    """Which response a front end showed first, as "Response 1".

    The invariant: levels are stored policy-vs-reference (positive: the policy is better),
    whatever order they were shown in. Only front ends (the annotation app, the Argilla bridge,
    the GRM's prompt and target builder) see levels *as shown*, positive when Response 1 is
    better, and they convert shown <-> canonical through these helpers and nowhere else.

    The values are the strings stored in SQLite, exports and HTTP payloads.
    """

    POLICY_FIRST = "policy_first"
    REFERENCE_FIRST = "reference_first"

    def swapped(self) -> Order:
        """The other order."""
        return Order.REFERENCE_FIRST if self is Order.POLICY_FIRST else Order.POLICY_FIRST

    def to_shown(self, level: Level) -> Level:
        """The level as shown (Response 1 vs Response 2) of a policy-vs-reference level."""
        return level if self is Order.POLICY_FIRST else -level

    def to_canonical(self, level: Level) -> Level:
        """The policy-vs-reference level of a level picked as shown (inverse of `to_shown`)."""
        return level if self is Order.POLICY_FIRST else -level

    def to_shown_levels(self, probs: T) -> T:
        """A distribution (or target) over levels -K..K on the last axis, (..., 2K+1), as shown.

        Reference-first negates every level, i.e. reverses the last axis (a numpy view).
        """
        return probs if self is Order.POLICY_FIRST else probs[..., ::-1]  # type: ignore[index]

    def to_canonical_levels(self, probs: T) -> T:
        """The policy-vs-reference distribution of one over shown levels (..., 2K+1)."""
        return self.to_shown_levels(probs)

    def shown_pair(self, policy: T, reference: T) -> tuple[T, T]:
        """(Response 1, Response 2): the policy's and the reference's things in shown order."""
        return (policy, reference) if self is Order.POLICY_FIRST else (reference, policy)

    @property
    def sides(self) -> tuple[Side, Side]:
        """The task sides shown as Response 1 and Response 2."""
        return self.shown_pair("policy", "reference")


def utc_now() -> datetime:
    return datetime.now(UTC)


class Judgment(_Model):
    """One annotator's verdict on one task, always stored policy-vs-reference."""

    id: Identifier = Field(description="client-generated: a retried submit never duplicates")
    task_id: Identifier
    annotator_id: Identifier
    level: int = Field(description="-K..K, positive when the policy response is better")
    rubric_scores: RubricScores = Field(default_factory=dict)
    rationale: str = Field(default="", max_length=20_000)
    time_spent_s: float = Field(default=0.0, ge=0)
    listened: dict[str, float] = Field(
        default_factory=dict, description="fraction of each clip played, keyed by media path"
    )
    shown_order: Order = Order.POLICY_FIRST
    created_at: datetime = Field(default_factory=utc_now)

    @field_validator("level")
    @classmethod
    def _level_in_range(cls, level: int, info: ValidationInfo) -> int:
        return check_level(level, _k_from(info))

    @field_validator("listened")
    @classmethod
    def _fractions(cls, listened: dict[str, float]) -> dict[str, float]:
        for path, fraction in listened.items():
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"listened[{path!r}] = {fraction} is not a fraction in 0..1")
        return listened

    @field_validator("created_at")
    @classmethod
    def _aware(cls, created_at: datetime) -> datetime:
        if created_at.tzinfo is None:
            raise ValueError("created_at needs a timezone (e.g. '2026-01-01T12:00:00+00:00')")
        return created_at

    @property
    def shown_level(self) -> int:
        """The level as the annotator saw it: positive when the left (first) response won."""
        return self.shown_order.to_shown(self.level)


class RecordError(ValueError):
    """A record that failed validation; the message names the record and the field."""

    def __init__(self, record: str, field: str, message: str):
        self.record, self.field, self.message = record, field, message
        super().__init__(f"{record}: {field}: {message}")


def describe_record(source: str, data: Any) -> str:
    """'tasks.jsonl line 3 (task 't-1')' style label from whatever the raw record holds."""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        return f"{source} ({data['id']!r})"
    return source


def errors_of(error: ValidationError, record: str) -> list[RecordError]:
    out = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "<record>"
        message = item["msg"].removeprefix("Value error, ")
        out.append(RecordError(record, field, message))
    return out


M = TypeVar("M", bound=BaseModel)


def parse_record(model: type[M], data: Any, source: str, *, k: int = DEFAULT_K) -> M:
    """Validate `data` into `model`, raising the first RecordError naming record and field."""
    try:
        return model.model_validate(data, context={"k": k})
    except ValidationError as error:
        raise errors_of(error, describe_record(source, data))[0] from None


class ProjectSettings(_Model):
    """Per-project settings, stored in the project's SQLite file."""

    name: str = Field(default="rewardlab project", min_length=1, description="display name")
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K, description="levels run -k..k")
    annotators_per_task: int = Field(default=3, ge=1, description="overlap: judgments per task")
    gold_share: float = Field(default=0.0, ge=0, le=1, description="share of gold items served")
    show_transcripts: bool = Field(default=True, description="False: annotators judge by ear")
    show_reasoning: bool = Field(default=False, description="show candidates' reasoning traces")
    require_full_listen: bool = Field(
        default=False, description="candidate clips must be played to the end before submit"
    )
    max_clip_s: float = Field(default=120.0, gt=0, description="longest clip the importer takes")
    reject_silent_audio: bool = Field(
        default=True, description="the importer refuses clips with no sound above the floor"
    )
    guidelines: str = Field(default="", description="markdown shown to annotators")
    daily_goal: int = Field(
        default=40, ge=1, description="tasks per annotator per day, for the progress line"
    )
