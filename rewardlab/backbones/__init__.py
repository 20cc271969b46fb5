"""Backbones: how an audio LLM (or a text LM) is found, loaded and prepared for training.

    model = load_model("runs/grm/final", lora=None)   # a backbone, a full save, or an adapter
    template = load_processor("runs/grm/final")       # its processor (audio) or tokenizer
    freeze_audio_tower(model)                         # no-op for a text-only model

Both the GRM (`rewardlab.grm.model`) and the PPO policy (`rewardlab.rl.policy`) load through
here, so adapter detection, LoRA set-up and the audio tower's whereabouts have one owner.
`families` holds one small adapter per model family: what configs it answers to, which class
loads it, where its audio tower, projector and language model sit, and how many tokens a clip
becomes. The GRM and PPO run Qwen2-Audio and any text-only causal LM today; Qwen2.5-Omni,
Qwen3-Omni-MoE, Voxtral and Audio Flamingo 3 are described, and `info` sizes any of them from
its config alone (`rewardlab backbone-info`):

    info = describe_backbone("models/Qwen2.5-Omni-7B", lora_rank=16, lora_target=regex)
"""

from rewardlab.backbones.families import (
    FAMILIES,
    TEXT,
    Family,
    UnknownFamilyError,
    family_of,
    family_of_config,
    family_of_path,
)
from rewardlab.backbones.info import BackboneInfo, describe_backbone
from rewardlab.backbones.loading import (
    ADAPTER_CONFIG,
    adapter_base,
    audio_tower,
    base_model,
    freeze_audio_tower,
    load_backbone,
    load_model,
    load_processor,
)

__all__ = [
    "ADAPTER_CONFIG",
    "FAMILIES",
    "TEXT",
    "BackboneInfo",
    "Family",
    "UnknownFamilyError",
    "adapter_base",
    "audio_tower",
    "base_model",
    "describe_backbone",
    "family_of",
    "family_of_config",
    "family_of_path",
    "freeze_audio_tower",
    "load_backbone",
    "load_model",
    "load_processor",
]
