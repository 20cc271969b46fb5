"""Voxtral read without mistral-common: its Tekken file as a fast tokenizer, its chats in
Mistral's instruct layout, its clips as whole windows; the same ids and features as Voxtral's
own tokenizer library and processor make.

``voxtral_reference/reference.json`` holds the ids mistral-common 1.13.1 built for two chats
shaped as the judge's and the policy's (``voxtral_reference/make_reference.py`` made it; that
library is not a dependency). The rest of Voxtral's mechanics (shared-history judge, training,
LoRA, silence, PPO's encode-once, resume) are checked with every family in test_families.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, VoxtralProcessor, WhisperFeatureExtractor

from rewardlab.backbones import family_of_path
from rewardlab.backbones.families import VOXTRAL
from rewardlab.backbones.speech_template import SpeechChatTemplate
from rewardlab.backbones.tekken import TEKKEN_FILE, read_tekken
from rewardlab.grm.encoding import ClipFeatures, audio_token_id

REFERENCE = Path(__file__).parent / "voxtral_reference"
WINDOW_SECONDS, HOP = 10, 160  # the tiny Voxtral's window (reference.json's tekken audio section)


def tone(seconds: float, hz: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> SpeechChatTemplate:
    """A Voxtral checkpoint's tokenizer and feature extractor files, read as rewardlab reads
    one: tekken.json and preprocessor_config.json, no chat template."""
    folder = tmp_path_factory.mktemp("voxtral")
    shutil.copy(REFERENCE / TEKKEN_FILE, folder / TEKKEN_FILE)
    extractor = WhisperFeatureExtractor(
        feature_size=128, chunk_length=WINDOW_SECONDS, hop_length=HOP
    )
    extractor.save_pretrained(folder)
    return SpeechChatTemplate.from_pretrained(folder, VOXTRAL)


def encode(template: SpeechChatTemplate, messages: list[dict]) -> tuple[list[int], list]:
    """rewardlab's encoding of a chat: rendered, tokenized, each clip's placeholder expanded
    to its tokens; and the clips' features."""
    features = ClipFeatures.for_template(template, media_root=None)
    refs = []
    for message in messages:
        for item in message["content"] if isinstance(message["content"], list) else []:
            if item["type"] == "audio":
                ref = SimpleNamespace(sha256=f"{item['hz']}-{item['seconds']}", path="tone.wav")
                features.pin(ref.sha256, tone(item["seconds"], item["hz"]))
                refs.append(ref)
    text = template.apply_chat_template(messages, tokenize=False)
    ids = template.tokenizer.encode(text, add_special_tokens=False)
    ids, clips, _ = features.expand(
        "chat", ids, audio_token_id(template), refs, ["user"] * len(refs), "audio"
    )
    return ids, clips


@pytest.mark.parametrize("chat", ["judge", "policy"])
def test_a_chat_is_the_ids_mistral_common_builds(template, chat):
    reference = json.loads((REFERENCE / "reference.json").read_text())[chat]
    ids, _ = encode(template, reference["messages"])
    assert ids == reference["ids"]
    # a 13-second clip is two 10-second windows: [BEGIN_AUDIO] then 2 x 125 [AUDIO]
    audio = template.tokenizer.convert_tokens_to_ids("[AUDIO]")
    assert audio == 24 and ids.count(audio) == {"judge": 125 + 250, "policy": 125 + 125}[chat]


def test_clips_are_the_features_voxtrals_processor_makes(template):
    """Voxtral's processor pads a clip to whole windows, takes its features in one pass and
    cuts them window by window; no frame mask (the tower hears every frame)."""
    messages = json.loads((REFERENCE / "reference.json").read_text())["judge"]["messages"]
    _, clips = encode(template, messages)
    processor = VoxtralProcessor(template.feature_extractor, template.tokenizer)
    window = WINDOW_SECONDS * 16000
    expected = processor._retrieve_input_features(
        [tone(2.5, 220.0), tone(13.0, 330.0)],
        max_source_positions=window // HOP,
        sampling_rate=16000,
        padding=True,
        truncation=False,
        pad_to_multiple_of=window,
        return_tensors="pt",
    )
    assert expected.shape == (3, 128, window // HOP) == (len(clips), *clips[0].shape)
    mine = torch.from_numpy(np.stack(clips).astype(np.float32))
    assert (mine - expected).abs().max() < 1e-2  # the features cache is float16


def test_a_tekken_checkpoint_saves_and_reads_back_as_tekken(template, tmp_path):
    template.save_pretrained(tmp_path)
    assert (tmp_path / TEKKEN_FILE).read_bytes() == (REFERENCE / TEKKEN_FILE).read_bytes()
    assert not (tmp_path / "tokenizer.json").exists()
    # a template mistral-common generated (one [AUDIO] per clip, expanded by its own
    # tokenizer) may sit beside tekken.json: the family's layout renders it all the same
    (tmp_path / "chat_template.jinja").write_text("{% for m in messages %}[AUDIO]{% endfor %}")
    again = SpeechChatTemplate.from_pretrained(tmp_path, VOXTRAL)
    messages = json.loads((REFERENCE / "reference.json").read_text())["policy"]["messages"]
    assert again.apply_chat_template(messages, tokenize=False) == template.apply_chat_template(
        messages, tokenize=False
    )
    assert len(read_tekken(tmp_path)) == len(template.tokenizer)


def test_the_tiny_voxtral_is_a_tekken_checkpoint(tmp_path):
    from rewardlab.grm.tiny import TinySize, build_tiny_backbone

    texts = ["Dialogue: [1] user: hello there. Verdict: A B C D E F G"] * 4
    out = build_tiny_backbone(tmp_path / "v", texts, size=TinySize(layers=1), family="voxtral")
    assert family_of_path(out) is VOXTRAL
    assert (out / TEKKEN_FILE).exists() and not (out / "tokenizer.json").exists()
    tekken = json.loads((out / TEKKEN_FILE).read_text())
    assert tekken["audio"]["chunk_length_s"] == 10 and tekken["audio"]["frame_rate"] == 12.5
    config = json.loads((out / "config.json").read_text())
    assert config["audio_token_id"] == 24
    # the same decoder settings as every tiny family's (not VoxtralConfig's defaults: a RoPE
    # base of 1e8, head_dim 128)
    text = config["text_config"]
    assert text["rope_parameters"]["rope_theta"] == Qwen2Config().rope_parameters["rope_theta"]
    assert text["head_dim"] * text["num_attention_heads"] == text["hidden_size"]
    # a 10-second window: 1000 frames, 500 states, 4 per token: 125 tokens, 12.5 a second
    assert VOXTRAL.audio_tokens(2 * config["audio_config"]["max_source_positions"]) == 125
