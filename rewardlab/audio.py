"""Audio clips: safe paths under a media root, validated loading, hashing and atomic writes.

Every clip a reward model or an annotator hears goes through `load_audio`, which refuses
anything a model should not silently train on: missing, corrupt or truncated files, empty
or non-finite audio, over-long clips. Loaded clips are float32 mono at 16 kHz by default::

    ref = audio_ref(media_root, "clips/a.wav")   # importer: hash, rate, duration -> AudioRef
    clip = load_ref(media_root, ref)              # later: the same bytes, resampled

libsndfile does not report every truncation (see `_check_complete`), so WAV and Ogg
containers are checked here before decoding.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import struct
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from rewardlab.schema import AudioRef

TARGET_SAMPLE_RATE = 16_000
DEFAULT_MAX_DURATION_S = 600.0
# suffix -> (soundfile format, subtype) used by write_audio
_WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


class AudioError(ValueError):
    """A clip that cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"audio '{path}': {reason}")


def resolve_media_path(media_root: Path, relative: str) -> Path:
    """The real path of `relative` under `media_root`; refuses anything that could escape it."""
    if not relative or "\\" in relative or "\x00" in relative:
        raise AudioError(relative, "invalid path: give a non-empty POSIX path")
    pure = PurePosixPath(relative)
    if pure.is_absolute():
        raise AudioError(relative, "absolute path: give it relative to the media root")
    if ".." in pure.parts:
        raise AudioError(relative, "path contains '..' and could escape the media root")
    root = media_root.resolve()
    resolved = (root / pure).resolve()
    # Catches symlinks (of the file or of a folder on the way) that lead out of the root.
    if not resolved.is_relative_to(root):
        raise AudioError(relative, f"escapes the media root {root} (resolves to {resolved})")
    return resolved


