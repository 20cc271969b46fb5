"""Bias probes: each clip transform on real signals, the shift and flip metrics against
hand-worked values, the encoder applying a transform to the user's clips only, and judges built
to ignore audio showing no shift. `rewardlab evaluate`'s probe section is checked end to end in
test_eval.py, on the tiny trained GRM there."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE, speechlike, write_clips

from rewardlab.audio import load_audio
from rewardlab.audio_probes import (
    ACOUSTIC_PROBES,
    ORIGINAL,
    SILENCE,
    ClipTransform,
    clip_transform,
    gain,
    pad_silence,
    time_stretch,
)
from rewardlab.eval.probe_metrics import debiased_expected, probe_metrics, probe_shift
from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat, JudgeInputError
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.probes import FILLER, LENGTH_PROBES, probe_probs
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts
from rewardlab.schema import AudioRef, Candidate, Dialogue, Order, Task, Turn

RATE = 16_000


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2)))


def dominant_hz(x: np.ndarray, rate: int = RATE) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()])


def sine(hz: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


# -- the transforms ---------------------------------------------------------------------------


@pytest.mark.parametrize("db", [6.0, -6.0])
def test_gain_scales_rms_by_the_decibels(db):
    """RMS ratio 10^(db/20): 1.9953 for +6 dB, 0.5012 for -6 dB. The clip peaks at 0.3, so
    +6 dB (x 2) stays inside full scale."""
    clip = speechlike(2.0)
    louder = gain(clip, RATE, db)
    assert louder.dtype == np.float32 and louder.shape == clip.shape
    assert rms(louder) / rms(clip) == pytest.approx(10 ** (db / 20), rel=1e-3)
    assert np.abs(louder).max() < 1.0


def test_gain_does_not_clip():
    """A clip at 0.8 peak made 6 dB louder peaks at 1.596: kept, not cut at 1.0, so the
    change is loudness only."""
    loud = gain(sine(440, 0.5, amplitude=0.8), RATE, 6.0)
    assert np.abs(loud).max() == pytest.approx(0.8 * 10 ** (6 / 20), rel=1e-3)


def test_padding_adds_exactly_one_second_of_zeros_at_each_end():
    clip = speechlike(1.3, seed=2)
    padded = pad_silence(clip, RATE, 1.0)
    assert len(padded) == len(clip) + 2 * RATE
    assert not padded[:RATE].any() and not padded[-RATE:].any()
    np.testing.assert_array_equal(padded[RATE:-RATE], clip)


@pytest.mark.parametrize("factor", [0.9, 1.1])
@pytest.mark.parametrize(
    ("signal", "hz"), [(sine(440, 3.0), 440.0), (speechlike(3.0), 150.0)], ids=["sine", "voice"]
)
def test_time_stretch_changes_duration_and_keeps_pitch(factor, signal, hz):
    """Duration x factor (to the sample; WSOLA frames are 480 samples); the dominant frequency
    within 2 % of the original, where resampling would move it by 10 %. The level is kept too."""
    stretched = time_stretch(signal, RATE, factor)
    assert abs(len(stretched) - len(signal) * factor) <= 1
    assert dominant_hz(signal) == pytest.approx(hz, rel=0.01)
    assert dominant_hz(stretched) == pytest.approx(hz, rel=0.02)
    assert rms(stretched) == pytest.approx(rms(signal), rel=0.05)


def test_transforms_refuse_bad_settings():
    with pytest.raises(ValueError, match="factor must be in"):
        time_stretch(sine(440, 0.1), RATE, 0.0)
    with pytest.raises(ValueError, match="unknown kind 'reverb'"):
        ClipTransform("x", "reverb")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown roles"):
        ClipTransform("x", "gain", 6.0, ("narrator",))
    with pytest.raises(ValueError, match="audio mode 'loud'"):
        clip_transform("loud")
    assert clip_transform("silence") is SILENCE and clip_transform(ORIGINAL) is ORIGINAL
    assert len(SILENCE(speechlike(3.0), RATE)) == RATE and not SILENCE(sine(440, 2), RATE).any()
    assert not SILENCE.reads_clip and all(probe.reads_clip for probe in ACOUSTIC_PROBES)


# -- the metrics ------------------------------------------------------------------------------


def test_probe_shift_against_hand_worked_values():
    """Original (1, -0.5, 0, 2, 0.5), probed (1.5, 0.5, 1, 1, 0): shifts (0.5, 1, 1, -1, -0.5),
    mean 1/5 = 0.2, |mean| 4/5 = 0.8. Deviations from 0.2: (0.3, 0.8, 0.8, -1.2, -0.7), squares
    sum 0.09 + 0.64 + 0.64 + 1.44 + 0.49 = 3.3, variance 3.3/4, SE sqrt(0.825 / 5). Decided:
    all but the third (4); flips: -0.5 -> 0.5, and 0.5 -> 0 (a tie counts): 2/4."""
    shift = probe_shift(np.array([1, -0.5, 0, 2, 0.5]), np.array([1.5, 0.5, 1, 1, 0]))
    assert shift["mean_shift"] == pytest.approx(0.2)
    assert shift["mean_abs_shift"] == pytest.approx(0.8)
    assert shift["shift_se"] == pytest.approx(math.sqrt(0.825 / 5))
    assert shift["n_decided"] == 4 and shift["flip_rate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="equal non-empty"):
        probe_shift(np.zeros(3), np.zeros(2))


def test_probe_metrics_average_the_orders():
    """K=1. Task 1: orders sure of +1 and of -1 -> 0; probed, both +1 -> 1 (undecided before,
    so no flip counted). Task 2: (0.5, 0.5, 0) in both orders -> -0.5; probed (0, 0.5, 0.5)
    -> +0.5: a flip. Shifts (1, 1): mean 1, SE 0."""
    probs = np.array([[[0, 0, 1], [1, 0, 0]], [[0.5, 0.5, 0], [0.5, 0.5, 0]]], dtype=float)
    probed = np.array([[[0, 0, 1], [0, 0, 1]], [[0, 0.5, 0.5], [0, 0.5, 0.5]]], dtype=float)
    np.testing.assert_allclose(debiased_expected(probs), [0, -0.5])
    metrics = probe_metrics(probs, {"p": probed})
    assert metrics == {
        "probes/p/mean_shift": 1.0,
        "probes/p/shift_se": 0.0,
        "probes/p/mean_abs_shift": 1.0,
        "probes/p/flip_rate": 1.0,
        "probes/p/n_decided": 1.0,
    }


# -- through the encoder and a judge ----------------------------------------------------------


@pytest.fixture(scope="module")
def backbones(tmp_path_factory, demo_world):
    """Random-init tiny audio and text backbones over a demo world, and its first tasks."""
    root = tmp_path_factory.mktemp("probes")
    data = load_examples(demo_world(n=24, seed=3))
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    return {
        "audio": build_tiny_backbone(root / "audio", texts, size=TINY_GRM_SIZE),
        "text": build_tiny_backbone(root / "text", texts, audio=False, size=TINY_GRM_SIZE),
        "media": data.media_root,
        "items": [e.item for e in data.examples[:8]],
    }


def test_a_transform_changes_the_user_clips_only(backbones, tmp_path):
    """A dialogue with an assistant turn that has audio: under a probe the user clips'
    features are those of the transformed samples, the assistant clip's those of the original;
    the pad probe also adds the second of silence's audio tokens to each user clip."""
    write_clips(tmp_path, {"u0.wav": 1.2, "a1.wav": 0.8, "u2.wav": 1.5})
    refs = {}
    for name in ("u0.wav", "a1.wav", "u2.wav"):
        sha256 = load_audio(tmp_path / name).sha256
        refs[name] = AudioRef(path=name, sha256=sha256, sample_rate=RATE, duration_s=1.0)
    turns = [
        Turn(role="user", text="Hi.", audio=refs["u0.wav"]),
        Turn(role="assistant", text="Hello.", audio=refs["a1.wav"]),
        Turn(role="user", text="Guess what.", audio=refs["u2.wav"]),
    ]
    reply = Candidate(text="Tell me!", source="reference")
    task = Task(id="t", dialogue_id="d", turn_index=2, policy=reply, reference=reply)
    item = JudgeItem(task, Dialogue(id="d", turns=turns))
    grm = GenerativeRewardModel.load(backbones["audio"], media_root=tmp_path)
    extractor = grm.encoder.clip_features.extractor
    heard = {}
    for probe in (ORIGINAL, *ACOUSTIC_PROBES):
        heard[probe.name] = grm.encoder.encode(item, Order.POLICY_FIRST, audio=probe)
    for probe in ACOUSTIC_PROBES:
        encoded = heard[probe.name]
        for index, name in ((0, "u0.wav"), (1, "a1.wav"), (2, "u2.wav")):
            samples = load_audio(tmp_path / name).samples
            if name.startswith("u"):
                samples = probe(samples, RATE)
            direct = extractor(
                samples, sampling_rate=RATE, padding="max_length", return_tensors="np"
            )
            expected = direct["input_features"][0].astype(np.float16)
            np.testing.assert_array_equal(encoded.features[index], expected)
        assert encoded.feature_lengths[1] == heard["audio"].feature_lengths[1]
    padded, original = heard["pad_1s"].feature_lengths, heard["audio"].feature_lengths
    assert [p - o for p, o in zip(padded, original, strict=True)] == [100, 0, 100]  # hop 320


