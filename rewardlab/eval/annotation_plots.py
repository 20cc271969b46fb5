"""One figure a person reads faster than the stats table: how the annotators use the scale.

rewardlab stats PROJECT --plot overview.png
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import polars as pl

from rewardlab.data import per_annotator
from rewardlab.schema import level_names


def plot_annotation_overview(judgments: pl.DataFrame, k: int, path: Path) -> Path:
    """Level histogram, position bias, and agreement per annotator, in one PNG."""
    annotators = per_annotator(judgments, k)
    names = annotators["annotator_id"].to_list()
    figure, (levels, bias, gap) = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)

    counts = dict(judgments.group_by("level").len().iter_rows())
    labels = level_names(k)
    levels.bar(
        range(-k, k + 1), [counts.get(level, 0) for level in range(-k, k + 1)], color="#4c72b0"
    )
    levels.set_xticks(range(-k, k + 1), labels, rotation=35, ha="right", fontsize=8)
    levels.set_title(f"Levels used ({judgments.height} judgments)")
    levels.set_ylabel("judgments")

    bias.barh(names, annotators["first_shown_wins"].fill_null(0.5).to_list(), color="#dd8452")
    bias.axvline(0.5, color="black", linewidth=1, linestyle="--")
    bias.set_xlim(0, 1)
    bias.set_title("Position bias: first-shown response wins")
    bias.set_xlabel("share of non-tie verdicts (0.5 = unbiased)")

    gap.barh(names, annotators["mean_abs_gap"].fill_null(0).to_list(), color="#55a868")
    gap.set_title("Distance from the other annotators")
    gap.set_xlabel("mean |level - others' mean level| on the same task")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
