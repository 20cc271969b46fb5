"""rewardlab.audio on real files written into tmp_path (numpy sines, one espeak-ng utterance)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rewardlab.audio import (
    AudioError,
    audio_ref,
    load_audio,
    load_ref,
    probe_audio,
    resample,
    resolve_media_path,
    sha256_file,
    write_audio,
)


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def refused(path: Path, reason: str, **kwargs) -> str:
    """Load `path`, expecting an AudioError naming the file and `reason`; return the message."""
    with pytest.raises(AudioError) as caught:
        load_audio(path, **kwargs)
    message = str(caught.value)
    assert path.name in message
    assert reason in message
    return message


@pytest.mark.parametrize(("suffix", "subtype"), [(".wav", "PCM_16"), (".flac", "PCM_16")])
def test_reads_lossless_formats_exactly(tmp_path: Path, suffix: str, subtype: str) -> None:
    path = tmp_path / f"a{suffix}"
    samples = sine(440, 16_000, 1.5)
    sf.write(path, samples, 16_000, subtype=subtype)

    clip = load_audio(path)

    assert clip.samples.dtype == np.float32 and clip.samples.shape == (24_000,)
    assert (clip.sample_rate, clip.source_sample_rate) == (16_000, 16_000)
    assert clip.duration_s == pytest.approx(1.5)
    np.testing.assert_allclose(clip.samples, samples, atol=1 / 2**15)


def test_reads_ogg_vorbis(tmp_path: Path) -> None:
    path = tmp_path / "a.ogg"
    sf.write(path, sine(440, 16_000, 2.0), 16_000, subtype="VORBIS")

    clip = load_audio(path)

    assert clip.samples.shape == (32_000,)
    assert clip.duration_s == pytest.approx(2.0)
    assert peak_hz(clip.samples, 16_000) == pytest.approx(440, abs=1)
    assert np.abs(clip.samples).max() == pytest.approx(0.5, abs=0.05)  # lossy, but close


def test_stereo_is_mixed_down_by_averaging(tmp_path: Path) -> None:
    left, right = sine(440, 16_000, 1.0), sine(1000, 16_000, 1.0, amplitude=0.25)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16_000, subtype="FLOAT")

    clip = load_audio(path)

    assert clip.samples.shape == (16_000,)
    np.testing.assert_allclose(clip.samples, (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("rate", [22_050, 44_100])
def test_resampling_keeps_length_and_pitch(tmp_path: Path, rate: int) -> None:
    path = tmp_path / f"{rate}.wav"
    sf.write(path, sine(440, rate, 2.0), rate)

    clip = load_audio(path)

    assert (clip.sample_rate, clip.source_sample_rate) == (16_000, rate)
    assert clip.samples.shape == (32_000,)  # 2 s at 16 kHz
    assert clip.duration_s == pytest.approx(2.0)
    # 2 s of signal: FFT bins are 0.5 Hz apart.
    assert peak_hz(clip.samples, 16_000) == pytest.approx(440, abs=0.5)
    # Keep the native rate when asked.
    assert load_audio(path, target_sample_rate=None).samples.shape == (2 * rate,)


def test_resample_is_identity_at_equal_rates() -> None:
    samples = sine(440, 16_000, 0.1)
    assert resample(samples, 16_000, 16_000) is samples
    assert resample(samples, 16_000, 8_000).shape == (800,)


def test_sha256_matches_hashlib_and_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "a.flac"
    sf.write(path, sine(440, 16_000, 1.0), 16_000)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()

    assert sha256_file(path) == expected
    assert load_audio(path).sha256 == expected
    assert load_audio(path, target_sample_rate=None).sha256 == expected
    assert probe_audio(path) == (expected, 16_000, 1.0)


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".ogg"])
def test_write_audio_round_trip(tmp_path: Path, suffix: str) -> None:
    samples = sine(440, 22_050, 1.0)
    path = tmp_path / "new" / "folder" / f"out{suffix}"

    write_audio(path, samples, 22_050)

    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    assert sf.info(path).format == {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[suffix]
    clip = load_audio(path, target_sample_rate=None)
    assert clip.source_sample_rate == 22_050 and clip.samples.shape == samples.shape
    if suffix == ".ogg":
        assert peak_hz(clip.samples, 22_050) == pytest.approx(440, abs=1)
    else:
        np.testing.assert_allclose(clip.samples, samples, atol=1 / 2**15)


def test_write_audio_replaces_an_existing_clip(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    write_audio(path, sine(440, 16_000, 1.0), 16_000)
    write_audio(path, sine(440, 16_000, 0.5), 16_000)
    assert load_audio(path).duration_s == pytest.approx(0.5)
    with pytest.raises(AudioError, match="unsupported suffix"):
        write_audio(tmp_path / "a.mp3", sine(440, 16_000, 0.5), 16_000)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_real_speech_from_espeak(tmp_path: Path) -> None:
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "How can I help you today?"], check=True)

    clip = load_audio(path, reject_silent=True)

    assert (clip.source_sample_rate, clip.sample_rate) == (22_050, 16_000)
    assert 0.8 < clip.duration_s < 5.0
    assert len(clip.samples) == pytest.approx(clip.duration_s * 16_000, abs=1)
    assert np.abs(clip.samples).max() > 0.1


# --- refusals --------------------------------------------------------------------------------


def test_refuses_missing_file(tmp_path: Path) -> None:
    refused(tmp_path / "nope.wav", "missing")


def test_refuses_truncated_wav(tmp_path: Path) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, sine(440, 16_000, 1.0), 16_000, subtype="PCM_16")  # 16000 frames, 2 bytes
    path.write_bytes(path.read_bytes()[: 44 + 12_000 * 2])  # 44-byte header + 12000 frames

    message = refused(path, "truncated")
    assert "header announces 16000 frames, file holds 12000" in message


def test_refuses_truncated_flac(tmp_path: Path) -> None:
    path = tmp_path / "cut.flac"
    sf.write(path, sine(440, 16_000, 2.0), 16_000)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    refused(path, "truncated")


def test_refuses_ogg_cut_at_a_page_boundary(tmp_path: Path) -> None:
    # libsndfile reads this as a valid, shorter clip: only the missing end-of-stream page tells.
    path = tmp_path / "cut.ogg"
    noise = np.random.default_rng(0).uniform(-0.3, 0.3, 5 * 16_000).astype(np.float32)
    sf.write(path, noise, 16_000, subtype="VORBIS")
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.rindex(b"OggS")])
    assert 0 < sf.info(path).frames < 5 * 16_000  # what libsndfile alone would accept
    refused(path, "truncated")


def test_refuses_ogg_cut_inside_a_page(tmp_path: Path) -> None:
    path = tmp_path / "cut.ogg"
    sf.write(path, sine(440, 16_000, 2.0), 16_000, subtype="VORBIS")
    path.write_bytes(path.read_bytes()[:-10])
    refused(path, "truncated")


def test_refuses_garbage_with_wav_suffix(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(b"this is not audio at all" * 40)
    refused(path, "unreadable")


def test_refuses_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), 16_000)
    refused(path, "empty")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_refuses_non_finite_samples(tmp_path: Path, bad: float) -> None:
    samples = sine(440, 16_000, 0.5)
    samples[100] = bad
    path = tmp_path / "bad.wav"
    sf.write(path, samples, 16_000, subtype="FLOAT")
    refused(path, "non-finite")


def test_refuses_silence_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "quiet.wav"
    sf.write(path, sine(440, 16_000, 1.0, amplitude=1e-4), 16_000, subtype="FLOAT")

    refused(path, "silent", reject_silent=True)
    assert load_audio(path).samples.shape == (16_000,)
    loud_enough = load_audio(path, reject_silent=True, silence_threshold=5e-5)
    assert np.abs(loud_enough.samples).max() == pytest.approx(1e-4, rel=0.05)


def test_refuses_too_long_clip(tmp_path: Path) -> None:
    path = tmp_path / "long.wav"
    sf.write(path, sine(440, 8_000, 3.0), 8_000)

    message = refused(path, "too long", max_duration_s=2.5)
    assert "3.0 s" in message
    with pytest.raises(AudioError, match="too long"):
        probe_audio(path, max_duration_s=2.5)
    assert load_audio(path, max_duration_s=None).duration_s == pytest.approx(3.0)


# --- media root and references ------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "reason"),
    [
        ("/etc/passwd", "absolute"),
        ("../outside.wav", ".."),
        ("clips/../../outside.wav", ".."),
        ("clips\\a.wav", "POSIX"),
        ("", "non-empty"),
    ],
)
def test_resolve_refuses_unsafe_paths(tmp_path: Path, relative: str, reason: str) -> None:
    with pytest.raises(AudioError) as caught:
        resolve_media_path(tmp_path, relative)
    assert reason in str(caught.value)
    assert f"'{relative}'" in str(caught.value)


def test_resolve_refuses_symlinks_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "media", tmp_path / "secret"
    (root / "clips").mkdir(parents=True)
    outside.mkdir()
    sf.write(outside / "x.wav", sine(440, 16_000, 0.5), 16_000)
    (root / "clips" / "link.wav").symlink_to(outside / "x.wav")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)

    for relative in ["clips/link.wav", "elsewhere/x.wav"]:
        with pytest.raises(AudioError, match="escapes the media root"):
            resolve_media_path(root, relative)
        with pytest.raises(AudioError, match="escapes the media root"):
            audio_ref(root, relative)


def test_resolve_follows_symlinks_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "clips").mkdir()
    (tmp_path / "alias.wav").symlink_to(tmp_path / "clips" / "a.wav")
    assert resolve_media_path(tmp_path, "alias.wav") == (tmp_path / "clips/a.wav").resolve()
    # The file need not exist yet.
    assert resolve_media_path(tmp_path, "new/b.wav") == tmp_path.resolve() / "new" / "b.wav"


def test_audio_ref_and_load_ref(tmp_path: Path) -> None:
    path = tmp_path / "clips" / "a.wav"
    write_audio(path, sine(440, 22_050, 1.0), 22_050)

    ref = audio_ref(tmp_path, "clips/a.wav")

    assert ref.path == "clips/a.wav"
    assert ref.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (ref.sample_rate, ref.duration_s) == (22_050, pytest.approx(1.0))
    clip = load_ref(tmp_path, ref)
    assert (clip.sample_rate, clip.samples.shape, clip.sha256) == (16_000, (16_000,), ref.sha256)


def test_load_ref_refuses_a_changed_file(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    write_audio(path, sine(440, 16_000, 1.0), 16_000)
    ref = audio_ref(tmp_path, "a.wav")
    write_audio(path, sine(880, 16_000, 1.0), 16_000)  # same length, different bytes

    with pytest.raises(AudioError) as caught:
        load_ref(tmp_path, ref)
    assert "a.wav" in str(caught.value) and "hash mismatch" in str(caught.value)
    assert peak_hz(load_ref(tmp_path, ref, verify_hash=False).samples, 16_000) == 880
