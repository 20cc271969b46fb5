"""Backbones: how an audio LLM (or a text LM) is found, loaded and prepared for training.

    model = load_model("runs/grm/final", lora=None)   # a backbone, a full save, or an adapter
    template = load_processor("runs/grm/final")       # its processor (audio) or tokenizer
    freeze_audio_tower(model)                         # no-op for a text-only model

Both the GRM (`rewardlab.grm.model`) and the PPO policy (`rewardlab.rl.policy`) load through
here, so adapter detection, LoRA set-up and the audio tower's whereabouts have one owner.
`families` holds one small adapter per model family: what config it answers to, which class
loads it, and where its audio tower sits (Qwen2-Audio and any text-only causal LM today); a
new audio-LLM family is one more entry there.
"""

from rewardlab.backbones.families import FAMILIES, TEXT, Family, family_of, family_of_path
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
    "Family",
    "adapter_base",
    "audio_tower",
    "base_model",
    "family_of",
    "family_of_path",
    "freeze_audio_tower",
    "load_backbone",
    "load_model",
    "load_processor",
]
