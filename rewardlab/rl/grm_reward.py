"""`GRMReward`: the GRM as a TRL reward function, for `GRPOTrainer` and `RLOOTrainer` as they are.

    reward = GRMReward.from_checkpoint("demo_out/grm/final", project="demo_out")
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, train_dataset=dataset, args=config)

TRL calls it with one entry per completion, every dataset column repeated per completion:
``reward(prompts=..., completions=..., completion_ids=..., <columns>, trainer_state=...,
log_extra=..., log_metric=...)``. The columns it reads:

    reference    the reference reply the completion is judged against (required)
    dialogue_id  a dialogue of the project (or of the ``dialogues`` given): its audio turns are
                 heard by an audio GRM. Without this column the prompt is the dialogue: a
                 string is one user turn, a conversational prompt one text turn per message
    turn_index   the turn the completion answers (default: the dialogue's last turn)
    rubric_id    the rubric to judge under; None or "" judge plain preference

Each completion becomes the policy response of a `JudgeItem`: text before the last
``</think>`` is its reasoning trace, kept apart, and the GRM judges the reply after it. The
items are judged in both presentation orders and `RewardMapper` turns the distributions into
rewards (its running normalisation, if set, absorbs every batch). An empty reply gets the
reward of a certain "much worse" verdict: a policy must not escape judgment by saying nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.reward import RewardMapper
from rewardlab.rubrics import load_library
from rewardlab.schema import THINK_END, THINK_START, Dialogue, Order, Rubric, Task, parse_record


def completion_text(completion: str | list[dict]) -> str:
    """A plain completion, or the text of a conversational one's messages."""
    if isinstance(completion, str):
        return completion
    return "".join(_content_text(message["content"]) for message in completion)


def _content_text(content: str | list[dict] | None) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content or [] if part.get("type") == "text")


def split_reasoning(text: str, separator: str = THINK_END) -> tuple[str | None, str]:
    """(reasoning trace or None, reply): the reply is what follows the last `separator`."""
    head, sep, tail = text.rpartition(separator)
    if not sep:
        return None, text.strip()
    return head.replace(THINK_START, "").strip() or None, tail.strip()


