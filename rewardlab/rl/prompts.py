"""What the policy reads: prompts (dialogue so far, reference reply, rubric), as model inputs.

A PPO prompt is a dialogue up to the user turn the policy answers, the reference reply the GRM
judges the policy's reply against, and optionally the rubric it judges under. The policy hears
audio turns as audio (their clips' log-mel features, one audio placeholder per clip expanded to
the clip's number of audio tokens); a text backbone reads their transcripts instead.

Batches are left-padded, so every prompt ends at the same column and generation continues all
rows together. Audio features are per *clip*, not per prompt: `Clips.owner` says which row
each clip belongs to, and `Clips.select` keeps the clips of a subset of rows, in order, when a
batch is split into micro-batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardlab.backbones.families import PLACEHOLDER_TOKENS, family_of_template
from rewardlab.grm.encoding import AudioMode, ClipFeatures, audio_token_id
from rewardlab.grm.judge_format import JudgeInputError
from rewardlab.rl.ppo_math import response_mask
from rewardlab.schema import THINK_END, THINK_START, Dialogue, Rubric

DEFAULT_POLICY_SYSTEM = (
    "You are a warm, attentive voice assistant. Listen to how the user sounds, remember what"
    f" they said earlier, think briefly inside {THINK_START} {THINK_END}, then reply."
)


@dataclass(frozen=True)
class PPOPrompt:
    id: str
    dialogue: Dialogue
    turn_index: int  # the policy answers turns[turn_index]; it sees turns[0..turn_index]
    reference: str  # the reply the GRM judges the policy's reply against
    rubric: Rubric | None = None


def prompts_from_examples(examples: Sequence[Any]) -> list[PPOPrompt]:
    """One prompt per (dialogue, turn) among GRM examples; the first task's reference and
    rubric (tasks sorted by id) stand for it."""
    prompts: dict[tuple[str, int], PPOPrompt] = {}
    for example in sorted(examples, key=lambda e: e.item.task.id):
        task = example.item.task
        key = (task.dialogue_id, task.turn_index)
        if key not in prompts:
            prompts[key] = PPOPrompt(
                f"{task.dialogue_id}.t{task.turn_index}",
                example.item.dialogue,
                task.turn_index,
                task.reference.text,
                example.item.rubric,
            )
    return list(prompts.values())


@dataclass
class EncodedPolicyPrompt:
    ids: list[int]
    features: list[np.ndarray]  # per clip segment (`ClipFeatures.segments`): (mel, frames)
    feature_lengths: list[int]  # valid frames per segment
    audio_tokens: list[int] = field(default_factory=list)  # per segment: its run of tokens


class PolicyPromptEncoder:
    """Renders prompts in the policy's chat template and tokenizes them, audio expanded."""

    def __init__(
        self,
        template: Any,  # the processor (audio policy) or tokenizer (text policy)
        *,
        media_root: Path | None = None,
        system: str = DEFAULT_POLICY_SYSTEM,
        max_prompt_tokens: int = 1024,
        transcripts: bool = False,
    ):
        self.template, self.system = template, system
        self.max_prompt_tokens, self.transcripts = max_prompt_tokens, transcripts
        self.family = family_of_template(template)
        self.is_audio = self.family.is_audio
        self.tokenizer = template.tokenizer if self.is_audio else template
        self.clip_features = ClipFeatures.for_template(template, media_root)
        self.audio_token_id = audio_token_id(template)

    def suppressed_token_ids(self) -> list[int]:
        """Ids the policy may not generate: the audio special tokens (and the family's other
        placeholders: an Omni thinker's image and video tokens), and padding (unless it
        doubles as EOS)."""
        vocab = self.tokenizer.get_vocab()
        ids = [vocab[t] for t in sorted(PLACEHOLDER_TOKENS) if t in vocab]
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        return ids + ([pad] if pad is not None and pad != eos else [])

    def messages(self, prompt: PPOPrompt, first: int = 0) -> list[dict]:
        turns = prompt.dialogue.turns[first : prompt.turn_index + 1]
        messages: list[dict] = [{"role": "system", "content": self.system}]
        if first:
            messages[0]["content"] += f" ({first} earlier turns left out.)"
        for turn in turns:
            if turn.audio is not None and self.is_audio:
                content: Any = [{"type": "audio", "path": turn.audio.path}]
                if self.transcripts and turn.text:
                    content.append({"type": "text", "text": turn.text})
            else:
                content = turn.text or "(audio)"
                if self.is_audio:
                    content = [{"type": "text", "text": content}]
            messages.append({"role": turn.role, "content": content})
        return messages

    def encode(self, prompt: PPOPrompt, audio: AudioMode = "audio") -> EncodedPolicyPrompt:
        """Token ids (audio expanded) and clip features; oldest turns are dropped to fit."""
        if prompt.turn_index >= len(prompt.dialogue.turns):
            raise JudgeInputError(
                prompt.id,
                "turn_index",
                f"{prompt.turn_index} but dialogue {prompt.dialogue.id!r} has"
                f" {len(prompt.dialogue.turns)} turns",
            )
        for first in range(prompt.turn_index + 1):
            encoded = self._encode_from(prompt, first, audio)
            if len(encoded.ids) <= self.max_prompt_tokens:
                return encoded
        raise JudgeInputError(
            prompt.id,
            "dialogue",
            f"{len(encoded.ids)} tokens with only the last turn kept; the policy takes at most"
            f" max_prompt_tokens={self.max_prompt_tokens}",
        )

    def _encode_from(self, prompt: PPOPrompt, first: int, audio: AudioMode) -> EncodedPolicyPrompt:
        text = self.template.apply_chat_template(
            self.messages(prompt, first), tokenize=False, add_generation_prompt=True
        )
        ids = self.tokenizer.encode(text, add_special_tokens=False)
        if not self.is_audio:
            return EncodedPolicyPrompt(ids, [], [])
        turns = prompt.dialogue.turns[first : prompt.turn_index + 1]
        heard = [turn for turn in turns if turn.audio is not None]
        ids, features, lengths = self.clip_features.expand(
            prompt.id,
            ids,
            self.audio_token_id,
            [turn.audio for turn in heard],
            [turn.role for turn in heard],
            audio,
        )
        tokens = [self.clip_features.audio_tokens(n) for n in lengths]
        return EncodedPolicyPrompt(ids, features, lengths, tokens)


