"""Calibrate and evaluate a trained GRM on its held-out tasks, top to bottom: the recipes of
`rewardlab calibrate` and `rewardlab evaluate`.

    rewardlab calibrate --grm demo_out/grm/final --project demo_out [--method auto]
    rewardlab evaluate --grm demo_out/grm/final --project demo_out --out demo_out/report

Which tasks: the GRM's own held-out split, drawn exactly as `train-grm` drew it (``eval_share``
and ``split_seed`` from the checkpoint's config, `GRMCheckpoint.split`, or given), then halved by
leakage group with the same seed: calibration fits on the first half (choosing the method and
its strength by cross-validated ECE within it, `calibration`) and evaluation reports on the
second. No number comes from a training task, and calibrated numbers are out of sample.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rewardlab.eval.probe_metrics import probe_metrics, probe_table
from rewardlab.eval.report import json_safe, write_report
from rewardlab.eval.reward_metrics import (
    evaluation_metrics,
)
from rewardlab.eval.reward_plots import (
    plot_audio_ablation,
    plot_breakdown,
    plot_confusion,
    plot_length,
    plot_position,
    plot_probes,
    plot_reliability,
    plot_reward_by_level,
)
from rewardlab.grm.calibration import choose_calibration, held_out_ece
from rewardlab.grm.checkpoint import GRMCheckpoint, GRMSplit
from rewardlab.grm.examples import GRMExample, split_examples
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.probes import probe_probs
from rewardlab.grm.recipe import reference_levels
from rewardlab.grm.scalar_rm import ScalarRewardModel
from rewardlab.reward import Normalize, RewardMapper

# what `rewardlab evaluate` prints; every metric is in metrics.json and the report
HEADLINE_METRICS = (
    "judge/accuracy",
    "judge/qwk",
    "judge/kendall_tau_b",
    "judge/consistency",
    "calibration/ece",
    "calibration/ece_floor",
)
# what the report says of each kind of model it evaluates
MODEL_NOTES = {
    "GRM": "GRM: one verdict over both replies, judged in both presentation orders",
    "scalar RM": "scalar RM: one reward per reply, levels from r_policy - r_reference through"
    " its ordinal link; it has no presentation order, so both order columns are the same and"
    " consistency is 1.0 by construction",
}


@dataclass
class HeldOut:
    """The GRM's held-out tasks of a project, halved: calibration fits on the first half,
    evaluation reports on the second."""

    split: GRMSplit
    calibration: list[GRMExample]
    test: list[GRMExample]


def held_out(
    checkpoint: GRMCheckpoint,
    project: Path,
    eval_share: float | None = None,
    split_seed: int | None = None,
) -> HeldOut:
    """The GRM's held-out tasks in `project`, halved into calibration and test parts."""
    split = checkpoint.split(project, eval_share, split_seed)
    if not 0 < split.eval_share <= 1:
        raise ValueError(f"eval_share must be in (0, 1], got {split.eval_share}")
    if split.data.judgments.is_empty():
        raise ValueError(f"{project}: no judgments to calibrate or evaluate against")
    calibration, test = split_examples(split.held_out, 0.5, split.split_seed)
    if not calibration or not test:
        groups = len({e.group for e in split.held_out})
        raise ValueError(
            f"{groups} held-out leakage group(s) in {project} with eval_share="
            f"{split.eval_share}: at least 2 are needed, half to calibrate and half to evaluate"
        )
    return HeldOut(split, calibration, test)


def _held_out_and_grm(
    checkpoint: Path, project: Path, eval_share: float | None, split_seed: int | None
) -> tuple[GRMCheckpoint, HeldOut, GenerativeRewardModel]:
    ckpt = GRMCheckpoint(checkpoint)
    held = held_out(ckpt, project, eval_share, split_seed)
    data = held.split.data
    return ckpt, held, ckpt.load_model(media_root=data.media_root, k=data.k)