def sha256_file(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


@dataclass(frozen=True)
class Clip:
    samples: np.ndarray  # (n,) float32 mono at `sample_rate`
    sample_rate: int
    source_sample_rate: int
    duration_s: float
    sha256: str  # of the file's bytes


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    samples = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return samples
    return soxr.resample(samples, from_rate, to_rate).astype(np.float32, copy=False)


def _wav_truncation(raw: bytes) -> str | None:
    """Compare the data chunk's announced size with the bytes present (RIFF WAV only)."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None  # RF64 / RIFX: rare here, left to libsndfile
    pos, block_align = 12, 1
    while pos + 8 <= len(raw):
        chunk_id, size = struct.unpack_from("<4sI", raw, pos)
        if chunk_id == b"fmt " and size >= 14:
            (block_align,) = struct.unpack_from("<H", raw, pos + 20)
        elif chunk_id == b"data":
            held = len(raw) - pos - 8
            if size > held:
                block_align = max(block_align, 1)
                return (
                    f"truncated: header announces {size // block_align} frames, "
                    f"file holds {held // block_align}"
                )
            return None
        pos += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _ogg_truncation(raw: bytes) -> str | None:
    """Walk the Ogg pages: the last one must be complete and flagged end-of-stream."""
    pos, flags = 0, 0
    while pos < len(raw):
        if raw[pos : pos + 4] != b"OggS" or pos + 27 > len(raw):
            return f"corrupt or truncated: no complete Ogg page at byte {pos}"
        segments = raw[pos + 27 : pos + 27 + raw[pos + 26]]
        end = pos + 27 + raw[pos + 26] + sum(segments)
        if end > len(raw):
            return f"truncated: the Ogg page at byte {pos} is cut off"
        flags, pos = raw[pos + 5], end
    if not flags & 0x04:
        return "truncated: the Ogg stream ends without its end-of-stream page"
    return None


def _check_complete(path: Path, raw: bytes, container: str) -> None:
    # libsndfile reads a cut WAV or Ogg as a shorter, valid clip (it trims the frame count to
    # what is present), so those containers are checked here. A cut FLAC fails to decode.
    reason = None
    if container == "WAV":
        reason = _wav_truncation(raw)
    elif container == "OGG":
        reason = _ogg_truncation(raw)
    if reason:
        raise AudioError(path, reason)


def load_audio(
    path: Path,
    *,
    target_sample_rate: int | None = TARGET_SAMPLE_RATE,
    max_duration_s: float | None = DEFAULT_MAX_DURATION_S,
    reject_silent: bool = False,
    silence_threshold: float = 1e-3,
) -> Clip:
    """Read, validate, mix down to mono and resample (None keeps the native rate)."""
    if not path.exists():
        raise AudioError(path, "missing: no such file")
    try:
        info = sf.info(path)  # the header only: refuse over-long clips before reading them
    except sf.LibsndfileError as error:
        reason = f"unreadable: not audio or corrupt ({error.error_string})"
        raise AudioError(path, reason) from None
    duration_s = info.frames / info.samplerate
    if max_duration_s is not None and duration_s > max_duration_s:
        raise AudioError(path, f"too long: {duration_s:.1f} s exceeds {max_duration_s:.1f} s")

    raw = path.read_bytes()  # one read: the hash and the samples come from the same bytes
    _check_complete(path, raw, info.format)
    try:
        data, _ = sf.read(io.BytesIO(raw), dtype="float32", always_2d=True)  # (n, channels)
    except sf.LibsndfileError as error:  # e.g. a cut FLAC: "flac decoder lost sync"
        raise AudioError(path, f"corrupt or truncated: {error.error_string}") from None
    if len(data) != info.frames:
        raise AudioError(
            path, f"truncated: header announces {info.frames} frames, file holds {len(data)}"
        )
    if len(data) == 0:
        raise AudioError(path, "empty: the file holds no audio frames")
    if not np.isfinite(data).all():
        raise AudioError(path, "non-finite samples: the file holds NaN or inf values")

    mono = data.mean(axis=1)  # (n,)
    peak = float(np.abs(mono).max())
    if reject_silent and peak < silence_threshold:
        raise AudioError(path, f"silent: peak amplitude {peak:.2e} is below {silence_threshold}")
    rate = target_sample_rate or info.samplerate
    return Clip(
        samples=resample(mono, info.samplerate, rate),
        sample_rate=rate,
        source_sample_rate=info.samplerate,
        duration_s=duration_s,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def probe_audio(path: Path, **limits: Any) -> tuple[str, int, float]:
    """Validate like `load_audio` (same keyword limits); return (sha256, native rate, seconds)."""
    clip = load_audio(path, target_sample_rate=None, **limits)
    return clip.sha256, clip.source_sample_rate, clip.duration_s


def audio_ref(media_root: Path, relative: str, **limits: Any) -> AudioRef:
    """The AudioRef the importer stores for a clip under the media root."""
    sha256, sample_rate, duration_s = probe_audio(
        resolve_media_path(media_root, relative), **limits
    )
    return AudioRef(path=relative, sha256=sha256, sample_rate=sample_rate, duration_s=duration_s)


def load_ref(
    media_root: Path,
    ref: AudioRef,
    *,
    target_sample_rate: int | None = TARGET_SAMPLE_RATE,
    verify_hash: bool = True,
) -> Clip:
    """Load a stored clip; refuses it if its bytes changed since the AudioRef was made."""
    path = resolve_media_path(media_root, ref.path)
    # No duration limit: the clip was accepted at import, a later default must not drop it.
    clip = load_audio(path, target_sample_rate=target_sample_rate, max_duration_s=None)
    if verify_hash and clip.sha256 != ref.sha256:
        raise AudioError(
            path, f"hash mismatch: file changed on disk (sha256 {clip.sha256}, ref {ref.sha256})"
        )
    return clip


def write_audio(path: Path, samples: np.ndarray, sample_rate: int) -> None:
    """Write a clip atomically (format from the suffix), so a crash never leaves half a file."""
    if path.suffix.lower() not in _WRITE_FORMATS:
        raise AudioError(path, f"unsupported suffix: use one of {sorted(_WRITE_FORMATS)}")
    file_format, subtype = _WRITE_FORMATS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # same folder: same disk
    try:
        with tmp.open("xb") as file:
            sf.write(file, samples, sample_rate, format=file_format, subtype=subtype)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
