"""Several writer processes at once, and writers killed with SIGKILL mid-run."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import store_writer
from store_writer import ANNOTATORS, expected

from rewardlab.store import Store

WRITER = [sys.executable, str(Path(store_writer.__file__))]


def start(*args: object) -> subprocess.Popen:
    return subprocess.Popen(
        [*WRITER, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_concurrent_writers_lose_and_duplicate_nothing(tmp_path: Path):
    """Six processes; every judgment is submitted by two of them at about the same time."""
    root = tmp_path / "project"
    store_writer.setup(root, n_tasks=40)
    workers = [start("shares", root, w, 6) for w in range(6)]
    outputs = [w.communicate(timeout=240) for w in workers]
    assert all(w.returncode == 0 for w in workers), [err for _, err in outputs]
    created = sum(int(out) for out, _ in outputs)
    n = 40 * ANNOTATORS
    assert created == n  # exactly one of the two submitters created each judgment
    with Store(root) as store:
        assert store.count("judgments") == n
        assert sorted(store.judgments(), key=lambda j: int(j.id[1:])) == [
            expected(i) for i in range(n)
        ]
        assert store.integrity_problems() == []


@pytest.mark.parametrize("kill_after", [5, 40, 111])
def test_a_killed_writer_loses_no_acknowledged_judgment(tmp_path: Path, kill_after: int):
    root = tmp_path / "project"
    store_writer.setup(root, n_tasks=100)
    writer = start("one-by-one", root, 0, 600)
    acknowledged = []
    while len(acknowledged) < kill_after:
        line = writer.stdout.readline()
        assert line, writer.stderr.read()
        acknowledged.append(line.strip())
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    # the writer may have run ahead of our reading: ids it printed are acknowledged too
    # (one short write each, so a kill cannot cut a line in half)
    acknowledged += writer.stdout.read().split()
    with Store(root) as store:
        assert store.integrity_problems() == []
        stored = {j.id: j for j in store.judgments()}
        assert set(acknowledged) <= set(stored)
        # at most the one in flight when the signal landed is stored but unacknowledged
        assert len(stored) - len(acknowledged) <= 1
        assert all(stored[i] == expected(int(i[1:])) for i in stored)
        # the store goes on working after the crash
        store.submit_judgment(expected(599))
        assert store.count("judgments") == len(stored) + 1


def test_a_writer_killed_inside_a_batch_leaves_all_or_nothing(tmp_path: Path):
    root = tmp_path / "project"
    store_writer.setup(root, n_tasks=2000)
    with Store(root) as store:
        store.submit_judgments(expected(i) for i in range(10))  # acknowledged before the crash
    writer = start("batch", root, 10, 12_000)
    assert writer.stdout.readline().strip() == "midway"  # ~6,000 rows written, not committed
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    with Store(root) as store:
        assert store.integrity_problems() == []
        assert store.count("judgments") == 10  # the acknowledged ones, nothing of the batch
        assert [j.id for j in store.judgments()] == [f"j{i}" for i in range(10)]
