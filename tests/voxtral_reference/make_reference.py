"""Records what mistral-common builds for Voxtral chats, for tests/test_voxtral.py.

mistral-common (Voxtral's own tokenizer library) is not a rewardlab dependency: it pins numpy
below 2.4. This script is how ``reference.json`` was made, with mistral-common 1.13.1 on the
path beside rewardlab:

    pip install --target /tmp/mc --no-deps mistral_common==1.13.1 tiktoken pydantic-extra-types \\
        pycountry jsonschema jsonschema-specifications referencing rpds-py attrs
    PYTHONPATH=/tmp/mc python tests/voxtral_reference/make_reference.py

It trains a small Tekken file (``tekken.json``, with the audio section of a tiny Voxtral: 10 s
windows at a 10 ms hop, 12.5 tokens a second) and encodes each conversation of
``CONVERSATIONS`` with mistral-common's instruct tokenizer, clips as sine tones. The chats are
shaped as rewardlab's judge and policy send them (a system text, text and audio items, an
assistant turn between user turns); Voxtral takes no system message beside audio, so the
system text opens the first user message. Adjacent text items are one text, as rewardlab's
template renders them (mistral-common would join separate text chunks with a blank line).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf
from mistral_common.protocol.instruct.chunk import AudioChunk, RawAudio, TextChunk
from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

from rewardlab.backbones.tekken import tekken_audio, train_tekken

HERE = Path(__file__).parent
CORPUS = [
    "You are a careful judge of spoken dialogue. Dialogue: [1] user: (transcript) I lost my"
    " keys again and I am late. [2] assistant: Oh no, that sounds stressful! Verdict: A B C D E"
    " F G. Response 1: Take a breath. Response 2: Check your coat pockets first.",
] * 8
CONVERSATIONS = {
    "judge": [
        {"role": "system", "content": "You are a careful judge of spoken dialogue."},
        {"role": "user", "content": [
            {"type": "text", "text": "Dialogue:\n"},
            {"type": "text", "text": "[1] user: "},
            {"type": "audio", "seconds": 2.5, "hz": 220.0},
            {"type": "text", "text": "(transcript) I lost my keys again.\n"},
            {"type": "text", "text": "[2] assistant: "},
            {"type": "text", "text": "Oh no, that sounds stressful!\n"},
            {"type": "text", "text": "[3] user: "},
            {"type": "audio", "seconds": 13.0, "hz": 330.0},
            {"type": "text", "text": "(transcript) I am late.\n"},
            {"type": "text", "text": "Response 1: Take a breath.\nResponse 2: Check your"
             " coat pockets first.\nScale (Response 1 vs Response 2): A much worse, G much"
             " better."},
        ]},
    ],
    "policy": [
        {"role": "system", "content": "You are a warm, attentive voice assistant."},
        {"role": "user", "content": [{"type": "audio", "seconds": 4.0, "hz": 440.0}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Oh no, take a breath."}]},
        {"role": "user", "content": [{"type": "audio", "seconds": 1.0, "hz": 550.0}]},
    ],
}  # fmt: skip


def tone(seconds: float, hz: float) -> np.ndarray:
    """The clip an audio item stands for: a sine tone at 16 kHz."""
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _chunk(item: dict):
    if item["type"] == "text":
        return TextChunk(text=item["text"])
    buffer = io.BytesIO()
    sf.write(buffer, tone(item["seconds"], item["hz"]), 16000, format="WAV")
    data = base64.b64encode(buffer.getvalue()).decode()
    return AudioChunk(input_audio=RawAudio(data=data, format="wav"))


def _joined(items: list[dict]) -> list[dict]:
    """Adjacent text items as one."""
    out: list[dict] = []
    for item in items:
        if item["type"] == "text" and out and out[-1]["type"] == "text":
            out[-1] = {"type": "text", "text": out[-1]["text"] + item["text"]}
        else:
            out.append(dict(item))
    return out


def mistral_messages(messages: list[dict]) -> list:
    system = messages[0]["content"] if messages[0]["role"] == "system" else None
    out = []
    for message in messages[1 if system else 0 :]:
        items = message["content"]
        if message["role"] == "user" and system is not None and not out:
            items = [{"type": "text", "text": system + "\n\n"}, *items]
        chunks = [_chunk(item) for item in _joined(items)]
        kind = AssistantMessage if message["role"] == "assistant" else UserMessage
        out.append(kind(content=chunks))
    return out


def main() -> None:
    train_tekken(CORPUS, HERE, vocab_size=400, audio=tekken_audio(10, 160, 128))
    tokenizer = MistralTokenizer.from_file(str(HERE / "tekken.json"))
    reference = {}
    for name, messages in CONVERSATIONS.items():
        request = ChatCompletionRequest(messages=mistral_messages(messages))
        reference[name] = {
            "messages": messages,
            "ids": tokenizer.encode_chat_completion(request).tokens,
        }
    (HERE / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")


if __name__ == "__main__":
    main()
