"""Judgment tables -> per-task aggregates and project statistics (polars).

`aggregate_by_task` turns the export frame (one row per judgment, `store.export`) into one row
per task: how many judged it, the mean level, the spread, the majority level, and the soft
target (the share of annotators at each of the 2K+1 levels) that GRM training uses instead
of the majority alone.
"""

from __future__ import annotations

import polars as pl

from rewardlab.schema import Order


def aggregate_by_task(judgments: pl.DataFrame, k: int) -> pl.DataFrame:
    """One row per task: n, level_mean, level_std, majority_level, agreement, soft_target.

    ``agreement`` is the share of annotators at the majority level; ``soft_target`` lists the
    share at each level from -k to k (it sums to 1). Ties for the majority go to the level
    nearest zero, the cautious reading.
    """
    levels = range(-k, k + 1)
    count_columns = [f"votes_{level}" for level in levels]
    per_task = judgments.group_by("task_id").agg(
        pl.len().alias("n"),
        pl.col("level").mean().alias("level_mean"),
        pl.col("level").std(ddof=0).alias("level_std"),
        *[
            (pl.col("level") == level).sum().alias(c)
            for level, c in zip(levels, count_columns, strict=True)
        ],
    )
    top = pl.max_horizontal(count_columns)
    # first level with the top count, trying 0, -1, 1, -2, 2, ...: ties go towards zero
    nearest_zero_first = sorted(levels, key=lambda level: (abs(level), level))
    majority = pl.coalesce(
        [pl.when(pl.col(f"votes_{level}") == top).then(level) for level in nearest_zero_first]
    )
    return (
        per_task.with_columns(
            majority.cast(pl.Int8).alias("majority_level"),
            (top / pl.col("n")).alias("agreement"),
            # a fixed-width array: 30x faster to build than concat_list on 200k tasks
            pl.concat_arr([pl.col(c) / pl.col("n") for c in count_columns]).alias("soft_target"),
        )
        .drop(count_columns)
        .sort("task_id")
    )


def project_stats(judgments: pl.DataFrame, k: int) -> dict[str, object]:
    """Headline numbers for `rewardlab stats`: volume, level use, bias, agreement, gold."""
    if judgments.height == 0:
        return {"judgments": 0}
    by_task = aggregate_by_task(judgments, k)
    decided = judgments.filter(pl.col("level") != 0)
    first_won = decided.filter(
        (pl.col("level") > 0) == (pl.col("shown_order") == Order.POLICY_FIRST)
    ).height
    gold = judgments.filter(pl.col("gold"))
    shared = by_task.filter(pl.col("n") > 1)["agreement"]  # tasks more than one person judged
    return {
        "judgments": judgments.height,
        "tasks_judged": by_task.height,
        "annotators": judgments["annotator_id"].n_unique(),
        "judgments_per_task_mean": round(by_task["n"].mean(), 2),
        "level_histogram": {
            int(level): int(n)
            for level, n in judgments.group_by("level").len().sort("level").iter_rows()
        },
        "tie_share": round(1 - decided.height / judgments.height, 3),
        # 0.5 when annotators ignore where a response was shown
        "first_shown_wins": round(first_won / decided.height, 3) if decided.height else None,
        "agreement_with_majority": round(shared.mean(), 3) if shared.len() else None,
        "gold_judgments": gold.height,
        "gold_accuracy": (
            round((gold["level"] == gold["gold_level"]).mean(), 3) if gold.height else None
        ),
        "gold_within_one": (
            round(((gold["level"] - gold["gold_level"]).abs() <= 1).mean(), 3)
            if gold.height
            else None
        ),
    }


def per_annotator(judgments: pl.DataFrame, k: int) -> pl.DataFrame:
    """One row per annotator: volume, ties, position bias, agreement with the others, gold.

    ``first_shown_wins`` is the share of their non-tie verdicts that favour the response shown
    first (0.5 = no position bias). ``mean_abs_gap`` is the mean |level - mean level the other
    annotators gave the same task| (leave-one-out, so an annotator is not compared to themself).
    """
    totals = judgments.group_by("task_id").agg(
        pl.col("level").sum().alias("task_sum"), pl.len().alias("task_n")
    )
    others = (pl.col("task_sum") - pl.col("level")) / (pl.col("task_n") - 1)
    first_won = (pl.col("level") > 0) == (pl.col("shown_order") == Order.POLICY_FIRST)
    decided = pl.col("level") != 0
    return (
        judgments.join(totals, on="task_id")
        .group_by("annotator_id")
        .agg(
            pl.len().alias("judgments"),
            (~decided).mean().alias("tie_share"),
            (first_won & decided).sum().truediv(decided.sum()).alias("first_shown_wins"),
            (pl.col("level") - others)
            .abs()
            .filter(pl.col("task_n") > 1)
            .mean()
            .alias("mean_abs_gap"),
            (pl.col("level") == pl.col("gold_level"))
            .filter(pl.col("gold"))
            .mean()
            .alias("gold_accuracy"),
            pl.col("time_spent_s").median().alias("median_time_s"),
        )
        .sort("annotator_id")
    )
