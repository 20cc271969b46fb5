"""Reasoning mode: critiques of a whole batch from one generate, verdicts read on its cache,
equal to one generate per (item, order) followed by a full forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE

from rewardlab.grm.critique import NO_CRITIQUE, critique_text, left_pad, verdict_step
from rewardlab.grm.encoding import EncodedPrompt
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel, history_key
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts
from rewardlab.schema import Order


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    data = load_examples(demo_world(n=24, seed=3))
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    root = tmp_path_factory.mktemp("grm-reasoning")
    backbone = build_tiny_backbone(root / "tiny", texts, size=TINY_GRM_SIZE)
    grm = GenerativeRewardModel.load(backbone, media_root=data.media_root)
    text = build_tiny_backbone(root / "tiny-text", texts, audio=False, size=TINY_GRM_SIZE)
    world = {"audio": grm, "text": GenerativeRewardModel.load(text)}
    return world, [e.item for e in data.examples]


def test_critique_is_the_text_before_the_marker_stripped():
    assert critique_text("  too curt. \nVerdict: C and more", "Verdict:") == "too curt."
    assert critique_text(" \n", "Verdict:") == NO_CRITIQUE
    assert critique_text("Verdict: G", "Verdict:") == NO_CRITIQUE


def test_left_pad_right_aligns_rows():
    ids, mask = left_pad([[5, 6, 7], [8]], pad=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_verdict_step_keeps_the_agreeing_tokens_and_continues_the_positions():
    """Row 0: prompt of 3, generated [10, 11, 12] cached, continuation [10, 11, 20, 21]: keeps
    10, 11 (12 disagrees), feeds [20, 21] at positions 5, 6, reads index 1.
    Row 1: prompt of 1 (2 left pads), generated [30, 31, 32], continuation [30, 31, 32]: all
    agree, but one token must be fed: keeps 2, feeds [32] at position 3, reads index 0.
    Row 2: prompt of 2, generated [9, ...] disagrees at once: keeps none, feeds [40, 41, 42]
    at positions 2, 3, 4."""
    prompt_mask = torch.tensor([[1, 1, 1], [0, 0, 1], [0, 1, 1]])
    cached = torch.tensor([[10, 11, 12], [30, 31, 32], [9, 9, 9]])
    step = verdict_step(prompt_mask, cached, [[10, 11, 20, 21], [30, 31, 32], [40, 41, 42]], 0)
    assert step["input_ids"].tolist() == [[20, 21, 0], [32, 0, 0], [40, 41, 42]]
    assert step["attention_mask"].tolist() == [
        [1, 1, 1, 1, 1, 0, 1, 1, 0],
        [0, 0, 1, 1, 1, 0, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 1, 1, 1],
    ]
    assert step["position_ids"].tolist() == [[5, 6, 7], [3, 4, 5], [2, 3, 4]]
    assert step["verdict_index"].tolist() == [1, 0, 2]


def count_generate(model) -> list[int]:
    """Rows of each `model.generate` call, recorded around the real method."""
    calls: list[int] = []
    real = model.generate

    def generate(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return real(*args, **kwargs)

    model.generate = generate
    return calls


@pytest.mark.parametrize("backbone", ["audio", "text"])
def test_batched_reasoning_equals_one_at_a_time(world, backbone):
    """Prompts of different lengths (left padding), both orders, audio (or transcripts): the
    same greedy critiques and the same verdict distributions, from one generate per batch."""
    grms, items = world
    grm, items = grms[backbone], items[:6]
    lengths = {len(grm.encoder.encode(item, "policy_first")) for item in items}
    assert len(lengths) >= 4  # the batch really is left-padded
    has_audio = any(grm.encoder.encode(item, "policy_first").features for item in items)
    assert has_audio == (backbone == "audio")
    calls = count_generate(grm.model)
    try:
        batched = grm.judge(items, mode="reasoning", max_new_tokens=12, batch_size=4)
        assert calls == [8, 4]  # one generate per batch: 4 items x 2 orders, then 2 x 2
        single = grm.judge(items, mode="reasoning", max_new_tokens=12, generation="item")
        assert calls[2:] == [1] * 12
    finally:
        del grm.model.generate  # the real method again
    assert batched.critiques == single.critiques
    assert any(c != NO_CRITIQUE for row in batched.critiques for c in row)
    np.testing.assert_allclose(batched.probs, single.probs, atol=1e-4)
    np.testing.assert_allclose(batched.probs.sum(-1), 1.0, atol=1e-5)
    assert np.ptp(batched.probs[:, 0, 3]) > 0  # the items are told apart


def test_batched_reasoning_runs_each_history_once_and_no_second_full_pass(world):
    """One pass over each distinct history (both orders share it), the generate going on from
    its cache (the pair blocks, then one token per step), and the verdict step: a few tokens
    per row, shorter than any prompt. No forward runs over a whole prompt."""
    grms, items = world
    grm, items = grms["audio"], items[:4]
    prompts = [grm.encoder.encode(item, order) for item in items for order in Order]
    widths: list[tuple[int, int]] = []
    hook = grm.model.register_forward_pre_hook(
        lambda _, args, kwargs: widths.append(tuple(kwargs["input_ids"].shape)),
        with_kwargs=True,
    )
    try:
        grm.judge(items, mode="reasoning", max_new_tokens=6, batch_size=4)
    finally:
        hook.remove()
    shortest = min(len(p) for p in prompts)
    history, pairs, *decode, verdict = widths
    assert history == (
        len({history_key(p) for p in prompts}),
        max(len(p.history_ids) for p in prompts),
    )
    assert history[0] <= 4  # the two orders of an item share their history
    assert pairs == (8, max(len(p.pair_ids) for p in prompts) - len(grm.encoder.marker_ids))
    assert decode == [(8, 1)] * 5
    assert verdict[0] == 8 and 2 <= verdict[1] < shortest


def test_verdict_on_the_cache_equals_a_full_forward_over_the_generated_tokens(world):
    """Where every generated token is kept (continuation = the generated ids, then the
    marker), the verdict read on the left-padded generation's cache equals a full forward
    over each prompt with those very tokens."""
    grms, items = world
    grm = grms["audio"]
    prompts = [grm.encoder.encode(item, order) for item in items[:4] for order in Order]
    _, generated = grm._generate_batch(prompts, max_new_tokens=8)
    tokens = generated.tokens[:, :7].tolist()  # the 7 generated tokens whose key/values are cached
    marker = grm.encoder.marker_ids
    with torch.no_grad():
        on_cache = grm._verdict_on_cache(generated, [t + marker for t in tokens])
        full = grm._full_forward(
            [
                EncodedPrompt(
                    p.history_ids,
                    p.pair_ids[: -len(marker)] + t + marker,
                    p.features,
                    p.feature_lengths,
                )
                for p, t in zip(prompts, tokens, strict=True)
            ]
        )
    np.testing.assert_allclose(torch.softmax(on_cache, -1), torch.softmax(full, -1), atol=1e-5)


def test_a_critique_that_pushes_the_prompt_past_max_tokens_is_scored_as_re_encoded(world):
    """With room for the prompt but not its critique, the re-encoded prompt drops its oldest
    turn: the generation's cache no longer holds it, and both paths score the re-encoded one."""
    grms, items = world
    grm = grms["audio"]
    items = [item for item in items if item.task.turn_index >= 1][:2]
    longest = max(len(grm.encoder.encode(item, order)) for item in items for order in Order)
    kept = grm.encoder.max_tokens
    grm.encoder.max_tokens = longest + 2
    try:
        batched = grm.judge(items, mode="reasoning", max_new_tokens=12)
        single = grm.judge(items, mode="reasoning", max_new_tokens=12, generation="item")
        critique = batched.critiques[0][0]
        with_critique = grm.encoder.encode(items[0], Order.POLICY_FIRST, critique=critique)
    finally:
        grm.encoder.max_tokens = kept
    assert with_critique.history_ids != grm.encoder.encode(items[0], Order.POLICY_FIRST).history_ids
    assert batched.critiques == single.critiques
    np.testing.assert_allclose(batched.probs, single.probs, atol=1e-4)
