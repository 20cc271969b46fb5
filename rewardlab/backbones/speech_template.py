"""`SpeechChatTemplate`: the audio-and-text half of a multimodal processor.

A judge and a policy hear audio and read text: they need a family's tokenizer, its log-mel
feature extractor and its chat template, never its image or video processors. The Omni
processors load those too, and their video processor needs torchvision, so rewardlab reads an
Omni checkpoint through this view instead: the same three files a real checkpoint ships
(``tokenizer*``, ``preprocessor_config.json``, ``chat_template.jinja`` or
``chat_template.json``), the same prompt text, the same features.

Voxtral is read the same way. Its processor tokenizes with mistral-common, which builds a chat
id by id; its checkpoint's ``tekken.json`` is read here as a fast tokenizer instead
(`backbones.tekken`), and the chat is rendered in Mistral's instruct layout
(`audio_chat_template`), which gives the same ids (tests/test_voxtral.py checks them against
mistral-common's own, recorded).

    template = SpeechChatTemplate.from_pretrained("/models/Qwen2.5-Omni-7B", QWEN2_5_OMNI)
    text = template.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, WhisperFeatureExtractor

from rewardlab.backbones.families import Family
from rewardlab.backbones.tekken import TEKKEN_FILE, has_tekken, read_tekken


def audio_chat_template(family: Family) -> str:
    """A chat template, audio and text, that puts each clip where the family's own template
    does: its audio placeholder, between audio start and end tokens where the family has them
    (Qwen2.5-Omni: <|audio_bos|><|AUDIO|><|audio_eos|>; Qwen3-Omni:
    <|audio_start|><|audio_pad|><|audio_end|>; Audio Flamingo 3: <sound>; Voxtral:
    [BEGIN_AUDIO][AUDIO]). ChatML families get the default system prompt only when none is
    given; a Qwen or AF3 checkpoint brings its own template, this one is for tiny builds.
    Voxtral's checkpoints carry none: `_mistral_template` is the one they are read with."""
    named = dict(family.special_tokens)
    clip = named.get("audio_bos_token", "") + family.audio_token + named.get("audio_eos_token", "")
    if family.chat_format == "mistral":
        return _mistral_template(clip)
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


def _mistral_template(clip: str) -> str:
    """Mistral's instruct layout as mistral-common builds it for Voxtral: ``<s>``, each user
    message ``[INST] ... [/INST]`` with each clip ``[BEGIN_AUDIO]`` and its audio tokens, each
    assistant message followed by ``</s>``. Voxtral takes no system message beside audio
    (mistral-common refuses one), so the system text opens the first user message, as
    mistral-common's earlier instruct versions place it."""
    items = (
        "{% set items = [{'type': 'text', 'text': message['content']}]"
        " if message['content'] is string else message['content'] %}"
        "{% for content in items %}"
        f"{{% if content['type'] == 'audio' %}}{clip}"
        "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}"
    )
    return (
        "{% set system = messages[0]['content'] if messages[0]['role'] == 'system' else '' %}"
        "<s>{% for message in messages if message['role'] != 'system' %}"
        "{% if loop.first and system and message['role'] != 'user' %}"
        "[INST]{{ system }}[/INST]{% endif %}"
        "{% if message['role'] == 'user' %}[INST]"
        "{% if loop.first and system %}{{ system }}\n\n{% endif %}"
        f"{items}[/INST]"
        f"{{% else %}}{items}</s>{{% endif %}}{{% endfor %}}"
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
        features = WhisperFeatureExtractor.from_pretrained(path)
        if has_tekken(path):
            # a Tekken checkpoint is rendered in its family's layout: the templates
            # mistral-common generates mark a clip with one [AUDIO] and leave the rest to its
            # own tokenizer, so a chat_template.jinja beside tekken.json is not read
            return cls(family, read_tekken(path), features, audio_chat_template(family))
        tokenizer = AutoTokenizer.from_pretrained(path)
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
        """The files a checkpoint of the family ships: tokenizer (a Tekken one as its
        ``tekken.json`` alone, whose layout is its family's), extractor, chat template."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if str(getattr(self.tokenizer, "vocab_file", "")).endswith(TEKKEN_FILE):
            self.tokenizer.save_pretrained(out, save_format="mistral")
        else:
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