def test_silence_replaces_every_clip_without_reading_it(backbones, tmp_path):
    """A media folder without the clips: heard as recorded, the task is refused; with the
    audio removed, every clip is the features of one second of zeros."""
    grm = GenerativeRewardModel.load(backbones["audio"], media_root=tmp_path)
    item = backbones["items"][0]
    with pytest.raises(JudgeInputError, match="missing"):
        grm.encoder.encode(item, Order.POLICY_FIRST)
    muted = grm.encoder.encode(item, Order.POLICY_FIRST, audio="silence")
    extractor = grm.encoder.clip_features.extractor
    silence = extractor(np.zeros(RATE, np.float32), sampling_rate=RATE, padding="max_length")
    clips = [t for t in item.dialogue.turns[: item.task.turn_index + 1] if t.audio]
    assert len(muted.features) == len(clips) > 0
    for features in muted.features:
        np.testing.assert_array_equal(features, silence["input_features"][0].astype(np.float16))


def probe_shifts(grm: GenerativeRewardModel, items: list[JudgeItem], probes) -> dict:
    probs = grm.judge(items).probs
    shifted = {p.name: grm.judge(items, audio=p).probs for p in probes}
    return probe_metrics(probs, shifted)


def test_a_text_judge_is_not_moved_by_acoustic_probes_but_is_by_length(backbones):
    """A text backbone reads transcripts only: every acoustic probe leaves every expected level
    exactly where it was, while the filler sentence (the length probe) does move this random
    judge, so the measurement is not zero by construction."""
    grm = GenerativeRewardModel.load(backbones["text"], media_root=backbones["media"])
    items = backbones["items"]
    metrics = probe_shifts(grm, items, ACOUSTIC_PROBES)
    for probe in ACOUSTIC_PROBES:
        assert metrics[f"probes/{probe.name}/mean_abs_shift"] == 0
        assert metrics[f"probes/{probe.name}/flip_rate"] == 0
    shifted = probe_probs(grm, items)
    assert list(shifted) == [p.name for p in LENGTH_PROBES]  # no acoustic probe for text
    length = probe_metrics(grm.judge(items).probs, shifted)
    assert length["probes/filler_policy/mean_abs_shift"] > 1e-4
    longer = LENGTH_PROBES[0](items[0]).task
    assert longer.policy.text.endswith(f" {FILLER}")
    assert longer.reference == items[0].task.reference


