"""Score a project's tasks with a trained GRM: the library behind `rewardlab judge`.

    rewardlab judge demo_out/grm/final --project demo_out --out scores.jsonl

`judge_project` gives each task's level distribution in both orders (a `LevelDistribution`),
`write_scores` one JSON line per task (`score_rows`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.model import LevelDistribution, Mode
from rewardlab.schema import Task, parse_record


def project_items(store: Any, tasks_file: Path | None = None) -> list[JudgeItem]:
    """Judge items of the store's tasks, or of the tasks in `tasks_file` (JSONL) judged on the
    store's dialogues and rubrics."""
    tasks = store.tasks()
    if tasks_file is not None:
        lines = Path(tasks_file).read_text().splitlines()
        tasks = [
            parse_record(Task, json.loads(line), f"{tasks_file} line {i}", k=store.k)
            for i, line in enumerate(lines, start=1)
            if line.strip()
        ]
    rubrics = {r.id: r for r in store.rubrics()}
    items = []
    for task in tasks:
        if task.rubric_id is not None and task.rubric_id not in rubrics:
            raise ValueError(f"task {task.id!r}: rubric_id: unknown rubric {task.rubric_id!r}")
        items.append(JudgeItem(task, store.dialogue(task.dialogue_id), rubrics.get(task.rubric_id)))
    return items


def judge_project(
    checkpoint: Path | str,
    project: Path | str,
    *,
    tasks_file: Path | None = None,
    mode: Mode = "direct",
    batch_size: int = 16,
) -> LevelDistribution:
    """Level distributions of a project's tasks (or of `tasks_file`'s) in both orders."""
    from rewardlab.store import Store

    with Store(Path(project)) as store:
        items = project_items(store, tasks_file)
        grm = GRMCheckpoint(checkpoint).load_model(media_root=store.media_root)
    return grm.judge(items, mode=mode, batch_size=batch_size, progress=True)


def score_rows(dist: LevelDistribution) -> list[dict[str, Any]]:
    """Per task: the debiased expected level, each order's probabilities, any critiques."""
    expected = dist.expected_level()  # (N, O)
    rows = []
    for i, task_id in enumerate(dist.task_ids):
        row = {
            "task_id": task_id,
            "expected_level": round(float(expected[i].mean()), 4),
            **{
                f"probs_{order}": [round(float(p), 5) for p in dist.probs[i, j]]
                for j, order in enumerate(dist.orders)
            },
        }
        if dist.critiques is not None:
            row["critiques"] = dist.critiques[i]
        rows.append(row)
    return rows


def write_scores(dist: LevelDistribution, out: Path | str) -> Path:
    """`score_rows` as JSON lines."""
    out = Path(out)
    out.write_text("".join(json.dumps(row) + "\n" for row in score_rows(dist)))
    return out
