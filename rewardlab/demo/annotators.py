"""Simulated annotators: noisy, position-biased, sometimes tie-happy people.

An annotator sees the two responses in a random order and perceives

    perceived = scale * true_level + position_bias * (+1 if the policy is shown first else -1)
                + Normal(0, noise)

then calls it a tie when |perceived| falls inside their tie zone, otherwise rounds and clips to
-K..K. Levels are stored policy-vs-reference whatever the order shown. They score rubric
criteria from the per-axis truth, write a short rationale (a critique a GRM can learn from),
take a plausible time, and usually, not always, listen to each clip to the end.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from rewardlab.schema import Judgment, Order, Rubric, Task

SIMULATION_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
AXIS_WORDS = {
    "tone": ("matches how the user sounded", "misreads how the user sounded"),
    "memory": ("uses what the user told us earlier", "gets the earlier detail wrong"),
    "retention": ("keeps the user's standing instruction", "forgets the user's instruction"),
}


@dataclass(frozen=True)
class SimulatedAnnotator:
    id: str
    noise: float  # standard deviation of perception, in levels
    position_bias: float  # pull towards the response shown first (negative: second)
    tie_zone: float  # |perceived| below this is called "about the same"
    scale: float  # how strongly they use the scale (below 1 compresses extremes)
    attentiveness: float  # chance of listening to each clip to the end


def make_annotators(n: int, seed: int) -> list[SimulatedAnnotator]:
    rng = random.Random(seed)
    return [
        SimulatedAnnotator(
            id=f"sim-{i:02d}",
            noise=rng.uniform(0.35, 0.9),
            position_bias=rng.uniform(-0.45, 0.45),
            tie_zone=rng.uniform(0.4, 0.75),
            scale=rng.uniform(0.75, 1.15),
            attentiveness=rng.uniform(0.8, 1.0),
        )
        for i in range(n)
    ]


def judge(
    annotator: SimulatedAnnotator,
    task: Task,
    rubric: Rubric | None,
    clips: list[str],
    k: int,
    rng: random.Random,
) -> Judgment:
    """One simulated judgment of `task`; the truth is read from ``task.metadata['truth']``."""
    truth = task.metadata["truth"]
    order = Order.POLICY_FIRST if rng.random() < 0.5 else Order.REFERENCE_FIRST
    bias = order.to_canonical(annotator.position_bias)  # a pull towards Response 1, as shown
    perceived = annotator.scale * truth["level"] + bias + rng.gauss(0, annotator.noise)
    level = 0 if abs(perceived) < annotator.tie_zone else max(-k, min(k, round(perceived)))
    scores = truth["scores"]
    return Judgment(
        id=f"{task.id}-{annotator.id}",
        task_id=task.id,
        annotator_id=annotator.id,
        level=level,
        rubric_scores=_rubric_scores(rubric, truth, scores, rng) if rubric else {},
        rationale=_rationale(scores, order),
        time_spent_s=round(rng.lognormvariate(3.4, 0.4), 1),
        listened={
            clip: 1.0
            if rng.random() < annotator.attentiveness
            else round(rng.uniform(0.2, 0.95), 2)
            for clip in clips
        },
        shown_order=order,
        created_at=SIMULATION_EPOCH + timedelta(seconds=rng.randint(0, 30 * 24 * 3600)),
    )


def _rubric_scores(rubric: Rubric, truth: dict, scores: dict, rng: random.Random) -> dict:
    """Criterion scores follow the truth on the rubric's axis, with a little noise."""
    axis = truth["rubric_axis"]
    out: dict[str, dict[str, int]] = {}
    for side in ("policy", "reference"):
        quality = scores[side][axis] + rng.gauss(0, 0.4)  # -1 .. 1, blurred
        out[side] = {
            c.id: (
                int(quality > 0)
                if c.scale == "binary"
                else max(1, min(5, round(3 + 1.8 * quality)))
            )
            for c in rubric.criteria
        }
    return out


def _rationale(scores: dict, order: Order) -> str:
    """'Response 1 matches how the user sounded; Response 2 gets the earlier detail wrong.'"""
    sides = order.shown_pair("policy", "reference")
    parts = []
    for axis, (good, bad) in AXIS_WORDS.items():
        for position, side in enumerate(sides, start=1):
            other = sides[2 - position]
            if scores[side][axis] > scores[other][axis]:
                parts.append(f"Response {position} {good}")
            elif scores[side][axis] < scores[other][axis] and scores[side][axis] < 0:
                parts.append(f"Response {position} {bad}")
    return "; ".join(parts) + "." if parts else "Both responses are about equally good."
