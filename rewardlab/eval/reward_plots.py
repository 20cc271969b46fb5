"""The figures of the GRM evaluation report: each returns a matplotlib Figure.

Figures are made without pyplot, so nothing here touches the global backend or keeps figures
alive; `Figure.savefig` renders them with Agg. Arrays are in canonical orientation (policy vs
reference); `metrics` is what `rewardlab.eval.reward_metrics.evaluation_metrics` returns.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

BLUE, ORANGE, GREY = "#4c72b0", "#dd8452", "#8c8c8c"


def subplots(*grid: int, figsize: tuple[float, float], **kwargs):
    figure = Figure(figsize=figsize, layout="constrained")
    return figure, figure.subplots(*grid, **kwargs)


def plot_confusion(reference: np.ndarray, grm_levels: np.ndarray, k: int) -> Figure:
    """Reference level (rows) against the GRM's rounded debiased expected level (columns)."""
    size = 2 * k + 1
    counts = np.zeros((size, size), dtype=int)
    np.add.at(counts, (reference + k, grm_levels + k), 1)
    figure, ax = subplots(figsize=(5.2, 4.4))
    image = ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        if value:
            ax.text(col, row, str(value), ha="center", va="center", fontsize=8)
    ticks = range(size)
    ax.set_xticks(ticks, [str(level) for level in range(-k, k + 1)])
    ax.set_yticks(ticks, [str(level) for level in range(-k, k + 1)])
    ax.set_xlabel("GRM level (rounded debiased expected level)")
    ax.set_ylabel("reference level")
    ax.set_title("Levels: reference vs GRM")
    figure.colorbar(image, ax=ax, shrink=0.8)
    return figure


def plot_reward_by_level(rewards: np.ndarray, reference: np.ndarray, k: int) -> Figure:
    """The reward's spread at each reference level: it should rise from left to right."""
    figure, ax = subplots(figsize=(6, 4))
    levels = [level for level in range(-k, k + 1) if (reference == level).any()]
    ax.boxplot([rewards[reference == level] for level in levels], positions=levels)
    ax.set_xticks(levels, [str(level) for level in levels])
    ax.set_xlabel("reference level")
    ax.set_ylabel("reward")
    ax.set_title("Reward by reference level")
    return figure


def plot_position(expected_by_order: np.ndarray, k: int) -> Figure:
    """Expected level with the policy shown first against shown second: off the diagonal is
    position bias, across the axes an order-dependent verdict."""
    figure, ax = subplots(figsize=(4.8, 4.6))
    ax.scatter(expected_by_order[:, 0], expected_by_order[:, 1], s=14, alpha=0.6, color=BLUE)
    ax.plot([-k, k], [-k, k], color="black", linewidth=1, linestyle="--")
    ax.axhline(0, color=GREY, linewidth=0.8)
    ax.axvline(0, color=GREY, linewidth=0.8)
    ax.set_xlim(-k, k)
    ax.set_ylim(-k, k)
    ax.set_xlabel("expected level, policy shown first")
    ax.set_ylabel("expected level, policy shown second")
    ax.set_title("Position consistency")
    return figure


def plot_reliability(bins: dict[str, dict], method: str) -> Figure:
    """Reliability diagram of P(policy better) on non-tie pairs, raw and after the mapper."""
    figure, (ax, hist) = subplots(2, 1, figsize=(5.2, 5.6), height_ratios=[3, 1], sharex=True)
    ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle="--", label="calibrated")
    for name, color in (("raw", ORANGE), ("calibrated", BLUE)):
        if name == "calibrated" and method == "none":
            continue
        table = bins[name]
        centres = (np.asarray(table["lower"]) + np.asarray(table["upper"])) / 2
        filled = np.asarray(table["count"]) > 0
        label = "GRM" if name == "raw" else f"after {method} calibration"
        ax.plot(
            np.asarray(table["confidence"])[filled],
            np.asarray(table["frequency"])[filled],
            marker="o",
            color=color,
            label=label,
        )
        hist.bar(centres, table["count"], width=0.09, color=color, alpha=0.6)
    ax.set_ylabel("share where the policy is better")
    ax.set_title("Reliability of P(policy better), non-tie pairs")
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("P(policy better)")
    hist.set_ylabel("pairs")
    return figure


