"""Bias probes: the held-out tasks judged again with something changed that must not move the
verdict, for `rewardlab evaluate`.

    probs = grm.judge(items).probs
    shifted = probe_probs(grm, items)        # probe name -> (N, 2 orders, 2K+1)
    metrics = probe_metrics(probs, shifted)  # rewardlab.eval.probe_metrics

Acoustic probes (`ACOUSTIC_PROBES`, audio backbones only) change how the user's clips sound,
identically in both presentation orders and for both candidates: louder or quieter by 6 dB, a
second of silence before and after, 10 % faster or slower at the same pitch. Length probes
append one neutral sentence (`FILLER`) to one response's text, the policy's or the
reference's: a judge that prefers longer replies moves towards the one that grew. Only the text
changes: the judge reads the responses as text and never hears a candidate's audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rewardlab.audio_probes import ACOUSTIC_PROBES
from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.model import GenerativeRewardModel

FILLER = "Let me know if there is anything else."


@dataclass(frozen=True)
class LengthProbe:
    """`FILLER` appended to the `side` response of every task."""

    name: str
    side: Literal["policy", "reference"]

    def __call__(self, item: JudgeItem) -> JudgeItem:
        candidate = getattr(item.task, self.side)
        longer = candidate.model_copy(update={"text": f"{candidate.text.rstrip()} {FILLER}"})
        return JudgeItem(
            item.task.model_copy(update={self.side: longer}), item.dialogue, item.rubric
        )


LENGTH_PROBES = (
    LengthProbe("filler_policy", "policy"),
    LengthProbe("filler_reference", "reference"),
)


def probe_probs(
    grm: GenerativeRewardModel,
    items: Sequence[JudgeItem],
    *,
    batch_size: int = 16,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Probe name -> level distributions (N, orders, 2K+1) of `items` under it: one judge pass
    over the items per probe. Text backbones hear no audio and get the length probes only."""
    out = {}
    for transform in ACOUSTIC_PROBES if grm.encoder.is_audio else ():
        judged = grm.judge(items, audio=transform, batch_size=batch_size, progress=progress)
        out[transform.name] = judged.probs
    for probe in LENGTH_PROBES:
        judged = grm.judge([probe(i) for i in items], batch_size=batch_size, progress=progress)
        out[probe.name] = judged.probs
    return out