@dataclass
class Clips:
    """The audio clips of a batch of rows, in row order and, within a row, in turn order.

    Holds the raw log-mel ``features`` (the audio tower runs on every pass), or, once encoded
    by a frozen tower, its output ``states``; `AudioPolicy.embed` accepts either.
    """

    owner: torch.Tensor  # (n,) the row each clip belongs to
    tokens: torch.Tensor  # (n,) audio tokens each clip fills in its row
    features: torch.Tensor | None = None  # (n, mel, frames)
    feature_mask: torch.Tensor | None = None  # (n, frames)
    states: torch.Tensor | None = None  # (n, max tokens, d_audio) frozen tower output

    def __len__(self) -> int:
        return len(self.owner)

    def select(self, rows: Sequence[int] | torch.Tensor) -> Clips:
        """The clips of `rows` (in the order given), re-owned by their position in `rows`."""
        rows = torch.as_tensor(rows, dtype=torch.long).tolist()
        picks, owners = [], []
        for position, row in enumerate(rows):
            mine = (self.owner == row).nonzero().flatten().tolist()
            picks += mine
            owners += [position] * len(mine)
        index = torch.tensor(picks, dtype=torch.long)

        def take(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[index.to(t.device)]

        return Clips(
            torch.tensor(owners, dtype=torch.long),
            self.tokens[index],
            take(self.features),
            take(self.feature_mask),
            take(self.states),
        )

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Clips:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device, dtype=dtype if dtype and t.is_floating_point() else None)

        return replace(
            self,
            features=move(self.features),
            feature_mask=move(self.feature_mask),
            states=move(self.states),
        )


@dataclass
class PromptBatch:
    input_ids: torch.Tensor  # (B, T) left-padded
    attention_mask: torch.Tensor  # (B, T)
    clips: Clips | None


def collate_prompts(prompts: Sequence[EncodedPolicyPrompt], pad_id: int) -> PromptBatch:
    """Left-pad the prompts to one width and gather their clips."""
    width = max(len(p.ids) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, width - len(prompt.ids) :] = torch.tensor(prompt.ids)
        attention_mask[row, width - len(prompt.ids) :] = 1
    features = [f for p in prompts for f in p.features]
    if not features:
        return PromptBatch(input_ids, attention_mask, None)
    lengths = torch.tensor([n for p in prompts for n in p.feature_lengths])
    frames = features[0].shape[-1]
    clips = Clips(
        owner=torch.tensor([row for row, p in enumerate(prompts) for _ in p.features]),
        tokens=torch.tensor([n for p in prompts for n in p.audio_tokens]),
        features=torch.from_numpy(np.stack(features)).float(),
        feature_mask=(torch.arange(frames)[None, :] < lengths[:, None]).long(),
    )
    return PromptBatch(input_ids, attention_mask, clips)


def decode_replies(tokenizer, responses: torch.Tensor, eos_id: int, pad_id: int) -> list[str]:
    """Sampled replies (B, R) as text: each up to its first EOS, special tokens dropped."""
    mask = response_mask(responses, eos_id, pad_id)
    kept = torch.where(mask, responses, torch.full_like(responses, pad_id))
    return tokenizer.batch_decode(kept, skip_special_tokens=True)