def plot_length(rewards: np.ndarray, length_diff: np.ndarray, reference: np.ndarray) -> Figure:
    """Reward against the length difference, coloured by the reference level."""
    figure, ax = subplots(figsize=(6, 4))
    points = ax.scatter(length_diff, rewards, c=reference, cmap="coolwarm", s=14, alpha=0.8)
    if np.ptp(length_diff) > 0:
        slope, intercept = np.polyfit(length_diff, rewards, 1)
        xs = np.array([length_diff.min(), length_diff.max()])
        ax.plot(xs, slope * xs + intercept, color="black", linewidth=1)
    figure.colorbar(points, ax=ax, label="reference level")
    ax.set_xlabel("policy words - reference words")
    ax.set_ylabel("reward")
    ax.set_title("Length bias")
    return figure


def plot_breakdown(metrics: dict, silence: dict | None) -> Figure:
    """Accuracy on non-tie pairs per group of every breakdown (and without audio, if given)."""
    names = [key for key in metrics if key.startswith("by_")]
    rows = [(name[3:], group) for name in names for group in metrics[name]]
    figure, ax = subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    y = np.arange(len(rows))
    height = 0.4 if silence else 0.7
    audio = [metrics[f"by_{name}"][group]["accuracy"] for name, group in rows]
    ax.barh(y, np.nan_to_num(audio), height=height, color=BLUE, label="with audio")
    if silence:
        muted = [silence[f"by_{name}"][group]["accuracy"] for name, group in rows]
        ax.barh(y + height, np.nan_to_num(muted), height=height, color=GREY, label="audio removed")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.invert_yaxis()  # the first group on top
    ax.axvline(0.5, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(y + (height / 2 if silence else 0), [f"{name}: {group}" for name, group in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("accuracy on non-tie pairs (0.5 = chance)")
    ax.set_title("Breakdowns")
    return figure


def plot_audio_ablation(metrics: dict, silence: dict) -> Figure:
    """Accuracy with the audio and with every clip replaced by silence, overall and per
    audio breakdown group: pairs that only audio decides should fall to chance."""
    groups = {"all": ("judge/accuracy", None)}
    for group in metrics.get("by_audio", {}):
        groups[group] = ("accuracy", group)

    def value(source: dict, key: str, group: str | None) -> float:
        return source[key] if group is None else source["by_audio"][group][key]

    x = np.arange(len(groups))
    figure, ax = subplots(figsize=(5.5, 3.8))
    with_audio = [value(metrics, key, group) for key, group in groups.values()]
    without = [value(silence, key, group) for key, group in groups.values()]
    ax.bar(x - 0.2, np.nan_to_num(with_audio), width=0.4, color=BLUE, label="with audio")
    ax.bar(x + 0.2, np.nan_to_num(without), width=0.4, color=GREY, label="audio removed")
    ax.axhline(0.5, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(x, list(groups))
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy on non-tie pairs")
    ax.set_title("Audio ablation")
    ax.legend(fontsize=8)
    return figure


def plot_probes(table: dict[str, dict[str, float]]) -> Figure:
    """Per bias probe (`rewardlab.eval.probe_metrics.probe_table`): the verdict flip rate, and
    the mean shift of the debiased expected level (+- 1.96 SE) beside the mean absolute shift.
    A probe that must not matter has empty bars."""
    names = list(table)
    y = np.arange(len(names))
    figure, (flips, shifts) = subplots(
        1, 2, figsize=(9, 0.4 * len(names) + 1.6), sharey=True, width_ratios=(1, 1.4)
    )
    flips.barh(y, np.nan_to_num([table[n]["flip_rate"] for n in names]), color=ORANGE)
    flips.set_xlim(0, 1)
    flips.set_xlabel("verdict flip rate (decided tasks)")
    flips.set_yticks(y, names)
    flips.invert_yaxis()  # the first probe on top
    mean = np.nan_to_num([table[n]["mean_shift"] for n in names])
    se = np.nan_to_num([table[n]["shift_se"] for n in names])
    shifts.barh(y - 0.2, mean, height=0.4, xerr=1.96 * se, color=BLUE, label="mean shift")
    absolute = np.nan_to_num([table[n]["mean_abs_shift"] for n in names])
    shifts.barh(y + 0.2, absolute, height=0.4, color=GREY, label="mean |shift|")
    shifts.axvline(0, color="black", linewidth=1)
    shifts.set_xlabel("shift of the expected level (probe - original)")
    shifts.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle("Bias probes")
    return figure
