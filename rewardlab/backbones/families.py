"""One adapter per model family: the configs it answers to, its class, where its parts sit.

A family is plain data plus the facts a trainer needs about an audio backbone: where the audio
tower, the projector and the language model are (dotted attributes from the model), how many
frames its convolutional front end leaves of a clip (`Family.conv_frames`), and how many
language-model tokens a clip becomes (`Family.audio_tokens`, from feature frames at 100 per
second). `TEXT` stands for any text-only causal LM (transcripts instead of audio): it has no
tower.

The GRM and the PPO policy run every family here: Qwen2-Audio, the Qwen2.5-Omni and
Qwen3-Omni-MoE thinkers, Voxtral, Audio Flamingo 3 and text models. Each family also says how
to run its tower once (`tower_states`), which placeholder its chat template puts where a clip
goes, its named special tokens, the chat layout (Voxtral's Tekken checkpoints are always
rendered in Mistral's instruct layout), what its forward calls the frame masks, whether
its tower hears whole windows (Voxtral takes no mask: a clip is padded to whole windows and
each window becomes the same number of tokens), and whether generation on a cached history
must reset rope deltas (`continue_positions`). A full Omni checkpoint (thinker + talker) is
read as its thinker: the talker speaks, it never judges.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from transformers import (
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    AutoModelForCausalLM,
    PreTrainedModel,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen3OmniMoeThinkerForConditionalGeneration,
    VoxtralForConditionalGeneration,
)
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

FEATURE_FRAMES_PER_SECOND = 100  # every family's log-mel features: 10 ms hop at 16 kHz


@dataclass(frozen=True)
class Family:
    name: str  # the CLI's name: config.json's model_type of the family's own checkpoints
    model_types: tuple[str, ...]  # model_types it answers to; () for TEXT (any causal LM)
    model_class: type  # what loads it: `.from_pretrained(path, dtype=...)`
    tower_path: str | None = None  # dotted attributes from the model to its audio tower
    # its audio projector; None where the tower ends in its own projection (Omni thinkers)
    projector_path: str | None = None
    language_model_path: str = "model"  # the decoder stack under the LM head
    thinker_key: str | None = None  # a full checkpoint keeps this family's model in this sub-config
    # feature frames -> frames after the tower's convolutions (its attention runs on those)
    conv_frames: Callable[[torch.Tensor], torch.Tensor] | None = None
    # feature frames of one clip -> the language model's audio tokens for it
    audio_tokens: Callable[[int], int] | None = None
    # the placeholder its chat template puts where a clip goes (one per clip, expanded to
    # the clip's audio tokens)
    audio_token: str = "<|AUDIO|>"
    # (audio tower, features (n, mel, frames), feature mask (n, frames)) -> the tower's
    # output per clip, padded: (n, max tokens, d); what the policy caches to encode each clip
    # once and feeds to the projector on every pass
    tower_states: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # the processor class of its checkpoints where rewardlab reads it as is; None: the family
    # is read through `SpeechChatTemplate` (tokenizer, feature extractor, chat template)
    processor_class: type | None = None
    # named special tokens of its tokenizer (`tokenizer.audio_token` ...), for tiny builds
    special_tokens: tuple[tuple[str, str], ...] = ()
    # multimodal RoPE (Omni thinkers): the model keeps rope deltas from its last forward
    # and adds them when generation continues a cache (`continue_positions`)
    carries_rope_deltas: bool = False
    # what its forward calls the clips' frame masks; None: it takes none, and its tower hears
    # every window whole (`hears_whole_windows`)
    feature_mask_key: str | None = "feature_attention_mask"
    # the chat layout of its template (`audio_chat_template`): for tiny builds where "chatml"
    # (a Qwen or AF3 checkpoint ships its own); "mistral": always, a Tekken checkpoint's
    # layout
    chat_format: Literal["chatml", "mistral"] = "chatml"
    # parts a judge or policy of speech never runs (an Omni thinker's vision encoder): frozen
    unused_paths: tuple[str, ...] = ()

    @property
    def is_audio(self) -> bool:
        return self.tower_path is not None

    @property
    def hears_whole_windows(self) -> bool:
        """A tower that takes no frame mask (Voxtral) hears every window whole, padding
        included: a clip is cut into consecutive windows, the last padded, each window the
        same run of tokens."""
        return self.is_audio and self.feature_mask_key is None

    def part(self, model: nn.Module, path: str | None) -> nn.Module | None:
        """The module at dotted `path` inside `model` (not PEFT-wrapped); None for no path."""
        if path is None:
            return None
        module = model
        for name in path.split("."):
            module = getattr(module, name)
        return module

    def audio_tower(self, base: PreTrainedModel) -> nn.Module | None:
        """The audio encoder inside `base`, None for a text family."""
        return self.part(base, self.tower_path)

    def projector(self, base: PreTrainedModel) -> nn.Module:
        """What turns the tower's states into language-model embeddings: identity for a
        tower that ends in its own projection."""
        return self.part(base, self.projector_path) or nn.Identity()

    def encode_clips(
        self, base: PreTrainedModel, features: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The audio tower's output for each clip, (n, max tokens, d), padded past each
        clip's own audio tokens."""
        tower = self.audio_tower(base)
        weight = next(tower.parameters())
        return self.tower_states(tower, features.to(weight.device, weight.dtype), mask)

    def language_model(self, base: PreTrainedModel) -> nn.Module:
        return self.part(base, self.language_model_path)

    def continue_positions(self, base: PreTrainedModel, rows: int) -> None:
        """Before `generate` continues a key/value cache of `rows` rows: an Omni thinker adds
        the rope deltas of its last forward to every position it generates at. Audio-only
        prompts have none (their positions are the text positions: `get_rope_index` only
        shifts positions for images and video), but the deltas kept are one per row of that
        last forward, which may have been a different batch (the shared histories)."""
        if self.carries_rope_deltas:
            inner = base.model
            inner.rope_deltas = torch.zeros(rows, 1, dtype=torch.long, device=base.device)

    def is_full_checkpoint(self, config: dict[str, Any]) -> bool:
        """A full Omni checkpoint's config (thinker + talker), not the thinker's own."""
        return self.thinker_key is not None and config.get("model_type") == self.name

    def model_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config of the model rewardlab builds: a full checkpoint's thinker's."""
        return config[self.thinker_key] if self.is_full_checkpoint(config) else config

    def tokens_per_second(self) -> float:
        """Audio tokens per second of speech, over a 30-second clip."""
        if self.audio_tokens is None:
            return 0.0
        return self.audio_tokens(30 * FEATURE_FRAMES_PER_SECOND) / 30


def _whisper_conv_frames(frames: torch.Tensor) -> torch.Tensor:
    """Whisper-style encoder: the second conv has stride 2, so T frames become (T-1)//2+1."""
    return (frames - 1) // 2 + 1


