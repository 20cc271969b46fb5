"""Backbones: how an audio LLM (or a text LM) is found, loaded and prepared for training.

    model = load_model("runs/grm/final", lora=None)   # a backbone, a full save, or an adapter
    template = load_processor("runs/grm/final")       # its processor (audio) or tokenizer
    freeze_audio_tower(model)                         # no-op for a text-only model

Both the GRM (`rewardlab.grm.model`) and the PPO policy (`rewardlab.rl.policy`) load through
here, so adapter detection, LoRA set-up and the audio tower's whereabouts have one owner.
`families` holds one small adapter per model family: what configs it answers to, which class
loads it, where its audio tower, projector and language model sit, how many tokens a clip
becomes, how its tower runs once, its placeholder and special tokens. The GRM and PPO run
Qwen2-Audio, the Qwen2.5-Omni and Qwen3-Omni-MoE thinkers, Voxtral, Audio Flamingo 3 and any
text-only causal LM. `speech_template` reads an Omni or Voxtral checkpoint's tokenizer (a
Voxtral's `tekken.json` through `tekken`), feature extractor and chat template, and `info`
sizes any family from its config alone
(`rewardlab backbone-info`):

    info = describe_backbone("/models/Qwen2.5-Omni-7B", lora_rank=16, lora_target=regex)
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
