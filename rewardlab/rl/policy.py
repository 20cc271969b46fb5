"""`AudioPolicy`: an audio LLM (or text LM) with a value head, driven through its embeddings.

Every pass builds the input embeddings itself: token embeddings, with the audio placeholders
filled by the projected output of the audio tower. When the tower is frozen its output depends
on nothing trainable, so a rollout encodes each clip once (`encode_audio`) and every later
pass (generation, old and reference log-probs, values, each PPO epoch and micro-batch) only
re-applies the small projector to the cached states. A trainable tower runs on every pass.

The value head reads the decoder's last hidden state, the same trunk the policy's logits come
from: one forward gives both. With a LoRA policy the reference policy is the same network
with its adapters disabled (`reference_mode`); otherwise it is a frozen copy.

`load_policy` loads one from a local directory through `rewardlab.backbones` (a backbone, a
saved full policy, or a saved LoRA adapter), the same loader the GRM uses.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel

from rewardlab.backbones import audio_tower, base_model, family_of, load_model, load_processor
from rewardlab.rl.prompts import Clips

VALUE_HEAD_FILE = "value_head.safetensors"


class AudioPolicy(nn.Module):
    def __init__(self, model: PreTrainedModel | PeftModel, *, reference: nn.Module | None = None):
        """`reference`: a frozen copy of the initial policy; None with a LoRA policy (adapters
        off is the reference) or when no KL term is wanted."""
        super().__init__()
        self.model = model
        hidden = self.base.config.get_text_config().hidden_size
        self.value_head = nn.Linear(hidden, 1)
        nn.init.normal_(self.value_head.weight, std=1.0 / (hidden + 1) ** 0.5)
        nn.init.zeros_(self.value_head.bias)
        self.set_reference(reference)

    # -- structure -------------------------------------------------------------------------

    @property
    def base(self) -> PreTrainedModel:
        return base_model(self.model)

    @property
    def is_audio(self) -> bool:
        return family_of(self.base).is_audio

    @property
    def is_lora(self) -> bool:
        return isinstance(self.model, PeftModel)

    @property
    def audio_tower_frozen(self) -> bool:
        tower = audio_tower(self.model)
        return tower is not None and not any(p.requires_grad for p in tower.parameters())

    # what TRL's `unwrap_model_for_generation` and ``gradient_checkpointing: true`` call
    @property
    def is_gradient_checkpointing(self) -> bool:
        base = self.base
        flag = getattr(type(base), "is_activation_checkpointing", None)  # transformers >= 5
        if flag is None:
            return bool(getattr(base, "is_gradient_checkpointing", False))
        return bool(base.is_activation_checkpointing)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None):
        self.base.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs=gradient_checkpointing_kwargs
        )

    def gradient_checkpointing_disable(self) -> None:
        self.base.gradient_checkpointing_disable()

    def set_reference(self, reference: nn.Module | None) -> None:
        """The frozen reference policy, kept out of the module tree: not trained, not saved,
        not moved or counted with the policy's parameters."""
        self.__dict__["reference"] = reference

    @staticmethod
    def frozen_reference(model: PreTrainedModel) -> PreTrainedModel:
        """A frozen copy of `model` as it is now: the reference of a full fine-tune."""
        reference = copy.deepcopy(model).eval()
        reference.requires_grad_(False)
        return reference

    @contextmanager
    def reference_mode(self) -> Iterator[AudioPolicy]:
        """Within it, `forward` runs the reference policy."""
        if self.is_lora:
            with self.model.disable_adapter():
                yield self
        elif self.reference is not None:
            live = self.model
            self.model = self.reference
            try:
                yield self
            finally:
                self.model = live
        else:
            raise ValueError("this policy has no reference: not LoRA, and no frozen copy given")

    # -- audio -----------------------------------------------------------------------------

    def _tower(self, clips: Clips) -> torch.Tensor:
        """The audio tower's output for each clip: (n, max tokens, d_audio)."""
        return family_of(self.base).encode_clips(self.base, clips.features, clips.feature_mask)

    @torch.no_grad()
    def encode_audio(self, clips: Clips | None) -> Clips | None:
        """Clips carrying the frozen tower's states, computed once; unchanged otherwise."""
        if clips is None or clips.states is not None or not self.audio_tower_frozen:
            return clips
        return replace(clips, states=self._tower(clips))

    def embed(self, input_ids: torch.Tensor, clips: Clips | None) -> torch.Tensor:
        embeds = self.base.get_input_embeddings()(input_ids)
        if clips is None or len(clips) == 0:
            return embeds
        if not self.is_audio:
            raise ValueError("audio clips given to a text-only policy")
        states = clips.states if clips.states is not None else self._tower(clips)
        projected = family_of(self.base).projector(self.base)(states.to(embeds.device))
        tokens = clips.tokens.to(projected.device)
        valid = torch.arange(projected.shape[1], device=projected.device)[None, :] < tokens[:, None]
        filled = projected[valid]  # clip after clip, each its own audio tokens, in row order
        slots = input_ids == self.base.config.audio_token_id
        if int(slots.sum()) != filled.shape[0]:
            raise ValueError(
                f"{int(slots.sum())} audio tokens in the batch but its clips fill"
                f" {filled.shape[0]}: clips and rows are out of step"
            )
        return embeds.masked_scatter(slots.unsqueeze(-1), filled.to(embeds.dtype))

    # -- passes ----------------------------------------------------------------------------

    def decoder(self) -> nn.Module:
        return family_of(self.base).language_model(self.base)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        clips: Clips | None = None,
        *,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
        use_cache: bool = False,
        inputs_embeds: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(logits (B, T, V), values (B, T), cache) of one pass."""
        if inputs_embeds is None:
            inputs_embeds = self.embed(input_ids, clips)
        if position_ids is None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        out = self.decoder()(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
        )
        hidden = out.last_hidden_state
        logits = self.base.lm_head(hidden)
        values = self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)
        return logits, values, out.cache if use_cache else None

    @torch.no_grad()
    def sample(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        clips: Clips | None,
        *,
        max_new_tokens: int,
        eos_token_id: int,
        pad_token_id: int,
        temperature: float = 1.0,
        top_k: int = 0,
        suppress_token_ids: Sequence[int] = (),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(B, max_new_tokens) sampled continuations of left-padded prompts, pad after EOS.

        The prompt (audio included) is embedded once; each new token reuses the key/value
        cache. `suppress_token_ids` (the audio special tokens) are never sampled.
        """
        device = input_ids.device
        rows = input_ids.shape[0]
        logits, _, cache = self.forward(input_ids, attention_mask, clips, use_cache=True)
        next_logits = logits[:, -1]
        position = attention_mask.long().sum(-1, keepdim=True)  # next position per row
        mask = attention_mask
        out = torch.full((rows, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
        done = torch.zeros(rows, dtype=torch.bool, device=device)
        suppress = torch.as_tensor(list(suppress_token_ids), dtype=torch.long, device=device)
        for step in range(max_new_tokens):
            scores = next_logits.float() / max(temperature, 1e-5)
            if len(suppress):
                scores[:, suppress] = float("-inf")
            if top_k:
                kth = torch.topk(scores, min(top_k, scores.shape[-1])).values[:, -1:]
                scores = scores.masked_fill(scores < kth, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
            token = torch.where(done, torch.full_like(token, pad_token_id), token)
            out[:, step] = token
            done |= token == eos_token_id
            if bool(done.all()) or step + 1 == max_new_tokens:
                break
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            embeds = self.base.get_input_embeddings()(token[:, None])
            logits, _, cache = self.forward(
                token[:, None],
                mask,
                position_ids=position,
                cache=cache,
                use_cache=True,
                inputs_embeds=embeds,
            )
            next_logits = logits[:, -1]
            position = position + 1
        return out

    # -- persistence -----------------------------------------------------------------------

    def save(self, out: Path | str, template: Any | None = None) -> Path:
        """The model (or its adapter), the value head, and the processor/tokenizer."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        save_file(
            {k: v.contiguous() for k, v in self.value_head.state_dict().items()},
            out / VALUE_HEAD_FILE,
        )
        if template is not None:
            template.save_pretrained(out)
        return out

    def load_value_head(self, directory: Path | str) -> bool:
        """Load a saved value head from `directory`; False when it has none."""
        path = Path(directory) / VALUE_HEAD_FILE
        if not path.exists():
            return False
        self.value_head.load_state_dict(load_file(path))
        return True


def load_policy(
    path: Path | str,
    *,
    lora: LoraConfig | None = None,
    freeze_audio_tower: bool = True,
    dtype: torch.dtype | None = None,
    reference: bool = True,
) -> tuple[AudioPolicy, Any]:
    """(policy with value head, processor or tokenizer) from a local directory: a backbone,
    a saved full policy, or a saved LoRA adapter (trainable; its base path is in its config).

    `reference`: give a full fine-tune a frozen copy of the weights loaded here.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no policy directory at {path} (models load from local paths)")
    model = load_model(path, dtype=dtype, lora=lora, adapter_trainable=True)
    template = load_processor(path)
    frozen = None
    if reference and not isinstance(model, PeftModel):
        frozen = AudioPolicy.frozen_reference(model)
    policy = AudioPolicy(model, reference=frozen)
    if freeze_audio_tower and policy.is_audio:
        audio_tower(model).requires_grad_(False)
    policy.load_value_head(path)
    return policy, template
