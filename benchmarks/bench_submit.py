"""Judgment submit throughput and latency with 1, 8 and 32 concurrent writer processes.

    python benchmarks/bench_submit.py
    python benchmarks/bench_submit.py --judgments 10000 --writers 1 4 16 64 --sync-writers 1 8

Every run gets a fresh store in a temporary directory holding the same tasks, and submits the
same judgments. Each writer is a spawned process that opens its own `Store(root)` and submits
its share one `submit_judgment` call at a time, timing each call; the clock starts when every
writer has opened the store (a barrier), so process start-up is not timed. After each run the
store must hold exactly the submitted ids, and resubmitting some of them must answer
``created=False`` without adding a row. The runs at `--sync-writers` are repeated with
``synchronous=NORMAL`` to price the default FULL's fsync on every commit.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from synthetic import annotator_ids, dialogues_and_tasks, judgments
from tqdm import tqdm

from rewardlab.schema import Judgment, ProjectSettings
from rewardlab.store import Store

PER_TASK = 5
ANNOTATORS = 20
BARRIER_TIMEOUT_S = 300


@dataclass
class Run:
    synchronous: str
    writers: int
    judgments: int
    wall_s: float
    latencies_ms: list[float]
    retried: int
    retry_not_created: int

    @property
    def throughput(self) -> float:
        return self.judgments / self.wall_s

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judgments", type=int, default=5000, help="judgments per run")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--sync-writers",
        type=int,
        nargs="*",
        default=[1, 8],
        help="writer counts also run with synchronous=NORMAL (each must be in --writers)",
    )
    parser.add_argument("--retries", type=int, default=200, help="ids resubmitted per run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not set(args.sync_writers) <= set(args.writers):
        parser.error(f"--sync-writers {args.sync_writers} must be a subset of --writers")
    if args.retries > args.judgments:
        parser.error(f"--retries {args.retries} exceeds --judgments {args.judgments}")
    return args


def make_project(root: Path, n_tasks: int) -> None:
    with Store.create(root, ProjectSettings(annotators_per_task=PER_TASK)) as store:
        for annotator in annotator_ids(ANNOTATORS):
            store.add_annotator(annotator, role="simulated")
        dialogues, tasks = dialogues_and_tasks(0, n_tasks)
        store.add_records(dialogues=dialogues, tasks=tasks)


def write_share(
    root: Path, synchronous: str, share: list[Judgment], barrier
) -> tuple[float, float, int, list[float]]:
    """One writer process: open the store, wait for the others, submit one call at a time."""
    with Store(root, synchronous=synchronous) as store:
        barrier.wait(BARRIER_TIMEOUT_S)
        # monotonic is system-wide, so start and end compare across processes
        start = time.monotonic()
        latencies_ms, created = [], 0
        for judgment in share:
            t0 = time.perf_counter()
            created += store.submit_judgment(judgment).created
            latencies_ms.append((time.perf_counter() - t0) * 1000)
        end = time.monotonic()
    return start, end, created, latencies_ms


def run_level(
    root: Path, synchronous: str, writers: int, batch: list[Judgment], retries: int, seed: int
) -> Run:
    shares = [batch[w::writers] for w in range(writers)]
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(writers, mp_context=context) as pool,
    ):
        barrier = manager.Barrier(writers)
        futures = [pool.submit(write_share, root, synchronous, s, barrier) for s in shares]
        results = [future.result() for future in futures]
    wall_s = max(r[1] for r in results) - min(r[0] for r in results)
    created = sum(r[2] for r in results)
    latencies_ms = [ms for r in results for ms in r[3]]

    with Store(root) as store:
        stored = {j.id for j in store.judgments()}
        expected = {j.id for j in batch}
        check(created == len(batch), f"{created} created=True answers for {len(batch)} submits")
        check(stored == expected, f"stored {len(stored)} ids, expected {len(expected)}")
        again = [store.submit_judgment(j) for j in random.Random(seed).sample(batch, retries)]
        check(store.count("judgments") == len(batch), "a retried submit added a row")
    return Run(
        synchronous=synchronous,
        writers=writers,
        judgments=len(batch),
        wall_s=wall_s,
        latencies_ms=latencies_ms,
        retried=len(again),
        retry_not_created=sum(not r.created for r in again),
    )


def check(condition: bool, message: str) -> None:
    if not condition:
        raise RuntimeError(f"store check failed: {message}")


def print_levels(runs: list[Run]) -> None:
    header = (
        f"{'sync':<7}{'writers':>8}{'judgments':>10}{'wall s':>8}{'judg/s':>9}"
        f"{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'max ms':>9}{'vs 1 writer':>12}"
        f"{'stored':>8}{'retry created=False':>21}"
    )
    print(header)
    print("-" * len(header))
    baselines = {r.synchronous: r.throughput for r in runs if r.writers == 1}
    for r in runs:
        baseline = baselines.get(r.synchronous)
        ratio = f"{r.throughput / baseline:.2f}x" if baseline else "-"
        print(
            f"{r.synchronous:<7}{r.writers:>8}{r.judgments:>10}{r.wall_s:>8.2f}"
            f"{r.throughput:>9.0f}{r.percentile(50):>8.2f}{r.percentile(95):>8.2f}"
            f"{r.percentile(99):>8.2f}{max(r.latencies_ms):>9.2f}{ratio:>12}"
            f"{'exact':>8}{f'{r.retry_not_created}/{r.retried}':>21}"
        )


def print_sync(full: dict[int, Run], normal: dict[int, Run]) -> None:
    header = (
        f"{'writers':>7}{'FULL judg/s':>13}{'NORMAL judg/s':>15}{'NORMAL/FULL':>13}"
        f"{'FULL p95 ms':>13}{'NORMAL p95 ms':>15}"
    )
    print(header)
    print("-" * len(header))
    for writers, n in normal.items():
        f = full[writers]
        print(
            f"{writers:>7}{f.throughput:>13.0f}{n.throughput:>15.0f}"
            f"{n.throughput / f.throughput:>12.2f}x{f.percentile(95):>13.2f}"
            f"{n.percentile(95):>15.2f}"
        )


def main() -> None:
    args = parse_args()
    n_tasks = -(-args.judgments // PER_TASK)
    rng = random.Random(args.seed)
    batch = list(judgments(range(n_tasks), annotator_ids(ANNOTATORS), PER_TASK, 3, rng))
    batch = batch[: args.judgments]
    rng.shuffle(batch)  # writers interleave tasks and annotators, as app workers would
    plan = [("FULL", w) for w in args.writers] + [("NORMAL", w) for w in args.sync_writers]

    runs = []
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-submit-") as tmp:
        for i, (synchronous, writers) in enumerate(tqdm(plan, desc="runs", unit="run")):
            root = Path(tmp) / f"run-{i}"
            make_project(root, n_tasks)
            runs.append(run_level(root, synchronous, writers, batch, args.retries, args.seed))

    print(
        f"\nsubmit_judgment, one call per judgment: {args.judgments} judgments per run"
        f" over {n_tasks} tasks x {PER_TASK} of {ANNOTATORS} annotators, fresh store each run"
    )
    print("stored: the store holds exactly the submitted ids (none lost, none duplicated)\n")
    print_levels(runs)
    print("\nsynchronous=NORMAL vs the default FULL (same judgments)\n")
    print_sync(
        {r.writers: r for r in runs if r.synchronous == "FULL"},
        {r.writers: r for r in runs if r.synchronous == "NORMAL"},
    )


if __name__ == "__main__":
    main()
