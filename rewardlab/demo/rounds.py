"""The next round of annotation in the demo world: new tasks judged by the same annotators.

A policy's replies (`rewardlab sample`) are free text, not replies the world wrote, so their
truth is read from the text by the world's own rules (`world.score_reply`, against the rules
each dialogue keeps in its metadata). `label_round` puts that truth in each task's
``metadata.truth``, exactly as the world's own tasks carry it, imports the tasks (all or
nothing, through the importer every record import shares) and has the world's simulated
annotators judge them, as they judged round one. Running it again on the same file adds
nothing twice: the tasks are already stored and each judgment's id is (task, annotator).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from rewardlab.demo.annotators import judge, make_annotators
from rewardlab.demo.world import RUBRIC_AXIS, level_of, score_reply
from rewardlab.schema import RecordError
from rewardlab.store import Store
from rewardlab.store.importer import ImportRejected, ImportReport, import_records, read_jsonl


@dataclass
class RoundReport:
    imported: ImportReport
    judged_tasks: int = 0
    judgments: int = 0
    # the policy candidate's source (the checkpoint `sample` names) -> true levels of its tasks
    levels: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> str:
        lines = [
            f"{sum(map(len, self.levels.values()))} tasks labelled by the world's rules,"
            f" {self.judgments} simulated judgments on {self.judged_tasks} tasks"
        ]
        for source, levels in sorted(self.levels.items()):
            counts = Counter(int(np.sign(level)) for level in levels)
            lines.append(
                f"  {source}: mean true level {np.mean(levels):+.2f} ±"
                f" {np.std(levels, ddof=1) / np.sqrt(len(levels)) if len(levels) > 1 else 0:.2f}"
                f" over {len(levels)} replies ({counts[1]} better than the reference,"
                f" {counts[0]} ties, {counts[-1]} worse)"
            )
        return "\n".join(lines)


def task_truth(rules: dict, policy: str, reference: str, rubric_id: str | None, k: int) -> dict:
    """``metadata.truth`` of a task whose candidates are free text, as the world writes it."""
    scores = {"policy": score_reply(rules, policy), "reference": score_reply(rules, reference)}
    axis = RUBRIC_AXIS[rubric_id] if rubric_id is not None else "plain"
    return {
        "level": level_of(scores["policy"], scores["reference"], rubric_id, k),
        "axis": axis,
        "rubric_axis": axis if rubric_id is not None else None,
        "audio_only": False,
        "twin": None,
        "mood": rules["mood"],
        "scores": scores,
    }


def _with_truth(store: Store, label: str, data: dict) -> dict | RecordError:
    """The task record with its truth, or an error naming the record and the field."""
    try:
        dialogue = store.dialogue(data["dialogue_id"])
    except KeyError:
        return RecordError(label, "dialogue_id", f"no dialogue {data['dialogue_id']!r}")
    rules = dialogue.metadata.get("rules")
    if rules is None:
        return RecordError(
            label, "dialogue_id", f"dialogue {dialogue.id!r} is not from the demo world (no rules)"
        )
    rubric_id = data.get("rubric_id")
    if rubric_id is not None and rubric_id not in RUBRIC_AXIS:
        return RecordError(label, "rubric_id", f"{rubric_id!r} judges no axis of the demo world")
    truth = task_truth(rules, data["policy"]["text"], data["reference"]["text"], rubric_id, store.k)
    return data | {"metadata": (data.get("metadata") or {}) | {"truth": truth}}


def label_round(
    store: Store,
    tasks_path: Path,
    *,
    seed: int = 0,
    annotators: int = 8,
    progress: bool = True,
) -> RoundReport:
    """Import the tasks in `tasks_path` with their truth, and judge them with the simulated
    annotators of a world built with `seed` and `annotators` (its `DemoConfig`)."""
    records: list[tuple[str, object]] = []
    for label, data in read_jsonl(Path(tasks_path)):
        if isinstance(data, dict) and {"dialogue_id", "policy", "reference"} <= set(data):
            data = _with_truth(store, label, data)
        records.append((label, data))  # anything else: the importer names what is wrong
    imported = import_records(
        store, {"dialogue": [], "task": records}, media_dir=Path(tasks_path).parent
    )
    if imported.errors:
        raise ImportRejected(imported)
    report = RoundReport(imported)
    pool = make_annotators(annotators, seed)
    known = {row["id"] for row in store.annotators()}
    for annotator in pool:
        if annotator.id not in known:
            store.add_annotator(
                annotator.id, f"Simulated annotator {annotator.id[-2:]}", role="simulated"
            )
    judgments = []
    for task in tqdm(imported.tasks, desc="annotating", unit="task", disable=not progress):
        task = store.task(task.id)
        rng = random.Random(f"{seed}:{task.id}")  # the same file gets the same judgments
        clips = [ref.path for ref in store.dialogue(task.dialogue_id).audio_refs()]
        rubric = store.rubric(task.rubric_id) if task.rubric_id else None
        for annotator in rng.sample(pool, store.settings.annotators_per_task):
            judgments.append(judge(annotator, task, rubric, clips, store.k, rng))
        report.levels[task.policy.source or "policy"].append(task.metadata["truth"]["level"])
    results = store.submit_judgments(judgments)
    report.judged_tasks = len(imported.tasks)
    report.judgments = sum(1 for r in results if r.created)
    return report
