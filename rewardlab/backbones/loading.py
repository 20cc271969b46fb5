"""Loading a backbone from a local directory: plain, fully fine-tuned, or a PEFT adapter.

A saved LoRA adapter folder holds ``adapter_config.json`` whose ``base_model_name_or_path`` is
the backbone it was trained on: `load_model` loads that base, then the adapter over it. Models
load from local paths only (the project runs offline).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import AutoProcessor, AutoTokenizer, PreTrainedModel

from rewardlab.backbones.families import (
    config_path,
    family_of,
    family_of_config,
    family_of_path,
    read_config,
)
from rewardlab.backbones.speech_template import SpeechChatTemplate
from rewardlab.backbones.tekken import TEKKEN_FILE

ADAPTER_CONFIG = "adapter_config.json"  # PEFT's name for a saved adapter's config


def adapter_base(path: Path | str) -> Path | None:
    """The backbone a saved PEFT adapter at `path` was trained on; None for a full model."""
    adapter = Path(path) / ADAPTER_CONFIG
    if not adapter.exists():
        return None
    return Path(json.loads(adapter.read_text())["base_model_name_or_path"])


def load_backbone(path: Path | str, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The model saved at `path` (not an adapter), by its family's class."""
    config = read_config(path)
    family = family_of_config(config, str(config_path(path)))
    kwargs = {}
    if family.is_full_checkpoint(config):
        # a full Omni checkpoint (thinker + talker): its thinker's weights only, never the
        # talker's (transformers maps the checkpoint's thinker.* names onto the thinker)
        kwargs["config"] = family.model_class.config_class.from_dict(family.model_config(config))
    model = family.model_class.from_pretrained(Path(path), dtype=dtype, **kwargs)
    for unused in family.unused_paths:
        family.part(model, unused).requires_grad_(False)
    return model


def load_model(
    path: Path | str,
    *,
    dtype: torch.dtype | None = None,
    lora: LoraConfig | None = None,
    adapter_trainable: bool = False,
) -> PreTrainedModel | PeftModel:
    """A backbone, a saved full model, or a saved adapter over its base (trainable with
    `adapter_trainable`); `lora` puts fresh adapters on a model that has none."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no model directory at {path} (models load from local paths)")
    base = adapter_base(path)
    model = load_backbone(base or path, dtype)
    if base is not None:
        return PeftModel.from_pretrained(model, path, is_trainable=adapter_trainable)
    return get_peft_model(model, lora) if lora is not None else model


def load_processor(path: Path | str) -> Any:
    """The processor (audio backbones: the family's own, or its `SpeechChatTemplate`) or the
    tokenizer saved at `path`; an adapter folder saved without one uses its base's."""
    path = Path(path)
    base = adapter_base(path)
    family = family_of_path(base or path)
    saved_own = any((path / name).exists() for name in ("tokenizer_config.json", TEKKEN_FILE))
    if base is not None and not saved_own:
        path = base
    if family.is_audio and family.processor_class is None:
        return SpeechChatTemplate.from_pretrained(path, family)
    if (path / "processor_config.json").exists():
        return AutoProcessor.from_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def base_model(model: PreTrainedModel | PeftModel) -> PreTrainedModel:
    """The transformers model under any PEFT wrapper."""
    return model.get_base_model() if isinstance(model, PeftModel) else model


def audio_tower(model: PreTrainedModel | PeftModel) -> nn.Module | None:
    """The audio encoder of `model`; None for a text-only model."""
    base = base_model(model)
    return family_of(base).audio_tower(base)


def freeze_audio_tower(model: PreTrainedModel | PeftModel) -> None:
    """Keep the audio encoder's weights fixed (nothing to do for a text-only model)."""
    tower = audio_tower(model)
    if tower is not None:
        tower.requires_grad_(False)
