"""Import 100,000 judgments from JSONL and from Parquet (`rewardlab import --judgments`),
against the store's own write path in the same run.

    python benchmarks/bench_judgment_import.py
    python benchmarks/bench_judgment_import.py --judgments 20000

Setup (not timed): a store with judgments/5 text-only tasks (`synthetic.py`), and the
judgments, 5 per task by annotators the project does not know yet, written to a JSONL file
and a Parquet file in the data model's shape. Then, each on a fresh copy of the store:

  (a) `import_judgments(store, jsonl)`: read, check each row, create the annotators, store,
      all in one transaction;
  (b) the same from Parquet;
  (c) baseline: the same `Judgment` objects, already built, through one
      `Store.submit_judgments` call after adding the annotators: no reading, no parsing.

Printed: judgments/s for each and import / baseline. Each import is checked: every judgment
stored, once.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import polars as pl
from synthetic import annotator_ids, dialogues_and_tasks, judgments

from rewardlab.schema import ProjectSettings
from rewardlab.store import Store
from rewardlab.store.judgment_import import import_judgments

ANNOTATORS = 60


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judgments", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def build(root: Path, n: int, seed: int) -> tuple[Path, list, Path, Path]:
    n_tasks = max(1, n // 5)
    template = root / "template"
    with Store.create(template, ProjectSettings(name="bench")) as store:
        dialogues, tasks = dialogues_and_tasks(0, n_tasks)
        store.add_records(dialogues=dialogues, tasks=tasks)
        made = list(judgments(range(n_tasks), annotator_ids(ANNOTATORS), 5, store.k,
                              random.Random(seed)))  # fmt: skip
    rows = [j.model_dump(mode="json") for j in made]
    jsonl = root / "judgments.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in rows))
    parquet = root / "judgments.parquet"
    frame = pl.DataFrame([row | {"rubric_scores": "{}", "listened": "{}"} for row in rows])
    frame.write_parquet(parquet)
    return template, made, jsonl, parquet


def timed_import(template: Path, copy: Path, source: Path) -> float:
    shutil.copytree(template, copy)
    with Store(copy) as store:
        start = time.perf_counter()
        report = import_judgments(store, source)
        seconds = time.perf_counter() - start
        assert report.created == report.rows == store.count("judgments"), report.summary()
    return seconds


def timed_direct(template: Path, copy: Path, made: list) -> float:
    shutil.copytree(template, copy)
    with Store(copy) as store:
        start = time.perf_counter()
        with store.transaction() as tx:
            for annotator in sorted({j.annotator_id for j in made}):
                tx.add_annotator(annotator)
        store.submit_judgments(made)
        seconds = time.perf_counter() - start
        assert store.count("judgments") == len(made)
    return seconds


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-import-") as tmp:
        root = Path(tmp)
        print(f"building {args.judgments} judgments over {args.judgments // 5} tasks ...")
        template, made, jsonl, parquet = build(root, args.judgments, args.seed)
        runs = {
            "import JSONL": timed_import(template, root / "a", jsonl),
            "import Parquet": timed_import(template, root / "b", parquet),
            "direct Store.submit_judgments": timed_direct(template, root / "c", made),
        }
    n = len(made)
    print(f"\n{n} judgments, {ANNOTATORS} annotators new to the project\n")
    print(f"{'run':<32}{'seconds':>9}{'judgments/s':>13}")
    for name, seconds in runs.items():
        print(f"{name:<32}{seconds:>9.2f}{n / seconds:>13,.0f}")
    base = runs["direct Store.submit_judgments"]
    for name in ("import JSONL", "import Parquet"):
        print(f"{name} / direct: {base / runs[name]:.2f}x the throughput")


if __name__ == "__main__":
    main()
