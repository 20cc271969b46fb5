"""Tiny GRM backbones built from configs, with a tokenizer trained here: there is no model hub.

    rewardlab tiny-grm --project demo_out --out demo_out/tiny-grm-init

The tokenizer is a byte-level BPE trained with `tokenizers` on the project's own texts (turns,
replies, rubrics, the judge prompt), wrapped as a `Qwen2Tokenizer` with the Qwen2-Audio
special tokens. The audio backbone is a `Qwen2AudioForConditionalGeneration` with a short
audio window (`chunk_length` seconds; the encoder needs exactly ``2 * max_source_positions``
feature frames, so the two move together); the text backbone is a `Qwen2ForCausalLM` that
reads transcripts. Weights are random: the point is a real architecture small enough to train
on a CPU in minutes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
    WhisperFeatureExtractor,
)

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


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Qwen2Tokenizer:
    """A byte-level BPE over `texts`, with Qwen2's special tokens and ChatML template."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
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
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def _merges(bpe: Tokenizer) -> list[tuple[str, str]]:
    """The trained merges as tuples: what `Qwen2Tokenizer(merges=...)` takes."""
    merges = json.loads(bpe.to_str())["model"]["merges"]
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]


def build_tiny_backbone(
    out: Path, texts: Iterable[str], *, audio: bool = True, size: TinySize = TinySize(), seed=0
) -> Path:
    """Write a randomly initialised backbone and its processor/tokenizer to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = train_tokenizer(texts, size.vocab_size)
    text_config = Qwen2Config(
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
    if not audio:
        model = Qwen2ForCausalLM(text_config)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        return out
    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "num_mel_bins": size.mel_bins,
            "d_model": size.audio_d_model,
            "encoder_layers": size.audio_layers,
            "encoder_attention_heads": size.audio_heads,
            "encoder_ffn_dim": size.audio_ffn,
            # the encoder wants exactly 2 * max_source_positions frames (conv stride 2)
            "max_source_positions": size.chunk_length * 16000 // size.hop_length // 2,
        },
        text_config=text_config.to_dict(),
        audio_token_id=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
        initializer_range=size.initializer_range,  # the projector; the audio tower keeps 0.02
    )
    model = Qwen2AudioForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    features = WhisperFeatureExtractor(
        feature_size=size.mel_bins,
        chunk_length=size.chunk_length,
        hop_length=size.hop_length,
        return_attention_mask=True,
    )
    processor = Qwen2AudioProcessor(feature_extractor=features, tokenizer=tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def build_tiny_grm(
    out: Path,
    examples: Iterable,
    rubrics: Iterable,
    k: int,
    *,
    audio: bool = True,
    size: TinySize = TinySize(),
    seed: int = 0,
) -> Path:
    """A tiny backbone with its tokenizer trained on `examples`, and the judge format it is
    trained with: rubrics by title and criterion ids, as a tiny tokenizer cannot compress
    rubric prose."""
    from rewardlab.grm.judge_format import JudgeFormat

    rubrics = list(rubrics)
    fmt = JudgeFormat(k=k, rubric_detail="ids")
    out = build_tiny_backbone(
        out, corpus_texts(examples, fmt, rubrics), audio=audio, size=size, seed=seed
    )
    fmt.save(out)
    return out
