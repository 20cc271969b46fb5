"""Clip transforms: pure functions of (samples, sample rate), and the named transforms a judge
hears its clips through.

    louder = gain(samples, 16_000, 6.0)           # x 10^(6/20), not clipped
    padded = pad_silence(samples, 16_000, 1.0)    # 1 s of zeros at each end
    slower = time_stretch(samples, 16_000, 1.1)   # 10 % longer, same pitch (WSOLA)

A `ClipTransform` names one of them with its amount and the turn roles whose clips it changes.
The prompt encoders apply it to each clip as they load it, so a probe or an ablation needs no
temporary files: ``"audio"`` is the identity, ``"silence"`` (every clip becomes one second of
silence) the audio-removed ablation, and `ACOUSTIC_PROBES` the changes to the user's recording
that must not move a verdict (`rewardlab evaluate`'s bias probes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

SILENCE_S = 1.0  # "audio removed": every clip becomes this much silence, whatever its length
ALL_ROLES = ("user", "assistant", "system")
TransformKind = Literal["identity", "silence", "gain", "pad", "stretch"]


def gain(samples: np.ndarray, sample_rate: int, db: float) -> np.ndarray:
    """`samples` scaled by 10^(db/20). Not clipped at full scale: the clips are float and the
    log-mel features take any amplitude, and clipping would add distortion, not loudness."""
    return (np.asarray(samples, dtype=np.float32) * np.float32(10 ** (db / 20))).astype(np.float32)


def pad_silence(samples: np.ndarray, sample_rate: int, seconds: float) -> np.ndarray:
    """`seconds` of zeros before and after the clip (rounded to whole samples)."""
    pad = round(seconds * sample_rate)
    return np.pad(np.asarray(samples, dtype=np.float32), (pad, pad))


def time_stretch(
    samples: np.ndarray,
    sample_rate: int,
    factor: float,
    *,
    frame_s: float = 0.03,
    tolerance_s: float = 0.015,
) -> np.ndarray:
    """The clip played `factor` times as long at the same pitch: round(n * factor) samples.

    WSOLA (Verhelst and Roelands, 1993): Hann frames of `frame_s` are overlap-added at half a
    frame apart in the output; frame k is read near input position k * hop / factor, shifted by
    up to `tolerance_s` to where it best continues the previous frame (the highest normalised
    cross-correlation with what followed that frame in the input). Frames are copied, never
    resampled, so the pitch is kept; the search keeps periods in phase, so they do not beat.
    The tolerance covers a voice's pitch period (above 67 Hz).
    """
    if not 0.25 <= factor <= 4:
        raise ValueError(f"time_stretch factor must be in [0.25, 4], got {factor}")
    x = np.asarray(samples, dtype=np.float32)
    n_out = round(len(x) * factor)
    frame = 2 * max(1, round(frame_s * sample_rate / 2))  # even: two halves overlap
    hop, tol = frame // 2, max(1, round(tolerance_s * sample_rate))
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(frame) / frame)).astype(np.float32)
    lead = tol + frame  # every searched span lies inside the padded input
    padded = np.pad(x, (lead, tol + 2 * frame + math.ceil(3 * hop / factor)))
    frames = math.ceil(n_out / hop) + 2
    out = np.zeros(frames * hop + frame, dtype=np.float32)  # out[i] is output time i - hop
    previous = -hop  # input start of the frame before, before the first one
    for k in range(frames):
        nominal = round(k * hop / factor) - hop  # frame k is centred on output time k * hop
        start = nominal
        if k:
            follow = padded[lead + previous + hop : lead + previous + hop + frame]
            span = padded[lead + nominal - tol : lead + nominal + tol + frame]
            start = nominal - tol + int(np.argmax(_similarity(span, follow)))
        out[k * hop : k * hop + frame] += window * padded[lead + start : lead + start + frame]
        previous = start
    return out[hop : hop + n_out]


def _similarity(span: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of `template` with each window of `span` ('valid'): a raw
    correlation would favour loud windows and make a stretched clip louder."""
    dots = np.correlate(span, template, "valid")
    energy = np.concatenate(([0.0], np.cumsum(span.astype(np.float64) ** 2)))
    window_energy = energy[len(template) :] - energy[: len(energy) - len(template)]
    return dots / np.sqrt(window_energy + 1e-12)


@dataclass(frozen=True)
class ClipTransform:
    """A named change to the clips of the turns of `roles`; hashable, so clip features are
    cached by (transform, clip)."""

    name: str
    kind: TransformKind
    amount: float = 0.0  # dB (gain), seconds (pad, silence), duration factor (stretch)
    roles: tuple[str, ...] = ALL_ROLES

    def __post_init__(self) -> None:
        if self.kind not in ("identity", "silence", "gain", "pad", "stretch"):
            raise ValueError(f"ClipTransform {self.name!r}: unknown kind {self.kind!r}")
        if not math.isfinite(self.amount):
            raise ValueError(f"ClipTransform {self.name!r}: amount must be finite")
        unknown = set(self.roles) - set(ALL_ROLES)
        if unknown:
            raise ValueError(f"ClipTransform {self.name!r}: unknown roles {sorted(unknown)}")

    def applies_to(self, role: str) -> bool:
        return role in self.roles

    @property
    def reads_clip(self) -> bool:
        """False when the output does not depend on the clip (silence): it need not be loaded."""
        return self.kind != "silence"

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        if self.kind == "identity":
            return samples
        if self.kind == "silence":
            return np.zeros(round(self.amount * sample_rate), dtype=np.float32)
        if self.kind == "gain":
            return gain(samples, sample_rate, self.amount)
        if self.kind == "pad":
            return pad_silence(samples, sample_rate, self.amount)
        return time_stretch(samples, sample_rate, self.amount)


ORIGINAL = ClipTransform("audio", "identity")
SILENCE = ClipTransform("silence", "silence", SILENCE_S)
CLIP_MODES = {t.name: t for t in (ORIGINAL, SILENCE)}  # the shorthands callers pass as `audio=`

# changes to how the user's recording sounds, applied to both candidates alike: a judge's
# verdict on the responses should not move
ACOUSTIC_PROBES = (
    ClipTransform("gain_+6dB", "gain", 6.0, ("user",)),
    ClipTransform("gain_-6dB", "gain", -6.0, ("user",)),
    ClipTransform("pad_1s", "pad", 1.0, ("user",)),
    ClipTransform("stretch_0.9x", "stretch", 0.9, ("user",)),
    ClipTransform("stretch_1.1x", "stretch", 1.1, ("user",)),
)


def clip_transform(mode: str | ClipTransform) -> ClipTransform:
    """The transform `mode` names ("audio", "silence") or is."""
    if isinstance(mode, ClipTransform):
        return mode
    if mode not in CLIP_MODES:
        raise ValueError(f"audio mode {mode!r}: use one of {sorted(CLIP_MODES)} or a ClipTransform")
    return CLIP_MODES[mode]
