"""Tiny GRM backbones built from configs, with a tokenizer trained here: there is no model hub.

    rewardlab tiny-grm --project demo_out --out demo_out/tiny-grm-init

    rewardlab tiny-grm --project demo_out --out tiny-omni --family qwen2_5_omni

The tokenizer is a byte-level BPE trained with `tokenizers` on the project's own texts (turns,
replies, rubrics, the judge prompt), wrapped as a `Qwen2Tokenizer` with the family's special
tokens (Voxtral's: written as a Tekken file with Mistral's special tokens). Each family is
built as its checkpoints are laid out, with a short audio window (`chunk_length` seconds):

- ``qwen2_audio``: a `Qwen2AudioForConditionalGeneration` and its processor (the encoder needs
  exactly ``2 * max_source_positions`` feature frames, so the two move together);
- ``qwen2_5_omni``: a `Qwen2_5OmniThinkerForConditionalGeneration` (multimodal RoPE, a tower
  that reads 2-second chunks and ends in its own projection, a one-layer vision encoder that
  audio never runs), read through `SpeechChatTemplate` with Qwen2.5-Omni's chat template;
- ``qwen3_omni_moe``: a `Qwen3OmniMoeThinkerForConditionalGeneration` (a mixture-of-experts
  decoder, interleaved multimodal RoPE, a tower of 2-D convs), read the same way;
- ``audioflamingo3``: an `AudioFlamingo3ForConditionalGeneration` (Whisper tower, two-layer
  projector, Qwen2 decoder) and its processor, each clip one run of ``<sound>`` tokens;
- ``voxtral``: a `VoxtralForConditionalGeneration` (Whisper tower over whole windows at
  Whisper's 10 ms hop, a projector over four states at a time, a Llama decoder) whose
  tokenizer is a Tekken file (``tekken.json``, trained here the same way), read as a Voxtral
  checkpoint is;
- ``text``: a `Qwen2ForCausalLM` that reads transcripts.

Weights are random: the point is a real architecture small enough to train on a CPU in minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AudioFlamingo3Config,
    AudioFlamingo3ForConditionalGeneration,
    AudioFlamingo3Processor,
    LlamaConfig,
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    Qwen3OmniMoeThinkerConfig,
    Qwen3OmniMoeThinkerForConditionalGeneration,
    VoxtralConfig,
    VoxtralForConditionalGeneration,
    WhisperFeatureExtractor,
)

from rewardlab.backbones.families import (
    AUDIO_FLAMINGO_3,
    FAMILIES,
    QWEN2_5_OMNI,
    QWEN2_AUDIO,
    QWEN3_OMNI_MOE,
    TEXT,
    VOXTRAL,
    Family,
)
from rewardlab.backbones.speech_template import SpeechChatTemplate, audio_chat_template
from rewardlab.backbones.tekken import read_tekken, tekken_audio, train_tekken

FAMILY_BY_NAME = {family.name: family for family in FAMILIES}  # model_type -> family
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
]
# ChatML, as Qwen2 uses it; audio backbones use Qwen2AudioProcessor's own template.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class TinySize:
    """Sizes of a tiny backbone. The defaults train on a 2-core CPU in minutes."""

    vocab_size: int = 1024
    hidden_size: int = 128
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate_size: int = 256
    audio_d_model: int = 64
    audio_layers: int = 2
    audio_heads: int = 4
    audio_ffn: int = 128
    mel_bins: int = 128
    # seconds of audio the encoder sees at once; a longer clip is heard in window-sized segments
    chunk_length: int = 10
    # feature frame step in samples at 16 kHz: 20 ms, twice Whisper's 10 ms, halves the audio
    # tokens and the encoder's work; rate and pitch cues survive it
    hop_length: int = 320
    max_positions: int = 2048
    # std of the language model's random initial weights; None: hidden_size ** -0.5.
    # Transformers' default 0.02 suits widths in the thousands; at width ~100 a from-scratch
    # judge learned nothing in hundreds of steps where ~0.1 learned
    init_std: float | None = None

    @property
    def initializer_range(self) -> float:
        return self.init_std if self.init_std is not None else self.hidden_size**-0.5


def corpus_texts(examples: Iterable, fmt: Any, rubrics: Iterable) -> list[str]:
    """Every text a judge prompt can contain: turns, replies, critiques, rubrics, the format."""
    from rewardlab.rubrics import format_rubric

    texts = [fmt.system, fmt.scale_text(), fmt.verdict_marker]
    texts += [text for r in rubrics for text in (format_rubric(r), fmt.rubric_text(r))]
    for example in examples:
        task = example.item.task
        texts += [t.text or "" for t in example.item.dialogue.turns]
        texts += [task.policy.text, task.reference.text, example.critique or ""]
    return texts


def train_tokenizer(
    texts: Iterable[str], vocab_size: int, family: Family = QWEN2_AUDIO
) -> Qwen2Tokenizer:
    """A byte-level BPE over `texts`, with Qwen2's special tokens (and the family's named
    ones: ``tokenizer.audio_token`` ...) and ChatML template."""
    named = dict(family.special_tokens)
    special = SPECIAL_TOKENS + [t for t in named.values() if t not in SPECIAL_TOKENS]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    vocab = bpe.get_vocab()
    merges = _merges(bpe)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special[1:],
        model_specific_special_tokens=named or None,
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _merges(bpe: Tokenizer) -> list[tuple[str, str]]:
    """The trained merges as tuples: what `Qwen2Tokenizer(merges=...)` takes."""
    merges = json.loads(bpe.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def build_tiny_backbone(
    out: Path,
    texts: Iterable[str],
    *,
    audio: bool = True,
    size: TinySize = TinySize(),
    seed=0,
    family: str = QWEN2_AUDIO.name,
) -> Path:
    """Write a randomly initialised backbone of `family` (`text` where not `audio`) and its
    processor/tokenizer to `out`."""
    name = family if audio else TEXT.name
    if name not in TINY_BUILDERS and name != TEXT.name:
        raise ValueError(
            f"no tiny {name!r}: tiny builds exist for {', '.join([*TINY_BUILDERS, 'text'])}"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if name == VOXTRAL.name:  # a Tekken file, read back as a checkpoint's is
        size = _voxtral_size(size)
        audio = tekken_audio(size.chunk_length, size.hop_length, size.mel_bins)
        train_tekken(texts, out, size.vocab_size, audio)
        tokenizer = read_tekken(out)
    else:
        tokenizer = train_tokenizer(texts, size.vocab_size, FAMILY_BY_NAME.get(name, TEXT))
    text_config = _text_config(tokenizer, size)
    if name == TEXT.name:
        model, template = Qwen2ForCausalLM(text_config), tokenizer
    else:
        model, template = TINY_BUILDERS[name](tokenizer, text_config, size)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    template.save_pretrained(out)
    return out


def _text_config(tokenizer: Any, size: TinySize, config_class: type = Qwen2Config) -> Any:
    """The tiny decoder's config: a Qwen2 unless `config_class` says otherwise (Voxtral's Llama),
    the same sizes and defaults (RoPE base 1e4) either way."""
    return config_class(
        vocab_size=len(tokenizer),
        hidden_size=size.hidden_size,
        intermediate_size=size.intermediate_size,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads,
        max_position_embeddings=size.max_positions,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        initializer_range=size.initializer_range,
    )


def _feature_extractor(size: TinySize) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(
        feature_size=size.mel_bins,
        chunk_length=size.chunk_length,
        hop_length=size.hop_length,
        return_attention_mask=True,
    )


def _window_frames(size: TinySize) -> int:
    """Feature frames in one audio window."""
    return size.chunk_length * 16000 // size.hop_length


def _whisper_tower(size: TinySize, **extra: Any) -> dict[str, Any]:
    """A Whisper-style audio tower's config in Whisper's names, which every family's tower
    config takes (Qwen2-Audio's, Audio Flamingo 3's, Voxtral's, the Omni thinkers'); `extra` adds
    to it."""
    return {
        "num_mel_bins": size.mel_bins,
        "d_model": size.audio_d_model,
        "encoder_layers": size.audio_layers,
        "encoder_attention_heads": size.audio_heads,
        "encoder_ffn_dim": size.audio_ffn,
        # the encoder wants exactly 2 * max_source_positions frames (conv stride 2)
        "max_source_positions": _window_frames(size) // 2,
        **extra,
    }


def _qwen2_audio(tokenizer, text_config: Qwen2Config, size: TinySize):
    config = Qwen2AudioConfig(
        audio_config=_whisper_tower(size, model_type="qwen2_audio_encoder"),
        text_config=text_config.to_dict(),
        audio_token_id=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
        initializer_range=size.initializer_range,  # the projector; the audio tower keeps 0.02
    )
    processor = Qwen2AudioProcessor(feature_extractor=_feature_extractor(size), tokenizer=tokenizer)
    return Qwen2AudioForConditionalGeneration(config), processor


def _audio_flamingo_3(tokenizer, text_config: Qwen2Config, size: TinySize):
    config = AudioFlamingo3Config(
        audio_config=_whisper_tower(size, model_type="audioflamingo3_encoder"),
        text_config=text_config.to_dict(),
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_FLAMINGO_3.audio_token),
    )
    processor = AudioFlamingo3Processor(
        feature_extractor=_feature_extractor(size),
        tokenizer=tokenizer,
        chat_template=audio_chat_template(AUDIO_FLAMINGO_3),
        audio_token=AUDIO_FLAMINGO_3.audio_token,
    )
    return AudioFlamingo3ForConditionalGeneration(config), processor


def mrope_section(head_dim: int) -> list[int]:
    """Qwen2.5-Omni's split of the rotary frequencies over (time, height, width), 1 : 1.5 :
    1.5 as in its checkpoints ([16, 24, 24] at head_dim 128); the parts sum to head_dim / 2."""
    half = head_dim // 2
    time = half // 4
    height = (half - time) // 2
    return [time, height, half - time - height]


def _omni_parts(family: Family, tokenizer, size: TinySize) -> dict[str, Any]:
    """What the two Omni thinkers' configs share: audio tower sizes, a one-layer vision
    encoder that audio never runs (kept: it is the real layout), the special token ids."""
    named = {name: tokenizer.convert_tokens_to_ids(token) for name, token in family.special_tokens}
    return {
        # the tower reads clips in chunks of 2 * n_window frames: 2 s here (1 s in the
        # checkpoints, at twice the frame rate)
        "audio_config": _whisper_tower(
            size, n_window=16000 // size.hop_length, output_dim=size.hidden_size
        ),
        "vision_config": {
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": size.hidden_size,
        },
        "audio_token_id": named["audio_token"],
        "image_token_id": named["image_token"],
        "video_token_id": named["video_token"],
        "audio_start_token_id": named["audio_bos_token"],
        "audio_end_token_id": named["audio_eos_token"],
        "vision_start_token_id": named["vision_bos_token"],
        "vision_end_token_id": named["vision_eos_token"],
        "user_token_id": tokenizer.convert_tokens_to_ids("<|im_start|>"),
        "initializer_range": size.initializer_range,
        "tie_word_embeddings": True,
    }


def _mrope(size: TinySize, **extra) -> dict[str, Any]:
    section = mrope_section(size.hidden_size // size.heads)
    return {"rope_type": "default", "rope_theta": 1e6, "mrope_section": section, **extra}


def _qwen2_5_omni(tokenizer, text_config: Qwen2Config, size: TinySize):
    parts = _omni_parts(QWEN2_5_OMNI, tokenizer, size)
    parts["vision_config"]["fullatt_block_indexes"] = [0]
    for name in ("audio", "image", "video"):  # this config names them *_token_index
        parts[f"{name}_token_index"] = parts.pop(f"{name}_token_id")
    text = text_config.to_dict() | {"rope_parameters": _mrope(size)}
    config = Qwen2_5OmniThinkerConfig(text_config=text, **parts)
    template = SpeechChatTemplate(
        QWEN2_5_OMNI, tokenizer, _feature_extractor(size), audio_chat_template(QWEN2_5_OMNI)
    )
    return Qwen2_5OmniThinkerForConditionalGeneration(config), template


def _qwen3_omni_moe(tokenizer, text_config: Qwen2Config, size: TinySize):
    """Qwen3-Omni's thinker: a mixture-of-experts decoder (4 experts, 2 per token, here),
    interleaved multimodal RoPE, a tower of three 2-D convs over 1-second chunks."""
    parts = _omni_parts(QWEN3_OMNI_MOE, tokenizer, size)
    parts["audio_config"] |= {"downsample_hidden_size": 16, "n_window_infer": 400}
    parts["vision_config"] |= {"deepstack_visual_indexes": [0], "patch_size": 16}
    text = text_config.to_dict() | {
        "rope_parameters": _mrope(size, interleaved=True),
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": size.intermediate_size // 2,
        "head_dim": size.hidden_size // size.heads,
    }
    config = Qwen3OmniMoeThinkerConfig(text_config=text, **parts)
    template = SpeechChatTemplate(
        QWEN3_OMNI_MOE, tokenizer, _feature_extractor(size), audio_chat_template(QWEN3_OMNI_MOE)
    )
    return Qwen3OmniMoeThinkerForConditionalGeneration(config), template


def _voxtral_size(size: TinySize) -> TinySize:
    """Whisper's own 10 ms hop: a window's states must group by four for the projector (a
    10-second window: 1000 frames, 500 states, 125 tokens); its ffn width is the group's."""
    return replace(size, hop_length=160, audio_ffn=4 * size.audio_d_model)


