"""The admin dashboard's numbers and figures, from the export frame (`judgments_frame`).

Figures are built with matplotlib's object API (no pyplot state), so page handlers running
in several threads at once cannot draw into each other's figures.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from rewardlab.data import aggregate_by_task, per_annotator, project_stats
from rewardlab.eval.agreement import alpha_of_levels, level_confusion, pairwise_kappa
from rewardlab.schema import level_names


def summary(judgments: pl.DataFrame, k: int, tasks: int, overlap: int, flagged: int) -> dict:
    """Headline numbers: volume, completion, agreement, position bias, gold."""
    stats = project_stats(judgments, k)
    kappas = pairwise_kappa(judgments, k)["kappa"].drop_nans()
    complete = judgments.group_by("task_id").len().filter(pl.col("len") >= overlap).height
    return {
        "tasks": tasks,
        "tasks_complete": complete,
        "judgments": judgments.height,
        "annotators": judgments["annotator_id"].n_unique(),
        "krippendorff_alpha_ordinal": _round(alpha_of_levels(judgments, k)),
        "mean_pairwise_qwk": _round(kappas.mean()) if kappas.len() else None,
        "response_1_wins": stats.get("first_shown_wins"),
        "gold_accuracy": stats.get("gold_accuracy"),
        "flagged_tasks": flagged,
    }


def _round(value: Any) -> float | None:
    return None if value is None or np.isnan(value) else round(float(value), 3)


# what a figure reads while there is nothing to compute it from (never "None")
NOT_YET = {
    "krippendorff_alpha_ordinal": "no task judged by two annotators yet",
    "mean_pairwise_qwk": "no two annotators share 5 tasks yet",
    "response_1_wins": "no verdict other than a tie yet",
    "gold_accuracy": "no gold judged yet",
}


def shown(name: str, value: Any) -> str:
    """A headline figure as the page shows it: its words from `NOT_YET` while it is None."""
    if value is None:
        return NOT_YET[name]
    return str(value)


def summary_markdown(numbers: dict) -> str:
    rows = "\n".join(
        f"| {name.replace('_', ' ')} | {shown(name, value)} |" for name, value in numbers.items()
    )
    return f"| measure | value |\n|---|---|\n{rows}"


def _bars(ax, names: list[str], values: list[float], color: str, title: str, xlabel: str):
    ax.barh(names, values, color=color)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.invert_yaxis()


def progress_figure(judgments: pl.DataFrame, today_start) -> Figure:
    per = (
        judgments.group_by("annotator_id")
        .agg(
            pl.len().alias("total"),
            (pl.col("received_at") >= today_start).sum().alias("today"),
        )
        .sort("annotator_id")
    )
    figure = Figure(figsize=(6, 0.4 * max(per.height, 4) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    names = per["annotator_id"].to_list()
    positions = np.arange(len(names))
    ax.barh(positions - 0.2, per["total"].to_list(), height=0.4, label="all time")
    ax.barh(positions + 0.2, per["today"].to_list(), height=0.4, label="today")
    ax.set_yticks(positions, names)
    ax.invert_yaxis()
    ax.set_title("Progress per annotator")
    ax.set_xlabel("judgments")
    ax.legend(loc="lower right")
    return figure


def time_figure(judgments: pl.DataFrame) -> Figure:
    names = sorted(judgments["annotator_id"].unique().to_list())
    figure = Figure(figsize=(6, 0.4 * max(len(names), 4) + 1.2), layout="constrained")
    ax = figure.add_subplot()
    times = [
        judgments.filter(pl.col("annotator_id") == name)["time_spent_s"].to_list() for name in names
    ]
    if names:
        ax.boxplot(times, orientation="horizontal", tick_labels=names, showfliers=False)
        ax.invert_yaxis()
    ax.set_title("Time on task")
    ax.set_xlabel("seconds per judgment (box: quartiles)")
    return figure


def annotator_figure(judgments: pl.DataFrame, k: int) -> Figure:
    """Gold accuracy and position bias per annotator, side by side."""
    table = per_annotator(judgments, k)
    names = table["annotator_id"].to_list()
    figure = Figure(figsize=(11, 0.4 * max(len(names), 4) + 1.2), layout="constrained")
    gold, bias = figure.subplots(1, 2)
    _bars(
        gold,
        names,
        table["gold_accuracy"].fill_null(0).to_list(),
        "#55a868",
        "Gold accuracy (exact level)",
        "share of gold items right (0 where none judged)",
    )
    gold.set_xlim(0, 1)
    _bars(
        bias,
        names,
        table["first_shown_wins"].fill_null(0.5).to_list(),
        "#dd8452",
        "Position bias: Response 1 (left) wins",
        "share of non-tie verdicts (0.5 = unbiased)",
    )
    bias.axvline(0.5, color="black", linewidth=1, linestyle="--")
    bias.set_xlim(0, 1)
    return figure


def agreement_figure(judgments: pl.DataFrame, k: int) -> Figure:
    """Per-task agreement (histogram) and weighted kappa between annotator pairs (heatmap)."""
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    per_task, pairs = figure.subplots(1, 2)
    shared = aggregate_by_task(judgments, k).filter(pl.col("n") > 1)
    per_task.hist(shared["agreement"].to_list(), bins=np.linspace(0, 1, 11), color="#4c72b0")
    alpha = shown("krippendorff_alpha_ordinal", _round(alpha_of_levels(judgments, k)))
    per_task.set_title(f"Agreement per task (Krippendorff's alpha, ordinal: {alpha})")
    per_task.set_xlabel("share of a task's annotators at its majority level")
    per_task.set_ylabel("tasks")
    kappas = pairwise_kappa(judgments, k)
    pairs.set_title("Quadratically weighted kappa, annotator pairs")
    if kappas.height == 0:
        pairs.text(0.5, 0.5, "no two annotators share 5 tasks yet", ha="center")
        pairs.set_axis_off()
        return figure
    names = sorted(set(kappas["annotator_a"]) | set(kappas["annotator_b"]))
    matrix = np.full((len(names), len(names)), np.nan)
    for a, b, _, kappa in kappas.iter_rows():
        i, j = names.index(a), names.index(b)
        matrix[i, j] = matrix[j, i] = kappa
    image = pairs.imshow(matrix, vmin=-1, vmax=1, cmap="RdYlGn")
    pairs.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    pairs.set_yticks(range(len(names)), names, fontsize=8)
    figure.colorbar(image, ax=pairs, shrink=0.8)
    return figure


def confusion_figure(judgments: pl.DataFrame, k: int) -> Figure:
    matrix = level_confusion(judgments, k)
    labels = level_names(k)
    figure = Figure(figsize=(6.5, 5.5), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(2 * k + 1), labels, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(2 * k + 1), labels, fontsize=8)
    ax.set_title("Levels two annotators gave the same task")
    return figure
