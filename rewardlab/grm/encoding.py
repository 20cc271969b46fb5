"""Judge items -> token ids and audio features -> padded batches.

An encoded prompt is two id lists, the *history* (system + dialogue, with each audio
placeholder already expanded to its clip's number of audio tokens) and the *pair* block
(rubric, both responses, the scale, the assistant turn up to the verdict slot), plus the
log-mel features of the history's clips. Training concatenates the two; the scorer runs the
history once and reuses its cache for both orders. A clip longer than the audio encoder's window
is heard in equal window-sized segments, each its own run of audio tokens: the feature
extractor alone would pad or cut every clip to one window without a word.

Over-long dialogues are truncated from the start, whole turns at a time, and the prompt says
how many turns were left out; a task whose last turn and reply alone exceed `max_tokens` is
refused with a `JudgeInputError`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from rewardlab.audio import TARGET_SAMPLE_RATE, AudioError, load_ref
from rewardlab.audio_probes import ClipTransform, clip_transform
from rewardlab.backbones.families import family_of_template
from rewardlab.grm.judge_format import JudgeFormat, JudgeInputError, Reply
from rewardlab.schema import Dialogue, Order, Rubric, Task

# how clips are heard: "audio" as recorded, "silence" each replaced by a second of silence, or
# any other `ClipTransform` (a bias probe)
AudioMode = Literal["audio", "silence"] | ClipTransform
Segment = tuple[np.ndarray, int]  # one window of a clip: (features (mel, frames), valid frames)


@dataclass(frozen=True)
class JudgeItem:
    """Everything needed to render one task: the task, its dialogue and rubric (if any)."""

    task: Task
    dialogue: Dialogue
    rubric: Rubric | None = None


@dataclass
class EncodedPrompt:
    history_ids: list[int]
    pair_ids: list[int]  # ends at the verdict slot: the verdict token comes next
    # per clip segment (a clip longer than the encoder's window is several): (mel_bins, frames)
    features: list[np.ndarray]  # float16
    feature_lengths: list[int]  # valid frames per segment
    critique_span: tuple[int, int] | None = None  # [start, end) of critique tokens in pair_ids

    def __len__(self) -> int:
        return len(self.history_ids) + len(self.pair_ids)


class ClipFeatures:
    """Log-mel features of clips for one feature extractor, cached by content hash.

    Shared by the judge's and the policy's prompt encoders: a clip heard in many prompts is
    decoded and transformed once.
    """

    def __init__(
        self,
        feature_extractor: Any,
        media_root: Path | None,
        cache_clips: int = 8192,
        audio_tokens: Callable[[int], int] | None = None,
        whole_windows: bool = False,
    ):
        """`audio_tokens`: feature frames of one segment -> its audio tokens (the family's
        count; `for_template` finds it). `whole_windows`: the family's tower hears each window
        whole, padding included (`Family.hears_whole_windows`)."""
        self.extractor = feature_extractor
        self.audio_tokens, self.whole_windows = audio_tokens, whole_windows
        self.media_root = Path(media_root) if media_root else None
        self._cache: OrderedDict[tuple[str, str], list[Segment]] = OrderedDict()
        self._cache_size = cache_clips
        self._pinned: dict[str, tuple[np.ndarray, int]] = {}  # sha256 -> (samples, holders)
        self._lock = threading.RLock()

    @classmethod
    def for_template(
        cls, template: Any, media_root: Path | None, cache_clips: int = 8192
    ) -> ClipFeatures:
        """Features for a backbone's processor (or tokenizer: no audio), its family's count of
        audio tokens per clip."""
        family = family_of_template(template)
        extractor = template.feature_extractor if family.is_audio else None
        return cls(
            extractor, media_root, cache_clips, family.audio_tokens, family.hears_whole_windows
        )

    def __getstate__(self) -> dict[str, Any]:  # data-loader workers get a copy, lock anew
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def same_features_as(self, other: ClipFeatures) -> bool:
        """True when `other` turns every clip into the same features (same extractor settings,
        same cut into windows, same media folder): then one cache can serve both (the policy's
        and the judge's)."""
        mine, theirs = self.extractor, other.extractor
        return (
            mine is not None
            and self.whole_windows == other.whole_windows
            and theirs is not None
            and type(mine) is type(theirs)
            and mine.to_dict() == theirs.to_dict()
            and self.media_root is not None
            and other.media_root is not None
            and self.media_root.resolve() == other.media_root.resolve()
        )

    def pin(self, sha256: str, samples: np.ndarray) -> None:
        """Hold a clip that lives in no media folder (a reward service's inline audio) until
        as many `unpin` calls; a ref with this hash is then read from here."""
        with self._lock:
            held = self._pinned.get(sha256)
            holders = 1 + (held[1] if held else 0)
            self._pinned[sha256] = (samples if held is None else held[0], holders)

    def unpin(self, sha256: str) -> None:
        with self._lock:
            samples, holders = self._pinned[sha256]
            if holders > 1:
                self._pinned[sha256] = (samples, holders - 1)
            else:
                del self._pinned[sha256]

    def __call__(self, owner: str, ref: Any, mode: AudioMode) -> list[Segment]:
        """Clip `ref` heard through `mode`, as (features (mel, frames) float16, valid frames)
        per segment; `owner` names the task or prompt in errors. Thread-safe: the reward service
        checks requests on its event loop while the judge's thread encodes a batch."""
        with self._lock:
            return self._features(owner, ref, clip_transform(mode))

    def segments(self, samples: np.ndarray) -> list[Segment]:
        """A clip's features per segment, with the frames its tower hears of each.

        A clip longer than the encoder's window is split into equal window-sized segments
        (each its own run of audio tokens), so that nothing is cut: the extractor would pad or
        truncate every clip to one window without a word. A tower that hears whole windows
        (Voxtral) gets what its processor makes: the clip padded to whole windows, its features
        taken in one pass and cut window by window, every frame heard."""
        window = self.extractor.n_samples
        if self.whole_windows:
            out = self.extractor(
                samples if len(samples) else np.zeros(window, dtype=np.float32),
                sampling_rate=self.extractor.sampling_rate,
                padding=True,
                truncation=False,
                pad_to_multiple_of=window,
                return_tensors="np",
            )
            features = out["input_features"][0].astype(np.float16)
            windows = np.split(features, features.shape[-1] // self.extractor.nb_max_frames, -1)
            return [(w, w.shape[-1]) for w in windows]
        value = []
        for segment in np.array_split(samples, max(1, -(-len(samples) // window))):
            out = self.extractor(
                segment,
                sampling_rate=self.extractor.sampling_rate,
                return_attention_mask=True,
                padding="max_length",
                return_tensors="np",
            )
            features = out["input_features"][0].astype(np.float16)
            value.append((features, int(out["attention_mask"][0].sum())))
        return value

    def _features(self, owner: str, ref: Any, transform: ClipTransform) -> list[Segment]:
        key = (transform, ref.sha256 if transform.reads_clip else None)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if not transform.reads_clip:
            samples = np.zeros(0, dtype=np.float32)
        elif ref.sha256 in self._pinned:
            samples = self._pinned[ref.sha256][0]
        else:
            if self.media_root is None:
                raise JudgeInputError(owner, "audio", "no media root to load the audio from")
            try:
                samples = load_ref(self.media_root, ref).samples
            except (AudioError, FileNotFoundError) as error:
                raise JudgeInputError(owner, f"audio {ref.path!r}", str(error)) from error
        value = self.segments(transform(samples, TARGET_SAMPLE_RATE))
        self._cache[key] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    def expand(
        self,
        owner: str,
        ids: list[int],
        audio_token_id: int,
        refs: list[Any],
        roles: list[str],
        mode: AudioMode,
    ) -> tuple[list[int], list[np.ndarray], list[int]]:
        """`ids` with each audio placeholder repeated to its clip's number of audio tokens,
        and the clips' features and valid frame counts, in order (a clip longer than the
        encoder's window: one entry per segment, its tokens one run per segment). `roles`: the
        role of each clip's turn; `mode` changes the clips of the roles it names, the rest are
        heard as recorded."""
        placeholders = sum(token == audio_token_id for token in ids)
        if placeholders != len(refs):
            raise JudgeInputError(
                owner, "audio", f"{placeholders} audio placeholders for {len(refs)} clips"
            )
        transform = clip_transform(mode)
        expanded: list[int] = []
        features, lengths = [], []
        clips = iter(zip(refs, roles, strict=True))
        for token in ids:
            if token != audio_token_id:
                expanded.append(token)
                continue
            ref, role = next(clips)
            heard = transform if transform.applies_to(role) else "audio"
            for feature, frames in self(owner, ref, heard):
                features.append(feature)
                lengths.append(frames)
                expanded.extend([token] * self.audio_tokens(frames))
        return expanded, features, lengths


class PromptEncoder:
    """Renders and tokenizes judge items for one backbone; caches clip features by hash."""

    def __init__(
        self,
        template: Any,  # the processor (audio backbone) or tokenizer (text backbone)
        fmt: JudgeFormat,
        *,
        media_root: Path | None = None,
        max_tokens: int = 2048,
        cache_clips: int = 8192,
    ):
        self.template, self.format, self.max_tokens = template, fmt, max_tokens
        family = family_of_template(template)
        self.is_audio = family.is_audio
        self.feature_mask_key = family.feature_mask_key  # the forward's name for frame masks
        self.tokenizer = template.tokenizer if self.is_audio else template
        self._lock = threading.Lock()  # the reward service encodes from two threads
        self.media_root = Path(media_root) if media_root else None
        self.clip_features = ClipFeatures.for_template(template, self.media_root, cache_clips)
        self.audio_token_id = audio_token_id(template)
        self.marker_ids = self._ids(fmt.verdict_marker)
        self._histories: OrderedDict[tuple, tuple[list[int], list, list[int]]] = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _ids(self, text: str) -> list[int]:
        with self._lock:  # a fast tokenizer is not to be called from two threads at once
            return self.tokenizer.encode(text, add_special_tokens=False)

    # -- text ------------------------------------------------------------------------------

    def encode(
        self,
        item: JudgeItem,
        order: Order,
        *,
        audio: AudioMode = "audio",
        critique: str | None = None,
        last_turns: int | None = None,
        reply: Reply | None = None,
    ) -> EncodedPrompt:
        """`last_turns`: keep at most this many turns, however short the prompt (training's
        history warm-up); the prompt says how many were left out, as for over-long ones.
        `reply`: the prompt of a scalar reward model, the history and that one reply (`order`
        is then unused)."""
        if last_turns is not None and last_turns < 1:
            raise ValueError(f"last_turns must be >= 1, got {last_turns}")
        task, dialogue = item.task, item.dialogue
        last = task.turn_index
        start = 0 if last_turns is None else max(0, last + 1 - last_turns)
        for first in range(start, last + 1):  # drop the oldest turns until it fits
            encoded = self._encode_from(item, order, first, audio, critique, reply)
            if len(encoded) <= self.max_tokens:
                return encoded
        raise JudgeInputError(
            task.id,
            "dialogue",
            f"{len(encoded)} tokens with only the last turn of {dialogue.id!r} kept;"
            f" the GRM takes at most max_tokens={self.max_tokens}",
        )

    def _encode_from(
        self,
        item: JudgeItem,
        order: Order,
        first: int,
        audio: AudioMode,
        critique: str | None,
        reply: Reply | None = None,
    ) -> EncodedPrompt:
        task, dialogue = item.task, item.dialogue
        if first:
            dialogue = dialogue.model_copy(update={"turns": dialogue.turns[first:]})
            task = task.model_copy(update={"turn_index": task.turn_index - first})
        history, pair, _ = self.format.render(
            self.template,
            dialogue,
            task,
            item.rubric,
            order,
            audio=self.is_audio,
            omitted=first,
            reply=reply,
        )
        turns = [t for t in dialogue.turns[: task.turn_index + 1] if t.audio]
        history_ids, features, lengths = self._history(task.id, history, turns, audio)
        pair_ids = self._ids(pair)
        span = None
        if critique is not None:
            critique_ids = self._ids(critique.strip() + "\n")
            span = (len(pair_ids), len(pair_ids) + len(critique_ids))
            pair_ids += critique_ids
        return EncodedPrompt(history_ids, pair_ids + self.marker_ids, features, lengths, span)

    def _history(self, owner: str, history: str, turns: list[Any], audio: AudioMode):
        """(ids, clip features, valid frames) of a rendered history with the clips of `turns`:
        cached, because the G candidates of a prompt and both orders of each render the same
        history."""
        refs, roles = [t.audio for t in turns], [t.role for t in turns]
        clips = tuple(zip((r.sha256 for r in refs), roles, strict=True)) if self.is_audio else ()
        key = (history, clip_transform(audio), clips)
        with self._lock:
            if key in self._histories:
                self._histories.move_to_end(key)
                return self._histories[key]
        ids, features, lengths = self._ids(history), [], []
        if self.is_audio:
            ids, features, lengths = self.clip_features.expand(
                owner, ids, self.audio_token_id, refs, roles, audio
            )
        with self._lock:
            self._histories[key] = (ids, features, lengths)
            if len(self._histories) > HISTORY_CACHE:
                self._histories.popitem(last=False)
        return ids, features, lengths


def audio_token_id(template: Any) -> int | None:
    """The id of the placeholder the template's chat template puts where a clip goes."""
    family = family_of_template(template)
    return template.tokenizer.convert_tokens_to_ids(family.audio_token) if family.is_audio else None


HISTORY_CACHE = 1024  # rendered histories kept tokenized (a PPO batch's prompts, many times over)


def pad_rows(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def audio_batch(
    prompts: list[EncodedPrompt], mask_key: str | None = "feature_attention_mask"
) -> dict[str, torch.Tensor]:
    """Stacked clip features of all prompts, in order: (n_clips, mel, frames), and their frame
    masks under the name the family's forward takes (`PromptEncoder.feature_mask_key`; None:
    it takes none)."""
    features = [f for p in prompts for f in p.features]
    if not features:
        return {}
    lengths = [n for p in prompts for n in p.feature_lengths]
    frames = features[0].shape[-1]
    mask = torch.arange(frames)[None, :] < torch.tensor(lengths)[:, None]  # (N, F)
    batch = {"input_features": torch.from_numpy(np.stack(features)).float()}
    return batch if mask_key is None else batch | {mask_key: mask.long()}


def collate_full(
    prompts: list[EncodedPrompt], pad_id: int, mask_key: str | None = "feature_attention_mask"
) -> dict[str, torch.Tensor]:
    """History + pair as one right-padded sequence; `verdict_index` = the last real token.

    ``labels`` (-100 outside critiques) carry the LM loss on critique tokens.
    """
    rows = [p.history_ids + p.pair_ids for p in prompts]
    input_ids = pad_rows(rows, pad_id)  # (B, T)
    lengths = torch.tensor([len(r) for r in rows])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    labels = torch.full_like(input_ids, -100)
    for row, prompt in enumerate(prompts):
        if prompt.critique_span is not None:
            start, end = (len(prompt.history_ids) + i for i in prompt.critique_span)
            labels[row, start:end] = input_ids[row, start:end]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "verdict_index": lengths - 1,
        "labels": labels,
        **audio_batch(prompts, mask_key),
    }
