"""The figures of the loop report (`rewardlab loop-report`): PPO against the judge, then the
next round's judge. Each returns a matplotlib Figure, made without pyplot as in
`reward_plots`. Inputs are plain numbers: PPO's per-update log and its held-out evaluation
(`ppo_eval.json`), and per judge the accuracy on the new round's pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from rewardlab.eval.reward_plots import BLUE, GREY, ORANGE, subplots


def plot_ppo_curve(log_history: Sequence[dict]) -> Figure:
    """The training reward and the KL to the reference policy, per log entry (each the mean of
    the updates since the previous one)."""
    rows = [log for log in log_history if "objective/kl" in log]
    steps = [log.get("step", i + 1) for i, log in enumerate(rows)]
    figure, (reward_ax, kl_ax) = subplots(1, 2, figsize=(10, 3.6))
    for key, colour, label in (
        ("objective/grm_reward", BLUE, "GRM reward"),
        ("objective/scores", ORANGE, "score (reward less penalties)"),
    ):
        values = [log.get(key) for log in rows]
        if any(v is not None for v in values):
            reward_ax.plot(steps, [np.nan if v is None else v for v in values], color=colour,
                           marker=".", label=label)  # fmt: skip
    reward_ax.set_xlabel("PPO update")
    reward_ax.set_ylabel("mean over the rollouts since the last log")
    reward_ax.set_title("Training reward")
    reward_ax.legend(fontsize=8)
    kl_ax.plot(steps, [log["objective/kl"] for log in rows], color=GREY, marker=".")
    kl_ax.set_xlabel("PPO update")
    kl_ax.set_ylabel("nats per reply")
    kl_ax.set_title("KL to the reference policy")
    return figure


def plot_before_after(
    groups: dict[str, tuple[float, float, float, float]], title: str, ylabel: str
) -> Figure:
    """Bars of before and after per group, each (before, before SE, after, after SE)."""
    names = list(groups)
    x = np.arange(len(names))
    figure, ax = subplots(figsize=(max(5.0, 1.3 * len(names) + 2), 3.6))
    before = [groups[n][0] for n in names]
    after = [groups[n][2] for n in names]
    ax.bar(x - 0.2, before, 0.4, yerr=[groups[n][1] for n in names], color=GREY,
           label="before PPO", capsize=3)  # fmt: skip
    ax.bar(x + 0.2, after, 0.4, yerr=[groups[n][3] for n in names], color=BLUE,
           label="after PPO", capsize=3)  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xticks(x, names)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return figure


def plot_judge_rounds(accuracy: dict[str, dict[str, tuple[float, float]]]) -> Figure:
    """Accuracy (with its standard error) of each judge on each group of the new round's
    held-out pairs: `accuracy[judge][group] = (accuracy, SE)`."""
    judges = list(accuracy)
    groups = list(next(iter(accuracy.values())))
    x = np.arange(len(groups))
    width = 0.8 / len(judges)
    figure, ax = subplots(figsize=(max(5.0, 1.6 * len(groups) + 2), 3.6))
    for i, (judge, colour) in enumerate(zip(judges, (GREY, BLUE, ORANGE), strict=False)):
        values = [accuracy[judge][g][0] for g in groups]
        errors = [accuracy[judge][g][1] for g in groups]
        ax.bar(x + (i - (len(judges) - 1) / 2) * width, values, width, yerr=errors,
               color=colour, label=judge, capsize=3)  # fmt: skip
    ax.axhline(0.5, color="black", linewidth=0.6, linestyle="--")
    ax.set_ylim(0, 1)
    ax.set_xticks(x, groups)
    ax.set_ylabel("accuracy on non-tie pairs (truth)")
    ax.set_title("Judges on the new round's held-out pairs")
    ax.legend(fontsize=8)
    return figure
