"""A clip longer than the audio encoder's window is never cut: it is split into equal
window-sized segments, each its own run of audio tokens, for the judge and the policy alike;
a tower that hears whole windows (Voxtral) gets consecutive windows, the last one padded. The
tiny backbones' window is 10 s; the clip here is 2.5 windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE, speechlike

from rewardlab.audio import audio_ref, write_audio
from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts
from rewardlab.rl.policy import load_policy
from rewardlab.rl.prompts import PolicyPromptEncoder, PPOPrompt, collate_prompts
from rewardlab.schema import Order

RATE = 16_000


@pytest.fixture(scope="module", params=["qwen2_audio", "voxtral"])
def long_world(request, tmp_path_factory, demo_world):
    """A tiny audio backbone, and one demo item re-voiced in a media folder of its own: every
    earlier clip 2 s of speech-like sound, the last user turn 2.5 windows long, and a twin
    whose last half-window is silent."""
    root = tmp_path_factory.mktemp(f"long-clips-{request.param}")
    data = load_examples(demo_world(n=24, seed=3))
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    backbone = build_tiny_backbone(root / "tiny", texts, size=TINY_GRM_SIZE, family=request.param)
    grm = GenerativeRewardModel.load(backbone, media_root=root / "media")
    window = grm.encoder.clip_features.extractor.n_samples
    long = speechlike(2.5 * window / RATE, seed=7)
    quiet_tail = long.copy()
    quiet_tail[2 * window :] = 0
    write_audio(root / "media" / "short.wav", speechlike(2.0), RATE)
    write_audio(root / "media" / "long.wav", long, RATE)
    write_audio(root / "media" / "quiet-tail.wav", quiet_tail, RATE)

    item = data.examples[0].item
    last = max(i for i, t in enumerate(item.dialogue.turns[: item.task.turn_index + 1]) if t.audio)

    def voiced(last_clip: str) -> JudgeItem:
        turns = [
            turn.model_copy(
                update={"audio": audio_ref(root / "media", last_clip if i == last else "short.wav")}
            )
            if turn.audio
            else turn
            for i, turn in enumerate(item.dialogue.turns)
        ]
        return JudgeItem(item.task, item.dialogue.model_copy(update={"turns": turns}), item.rubric)

    return {
        "root": root,
        "backbone": backbone,
        "grm": grm,
        "window": window,
        "long": voiced("long.wav"),
        "quiet_tail": voiced("quiet-tail.wav"),
        "clips": sum(1 for t in item.dialogue.turns[: item.task.turn_index + 1] if t.audio),
    }


def test_the_judge_hears_a_long_clip_in_window_sized_segments(long_world):
    grm, window = long_world["grm"], long_world["window"]
    encoded = grm.encoder.encode(long_world["long"], Order.POLICY_FIRST)
    assert len(encoded.features) == long_world["clips"] - 1 + 3  # the long clip: 3 segments
    frames_per_window = encoded.features[0].shape[-1]
    segments = encoded.feature_lengths[-3:]
    if grm.family.hears_whole_windows:  # two whole windows, then the last half padded
        assert segments == [frames_per_window] * 3
        assert np.abs(encoded.features[-1][:, -frames_per_window // 4 :]).std() < 1e-3
    else:
        assert all(frames_per_window // 2 < n <= frames_per_window for n in segments)
        hop = window // frames_per_window
        assert abs(sum(segments) - 2.5 * window / hop) <= 3  # all of it, give or take rounding
    audio_id = grm.encoder.audio_token_id
    expected = sum(grm.family.audio_tokens(n) for n in encoded.feature_lengths)
    assert encoded.history_ids.count(audio_id) == expected


def test_what_is_past_the_window_reaches_the_verdict(long_world):
    grm = long_world["grm"]
    scores = grm.judge([long_world["long"], long_world["quiet_tail"]], batch_size=2)
    # the two clips differ only after two windows: a judge that cut at one window could not
    # tell them apart
    assert np.abs(scores.probs[0] - scores.probs[1]).max() > 1e-4


def test_the_policy_reads_the_same_segments(long_world):
    policy, template = load_policy(long_world["backbone"], reference=False)
    item = long_world["long"]
    encoder = PolicyPromptEncoder(template, media_root=long_world["root"] / "media")
    prompt = PPOPrompt("p0", item.dialogue, item.task.turn_index, item.task.reference.text)
    encoded = encoder.encode(prompt)
    assert len(encoded.features) == long_world["clips"] - 1 + 3
    batch = collate_prompts([encoded], template.tokenizer.pad_token_id)
    with torch.no_grad():  # every segment fills its own audio tokens, or `embed` refuses
        logits, _, _ = policy.forward(batch.input_ids, batch.attention_mask, batch.clips)
    assert logits.shape[1] == len(encoded.ids)
