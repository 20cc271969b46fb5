"""Speech for the demo world: espeak-ng, resampled to 16 kHz, cached by what was said and how.

espeak-ng is deterministic, so a clip's file name is a hash of (text, voice, rate, pitch):
identical utterances are synthesised once, and the same seed gives the same files.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import soundfile

from rewardlab.audio import TARGET_SAMPLE_RATE, resample, write_audio


@dataclass(frozen=True)
class Speech:
    """What to say and how: an espeak-ng voice (``en-gb+f3``), words/minute and pitch 0..99."""

    text: str
    voice: str
    rate: int
    pitch: int

    @property
    def media_path(self) -> str:
        key = f"{self.voice}|{self.rate}|{self.pitch}|{self.text}".encode()
        return f"tts/{hashlib.sha256(key).hexdigest()[:20]}.flac"


def espeak_binary() -> str:
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError(
            "espeak-ng is not installed: `make demo` installs it, or run"
            " `sudo apt-get install espeak-ng`"
        )
    return binary


def synthesise(speech: Speech, destination: Path) -> None:
    """Speak `speech` into `destination` (16 kHz mono, format from the suffix)."""
    with tempfile.TemporaryDirectory(prefix="rewardlab-tts-") as scratch:
        wav = Path(scratch) / "speech.wav"
        command = [espeak_binary(), "-v", speech.voice, "-s", str(speech.rate)]
        command += ["-p", str(speech.pitch), "-w", str(wav), speech.text]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        samples, rate = soundfile.read(wav, dtype="float32", always_2d=True)
    # espeak-ng writes 22050 Hz; the world, like the GRM's encoder, works at 16 kHz.
    write_audio(destination, resample(samples.mean(axis=1), rate, TARGET_SAMPLE_RATE), 16_000)


def synthesise_all(
    speeches: Iterable[Speech], media_dir: Path, *, workers: int = 4, progress: bool = False
) -> int:
    """Synthesise every clip not already under `media_dir`; return how many were made."""
    from tqdm.auto import tqdm

    todo = {s.media_path: s for s in speeches if not (media_dir / s.media_path).exists()}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [pool.submit(synthesise, s, media_dir / path) for path, s in sorted(todo.items())]
        for job in tqdm(jobs, desc="speaking", unit="clip", disable=not progress):
            job.result()
    return len(todo)