def whisper_pooled_tokens(frames: int) -> int:
    """Whisper convs (stride 2), then a pool of 2: 25 tokens a second (Qwen2-Audio,
    Qwen2.5-Omni, Audio Flamingo 3)."""
    return (_whisper_conv_frames(frames) - 2) // 2 + 1


def _qwen2_audio_states(tower: nn.Module, features: torch.Tensor, mask: torch.Tensor):
    """Qwen2-Audio's tower runs a padded batch, its attention masked past each clip's
    convolved frames; it pools by 2 itself."""
    conv_lengths = _whisper_conv_frames(mask.sum(-1).to(features.device))
    width = (features.shape[-1] - 2) // 2 + 1
    valid = torch.arange(width, device=features.device)[None, :] < conv_lengths[:, None]
    dummy = torch.zeros((len(features), width, 1), dtype=features.dtype, device=features.device)
    attention = create_bidirectional_mask(
        config=tower.config, inputs_embeds=dummy, attention_mask=valid.long()
    )
    return tower(features, attention_mask=attention).last_hidden_state


def _audio_flamingo_3_states(tower: nn.Module, features: torch.Tensor, mask: torch.Tensor):
    """Audio Flamingo 3's tower runs a padded batch of whole windows and masks its attention
    from the frame mask itself; it pools by 2."""
    return tower(features, input_features_mask=mask.to(features.device)).last_hidden_state


def _clips_end_to_end(features: torch.Tensor, mask: torch.Tensor):
    """An Omni thinker's tower reads every clip's valid frames end to end: (frames per clip,
    features (mel, total frames))."""
    frames = mask.sum(-1).to(features.device)
    return frames, features.transpose(1, 2)[mask.bool().to(features.device)].T


