"""`SpeechChatTemplate`: the audio-and-text half of a multimodal processor.

A judge and a policy hear audio and read text: they need a family's tokenizer, its log-mel
feature extractor and its chat template, never its image or video processors. The Omni
processors load those too, and their video processor needs torchvision, so rewardlab reads an
Omni checkpoint through this view instead: the same three files a real checkpoint ships
(``tokenizer*``, ``preprocessor_config.json``, ``chat_template.jinja`` or
``chat_template.json``), the same prompt text, the same features.

    template = SpeechChatTemplate.from_pretrained("/models/Qwen2.5-Omni-7B", QWEN2_5_OMNI)
    text = template.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, WhisperFeatureExtractor

from rewardlab.backbones.families import Family


def audio_chat_template(family: Family) -> str:
    """A ChatML chat template, audio and text, that puts each clip where the family's own
    template does: its audio placeholder, between audio start and end tokens where the family
    has them (Qwen2.5-Omni: <|audio_bos|><|AUDIO|><|audio_eos|>; Qwen3-Omni:
    <|audio_start|><|audio_pad|><|audio_end|>; Audio Flamingo 3: <sound>), and the default
    system prompt only when none is given. For tiny builds: a real checkpoint brings its own."""
    named = dict(family.special_tokens)
    clip = named.get("audio_bos_token", "") + family.audio_token + named.get("audio_eos_token", "")
    return (
        "{% for message in messages %}"
        "{% if loop.first and message['role'] != 'system' %}"
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "<|im_start|>{{ message['role'] }}\n"
        "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
        "{% else %}{% for content in message['content'] %}"
        f"{{% if content['type'] == 'audio' %}}{clip}"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
        "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )


class SpeechChatTemplate:
    """Tokenizer + feature extractor + chat template of one audio family."""

    def __init__(self, family: Family, tokenizer: Any, feature_extractor: Any, chat_template: str):
        self.family, self.tokenizer = family, tokenizer
        self.feature_extractor, self.chat_template = feature_extractor, chat_template
        self.audio_token = family.audio_token

    @classmethod
    def from_pretrained(cls, path: Path | str, family: Family) -> SpeechChatTemplate:
        path = Path(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
        features = WhisperFeatureExtractor.from_pretrained(path)
        # the processor's template places audio; a checkpoint's tokenizer may carry a text-only one
        template = _processor_chat_template(path) or tokenizer.chat_template
        if not template:
            raise FileNotFoundError(
                f"{path}: no chat template (chat_template.jinja, chat_template.json or the"
                " tokenizer's)"
            )
        return cls(family, tokenizer, features, template)

    def apply_chat_template(self, messages: list[dict], **kwargs: Any) -> Any:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.chat_template, **kwargs
        )

    def save_pretrained(self, out: Path | str) -> None:
        """The files a checkpoint of the family ships: tokenizer, extractor, chat template."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.tokenizer.chat_template = self.chat_template
        self.tokenizer.save_pretrained(out)
        self.feature_extractor.save_pretrained(out)


def _processor_chat_template(path: Path) -> str | None:
    """A processor's chat template as a checkpoint saves it beside the tokenizer's files."""
    if (path / "chat_template.jinja").exists():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").exists():
        return json.loads((path / "chat_template.json").read_text())["chat_template"]
    return None