def _voxtral(tokenizer, text_config: Qwen2Config, size: TinySize):
    """Its decoder is a Llama of the other tiny decoders' sizes (not VoxtralConfig's defaults:
    a RoPE base of 1e8, head_dim 128), with Voxtral's own RMSNorm eps (1e-5)."""
    llama = _text_config(tokenizer, size, LlamaConfig)
    llama.bos_token_id = tokenizer.bos_token_id
    # the held-out figure in training/README.md was measured with it; at 1e-6 (the Qwen2
    # decoders') the same weights reached 0.562: learning from random init is that fragile
    llama.rms_norm_eps = 1e-5
    config = VoxtralConfig(
        audio_config=_whisper_tower(size),
        text_config=llama.to_dict(),
        audio_token_id=tokenizer.convert_tokens_to_ids(VOXTRAL.audio_token),
    )
    template = SpeechChatTemplate(
        VOXTRAL, tokenizer, _feature_extractor(size), audio_chat_template(VOXTRAL)
    )
    return VoxtralForConditionalGeneration(config), template


# family name -> (tokenizer, text config, size) -> (random-init model, processor or template);
# the CLI's --family choices (`commands.options.TINY_FAMILIES`) are its keys
TINY_BUILDERS = {
    QWEN2_AUDIO.name: _qwen2_audio,
    QWEN2_5_OMNI.name: _qwen2_5_omni,
    QWEN3_OMNI_MOE.name: _qwen3_omni_moe,
    AUDIO_FLAMINGO_3.name: _audio_flamingo_3,
    VOXTRAL.name: _voxtral,
}


def build_tiny_grm(
    out: Path,
    examples: Iterable,
    rubrics: Iterable,
    k: int,
    *,
    audio: bool = True,
    size: TinySize = TinySize(),
    seed: int = 0,
    family: str = QWEN2_AUDIO.name,
) -> Path:
    """A tiny backbone of `family` with its tokenizer trained on `examples`, and the judge
    format it is trained with: rubrics by title and criterion ids, as a tiny tokenizer cannot
    compress rubric prose."""
    from rewardlab.grm.judge_format import JudgeFormat

    rubrics = list(rubrics)
    fmt = JudgeFormat(k=k, rubric_detail="ids")
    out = build_tiny_backbone(
        out, corpus_texts(examples, fmt, rubrics), audio=audio, size=size, seed=seed, family=family
    )
    fmt.save(out)
    return out
