"""How both annotation front ends present a task: the order of the two responses, the scale.

A task is judged policy vs reference, but annotators see "Response 1" and "Response 2" in a
random order and pick a level *as shown*: positive when Response 1 is better. The front end
undoes the order before storing (`Order.to_canonical`, `Order.sides` in `rewardlab.schema`), so
judgments stay policy-vs-reference.
"""

from __future__ import annotations

from rewardlab.schema import level_names

AUDIO_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


def verdict_labels(k: int) -> dict[str, str]:
    """Label value -> text, from "Response 1 much better" (+k) to "Response 2 much better" (-k).

    The value is the level as shown: positive when Response 1 is better.
    """
    names = level_names(k)  # policy-relative, "much worse" .. "much better"
    labels = {}
    for shown in range(k, -k - 1, -1):
        value = "0" if shown == 0 else f"{shown:+d}"
        winner = "Response 1" if shown > 0 else "Response 2"
        labels[value] = "About the same" if shown == 0 else f"{winner} {names[k + abs(shown)]}"
    return labels
