"""Mistral's Tekken tokenizer file (``tekken.json``): read as a fast tokenizer, and written.

A Voxtral checkpoint ships its tokenizer as ``tekken.json``: byte-level BPE ranks (tiktoken
style), the regex that splits text before BPE, and a table of special tokens by rank
(``<s>`` 1, ``[INST]`` 3, ``[/INST]`` 4, ``[AUDIO]`` 24, ``[BEGIN_AUDIO]`` 25 ...). transformers
converts it into a fast tokenizer without mistral-common (`convert_tekken_tokenizer`), which is
how rewardlab reads it: the rendered prompt text, special tokens included, then tokenizes like
any other family's. `write_tekken` writes the same format from a byte-level BPE trained here, so
that a tiny Voxtral is read exactly as a real checkpoint is.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.integrations.mistral.tokenizer import convert_tekken_tokenizer

TEKKEN_FILE = "tekken.json"
# the split Mistral's Tekken tokenizers make before BPE (every tekken.json carries its own)
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Voxtral's special tokens by rank; the ranks between are reserved (``<SPECIAL_i>``)
VOXTRAL_SPECIAL_TOKENS = {
    0: "<unk>",
    1: "<s>",
    2: "</s>",
    3: "[INST]",
    4: "[/INST]",
    5: "[AVAILABLE_TOOLS]",
    6: "[/AVAILABLE_TOOLS]",
    7: "[TOOL_RESULTS]",
    8: "[/TOOL_RESULTS]",
    9: "[TOOL_CALLS]",
    10: "[IMG]",
    11: "<pad>",
    12: "[IMG_BREAK]",
    13: "[IMG_END]",
    14: "[PREFIX]",
    15: "[MIDDLE]",
    16: "[SUFFIX]",
    17: "[SYSTEM_PROMPT]",
    18: "[/SYSTEM_PROMPT]",
    19: "[TOOL_CONTENT]",
    20: "[ARGS]",
    21: "[CALL_ID]",
    24: "[AUDIO]",
    25: "[BEGIN_AUDIO]",
    34: "[TRANSCRIBE]",
}


def has_tekken(path: Path | str) -> bool:
    """A checkpoint folder whose tokenizer is a Tekken file (and no HF tokenizer.json)."""
    path = Path(path)
    return (path / TEKKEN_FILE).is_file() and not (path / "tokenizer.json").is_file()


def read_tekken(path: Path | str) -> Any:
    """The fast tokenizer of the ``tekken.json`` in folder `path`: its special tokens are
    parsed in text, so a rendered chat tokenizes as mistral-common builds it id by id. The chat
    template is the caller's (a Tekken file has none)."""
    return convert_tekken_tokenizer(str(Path(path) / TEKKEN_FILE), chat_template="")


def tekken_pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Tekken's split, then bytes as characters: what the converted tokenizer runs."""
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(TEKKEN_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def train_tekken(
    texts: Iterable[str],
    out: Path | str,
    vocab_size: int,
    audio: dict[str, Any] | None = None,
    special_tokens: dict[int, str] = VOXTRAL_SPECIAL_TOKENS,
    reserved: int = 40,
) -> Path:
    """Train a byte-level BPE of about `vocab_size` tokens on `texts` with Tekken's split and
    write it to ``out/tekken.json``, `reserved` special ranks first (`special_tokens` by rank,
    ``<SPECIAL_i>`` between); `audio`: the file's audio section (`tekken_audio`)."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = tekken_pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=max(vocab_size - reserved, 257),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return write_tekken(bpe, out, special_tokens, reserved, audio)


def tekken_audio(window_seconds: float, hop_length: int, mel_bins: int) -> dict[str, Any]:
    """A Tekken file's audio section as Voxtral's reads: 12.5 tokens a second, clips padded to
    whole windows of `window_seconds` (30 in the checkpoints)."""
    return {
        "sampling_rate": 16000,
        "frame_rate": 12.5,
        "chunk_length_s": float(window_seconds),
        "audio_encoding_config": {
            "num_mel_bins": mel_bins,
            "hop_length": hop_length,
            "window_size": 400,
        },
    }


def write_tekken(
    bpe: Tokenizer,
    out: Path | str,
    special_tokens: dict[int, str],
    reserved: int,
    audio: dict[str, Any] | None = None,
) -> Path:
    """``out/tekken.json`` of a trained byte-level BPE: ranks 0..255 the single bytes in byte
    order (as Tekken requires), then every merged token in the order it was learned."""
    if max(special_tokens) >= reserved:
        raise ValueError(f"special token rank {max(special_tokens)} >= reserved {reserved}")
    to_byte = {char: byte for byte, char in bytes_to_unicode().items()}
    vocab = bpe.get_vocab()
    learned = sorted(vocab, key=vocab.get)
    singles = sorted((t for t in learned if len(t) == 1), key=to_byte.get)
    ranked = singles + [t for t in learned if len(t) > 1]
    if len(singles) != 256:
        raise ValueError(f"a Tekken vocabulary needs all 256 bytes, the BPE has {len(singles)}")
    content = {
        "config": {
            "pattern": TEKKEN_PATTERN,
            "default_vocab_size": reserved + len(ranked),
            "default_num_special_tokens": reserved,
            "version": "v7",
        },
        "vocab": [
            _vocab_entry(rank, bytes(to_byte[c] for c in token))
            for rank, token in enumerate(ranked)
        ],
        "special_tokens": [
            {
                "rank": rank,
                "token_str": special_tokens.get(rank, f"<SPECIAL_{rank}>"),
                "is_control": True,
            }
            for rank in range(reserved)
        ],
    }
    if audio is not None:
        content["audio"] = audio
    path = Path(out) / TEKKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path


def _vocab_entry(rank: int, token: bytes) -> dict[str, Any]:
    """One BPE rank as a Tekken file lists it: its bytes, and its text where they are UTF-8."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {"rank": rank, "token_bytes": base64.b64encode(token).decode(), "token_str": text}
