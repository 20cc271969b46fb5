"""A writer process for the concurrency tests: `python store_writer.py MODE ROOT ARGS...`.

one-by-one ROOT START STOP   submit judgments START..STOP-1, printing each id once stored
batch ROOT START STOP        submit them in one transaction; halfway through (inside the
                             open transaction) print "midway" and stall, to be killed
shares ROOT WORKER WORKERS   submit every judgment i with i % WORKERS in {WORKER, WORKER+1}
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from rewardlab.schema import Dialogue, Judgment, Task, Turn
from rewardlab.store import Store

ANNOTATORS = 6
EPOCH = datetime(2026, 3, 1, tzinfo=UTC)


def setup(root: Path, n_tasks: int) -> None:
    """A project with one dialogue, `n_tasks` tasks and ANNOTATORS annotators."""
    with Store.create(root) as store:
        dialogue = Dialogue(id="d", turns=[Turn(role="user", text="Hello?")])
        candidate = {"text": "Hi.", "source": "reference"}
        tasks = [
            Task(id=f"t{i}", dialogue_id="d", turn_index=0, policy=candidate, reference=candidate)
            for i in range(n_tasks)
        ]
        store.add_records(dialogues=[dialogue], tasks=tasks)
        for a in range(ANNOTATORS):
            store.add_annotator(f"a{a}")


def expected(i: int) -> Judgment:
    """Judgment number i: a fixed (task, annotator) cell and fixed content."""
    return Judgment(
        id=f"j{i}",
        task_id=f"t{i // ANNOTATORS}",
        annotator_id=f"a{i % ANNOTATORS}",
        level=(i % 7) - 3,
        rationale=f"rationale {i}",
        created_at=EPOCH,
    )


def stalling(indices: range):
    """Yield the judgments, stopping for a minute halfway: the caller is mid-transaction."""
    for i in indices:
        if i == (indices.start + indices.stop) // 2:
            print("midway", flush=True)
            time.sleep(60)
        yield expected(i)


def main(mode: str, root: str, first: int, second: int) -> None:
    with Store(Path(root)) as store:
        if mode == "one-by-one":
            for i in range(first, second):
                store.submit_judgment(expected(i))
                print(f"j{i}", flush=True)
        elif mode == "batch":
            store.submit_judgments(stalling(range(first, second)))
            print("committed", flush=True)
        elif mode == "shares":
            worker, workers = first, second
            n = store.count("tasks") * ANNOTATORS
            created = 0
            for i in range(n):
                if i % workers in {worker, (worker + 1) % workers}:
                    created += store.submit_judgment(expected(i)).created
            print(created, flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
