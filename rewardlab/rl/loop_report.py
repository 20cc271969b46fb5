"""One page for one turn of the loop: the judge drove PPO, and the policy's replies became the
next round of annotation, on which the judges are compared.

    rewardlab loop-report --project P --ppo RUN --grm ROUND1 --grm-round2 ROUND2 --out DIR

The PPO half reads the run's ``ppo_eval.json``: the training reward and KL per update, the
held-out GRM reward before and after per prompt kind, the same with the policy hearing
silence, and (with a truth scorer) the true quality of the replies per axis. The judge half
scores the new round's tasks on the dialogues the round-1 judge held out (its split: neither
judge trained on them) with each judge, and reports accuracy against the known truth
(``metadata.truth.level``) overall and per policy that wrote the replies.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.eval.loop_plots import plot_before_after, plot_judge_rounds, plot_ppo_curve
from rewardlab.eval.report import STYLE, figure_png, json_safe
from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.recipe import reference_levels
from rewardlab.rl.prompt_split import split_like_grm

TRUTH_AXES = ("tone", "memory", "retention")


def is_gain(key: str) -> bool:
    """A paired held-out gain of `ppo_eval.json`: ``gain``, ``gain_<kind>``, ``gain_silence``,
    ``truth_gain``, ``truth_gain_<kind>``, ``truth_<axis>_gain``."""
    return key.startswith("gain") or (key.startswith("truth_") and "gain" in key)


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    if not len(values):
        return math.nan, math.nan
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
    return float(values.mean()), se


def ppo_groups(report: dict[str, Any], key: str) -> dict[str, tuple[float, float, float, float]]:
    """(before, SE, after, SE) of ``<key>_per_prompt`` overall and per prompt kind."""
    before, after = report["before"], report["after"]
    kinds = np.asarray(before["kind_per_prompt"])
    out = {}
    for name in ["all", *sorted(set(kinds))]:
        keep = np.ones(len(kinds), bool) if name == "all" else kinds == name
        b = _mean_se(np.asarray(before[f"{key}_per_prompt"])[keep])
        a = _mean_se(np.asarray(after[f"{key}_per_prompt"])[keep])
        out[f"{name} ({int(keep.sum())})"] = (*b, *a)
    return out


def judge_round(
    project: Path, judges: dict[str, Path], round_number: int, batch_size: int = 16
) -> dict[str, dict[str, dict[str, float]]]:
    """Each judge's accuracy on the round's held-out pairs, overall and per policy source:
    ``{judge: {group: {accuracy, se, n}}}``; the split is the first judge's."""
    split = split_like_grm(project, grm_path=next(iter(judges.values())))
    tasks = [e for e in split.held_out if e.item.task.metadata.get("round") == round_number]
    if not tasks:
        raise ValueError(
            f"{project}: no round-{round_number} tasks on the dialogues the judge held out"
            " (`rewardlab sample --round N` names the round)"
        )
    truth = reference_levels(tasks)
    sources = np.asarray([e.item.task.policy.source or "policy" for e in tasks])
    groups = {"all": np.ones(len(tasks), bool)} | {s: sources == s for s in sorted(set(sources))}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, path in judges.items():
        checkpoint = GRMCheckpoint(path)
        model = checkpoint.load_model(media_root=split.media_root, k=split_k(tasks))
        expected = model.judge([e.item for e in tasks], batch_size=batch_size)
        debiased = expected.expected_level().mean(axis=1)
        out[name] = {}
        for group, mask in groups.items():
            decided = mask & (truth != 0)
            right = (np.sign(debiased[decided]) == np.sign(truth[decided])).astype(float)
            accuracy, se = _mean_se(right)
            out[name][group] = {"accuracy": accuracy, "se": se, "n": int(decided.sum())}
    return out


def split_k(tasks: list[Any]) -> int:
    return (len(tasks[0].target) - 1) // 2


def _table(head: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return "n/a" if not math.isfinite(value) else f"{value:+.3f}"
        return html.escape(str(value))

    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{header}</tr>{body}</table>"


def _image(figure: Any, alt: str) -> str:
    return f"<img alt='{alt}' src='data:image/png;base64,{figure_png(figure)}'>"


def ppo_section(report: dict[str, Any]) -> list[str]:
    """The PPO half of the page: curves, gains per kind, silence, truth per axis."""
    parts = [
        "<h2 id='ppo'>PPO against the judge</h2>",
        _image(plot_ppo_curve(report.get("log_history", [])), "ppo curve"),
    ]
    gains = [k for k in report if is_gain(k)]
    rows = [[k, report[k]["mean"], report[k]["sem"], report[k]["n"]] for k in gains]
    parts.append(_table(["held-out gain, paired by prompt", "mean", "SE", "prompts"], rows))
    parts.append(
        _image(
            plot_before_after(ppo_groups(report, "reward"), "Held-out GRM reward", "reward"),
            "reward",
        )
    )
    if "truth_per_prompt" in report["before"]:
        parts.append(
            _image(
                plot_before_after(
                    ppo_groups(report, "truth"), "Held-out truth score (sum of axes)", "truth"
                ),
                "truth",
            )
        )
        rows = []
        for when in ("before", "after", "before_silence", "after_silence"):
            if when in report:
                run = report[when]
                rows.append([when, *(run.get(f"truth_{a}_mean", math.nan) for a in TRUTH_AXES)])
        parts.append(_table(["held-out replies, truth per axis", *TRUTH_AXES], rows))
    return parts


def judge_section(accuracy: dict[str, dict[str, dict[str, float]]], round_number: int) -> list[str]:
    shown = {
        j: {g: (v["accuracy"], v["se"]) for g, v in groups.items()}
        for j, groups in accuracy.items()
    }
    rows = [
        [judge, group, v["accuracy"], v["se"], v["n"]]
        for judge, groups in accuracy.items()
        for group, v in groups.items()
    ]
    return [
        f"<h2 id='round{round_number}'>Judges on round {round_number}</h2>",
        f"<p class='note'>Round {round_number}'s tasks on the dialogues the round-1 judge held"
        " out; accuracy on pairs whose true level is not 0, by who wrote the policy reply.</p>",
        _image(plot_judge_rounds(shown), "judges"),
        _table(["judge", "replies by", "accuracy", "SE", "pairs"], rows),
    ]


def write_loop_report(
    out: Path,
    ppo_run: Path,
    *,
    project: Path | None = None,
    judges: dict[str, Path] | None = None,
    round_number: int = 2,
    batch_size: int = 16,
) -> tuple[Path, dict[str, Any]]:
    """``loop.html`` and ``loop.json`` in `out`; the judge half only with `project` and
    `judges` (name -> checkpoint, the first one's split)."""
    report = json.loads((Path(ppo_run) / "ppo_eval.json").read_text())
    numbers: dict[str, Any] = {k: v for k, v in report.items() if is_gain(k)}
    parts = [
        "<h1>One turn of the loop</h1>",
        f"<p class='note'>PPO run {html.escape(str(ppo_run))}: {report.get('train_prompts')}"
        f" training prompts, {report.get('eval_prompts')} held out.</p>",
        *ppo_section(report),
    ]
    if project is not None and judges:
        accuracy = judge_round(Path(project), judges, round_number, batch_size)
        numbers["judges"] = accuracy
        parts += judge_section(accuracy, round_number)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "loop.json").write_text(json.dumps(json_safe(numbers), indent=2) + "\n")
    page = out / "loop.html"
    body = "\n".join(parts)
    page.write_text(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>rewardlab loop"
        f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )
    return page, numbers
