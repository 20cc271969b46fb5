"""The judge prompt: what the GRM reads, and the one-token verdict slot it answers in.

A judgment prompt is one chat exchange in the backbone's own chat template::

    <system> You compare two replies ...
    <user>   [instruction] Dialogue: turn by turn, one audio placeholder per audio turn
             ---- everything above is the *history block*, shared by both orders ----
             [Rubric: ... only for rubric tasks]
             Response 1: ...   Response 2: ...   the scale, A..G
    <assistant> [critique, in reasoning mode] Verdict: <one of 2K+1 verdict tokens>

The history block comes first so that both presentation orders (and any rubric) share one
prefix: the scorer runs it once and reuses its key/value cache. A plain pairwise task and a
rubric task differ only in the rubric block.

Verdict tokens are ordinal: ``verdict_tokens[i]`` means level ``i - K`` *as shown*, i.e. of
Response 1 relative to Response 2. The scorer turns that back into the canonical
policy-vs-reference orientation.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from rewardlab.rubrics import format_rubric
from rewardlab.schema import Candidate, Dialogue, Order, Rubric, Task, level_names

FORMAT_FILE = "judge_format.json"
Reply = Literal["policy", "reference"]  # which of a task's replies a scalar reward model reads
_SPLIT = "\x00history-ends\x00"  # a sentinel no chat template or user text contains

DEFAULT_SYSTEM = (
    "You are a careful judge of spoken dialogue. You compare two candidate replies to the "
    "last user turn, judging what was said earlier, how the user sounded, and the rubric when "
    "one is given."
)


class JudgeInputError(ValueError):
    """A task the GRM cannot judge as given; names the task and the field."""

    def __init__(self, task_id: str, field: str, message: str):
        super().__init__(f"task {task_id!r}: {field}: {message}")
        self.task_id, self.field = task_id, field


@dataclass(frozen=True)
class JudgeFormat:
    k: int = 3
    verdict_tokens: tuple[str, ...] = ()  # empty: the capital letters A, B, ... (2K+1 of them)
    system: str = DEFAULT_SYSTEM
    transcripts: bool = True  # show each audio turn's transcript beside its audio
    verdict_marker: str = "Verdict:"
    reasoning_in_history: bool = False  # assistant reasoning traces of earlier turns
    # "full": the title and every criterion with its description; "ids": the title and the
    # criterion ids only, for tiny backbones whose small tokenizer spends ~300 tokens on the
    # descriptions of one rubric
    rubric_detail: Literal["full", "ids"] = "full"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        level_names(self.k)  # validates K
        if not self.verdict_tokens:
            object.__setattr__(self, "verdict_tokens", tuple(string.ascii_uppercase[: self.levels]))
        if len(self.verdict_tokens) != self.levels:
            raise ValueError(
                f"verdict_tokens has {len(self.verdict_tokens)} tokens; K={self.k} needs"
                f" {self.levels} (one per level -K..K)"
            )
        if len(set(self.verdict_tokens)) != self.levels:
            raise ValueError(f"verdict_tokens must be distinct, got {self.verdict_tokens}")
        if self.rubric_detail not in ("full", "ids"):
            raise ValueError(f"rubric_detail must be 'full' or 'ids', got {self.rubric_detail!r}")

    @property
    def levels(self) -> int:
        return 2 * self.k + 1

    def verdict_token_ids(self, tokenizer: Any) -> list[int]:
        """The id of each verdict token; raises unless every one is a single token."""
        ids = []
        for token in self.verdict_tokens:
            encoded = tokenizer.encode(token, add_special_tokens=False)
            if len(encoded) != 1:
                raise ValueError(
                    f"verdict token {token!r} is {len(encoded)} tokens in this tokenizer"
                    f" ({encoded}); every verdict token must be a single token: pick others"
                    " with JudgeFormat(verdict_tokens=...)"
                )
            ids.append(encoded[0])
        return ids

    # -- the prompt ------------------------------------------------------------------------

    def scale_text(self) -> str:
        """'Scale (Response 1 vs Response 2): A much worse, B worse, ..., G much better.'"""
        names = level_names(self.k)
        pairs = ", ".join(f"{t} {n}" for t, n in zip(self.verdict_tokens, names, strict=True))
        return f"Scale (Response 1 vs Response 2): {pairs}."

    def history_content(
        self, dialogue: Dialogue, task: Task, audio: bool, omitted: int = 0
    ) -> list[dict]:
        """Chat content items for turns[0..turn_index]: text, and audio placeholders.

        `omitted`: how many earlier turns were cut to fit (the prompt says so)."""
        if task.turn_index >= len(dialogue.turns):
            raise JudgeInputError(
                task.id,
                "turn_index",
                f"{task.turn_index} but dialogue {dialogue.id!r} has {len(dialogue.turns)} turns",
            )
        note = f" ({omitted} earlier turns left out)" if omitted else ""
        items: list[dict] = [{"type": "text", "text": f"Dialogue:{note}\n"}]
        for number, turn in enumerate(dialogue.turns[: task.turn_index + 1], start=1):
            items.append({"type": "text", "text": f"[{number}] {turn.role}: "})
            if turn.audio is not None and audio:
                items.append({"type": "audio", "path": turn.audio.path})
            text = turn.text if (turn.audio is None or self.transcripts or not audio) else None
            if turn.audio is not None and text and audio:
                text = f"(transcript) {text}"
            if turn.reasoning and self.reasoning_in_history:
                text = f"(reasoning) {turn.reasoning}\n{text or ''}"
            items.append({"type": "text", "text": f"{text or '(audio)'}\n"})
        return items

    def rubric_text(self, rubric: Rubric) -> str:
        if self.rubric_detail == "ids":
            return f"{rubric.title} ({', '.join(c.id for c in rubric.criteria)})"
        return format_rubric(rubric)

    def pair_text(self, task: Task, rubric: Rubric | None, order: Order) -> str:
        pair = [("policy", task.policy), ("reference", task.reference)]
        first, second = Order(order).shown_pair(*pair)
        parts = self._rubric_block(task, rubric)
        for number, (role, candidate) in enumerate((first, second), start=1):
            parts.append(f"Response {number}: {_candidate_text(task, role, candidate)}")
        parts.append(self.scale_text())
        return "\n".join(parts)

    def reply_text(self, task: Task, rubric: Rubric | None, reply: Reply) -> str:
        """The block after the history in a scalar reward model's prompt: the rubric, if any,
        and ONE reply (`reply`: which of the task's two), with no scale to answer on."""
        parts = self._rubric_block(task, rubric)
        parts.append(f"Reply: {_candidate_text(task, reply, getattr(task, reply))}")
        return "\n".join(parts)

    def _rubric_block(self, task: Task, rubric: Rubric | None) -> list[str]:
        if task.rubric_id is not None and (rubric is None or rubric.id != task.rubric_id):
            raise JudgeInputError(task.id, "rubric_id", f"rubric {task.rubric_id!r} not given")
        return [] if rubric is None else [f"Rubric: {self.rubric_text(rubric)}"]

    def messages(
        self,
        dialogue: Dialogue,
        task: Task,
        rubric: Rubric | None,
        order: Order,
        *,
        audio: bool,
        omitted: int = 0,
        reply: Reply | None = None,
    ) -> list[dict]:
        """Chat messages with a split sentinel between the history block and the pair block
        (or, with `reply`, the one reply a scalar reward model scores).

        Audio backbones get content lists (their templates place the audio placeholders);
        text backbones get one string, where audio turns are shown by transcript.
        """
        content = self.history_content(dialogue, task, audio, omitted)
        block = (
            self.pair_text(task, rubric, order)
            if reply is None
            else self.reply_text(task, rubric, reply)
        )
        content.append({"type": "text", "text": _SPLIT + block})
        if not audio:
            content = "".join(item["text"] for item in content)  # type: ignore[assignment]
        return [{"role": "system", "content": self.system}, {"role": "user", "content": content}]

    def render(
        self,
        template: Any,
        dialogue: Dialogue,
        task: Task,
        rubric: Rubric | None,
        order: Order,
        *,
        audio: bool,
        omitted: int = 0,
        reply: Reply | None = None,
    ) -> tuple[str, str, list[str]]:
        """(history text, pair text ending at the verdict slot, audio paths in order).

        `template` is the processor (audio backbones) or tokenizer whose chat template is used.
        """
        messages = self.messages(
            dialogue, task, rubric, order, audio=audio, omitted=omitted, reply=reply
        )
        text = template.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        history, pair = text.split(_SPLIT)
        paths = [
            item["path"]
            for item in (messages[1]["content"] if audio else [])
            if item["type"] == "audio"
        ]
        return history, pair, paths

    # -- persistence -----------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FORMAT_FILE
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> JudgeFormat:
        data = json.loads((Path(directory) / FORMAT_FILE).read_text())
        data["verdict_tokens"] = tuple(data["verdict_tokens"])
        return cls(**data)


def _candidate_text(task: Task, role: str, candidate: Candidate) -> str:
    if not candidate.text.strip():
        raise JudgeInputError(task.id, f"{role}.text", "the reply is empty")
    return candidate.text.strip()


def swap_response_labels(text: str) -> str:
    """'Response 1 ... Response 2' -> 'Response 2 ... Response 1': a critique, re-ordered."""
    return (
        text.replace("Response 1", "\x00")
        .replace("Response 2", "Response 1")
        .replace("\x00", "Response 2")
    )