def calibrate(
    checkpoint: Path,
    project: Path,
    method: Literal["auto", "temperature", "isotonic", "none"] = "auto",
    *,
    normalize: Normalize | None = None,
    clip: float | None = None,
    eval_share: float | None = None,
    split_seed: int | None = None,
    batch_size: int = 16,
    folds: int = 5,
) -> tuple[RewardMapper, dict]:
    """Choose the calibration by cross-validated ECE on the calibration half (`calibration`),
    fit it on the whole half and save it into the checkpoint.

    `normalize` / `clip` (0: none) replace the saved mapper's; ``fixed`` normalisation takes
    its statistics from the calibrated rewards of the same tasks. The summary says when the
    saved map calibrates held-out folds worse than no calibration (a named `method` only:
    "auto" can always choose none)."""
    ckpt, held, grm = _held_out_and_grm(checkpoint, project, eval_share, split_seed)
    examples = held.calibration
    probs = grm.judge([e.item for e in examples], batch_size=batch_size, progress=True).probs
    targets = np.stack([e.target for e in examples]).astype(np.float64)
    mapper = ckpt.mapper(k=held.split.data.k)
    if normalize is not None:
        mapper = dataclasses.replace(mapper, normalize=normalize)
    if clip is not None:
        mapper = dataclasses.replace(mapper, clip=clip or None)
    choice = choose_calibration(mapper, probs, targets, [e.group for e in examples],
                                method=method, folds=folds, seed=held.split.split_seed)  # fmt: skip
    raw = mapper.calibrated(probs, targets, "none")
    mapper = mapper.calibrated(probs, targets, choice.chosen.method, choice.chosen.strength)
    if mapper.normalize == "fixed":
        mapper = mapper.with_fixed_normalization(probs)
    summary = {
        "tasks": float(len(examples)),
        "requested": method,
        **choice.summary(),
        "ece_before": held_out_ece(raw, probs, targets),  # in sample: the tasks it was fit on
        "ece_after": held_out_ece(mapper, probs, targets),
    }
    mapper.provenance = json_safe(  # what it was fitted on; no NaN in the JSON
        {
            "project": str(project),
            "eval_share": held.split.eval_share,
            "split_seed": held.split.split_seed,
            **summary,
        }
    )
    mapper.save(ckpt.path)
    return mapper, summary


def breakdown_labels(examples: list[GRMExample]) -> dict[str, list[str]]:
    """Each task's group per breakdown: its rubric, the rubric's axis, where the task's metadata
    has them (the demo world's ``truth``) its axis and whether only audio decides it, and the
    annotation round once any task names one (tasks without one are round 1)."""
    tasks = [e.item.task for e in examples]
    truths = [task.metadata.get("truth", {}) for task in tasks]
    labels = {
        "rubric": [task.rubric_id or "pairwise" for task in tasks],
        "rubric_axis": [e.item.rubric.axis if e.item.rubric else "pairwise" for e in examples],
    }
    if all("axis" in truth for truth in truths):
        labels["axis"] = [str(truth["axis"]) for truth in truths]
    if all("audio_only" in truth for truth in truths):
        labels["audio"] = ["audio_only" if t["audio_only"] else "text_decidable" for t in truths]
    if any("round" in task.metadata for task in tasks):  # `rewardlab sample` names the round
        labels["round"] = [f"round {task.metadata.get('round', 1)}" for task in tasks]
    return labels


@dataclass
class TestTasks:
    """The test half as the metrics read it."""

    items: list
    reference: np.ndarray  # (N,) levels
    units: list  # per task, the human levels
    length_diff: np.ndarray  # (N,) policy minus reference words
    labels: dict[str, list[str]]  # `breakdown_labels`


def judged_metrics(
    model: GenerativeRewardModel | ScalarRewardModel,
    mapper: RewardMapper,
    tasks: TestTasks,
    batch_size: int,
) -> tuple[np.ndarray, dict, dict | None]:
    """(probs, metrics, metrics with the audio removed: audio backbones only) of one model."""
    args = (mapper, tasks.reference, tasks.units, tasks.length_diff, tasks.labels)
    probs = model.judge(tasks.items, batch_size=batch_size, progress=True).probs
    silence = None
    if model.encoder.is_audio:
        muted = model.judge(tasks.items, audio="silence", batch_size=batch_size, progress=True)
        silence = evaluation_metrics(muted.probs, *args)
    return probs, evaluation_metrics(probs, *args), silence


def comparison_row(kind: str, metrics: dict, silence: dict | None) -> dict[str, Any]:
    """One model's `COMPARED` numbers (NaN where it has none: no audio-only pairs, no audio)."""
    audio_only = metrics.get("by_audio", {}).get("audio_only", {})
    return {
        "kind": kind,
        "accuracy": metrics["judge/accuracy"],
        "qwk": metrics["judge/qwk"],
        "ece": metrics["calibration/ece"],
        "audio_only_accuracy": audio_only.get("accuracy", float("nan")),
        "silence_accuracy": float("nan") if silence is None else silence["judge/accuracy"],
        "consistency": metrics["judge/consistency"],
        "n": metrics["judge/n"],
    }


