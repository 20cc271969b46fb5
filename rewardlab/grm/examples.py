"""Training examples for the GRM: one per task, from the store or an exported judgments file.

Each example carries the *soft target*: the share of annotators at each level -K..K (so a
task judged +2, +2, +1 teaches 2/3 on +2 and 1/3 on +1, not just the majority), and one
annotator rationale as the critique, re-labelled so that "Response 1" is the policy. Swapping
(the other presentation order, target reversed) happens at batch time, see `GRMCollator`.

Splits keep *leakage groups* together: tasks whose dialogue transcripts are identical (every
pair judged on one dialogue, and the same words spoken in two moods) land on the same side, so
held-out accuracy cannot come from a memorised context, nor on audio-only pairs from
memorised text.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from rewardlab.data import aggregate_by_task
from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.judge_format import JudgeInputError, swap_response_labels
from rewardlab.rubrics import LIBRARY_DIR, load_library
from rewardlab.schema import Candidate, Dialogue, Order, Rubric, Task, Turn


@dataclass(frozen=True)
class GRMExample:
    item: JudgeItem
    target: np.ndarray  # (2K+1,) soft target over -K..K, policy vs reference; sums to 1
    critique: str | None  # labelled policy-first: "Response 1" is the policy
    group: str  # leakage group: identical dialogue text, whatever the audio and candidates

    @property
    def task_id(self) -> str:
        return self.item.task.id


@dataclass
class ProjectExamples:
    """A source's judged tasks as GRM examples, with what they came from."""

    examples: list[GRMExample]
    judgments: pl.DataFrame  # one row per judgment (`rewardlab.store.export.judgments_frame`)
    rubrics: dict[str, Rubric]
    media_root: Path
    k: int


def load_examples(source: Path | str) -> ProjectExamples:
    """One example per judged task of a project folder or a Parquet export.

    K is the source's own: a project's setting, or an export's ``k`` column; an export without
    one is refused rather than read as K=3. A Parquet export is expected next to the project it
    came from (its media root is the ``media/`` folder beside it, or pass the project folder).
    """
    from rewardlab.store import DB_NAME, Store
    from rewardlab.store.export import judgments_frame

    source = Path(source)
    if (source / DB_NAME).exists():
        with Store(source) as store:
            frame, k = judgments_frame(store), store.k
            rubrics, media_root = {r.id: r for r in store.rubrics()}, store.media_root
    elif source.suffix == ".parquet":
        frame, rubrics = pl.read_parquet(source), load_library(LIBRARY_DIR)
        media_root, k = source.parent / "media", _export_k(source, frame)
    else:
        raise FileNotFoundError(f"{source} is neither a rewardlab project nor a .parquet export")
    return ProjectExamples(examples_from_frame(frame, rubrics, k), frame, rubrics, media_root, k)


def _export_k(source: Path, frame: pl.DataFrame) -> int:
    """The one K of an export's ``k`` column."""
    found = frame["k"].unique().to_list() if "k" in frame.columns else []
    if len(found) != 1:
        raise ValueError(
            f"{source}: k: {'no' if not found else f'{len(found)} different'} values of K (the"
            " levels run -K..K) in the judgments; export them again with `rewardlab export`,"
            " which writes the project's K in a column 'k'"
        )
    return int(found[0])


def examples_from_frame(
    judgments: pl.DataFrame, rubrics: dict[str, Rubric], k: int
) -> list[GRMExample]:
    """One example per judged task (rows: `rewardlab.store.export.judgments_frame`)."""
    targets = aggregate_by_task(judgments, k).select("task_id", "soft_target", "majority_level")
    tasks = judgments.unique("task_id", keep="first").join(targets, on="task_id").sort("task_id")
    critiques = _critiques(judgments, targets)
    examples = []
    for row in tasks.iter_rows(named=True):
        item = _item(row, rubrics)
        text = "\n".join(t.text or "" for t in item.dialogue.turns)
        examples.append(
            GRMExample(
                item=item,
                target=np.asarray(row["soft_target"], dtype=np.float32),
                critique=critiques.get(row["task_id"]),
                group=hashlib.sha256(text.encode()).hexdigest()[:16],
            )
        )
    return examples


def _critiques(judgments: pl.DataFrame, targets: pl.DataFrame) -> dict[str, str]:
    """Per task, the rationale of an annotator who chose the majority level, policy-first."""
    rows = (
        judgments.join(targets, on="task_id")
        .filter((pl.col("level") == pl.col("majority_level")) & (pl.col("rationale") != ""))
        .sort("task_id", "annotator_id")
        .unique("task_id", keep="first")
    )
    return {
        r["task_id"]: r["rationale"]
        if r["shown_order"] == Order.POLICY_FIRST
        else swap_response_labels(r["rationale"])
        for r in rows.iter_rows(named=True)
    }


def _item(row: dict, rubrics: dict[str, Rubric]) -> JudgeItem:
    turns = [Turn.model_validate(t) for t in json.loads(row["history"])]

    def candidate(side: str) -> Candidate:
        return Candidate(
            text=row[f"{side}_text"],
            reasoning=row[f"{side}_reasoning"],
            source=row[f"{side}_source"],
        )

    task = Task(
        id=row["task_id"],
        dialogue_id=row["dialogue_id"],
        turn_index=row["turn_index"],
        policy=candidate("policy"),
        reference=candidate("reference"),
        rubric_id=row["rubric_id"],
        metadata=json.loads(row["task_metadata"]),
    )
    rubric = None
    if task.rubric_id is not None:
        if task.rubric_id not in rubrics:
            raise JudgeInputError(task.id, "rubric_id", f"unknown rubric {task.rubric_id!r}")
        rubric = rubrics[task.rubric_id]
    # the exported history is turns[0..turn_index]: all the dialogue the task can see
    # an export written before dialogue metadata was a column has none
    metadata = json.loads(row.get("dialogue_metadata") or "{}")
    dialogue = Dialogue(id=row["dialogue_id"], turns=turns, metadata=metadata)
    return JudgeItem(task, dialogue, rubric)


def split_examples(
    examples: list[GRMExample], eval_share: float, seed: int
) -> tuple[list[GRMExample], list[GRMExample]]:
    """(train, eval), whole leakage groups on one side; the same seed gives the same split."""
    groups = sorted({e.group for e in examples})
    random.Random(seed).shuffle(groups)
    held_out = set(groups[: round(len(groups) * eval_share)])
    train = [e for e in examples if e.group not in held_out]
    return train, [e for e in examples if e.group in held_out]