def prompt_dialogue(prompt: str | list[dict], row: int) -> Dialogue:
    """The prompt as a dialogue of text turns."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    turns = [{"role": m["role"], "text": _content_text(m["content"])} for m in messages]
    return parse_record(Dialogue, {"id": f"prompt-{row}", "turns": turns}, f"prompt {row}")


class GRMReward:
    def __init__(
        self,
        grm: GenerativeRewardModel,
        mapper: RewardMapper | None = None,
        *,
        dialogues: Mapping[str, Dialogue] | None = None,
        rubrics: Mapping[str, Rubric] | None = None,
        batch_size: int = 16,
        share_history: Literal["group", "item"] = "group",
    ):
        """`dialogues` and `rubrics` by id (default rubrics: the shipped library);
        `share_history`: as `GenerativeRewardModel.judge` ("item" only to measure the gain)."""
        self.grm = grm
        self.mapper = mapper if mapper is not None else RewardMapper(k=grm.format.k)
        if self.mapper.k != grm.format.k:
            raise ValueError(f"the mapper has K={self.mapper.k} but the GRM has K={grm.format.k}")
        self.dialogues = dict(dialogues or {})
        self.rubrics = dict(rubrics) if rubrics is not None else load_library()
        self.batch_size = batch_size
        self.share_history = share_history

    @classmethod
    def from_checkpoint(
        cls, checkpoint: Path | str, project: Path | str | None = None, **kwargs: Any
    ) -> GRMReward:
        """The GRM and the mapper saved with it (`GRMCheckpoint`); with `project`, its
        dialogues (and audio) and rubrics."""
        saved = GRMCheckpoint(checkpoint)
        if project is None:
            grm = saved.load_model()
        else:
            from rewardlab.store import Store

            with Store(Path(project)) as store:
                kwargs.setdefault("dialogues", {d.id: d for d in store.dialogues()})
                kwargs.setdefault("rubrics", {r.id: r for r in store.rubrics()})
                grm = saved.load_model(media_root=store.media_root)
        return cls(grm, saved.mapper(k=grm.format.k), **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """What a run changes: the mapper's normalisation statistics (JSON-able)."""
        return {"mapper": self.mapper.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mapper.load_state_dict(state["mapper"])

    def __call__(
        self,
        prompts: Sequence[str | list[dict]],
        completions: Sequence[str | list[dict]],
        reference: Sequence[str] | None = None,
        dialogue_id: Sequence[str] | None = None,
        turn_index: Sequence[int | None] | None = None,
        rubric_id: Sequence[str | None] | None = None,
        log_metric: Any = None,
        **_: Any,  # the other columns, completion_ids, trainer_state, log_extra
    ) -> list[float]:
        if reference is None:
            raise ValueError(
                "GRMReward needs a 'reference' dataset column: the reference reply each"
                " completion is judged against"
            )
        items: list[JudgeItem | None] = []
        optional = {"dialogue_id": dialogue_id, "turn_index": turn_index, "rubric_id": rubric_id}
        for row, completion in enumerate(completions):
            reasoning, reply = split_reasoning(completion_text(completion))
            given = {name: values[row] for name, values in optional.items() if values is not None}
            items.append(
                self._item(row, prompts[row], reply, reasoning, reference[row], **given)
                if reply
                else None
            )
        return self.reward_items(items, log_metric=log_metric).tolist()

    def reward_items(
        self, items: Sequence[JudgeItem | None], *, update: bool = True, log_metric: Any = None
    ) -> np.ndarray:
        """(N,) rewards of judge items, both orders, through the mapper; None is an empty
        reply. `update=False` leaves the mapper's running normalisation as it is."""
        k = self.mapper.k
        probs = self.level_probs(items)
        rewards = self.mapper(probs, update=update)
        if log_metric is not None:
            expected = probs.mean(axis=1) @ np.arange(-k, k + 1)
            empty = sum(item is None for item in items)
            log_metric("grm/expected_level", float(expected.mean()))
            log_metric("grm/empty_share", empty / max(len(items), 1))
        return rewards

    def level_probs(self, items: Sequence[JudgeItem | None]) -> np.ndarray:
        """(N, O, 2K+1) level distributions, both orders; None (an empty reply) is a certain
        "much worse" in both."""
        k = self.mapper.k
        probs = np.zeros((len(items), len(Order), 2 * k + 1))
        probs[:, :, 0] = 1.0
        rows = [row for row, item in enumerate(items) if item is not None]
        if rows:
            judged = [items[row] for row in rows]
            probs[rows] = self.grm.judge(
                judged, batch_size=self.batch_size, share_history=self.share_history
            ).probs
        return probs

    def _item(
        self,
        row: int,
        prompt: str | list[dict],
        reply: str,
        reasoning: str | None,
        reference: str,
        dialogue_id: str | None = None,
        turn_index: int | None = None,
        rubric_id: str | None = None,
    ) -> JudgeItem:
        """Row `row` as a judge item: the completion's reply is the policy response."""
        if dialogue_id is None:
            dialogue = prompt_dialogue(prompt, row)
        elif dialogue_id in self.dialogues:
            dialogue = self.dialogues[dialogue_id]
        else:
            raise ValueError(
                f"completion {row}: dialogue_id: {dialogue_id!r} is not among the"
                f" {len(self.dialogues)} dialogues given (from_checkpoint(..., project=...)"
                " loads a project's)"
            )
        rubric_id = rubric_id or None
        if rubric_id is not None and rubric_id not in self.rubrics:
            raise ValueError(f"completion {row}: rubric_id: unknown rubric {rubric_id!r}")
        rubric = self.rubrics[rubric_id] if rubric_id else None
        return judge_item(
            f"{dialogue.id}.c{row}",
            dialogue,
            len(dialogue.turns) - 1 if turn_index is None else turn_index,
            reply,
            reasoning,
            reference,
            rubric,
            k=self.mapper.k,
        )


def judge_item(
    task_id: str,
    dialogue: Dialogue,
    turn_index: int,
    reply: str,
    reasoning: str | None,
    reference: str,
    rubric: Rubric | None,
    *,
    k: int,
) -> JudgeItem:
    """A judge item whose policy response is `reply`, judged against `reference`."""
    record = {
        "id": task_id,
        "dialogue_id": dialogue.id,
        "turn_index": turn_index,
        "policy": {"text": reply, "reasoning": reasoning, "source": "policy"},
        "reference": {"text": reference, "source": "reference"},
        "rubric_id": rubric.id if rubric else None,
    }
    task = parse_record(Task, record, task_id, k=k)
    return JudgeItem(task, dialogue, rubric)