def baseline_comparison(
    main: tuple[Path, Any, dict, dict | None],
    baseline: Path,
    held: HeldOut,
    tasks: TestTasks,
    batch_size: int,
) -> dict[str, dict[str, Any]]:
    """The main model's row (`main`: path, model, metrics, silence metrics) and the
    baseline's, scored with its own mapper on the same test tasks. A baseline that held out
    other tasks (another eval_share or split_seed) is refused: its test half could hold tasks
    it trained on."""
    path, model, metrics, silence = main
    other = GRMCheckpoint(baseline)
    config = other.config()  # refuses a folder without one: its split would be a guess
    split = (config.eval_share, config.split_seed)
    if split != (held.split.eval_share, held.split.split_seed):
        raise ValueError(
            f"--baseline {baseline}: trained with (eval_share, split_seed) = {split}, but the"
            f" tasks evaluated are {path}'s held-out split"
            f" {(held.split.eval_share, held.split.split_seed)}: the baseline may have trained"
            " on them; train it with the same split"
        )
    data = held.split.data
    rival = other.load_model(media_root=data.media_root, k=data.k)
    _, rival_metrics, rival_silence = judged_metrics(
        rival, other.mapper(k=data.k), tasks, batch_size
    )
    return {
        f"{model.kind}: {path}": comparison_row(model.kind, metrics, silence),
        f"baseline {rival.kind}: {baseline}": comparison_row(
            rival.kind, rival_metrics, rival_silence
        ),
    }


def evaluate(
    checkpoint: Path,
    project: Path,
    out: Path,
    *,
    truth: bool = False,
    eval_share: float | None = None,
    split_seed: int | None = None,
    batch_size: int = 16,
    probes: bool = True,
    baseline: Path | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Score the test half, compute every metric, write ``report.html`` and ``metrics.json``;
    returns the report's path and the metrics (NaN as None, as in the JSON).

    `truth`: reference levels from the task metadata's ``truth.level`` where present (the
    demo world), else the annotators'. Audio backbones are also judged with the audio removed.
    `probes`: also judge the test half under each bias probe (`rewardlab.grm.probes`), one
    pass per probe. `checkpoint` may be a GRM or a scalar RM (`train-rm`); `baseline`, a second
    model scored on the same test tasks, adds ``comparison`` (`COMPARED`, one row per model).
    """
    ckpt, held, grm = _held_out_and_grm(checkpoint, project, eval_share, split_seed)
    k = held.split.data.k
    mapper = ckpt.mapper(k=k)
    examples = held.test
    items = [e.item for e in examples]
    reference = reference_levels(examples, truth=truth)
    levels = dict(held.split.data.judgments.group_by("task_id").agg("level").iter_rows())
    units = [levels[e.task_id] for e in examples]
    length_diff = np.asarray(
        [len(i.task.policy.text.split()) - len(i.task.reference.text.split()) for i in items],
        dtype=np.float64,
    )
    labels = breakdown_labels(examples)
    scored = TestTasks(items, reference, units, length_diff, labels)
    probs, metrics, silence = judged_metrics(grm, mapper, scored, batch_size)
    if baseline is not None:
        metrics["comparison"] = baseline_comparison(
            (checkpoint, grm, metrics, silence), baseline, held, scored, batch_size
        )
    expected = probs @ np.arange(-k, k + 1, dtype=np.float64)  # (N, O)
    rewards = mapper(probs, update=False)
    figures = {
        "confusion": plot_confusion(
            reference, np.clip(np.rint(expected.mean(1)), -k, k).astype(int), k
        ),
        "reward_by_level": plot_reward_by_level(rewards, reference, k),
        "position": plot_position(expected, k),
        "reliability": plot_reliability(metrics["reliability"], mapper.calibration),
        "length": plot_length(rewards, length_diff, reference),
        "breakdown": plot_breakdown(metrics, silence),
    }
    if silence is not None:
        figures["audio_ablation"] = plot_audio_ablation(metrics, silence)
    if probes:
        probed = probe_probs(grm, items, batch_size=batch_size, progress=True)
        metrics.update(probe_metrics(probs, probed))
        figures["probes"] = plot_probes(probe_table(metrics))
    settings = {
        "grm": str(checkpoint),
        "model": MODEL_NOTES[grm.kind],
        "project": str(project),
        "reference": "ground truth (truth.level) where present"
        if truth
        else "annotators (rounded mean level)",
        "eval_share": held.split.eval_share,
        "split_seed": held.split.split_seed,
        "tasks": [e.task_id for e in examples],
        "mapper": dataclasses.asdict(mapper),
    }
    path = write_report(Path(out), metrics, figures, settings, silence)
    return path, json_safe(metrics)
