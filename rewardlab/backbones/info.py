"""A backbone's real size without a GPU: built from its config on the meta device (no weights,
no memory), its parameters counted per part, its audio token rate, and the memory that training
it with LoRA needs.

    info = describe_backbone("/models/Qwen2.5-Omni-7B", lora_rank=16, lora_target=regex)
    print(info.table())

The memory figure is what weights and optimizer hold, not activations: bf16 weights for every
parameter, and for each LoRA parameter an fp32 weight, its gradient and Adam's two moments
(16 bytes). Under ZeRO-3 all of it is sharded evenly over the GPUs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig

from rewardlab.backbones.families import (
    TEXT,
    Family,
    family_of_config,
    read_config,
)

PARTS = ("audio tower", "projector", "language model", "experts", "vision and other")
BF16_BYTES = 2
LORA_BYTES = 16  # fp32 weight + fp32 gradient + Adam's two fp32 moments
GIB = 1024**3


@dataclass
class BackboneInfo:
    family: Family
    model_type: str  # the config's own (a full Omni checkpoint's, not its thinker's)
    parameters: dict[str, int]  # per part, in PARTS order
    lora_rank: int
    lora_parameters: int  # what a LoRA of lora_rank on the matched modules adds
    lora_modules: int
    gpus: tuple[int, ...] = (1, 8)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.parameters.values())

    def memory_bytes(self, gpus: int) -> float:
        """Per GPU: bf16 weights + LoRA weights, gradients and Adam moments, ZeRO-3 sharded."""
        return (self.total * BF16_BYTES + self.lora_parameters * LORA_BYTES) / gpus

    def as_dict(self) -> dict[str, Any]:
        return {
            "family": self.family.name,
            "model_type": self.model_type,
            "parameters": self.parameters | {"total": self.total},
            "audio_tokens_per_second": self.family.tokens_per_second(),
            "lora": {
                "rank": self.lora_rank,
                "modules": self.lora_modules,
                "parameters": self.lora_parameters,
            },
            "memory_gib_per_gpu": {str(n): self.memory_bytes(n) / GIB for n in self.gpus},
            "notes": self.notes,
        }

    def table(self) -> str:
        lines = [f"{self.family.name} (model_type {self.model_type})", "parameters:"]
        for part, count in (*self.parameters.items(), ("total", self.total)):
            if part == "projector" and self.family.is_audio and not self.family.projector_path:
                lines.append(f"  {part:<18}{'in the tower':>14}")  # Omni: the tower projects
            else:
                lines.append(f"  {part:<18}{count / 1e6:>12,.1f} M")
        rate = self.family.tokens_per_second()
        lines.append(f"audio tokens per second of speech: {rate:g}" if rate else "no audio")
        lines.append(
            f"LoRA rank {self.lora_rank}: {self.lora_modules} modules,"
            f" {self.lora_parameters / 1e6:,.2f} M trainable parameters"
        )
        lines.append(
            "memory per GPU, bf16 weights + LoRA + Adam (ZeRO-3), activations not included:"
        )
        for n in self.gpus:
            lines.append(
                f"  {n} GPU{'s' if n > 1 else ' '}  {self.memory_bytes(n) / GIB:>8,.2f} GiB"
            )
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


def build_on_meta(config: dict[str, Any], source: str = "config") -> tuple[Family, nn.Module]:
    """The model a config describes, with every tensor on the meta device (a full Omni
    checkpoint's config builds its thinker)."""
    family = family_of_config(config, source)
    config = family.model_config(config)
    with torch.device("meta"):
        if family is TEXT:
            built = AutoConfig.for_model(**config)
            return family, family.model_class.from_config(built)
        return family, family.model_class._from_config(family.model_class.config_class(**config))


def parameters_per_part(family: Family, model: nn.Module) -> dict[str, int]:
    """Parameter counts by part; routed experts apart from the rest of the language model."""
    prefixes = [
        ("projector", family.projector_path),
        ("audio tower", family.tower_path),
        ("language model", family.language_model_path),
    ]
    counts = dict.fromkeys(PARTS, 0)
    for name, param in model.named_parameters():  # tied weights are listed once
        part = next(
            (p for p, path in prefixes if path and name.startswith(path + ".")), "vision and other"
        )
        if part == "language model" and ".experts." in name:
            part = "experts"
        if name.startswith("lm_head."):
            part = "language model"
        counts[part] += param.numel()
    return counts


def lora_size(model: nn.Module, rank: int, target: str) -> tuple[int, int]:
    """(modules, parameters) of a LoRA of `rank` on the Linear layers whose name fully
    matches `target`, the way PEFT matches a regex."""
    pattern = re.compile(target)
    modules = [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and pattern.fullmatch(name)
    ]
    return len(modules), sum(rank * (m.in_features + m.out_features) for m in modules)


def describe_backbone(
    source: Path | str, *, lora_rank: int = 16, lora_target: str, gpus: tuple[int, ...] = (1, 8)
) -> BackboneInfo:
    config = read_config(source)
    family, model = build_on_meta(config, str(source))
    lora_modules, lora_parameters = lora_size(model, lora_rank, lora_target)
    parts = parameters_per_part(family, model)
    notes = []
    if not lora_modules:
        notes.append(f"no Linear layer matches the LoRA target {lora_target!r}")
    if parts["experts"]:
        notes.append(
            "routed experts are fused 3-D weights, not Linear layers: LoRA leaves them as"
            " pretrained and adapts attention, the path every token takes"
        )
    if family.is_full_checkpoint(config):
        notes.append("a full checkpoint: its thinker is counted, the talker is never loaded")
    return BackboneInfo(
        family, config.get("model_type", ""), parts, lora_rank, lora_parameters, lora_modules,
        gpus, notes,
    )  # fmt: skip