def _per_clip(states: torch.Tensor, frames: torch.Tensor, tokens: Callable[[int], int]):
    """The tower's tokens, end to end, split back per clip and padded: (n, max tokens, d)."""
    return pad_sequence(states.split([tokens(n) for n in frames.tolist()]), batch_first=True)


def _qwen2_5_omni_states(tower: nn.Module, features: torch.Tensor, mask: torch.Tensor):
    frames, flat = _clips_end_to_end(features, mask)
    out = tower(flat, feature_lens=frames, aftercnn_lens=_whisper_conv_frames(frames))
    return _per_clip(out.last_hidden_state, frames, whisper_pooled_tokens)


def _qwen3_omni_states(tower: nn.Module, features: torch.Tensor, mask: torch.Tensor):
    frames, flat = _clips_end_to_end(features, mask)
    return _per_clip(tower(flat, feature_lens=frames).last_hidden_state, frames, _qwen3_omni_tokens)


def _qwen3_omni_tokens(frames: int) -> int:
    """Qwen3-Omni's tower reads 1-second chunks through three stride-2 convs: 13 tokens per
    full chunk, the rest by the same convs."""
    rest = frames % 100
    convolved = (((rest - 1) // 2 + 1 - 1) // 2 + 1 - 1) // 2 + 1
    return convolved + (frames // 100) * 13


def _voxtral_tokens(frames: int) -> int:
    """Voxtral: Whisper's 50 frames a second, four merged per token by its projector
    (12.5 a second); its processor pads each clip to whole 30-second windows."""
    return ((frames - 1) // 2 + 1) // 4


def _voxtral_states(tower: nn.Module, features: torch.Tensor, mask: torch.Tensor):
    """Voxtral's tower hears whole windows (no mask); its projector reads four consecutive
    states as one (``intermediate_size`` wide), so they are regrouped per clip."""
    states = tower(features).last_hidden_state
    return states.reshape(len(features), -1, tower.config.intermediate_size)


def _audio_llm(name: str, model_class: type, audio_tokens: Callable[[int], int], **facts) -> Family:
    """An audio LLM laid out as transformers lays them all out: ``model.audio_tower`` feeding
    ``model.multi_modal_projector`` feeding ``model.language_model``, Whisper-style convs in
    front of the tower; `facts` override any of it."""
    layout = dict(
        tower_path="model.audio_tower",
        projector_path="model.multi_modal_projector",
        language_model_path="model.language_model",
        conv_frames=_whisper_conv_frames,
    )
    model_types = facts.pop("model_types", (name,))
    return Family(name, model_types, model_class, audio_tokens=audio_tokens, **layout | facts)


QWEN2_AUDIO = _audio_llm(
    "qwen2_audio",
    Qwen2AudioForConditionalGeneration,
    whisper_pooled_tokens,
    tower_states=_qwen2_audio_states,
    processor_class=Qwen2AudioProcessor,
    special_tokens=(
        ("audio_token", "<|AUDIO|>"),
        ("audio_bos_token", "<|audio_bos|>"),
        ("audio_eos_token", "<|audio_eos|>"),
    ),
)
# the Omni thinkers: the tower ends in its own projection; a full checkpoint nests the thinker
OMNI_SPECIAL_TOKENS = (
    ("audio_token", "<|AUDIO|>"),
    ("audio_bos_token", "<|audio_bos|>"),
    ("audio_eos_token", "<|audio_eos|>"),
    ("image_token", "<|IMAGE|>"),
    ("video_token", "<|VIDEO|>"),
    ("vision_bos_token", "<|vision_bos|>"),
    ("vision_eos_token", "<|vision_eos|>"),
)
QWEN2_5_OMNI = _audio_llm(
    "qwen2_5_omni",
    Qwen2_5OmniThinkerForConditionalGeneration,
    whisper_pooled_tokens,
    model_types=("qwen2_5_omni", "qwen2_5_omni_thinker"),
    projector_path=None,
    thinker_key="thinker_config",
    tower_states=_qwen2_5_omni_states,
    special_tokens=OMNI_SPECIAL_TOKENS,
    carries_rope_deltas=True,
    unused_paths=("model.visual",),
)
QWEN3_OMNI_MOE = _audio_llm(
    "qwen3_omni_moe",
    Qwen3OmniMoeThinkerForConditionalGeneration,
    _qwen3_omni_tokens,
    model_types=("qwen3_omni_moe", "qwen3_omni_moe_thinker"),
    projector_path=None,
    thinker_key="thinker_config",
    conv_frames=None,  # 2-D convs over 1-second chunks: `_qwen3_omni_tokens` counts them
    audio_token="<|audio_pad|>",
    tower_states=_qwen3_omni_states,
    special_tokens=(
        ("audio_token", "<|audio_pad|>"),
        ("audio_bos_token", "<|audio_start|>"),
        ("audio_eos_token", "<|audio_end|>"),
        ("image_token", "<|image_pad|>"),
        ("video_token", "<|video_pad|>"),
        ("vision_bos_token", "<|vision_start|>"),
        ("vision_eos_token", "<|vision_end|>"),
    ),
    carries_rope_deltas=True,
    unused_paths=("model.visual",),
)
# Voxtral: Whisper tower (whole 30-second windows), a projector over four states at a time,
# a Llama decoder; its Tekken tokenizer marks a clip [BEGIN_AUDIO] then one [AUDIO] per token
VOXTRAL = _audio_llm(
    "voxtral",
    VoxtralForConditionalGeneration,
    _voxtral_tokens,
    audio_token="[AUDIO]",
    tower_states=_voxtral_states,
    special_tokens=(("audio_token", "[AUDIO]"), ("audio_bos_token", "[BEGIN_AUDIO]")),
    feature_mask_key=None,
    chat_format="mistral",
)
# Audio Flamingo 3: Whisper-large tower, two-layer projector, Qwen2 decoder; a clip is one run
# of <sound> tokens (its processor splits a long clip into 30-second windows, run after run)
AUDIO_FLAMINGO_3 = _audio_llm(
    "audioflamingo3",
    AudioFlamingo3ForConditionalGeneration,
    whisper_pooled_tokens,
    audio_token="<sound>",
    tower_states=_audio_flamingo_3_states,
    processor_class=AudioFlamingo3Processor,
    special_tokens=(("audio_token", "<sound>"),),
    feature_mask_key="input_features_mask",
)
TEXT = Family("text", (), AutoModelForCausalLM)
# audio families, tried before the TEXT fallback
FAMILIES: tuple[Family, ...] = (
    QWEN2_AUDIO,
    QWEN2_5_OMNI,
    QWEN3_OMNI_MOE,
    VOXTRAL,
    AUDIO_FLAMINGO_3,
)


# every family's audio and vision placeholders: a forward expects clips (or images) for each,
# so a policy of any family, text included, must never sample one its vocabulary holds
PLACEHOLDER_TOKENS = frozenset(token for f in FAMILIES for _, token in f.special_tokens)


class UnknownFamilyError(ValueError):
    """A config whose model_type is neither a known audio LLM nor a causal LM."""


def supported_names() -> str:
    return ", ".join(f.name for f in (*FAMILIES, TEXT))


def family_of_config(config: dict[str, Any], source: str = "config") -> Family:
    """The family of a config.json's contents; an unknown model_type is refused, naming the
    supported ones. Any model_type that transformers loads as a causal LM is TEXT."""
    model_type = config.get("model_type")
    family = next((f for f in FAMILIES if model_type in f.model_types), None)
    if family is not None:
        return family
    if model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return TEXT
    raise UnknownFamilyError(
        f"{source}: model_type {model_type!r} is not a supported backbone; supported:"
        f" {supported_names()} (text: any causal LM transformers knows)"
    )


def config_path(path: Path | str) -> Path:
    """config.json of a model folder, or the file itself."""
    path = Path(path)
    return path / "config.json" if path.is_dir() else path


def read_config(path: Path | str) -> dict[str, Any]:
    """config.json of a model folder, or a config file."""
    file = config_path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no config.json at {path} (models load from local paths)")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file}: not JSON ({error})") from error


def family_of_path(path: Path | str) -> Family:
    """The family of the model saved at `path`, from its config.json's model_type."""
    return family_of_config(read_config(path), str(config_path(path)))


def family_of(base: PreTrainedModel) -> Family:
    """The family of a loaded (unwrapped) model."""
    return next((f for f in FAMILIES if isinstance(base, f.model_class)), TEXT)


def family_of_template(template: Any) -> Family:
    """The family a processor (or `SpeechChatTemplate`, or tokenizer: TEXT) was saved for."""
    family = getattr(template, "family", None)
    if isinstance(family, Family):
        return family
    return next(
        (f for f in FAMILIES if f.processor_class and isinstance(template, f.processor_class)),
        TEXT,
    )