def test_an_audio_judge_whose_projector_is_zero_ignores_gain(backbones):
    """With the projector zeroed, no audio feature reaches the text model: +-6 dB changes the
    features (checked) but no expected level. Padding and stretching change how many audio
    tokens the prompt holds, which the text model does see, so only gain is exact here; the
    same judge with its projector moves under every acoustic probe."""
    items = backbones["items"]
    grm = GenerativeRewardModel.load(backbones["audio"], media_root=backbones["media"])
    intact = probe_shifts(grm, items, ACOUSTIC_PROBES)
    for probe in ACOUSTIC_PROBES:
        assert intact[f"probes/{probe.name}/mean_abs_shift"] > 1e-6, probe.name
    with torch.no_grad():
        for parameter in grm.model.model.multi_modal_projector.parameters():
            parameter.zero_()
    gains = ACOUSTIC_PROBES[:2]
    louder = grm.encoder.encode(items[0], Order.POLICY_FIRST, audio=gains[0]).features[0]
    original = grm.encoder.encode(items[0], Order.POLICY_FIRST).features[0]
    assert not np.array_equal(louder, original)
    muted = probe_shifts(grm, items, gains)
    for probe in gains:
        assert muted[f"probes/{probe.name}/mean_abs_shift"] == 0
        assert muted[f"probes/{probe.name}/flip_rate"] == 0
