"""One adapter per model family: the config it answers to, its class, its audio tower.

A family is plain data plus the two facts a trainer needs about an audio backbone's encoder:
where the tower is (``tower_path``, attributes from the base model) and how many frames its
convolutional front end leaves of a clip (`Family.conv_frames`). `TEXT` stands for any
text-only causal LM (transcripts instead of audio): it has no tower.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM, PreTrainedModel, Qwen2AudioForConditionalGeneration


@dataclass(frozen=True)
class Family:
    name: str
    model_type: str | None  # config.json's "model_type"; None: any causal LM (the fallback)
    model_class: type  # what loads it: `.from_pretrained(path, dtype=...)`
    tower_path: str | None = None  # dotted attributes from the base model to its audio tower
    # feature frames -> frames after the tower's convolutions (its attention runs on those)
    conv_frames: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def is_audio(self) -> bool:
        return self.tower_path is not None

    def audio_tower(self, base: PreTrainedModel) -> nn.Module | None:
        """The audio encoder inside `base` (not PEFT-wrapped), None for a text family."""
        if self.tower_path is None:
            return None
        module: nn.Module = base
        for name in self.tower_path.split("."):
            module = getattr(module, name)
        return module


def _whisper_conv_frames(frames: torch.Tensor) -> torch.Tensor:
    """Whisper-style encoder: the second conv has stride 2, so T frames become (T-1)//2+1."""
    return (frames - 1) // 2 + 1


QWEN2_AUDIO = Family(
    "qwen2-audio",
    "qwen2_audio",
    Qwen2AudioForConditionalGeneration,
    tower_path="model.audio_tower",
    conv_frames=_whisper_conv_frames,
)
TEXT = Family("text", None, AutoModelForCausalLM)
FAMILIES: tuple[Family, ...] = (QWEN2_AUDIO,)  # audio families, tried before the TEXT fallback


def family_of_path(path: Path | str) -> Family:
    """The family of the model saved at `path`, from its config.json's model_type."""
    model_type = json.loads((Path(path) / "config.json").read_text()).get("model_type")
    return next((f for f in FAMILIES if f.model_type == model_type), TEXT)


def family_of(base: PreTrainedModel) -> Family:
    """The family of a loaded (unwrapped) model."""
    return next((f for f in FAMILIES if isinstance(base, f.model_class)), TEXT)
