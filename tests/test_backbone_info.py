"""Backbone families and `rewardlab backbone-info`: every audio LLM family of transformers that
rewardlab knows is detected from its config.json, built on the meta device, and sized part by
part; its audio token rate is the one its own tower produces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import (
    AudioFlamingo3Config,
    Qwen2_5OmniConfig,
    Qwen2_5OmniThinkerConfig,
    Qwen2AudioConfig,
    Qwen2Config,
    Qwen3OmniMoeThinkerConfig,
    VoxtralConfig,
)
from transformers.models.qwen3_omni_moe import modeling_qwen3_omni_moe

from rewardlab.backbones import (
    FAMILIES,
    TEXT,
    UnknownFamilyError,
    describe_backbone,
    family_of_config,
)
from rewardlab.cli import main
from rewardlab.grm.grm_config import BackboneArguments

TEXT_SIZE = dict(
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)
WHISPER_SIZE = dict(
    d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128
)
ENCODER_SIZE = dict(
    hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128
)
VISION_SIZE = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)
MROPE = {"rope_type": "default", "mrope_section": [2, 3, 3]}  # sums to half the head dim (16)


def tiny_config(name: str):
    """A few-hundred-thousand-parameter config of each family."""
    if name == "qwen2_audio":
        return Qwen2AudioConfig(
            audio_config=dict(model_type="qwen2_audio_encoder", **WHISPER_SIZE),
            text_config=dict(model_type="qwen2", **TEXT_SIZE),
        )
    if name == "qwen2_5_omni":
        return Qwen2_5OmniThinkerConfig(
            audio_config=dict(output_dim=64, n_window=50, **WHISPER_SIZE),
            text_config=dict(rope_scaling=MROPE, **TEXT_SIZE),
            vision_config=VISION_SIZE,
        )
    if name == "qwen3_omni_moe":
        return Qwen3OmniMoeThinkerConfig(
            audio_config=dict(
                output_dim=64, n_window=50, downsample_hidden_size=16, **WHISPER_SIZE
            ),
            text_config=dict(
                rope_scaling=MROPE,
                num_experts=4,
                num_experts_per_tok=2,
                moe_intermediate_size=32,
                **TEXT_SIZE,
            ),
            vision_config=dict(deepstack_visual_indexes=[0], **VISION_SIZE),
        )
    if name == "voxtral":
        return VoxtralConfig(
            audio_config=dict(num_mel_bins=128, **ENCODER_SIZE),
            text_config=dict(model_type="llama", **TEXT_SIZE),
        )
    if name == "audioflamingo3":
        return AudioFlamingo3Config(
            audio_config=dict(num_mel_bins=128, **ENCODER_SIZE | {"intermediate_size": 64}),
            text_config=dict(model_type="qwen2", **TEXT_SIZE),
        )
    raise KeyError(name)


def save_config(config, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_dict()))
    return folder


ATTENTION = BackboneArguments.lora_target


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_each_family_is_sized_part_by_part_as_the_built_model_is(family, tmp_path):
    config = tiny_config(family.name)
    folder = save_config(config, tmp_path / family.name)
    info = describe_backbone(folder, lora_rank=4, lora_target=ATTENTION)
    assert info.family is family_of_config(json.loads((folder / "config.json").read_text()))
    assert info.family is family

    model = family.model_class._from_config(config)  # the real thing, random weights, on CPU
    assert info.total == sum(p.numel() for p in model.parameters())
    assert info.parameters["audio tower"] == sum(
        p.numel() for p in family.audio_tower(model).parameters()
    )
    language_model = family.language_model(model)
    expected_lm = sum(p.numel() for p in language_model.parameters())
    if model.lm_head.weight is not model.get_input_embeddings().weight:  # untied: its own
        expected_lm += model.lm_head.weight.numel()
    assert info.parameters["language model"] + info.parameters["experts"] == expected_lm
    assert (info.parameters["experts"] > 0) == (family.name == "qwen3_omni_moe")

    # LoRA on the language model's attention: q, k, v, o of each of its 2 layers
    assert info.lora_modules == 4 * 2
    attention = [
        m
        for n, m in language_model.named_modules()
        if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj"))
    ]
    assert info.lora_parameters == sum(4 * (m.in_features + m.out_features) for m in attention)
    assert info.memory_bytes(8) == pytest.approx(info.memory_bytes(1) / 8)
    assert info.memory_bytes(1) == info.total * 2 + info.lora_parameters * 16


def tower_tokens(family, model, frames: int) -> int:
    """Audio tokens the family's own model makes of a clip of `frames` feature frames."""
    tower = family.audio_tower(model)
    if family.name == "qwen3_omni_moe":
        return int(modeling_qwen3_omni_moe._get_feat_extract_output_lengths(torch.tensor(frames)))
    if family.name == "voxtral":  # runs whole 30-second windows: count what comes out
        features = torch.randn(frames // 3000, 128, 3000)
        with torch.no_grad():
            return model.get_audio_features(features).pooler_output.shape[0]
    return int(tower._get_feat_extract_output_lengths(torch.tensor(frames))[1])


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_audio_tokens_per_clip_are_the_families_own(family):
    model = family.model_class._from_config(tiny_config(family.name))
    lengths = (3000, 6000) if family.name == "voxtral" else (1, 99, 100, 437, 1000, 3000, 4123)
    for frames in lengths:
        assert family.audio_tokens(frames) == tower_tokens(family, model, frames), frames
    rates = {"qwen3_omni_moe": 13.0, "voxtral": 12.5}
    assert family.tokens_per_second() == rates.get(family.name, 25.0)


def test_a_full_omni_checkpoint_is_read_as_its_thinker(tmp_path):
    thinker = tiny_config("qwen2_5_omni")
    full = Qwen2_5OmniConfig(thinker_config=thinker.to_dict(), enable_audio_output=False)
    alone = describe_backbone(save_config(thinker, tmp_path / "thinker"), lora_target=ATTENTION)
    whole = describe_backbone(save_config(full, tmp_path / "full"), lora_target=ATTENTION)
    assert whole.model_type == "qwen2_5_omni" and alone.model_type == "qwen2_5_omni_thinker"
    assert whole.parameters == alone.parameters  # the talker is never built
    assert any("talker is never loaded" in note for note in whole.notes)


def test_unknown_model_types_are_refused_naming_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(UnknownFamilyError) as error:
        describe_backbone(tmp_path, lora_target=ATTENTION)
    for name in ("qwen2_audio", "qwen2_5_omni", "qwen3_omni_moe", "voxtral", "audioflamingo3"):
        assert name in str(error.value)
    assert "'wav2vec2'" in str(error.value)
    # any causal LM is the text family
    assert family_of_config(Qwen2Config(**TEXT_SIZE).to_dict()) is TEXT


def test_a_text_lm_is_sized_as_its_language_model(tmp_path):
    config = Qwen2Config(**TEXT_SIZE)
    info = describe_backbone(save_config(config, tmp_path / "text"), lora_target=r".*\.q_proj")
    assert info.family is TEXT and info.family.tokens_per_second() == 0
    total = sum(p.numel() for p in TEXT.model_class.from_config(config).parameters())
    assert info.parameters["language model"] == info.total == total
    assert info.lora_modules == 2 and "no audio" in info.table()


def test_backbone_info_command_prints_the_table_and_json(tmp_path, capsys):
    folder = save_config(tiny_config("qwen3_omni_moe"), tmp_path / "moe")
    assert main(["backbone-info", str(folder / "config.json"), "--lora-rank", "8"]) == 0
    table = capsys.readouterr().out
    assert "qwen3_omni_moe" in table and "audio tokens per second of speech: 13" in table
    assert "routed experts" in table and "8 GPUs" in table
    assert main(["backbone-info", str(folder), "--json", "--gpus", "1", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["parameters"]["experts"] > 0 and set(report["memory_gib_per_gpu"]) == {"1", "4"}
    assert main(["backbone-info", str(tmp_path / "absent")]) == 1
    assert "no config.json" in capsys.readouterr().err
