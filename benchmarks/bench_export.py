"""Export 1,000,000 judgments to Parquet, then aggregate them per task: polars vs pandas.

    python benchmarks/bench_export.py
    python benchmarks/bench_export.py --judgments 100000 --repeats 5

Setup (timed, but not the point): a store in a temporary directory with judgments/5 text-only
tasks (two per dialogue), 5 judgments per task from a pool of annotators, submitted through
`Store.submit_judgments` in large batches, the store's one write path. Then, timed:

  (a) `export_parquet(store, path)`: the joined judgment + task + history frame, to Parquet;
  (b) polars: `aggregate_by_task(pl.read_parquet(path), k)`, the library's aggregation;
  (c) pandas: the same aggregation written the way a pandas user would, on
      `pd.read_parquet(path)`; the script checks that it gives the same numbers per task.

(b) and (c) run alternately --repeats times; the best times and pandas/polars are printed.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from synthetic import annotator_ids, dialogues_and_tasks, judgments
from tqdm import tqdm

from rewardlab.data import aggregate_by_task
from rewardlab.schema import ProjectSettings
from rewardlab.store import Store
from rewardlab.store.export import export_parquet

ANNOTATORS = 60
TASK_BATCH = 20_000
JUDGMENT_BATCH = 50_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--per-task", type=int, default=5, help="judgments per task")
    parser.add_argument("--repeats", type=int, default=5, help="runs of (b) and (c); best kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.per_task <= ANNOTATORS:
        parser.error(f"--per-task {args.per_task} must be in 1..{ANNOTATORS}")
    if args.judgments < args.per_task:
        parser.error(f"--judgments {args.judgments} is less than --per-task {args.per_task}")
    return args


def fill(store: Store, n_tasks: int, per_task: int, seed: int) -> dict[str, float]:
    """Annotators, dialogues, tasks and judgments; seconds spent building vs in the store."""
    seconds = {"build": 0.0, "add_records": 0.0, "submit_judgments": 0.0}
    for annotator in annotator_ids(ANNOTATORS):
        store.add_annotator(annotator, role="simulated")
    for first in tqdm(range(0, n_tasks, TASK_BATCH), desc="tasks", unit="batch"):
        t0 = time.perf_counter()
        dialogues, tasks = dialogues_and_tasks(first, min(first + TASK_BATCH, n_tasks))
        t1 = time.perf_counter()
        store.add_records(dialogues=dialogues, tasks=tasks)
        seconds["build"] += t1 - t0
        seconds["add_records"] += time.perf_counter() - t1

    stream = judgments(
        range(n_tasks), annotator_ids(ANNOTATORS), per_task, store.k, random.Random(seed)
    )
    with tqdm(total=n_tasks * per_task, desc="judgments", unit="judgment") as progress:
        for batch in batched(stream, JUDGMENT_BATCH, seconds):
            t0 = time.perf_counter()
            store.submit_judgments(batch)
            seconds["submit_judgments"] += time.perf_counter() - t0
            progress.update(len(batch))
    return seconds


def batched(stream: Iterator, size: int, seconds: dict[str, float]) -> Iterator[list]:
    """Lists of `size` items, adding the time spent building them to seconds['build']."""
    while True:
        t0 = time.perf_counter()
        batch = list(islice(stream, size))
        seconds["build"] += time.perf_counter() - t0
        if not batch:
            return
        yield batch


def aggregate_by_task_pandas(judgments: pd.DataFrame, k: int) -> pd.DataFrame:
    """`rewardlab.data.aggregate_by_task` as idiomatic pandas: same columns, same tie rule."""
    levels = list(range(-k, k + 1))
    level = judgments.groupby("task_id", sort=True)["level"]
    n = level.size()
    votes = level.value_counts().unstack(fill_value=0).reindex(columns=levels, fill_value=0)
    # idxmax picks the first maximum: columns nearest zero first send ties towards zero
    nearest_zero_first = sorted(levels, key=lambda lv: (abs(lv), lv))
    shares = votes.div(n, axis=0)
    return pd.DataFrame(
        {
            "n": n,
            "level_mean": level.mean(),
            "level_std": level.std(ddof=0),
            "majority_level": votes[nearest_zero_first].idxmax(axis=1).astype("int8"),
            "agreement": votes.max(axis=1) / n,
            "soft_target": pd.Series(shares.to_numpy().tolist(), index=shares.index),
        }
    ).reset_index()


def check_same(by_polars: pl.DataFrame, by_pandas: pd.DataFrame) -> None:
    """Same tasks in the same order, same counts and majorities, floats within 1e-9."""
    problems = []
    if by_polars["task_id"].to_list() != by_pandas["task_id"].tolist():
        problems.append("task ids or their order differ")
    for column in ("n", "majority_level"):
        if not np.array_equal(by_polars[column].to_numpy(), by_pandas[column].to_numpy()):
            problems.append(f"{column} differs")
    for column in ("level_mean", "level_std", "agreement"):
        if not np.allclose(by_polars[column].to_numpy(), by_pandas[column].to_numpy(), atol=1e-9):
            problems.append(f"{column} differs")
    soft_polars = np.array(by_polars["soft_target"].to_list())  # (tasks, 2K+1)
    soft_pandas = np.array(by_pandas["soft_target"].tolist())
    if soft_polars.shape != soft_pandas.shape or not np.allclose(soft_polars, soft_pandas):
        problems.append("soft_target differs")
    if problems:
        raise RuntimeError(f"pandas and polars aggregations disagree: {'; '.join(problems)}")


def timed(read: Callable, aggregate: Callable) -> tuple[float, float, object]:
    """Seconds to read, seconds to aggregate, and the aggregate."""
    t0 = time.perf_counter()
    frame = read()
    t1 = time.perf_counter()
    result = aggregate(frame)
    return t1 - t0, time.perf_counter() - t1, result


def main() -> None:
    args = parse_args()
    n_tasks = args.judgments // args.per_task
    n_judgments = n_tasks * args.per_task
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-export-") as tmp:
        root, path = Path(tmp) / "project", Path(tmp) / "judgments.parquet"
        with Store.create(root, ProjectSettings(annotators_per_task=args.per_task)) as store:
            setup_s = fill(store, n_tasks, args.per_task, args.seed)
            if store.count("judgments") != n_judgments:
                raise RuntimeError(f"store holds {store.count('judgments')} judgments")
            db_mb = store.db_path.stat().st_size / 2**20
            print("(a) export_parquet ...", flush=True)
            t0 = time.perf_counter()
            export_parquet(store, path)
            export_s = time.perf_counter() - t0
            k = store.k
        parquet_mb = path.stat().st_size / 2**20

        polars_way = (lambda: pl.read_parquet(path), lambda frame: aggregate_by_task(frame, k))
        pandas_way = (lambda: pd.read_parquet(path), lambda f: aggregate_by_task_pandas(f, k))
        by_polars, by_pandas = [], []
        # alternate the two so that drift on a shared machine hits both alike
        for _ in tqdm(range(args.repeats), desc="(b) polars, (c) pandas", unit="repeat"):
            by_polars.append(timed(*polars_way))
            by_pandas.append(timed(*pandas_way))
        check_same(by_polars[-1][2], by_pandas[-1][2])

    fill_s = setup_s["submit_judgments"]
    print(f"\n{n_judgments:,} judgments, {n_tasks:,} tasks, {args.per_task} judgments per task\n")
    print("setup")
    print(f"  build records (pydantic)        {setup_s['build']:8.1f} s")
    print(f"  add_records (tasks, dialogues)  {setup_s['add_records']:8.1f} s")
    print(
        f"  submit_judgments (fill)         {fill_s:8.1f} s"
        f"   {n_judgments / fill_s:,.0f} judgments/s, store {db_mb:,.0f} MiB"
    )
    print("\n(a) export")
    print(
        f"  export_parquet                  {export_s:8.1f} s"
        f"   {n_judgments / export_s:,.0f} rows/s, file {parquet_mb:,.1f} MiB"
    )
    print(f"\n(b) vs (c) aggregation by task, best of {args.repeats} (same result checked)\n")
    header = f"  {'step':<22}{'polars s':>10}{'pandas s':>10}{'pandas/polars':>15}"
    print(header)
    print("  " + "-" * (len(header) - 2))
    rows = [
        ("read_parquet", *(min(run[0] for run in runs) for runs in (by_polars, by_pandas))),
        ("aggregate", *(min(run[1] for run in runs) for runs in (by_polars, by_pandas))),
        ("read + aggregate", *(min(r[0] + r[1] for r in runs) for runs in (by_polars, by_pandas))),
    ]
    for step, polars_s, pandas_s in rows:
        print(f"  {step:<22}{polars_s:>10.3f}{pandas_s:>10.3f}{pandas_s / polars_s:>14.1f}x")


if __name__ == "__main__":
    main()
