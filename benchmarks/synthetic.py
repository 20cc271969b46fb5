"""Synthetic projects for the benchmarks: text-only dialogues, tasks and judgments.

Imported by the `bench_*.py` scripts beside it (run as `python benchmarks/bench_x.py`, this
folder is on sys.path). Everything is built with the real schema types, so the store
validates and stores exactly what an import and the annotation app would give it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from rewardlab.schema import Candidate, Dialogue, Judgment, Task, Turn

TASKS_PER_DIALOGUE = 2
RATIONALES = [
    "",
    "The policy answer keeps the corrected date; the reference repeats the old one.",
    "Both are fine; the reference is a little more concise.",
    "The reference misreads the request and answers a different question.",
    "Policy is warmer and more specific, but slightly long for a voice reply.",
]


def annotator_ids(n: int) -> list[str]:
    return [f"annotator-{i:03d}" for i in range(n)]


def dialogues_and_tasks(first: int, stop: int) -> tuple[list[Dialogue], list[Task]]:
    """Tasks first..stop-1, two per dialogue: replies to the first and the second user turn."""
    dialogues, tasks = [], []
    for number in range(first // TASKS_PER_DIALOGUE, -(-stop // TASKS_PER_DIALOGUE)):
        dialogue_id = f"d{number:07d}"
        place = f"restaurant {number}"  # distinct text per dialogue, as in a real export
        dialogues.append(
            Dialogue(
                id=dialogue_id,
                turns=[
                    Turn(role="user", text=f"Book a table for {number % 7 + 2} at {place}."),
                    Turn(role="assistant", text=f"Sure, {place} tonight: what time?"),
                    Turn(role="user", text=f"Actually make that tomorrow at {number % 4 + 6}."),
                ],
                metadata={"source": "synthetic"},
            )
        )
        for turn_index in (0, 2):
            task_number = number * TASKS_PER_DIALOGUE + turn_index // 2
            if first <= task_number < stop:
                tasks.append(
                    Task(
                        id=f"t{task_number:07d}",
                        dialogue_id=dialogue_id,
                        turn_index=turn_index,
                        policy=Candidate(
                            text=f"Done: {place}, tomorrow, {task_number % 9 + 2} people.",
                            source=f"ckpt-{number % 4}",
                        ),
                        reference=Candidate(
                            text=f"Okay, {place} is booked for tonight.", source="reference"
                        ),
                    )
                )
    return dialogues, tasks


def judgments(
    task_numbers: range, annotators: list[str], per_task: int, k: int, rng: random.Random
) -> Iterator[Judgment]:
    """`per_task` judgments per task by distinct annotators, levels spread like real ones.

    Each task has a latent quality; an annotator reads it with noise and calls a tie when it
    is close to zero, so levels cluster by task (agreement well below 1) and 0 is common.
    """
    for number in task_numbers:
        task_id = f"t{number:07d}"
        quality = rng.gauss(0.3, 1.4)
        for annotator in rng.sample(annotators, per_task):
            perceived = quality + rng.gauss(0, 0.8)
            level = 0 if abs(perceived) < 0.4 else max(-k, min(k, round(perceived)))
            yield Judgment(
                id=f"j-{task_id}-{annotator}",
                task_id=task_id,
                annotator_id=annotator,
                level=level,
                rationale=rng.choice(RATIONALES),
                time_spent_s=round(rng.lognormvariate(3.4, 0.4), 1),
                shown_order=rng.choice(("policy_first", "reference_first")),
            )
