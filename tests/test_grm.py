"""The GRM on a real (tiny) Qwen2-Audio built from a config, over the demo world's real audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from builders import TINY_GRM_SIZE, short_run
from peft import LoraConfig
from transformers import TrainerCallback

from rewardlab.grm.batches import GRMCollator, PairedBatchSampler, SwappedPairs, shown_target
from rewardlab.grm.encoding import JudgeItem, PromptEncoder, collate_full
from rewardlab.grm.examples import examples_from_frame, load_examples, split_examples
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.grm_trainer import GRMTrainer
from rewardlab.grm.judge_format import JudgeFormat, JudgeInputError, swap_response_labels
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.schedule import GRMSchedule
from rewardlab.grm.tiny import TinySize, build_tiny_backbone, corpus_texts
from rewardlab.schema import AudioRef

SMALL = TINY_GRM_SIZE


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("grm")
    project = demo_world(n=24, seed=3)
    data = load_examples(project)
    frame, rubrics, media, examples = data.judgments, data.rubrics, data.media_root, data.examples
    texts = corpus_texts(examples, JudgeFormat(), rubrics.values())
    backbone = build_tiny_backbone(root / "tiny", texts, size=SMALL)
    text_backbone = build_tiny_backbone(root / "tiny-text", texts, audio=False, size=SMALL)
    return {
        "root": root,
        "project": project,
        "frame": frame,
        "rubrics": rubrics,
        "media": media,
        "examples": examples,
        "backbone": backbone,
        "text_backbone": text_backbone,
    }


def grm_of(world, **kwargs) -> GenerativeRewardModel:
    return GenerativeRewardModel.load(world["backbone"], media_root=world["media"], **kwargs)


def config(tmp_path: Path, **overrides) -> GRMConfig:
    values = dict(max_steps=6, critique_share=0.5, critique_weight=0.1)
    return short_run(GRMConfig, tmp_path, **(values | overrides))


# -- the judge format ---------------------------------------------------------------------------


def test_verdict_tokens_are_single_tokens_and_checked_at_load(world):
    grm = grm_of(world)
    assert grm.verdict_ids.tolist() == [grm.tokenizer.convert_tokens_to_ids(t) for t in "ABCDEFG"]
    with pytest.raises(ValueError, match="must be a single token"):
        GenerativeRewardModel.load(
            world["backbone"],
            fmt=JudgeFormat(verdict_tokens=("A", "B", "C", "D", "E", "F", "favourite colour")),
        )
    with pytest.raises(ValueError, match="K=2 needs 5"):
        JudgeFormat(k=2, verdict_tokens=("A", "B", "C"))


def test_plain_and_rubric_prompts_differ_only_in_the_rubric_block(world):
    grm = grm_of(world)
    example = next(e for e in world["examples"] if e.item.rubric is not None)
    item = example.item
    plain = JudgeItem(item.task.model_copy(update={"rubric_id": None}), item.dialogue, None)
    history_r, pair_r, clips = grm.format.render(
        grm.template, item.dialogue, item.task, item.rubric, "policy_first", audio=True
    )
    history_p, pair_p, _ = grm.format.render(
        grm.template, plain.dialogue, plain.task, None, "policy_first", audio=True
    )
    assert history_r == history_p
    assert pair_r.startswith("Rubric: ") and pair_r.endswith(pair_p)
    assert len(clips) == len(item.dialogue.audio_refs()) == history_r.count("<|AUDIO|>")
    assert item.task.policy.text in pair_p and "Response 1: " + item.task.policy.text in pair_p


def test_compact_rubric_block_names_the_rubric_and_its_criteria(world, tmp_path):
    example = next(e for e in world["examples"] if e.item.rubric is not None)
    task, rubric = example.item.task, example.item.rubric
    compact = JudgeFormat(rubric_detail="ids")
    pair = compact.pair_text(task, rubric, "policy_first")
    ids = ", ".join(c.id for c in rubric.criteria)
    assert pair.startswith(f"Rubric: {rubric.title} ({ids})\nResponse 1: ")
    assert all(c.description not in pair for c in rubric.criteria)
    full = JudgeFormat().pair_text(task, rubric, "policy_first")
    assert all(c.description in full for c in rubric.criteria)
    assert pair.split("Response 1: ", 1)[1] == full.split("Response 1: ", 1)[1]
    compact.save(tmp_path)
    assert JudgeFormat.load(tmp_path) == compact
    with pytest.raises(ValueError, match="rubric_detail"):
        JudgeFormat(rubric_detail="summary")


def rows_of(sampler: PairedBatchSampler) -> list[int]:
    return [row for batch in sampler for row, _ in batch]


def test_paired_sampler_keeps_both_orders_together_and_groups_by_length():
    lengths = [int(n) for n in np.random.default_rng(0).integers(100, 900, size=400)]
    schedule = GRMSchedule(max_steps=100, examples=400, batch_rows=8)
    sampler = PairedBatchSampler(lengths, schedule, seed=1, group=10)
    order = rows_of(sampler)
    assert sorted(order) == list(range(2 * len(lengths)))
    assert len(sampler) == len(list(sampler)) == 100
    assert all(order[i] // 2 == order[i + 1] // 2 and order[i] % 2 == 0 for i in range(0, 800, 2))
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    spread = np.mean([np.ptp([lengths[i // 2] for i in b]) for b in batches])
    shuffled = np.random.default_rng(1).permutation(lengths)
    random_spread = np.mean([np.ptp(shuffled[i : i + 4]) for i in range(0, len(shuffled), 4)])
    assert spread < random_spread / 4  # grouping cuts padding several-fold
    sampler.set_epoch(0)
    assert rows_of(sampler) == order  # the same epoch gives the same batches (exact resume)
    sampler.set_epoch(1)
    assert rows_of(sampler) != order
    assert [{step for _, step in batch} for batch in sampler] == [{100 + i} for i in range(100)]
    with pytest.raises(ValueError, match="even"):
        GRMSchedule(max_steps=1, examples=400, batch_rows=5)


def test_paired_sampler_opens_the_first_epoch_with_curriculum_stages():
    lengths = [int(n) for n in np.random.default_rng(0).integers(100, 900, size=60)]
    first, second = list(range(0, 10)), list(range(30, 45))
    stages = ((frozenset({"a"}), 7), (frozenset({"b"}), 3))
    schedule = GRMSchedule(max_steps=100, examples=60, batch_rows=4, stages=stages)
    sampler = PairedBatchSampler(lengths, schedule, seed=1, stages=[first, second])
    order = rows_of(sampler)
    assert len(order) == 4 * len(sampler) == 2 * 2 * (7 + 3) + 2 * len(lengths)
    opening, rest = order[: 4 * 7], order[4 * 7 : 4 * 10]
    assert {i // 2 for i in opening} <= set(first)  # drawn again and again from 10 examples
    assert {i // 2 for i in rest} <= set(second)
    assert sorted(order[4 * 10 :]) == list(range(2 * len(lengths)))  # then the full epoch
    assert all(order[i] // 2 == order[i + 1] // 2 for i in range(0, len(order), 2))
    assert rows_of(sampler) == order  # reproducible, so resuming mid-stage is exact
    sampler.set_epoch(1)
    assert len(rows_of(sampler)) == 4 * len(sampler) == 2 * len(lengths)  # only the first epoch


def test_history_warmup_shows_only_the_last_turn_then_the_whole_dialogue(world):
    grm = grm_of(world)
    example = max(world["examples"], key=lambda e: e.item.task.turn_index)
    schedule = GRMSchedule(max_steps=10, examples=1, batch_rows=2, history_warmup_steps=2)
    collator = GRMCollator(grm.encoder, 0.0, seed=0, schedule=schedule)
    early = [collator([(example, "policy_first", step)])["input_ids"][0] for step in (0, 1)]
    late = collator([(example, "policy_first", 2)])["input_ids"][0]
    last = example.item.dialogue.turns[example.item.task.turn_index].text
    for ids in (*early, late):
        assert last in grm.tokenizer.decode(ids)
    first_turn = example.item.dialogue.turns[0].text
    assert all(first_turn not in grm.tokenizer.decode(ids) for ids in early)
    left_out = f"({example.item.task.turn_index} earlier turns left out)"
    assert left_out in grm.tokenizer.decode(early[0])
    assert first_turn in grm.tokenizer.decode(late) and len(late) > len(early[0])
    with pytest.raises(ValueError, match="last_turns must be >= 1"):
        grm.encoder.encode(example.item, "policy_first", last_turns=0)


def test_history_restart_gives_the_full_prompts_their_own_schedule(world, tmp_path):
    """history_warmup_steps=4, max_steps=10, warmup_steps=2, learning_rate 3e-3, restart at 1e-3:
    steps 0-3 warm up (1/2, 2/2 of 3e-3) then decay by cosine over the 2 steps left,
    (1 + cos(0)) / 2 = 1 and (1 + cos(pi / 2)) / 2 = 1/2; steps 4-9 do the same with 6 steps
    and a 1e-3 peak: 1/2, 2/2, then the cosine at 0, 1/4, 2/4, 3/4 of its 4 steps."""
    grm = grm_of(world)
    args = config(
        tmp_path,
        max_steps=10,
        warmup_steps=2,
        history_warmup_steps=4,
        history_restart_lr=1e-3,
    )

    def rates_of(trainer: GRMTrainer) -> list[float]:
        trainer.create_optimizer_and_scheduler(num_training_steps=10)
        rates = []
        for _ in range(10):
            rates.append(trainer.lr_scheduler.get_last_lr()[0])
            trainer.optimizer.step()
            trainer.lr_scheduler.step()
        return rates

    rates = rates_of(GRMTrainer(grm.model, args, grm.encoder, world["examples"][:4]))
    cosine = [0.5 * (1 + np.cos(np.pi * q / 4)) for q in range(4)]
    expected = [1.5e-3, 3e-3, 3e-3, 1.5e-3, 0.5e-3, 1e-3, *(1e-3 * c for c in cosine)]
    assert rates == pytest.approx(expected)
    plain_args = config(tmp_path, max_steps=10, history_warmup_steps=4)
    plain_rates = rates_of(GRMTrainer(grm.model, plain_args, grm.encoder, []))
    assert plain_rates == sorted(plain_rates, reverse=True)  # one decay, no restart
    with pytest.raises(ValueError, match="history_restart_lr"):
        config(tmp_path, history_restart_lr=1e-3)  # no warm-up to end
    with pytest.raises(ValueError, match="history_restart_lr"):
        config(tmp_path, max_steps=6, history_warmup_steps=6, history_restart_lr=1e-3)


def test_history_restart_resets_the_optimizer_moments_when_the_warm_up_ends(world, tmp_path):
    grm = grm_of(world)
    args = config(tmp_path, max_steps=5, history_warmup_steps=2, history_restart_lr=1e-3)
    trainer = GRMTrainer(grm.model, args, grm.encoder, world["examples"][:8])
    trainer.train()
    steps = {int(s["step"]) for s in trainer.optimizer.state.values()}
    assert steps == {3}  # the moments count only the 3 full-prompt steps
    plain = GRMTrainer(grm.model, config(tmp_path, max_steps=5), grm.encoder, world["examples"])
    plain.train()
    assert {int(s["step"]) for s in plain.optimizer.state.values()} == {5}


def test_tiny_backbones_initialise_their_language_model_for_their_width(world):
    assert TinySize(hidden_size=100).initializer_range == pytest.approx(0.1)
    assert TinySize(hidden_size=100, init_std=0.02).initializer_range == 0.02
    model = grm_of(world).model
    q_proj = model.model.language_model.layers[0].self_attn.q_proj.weight
    assert q_proj.std().item() == pytest.approx(SMALL.hidden_size**-0.5, rel=0.1)


def test_expanded_audio_tokens_match_what_the_processor_makes(world):
    """Our cached-feature path gives the same ids and features as Qwen2AudioProcessor."""
    from rewardlab.audio import load_ref

    grm = grm_of(world)
    item = world["examples"][0].item
    encoded = grm.encoder.encode(item, "policy_first")
    history, _, _ = grm.format.render(
        grm.template, item.dialogue, item.task, item.rubric, "policy_first", audio=True
    )
    clips = [load_ref(world["media"], ref).samples for ref in item.dialogue.audio_refs()]
    reference = grm.template(text=history, audio=clips, return_tensors="pt")
    assert encoded.history_ids == reference["input_ids"][0].tolist()
    features = np.stack(encoded.features).astype(np.float32)
    assert np.abs(features - reference["input_features"].numpy()).max() < 1e-2  # float16 cache


# -- examples, swap, soft targets ----------------------------------------------------------------


def test_soft_targets_are_the_share_of_annotators_at_each_level(world):
    frame = world["frame"]
    for example in world["examples"][:10]:
        levels = frame.filter(pl.col("task_id") == example.task_id)["level"].to_list()
        expected = np.array([levels.count(level) / len(levels) for level in range(-3, 4)])
        np.testing.assert_allclose(example.target, expected, atol=1e-6)
        assert example.target.sum() == pytest.approx(1.0)


def test_every_example_is_also_shown_swapped_with_its_level_negated(world):
    grm = grm_of(world)
    examples = world["examples"][:3]
    pairs = SwappedPairs(examples)
    assert len(pairs) == 6 and [pairs[(i, 0)][1] for i in range(2)] == [
        "policy_first",
        "reference_first",
    ]
    assert pairs[(5, 7)] == (examples[2], "reference_first", 7)
    example = next(e for e in world["examples"] if e.critique and "Response 1" in e.critique)
    target = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.0, 0.0], dtype=np.float32)
    np.testing.assert_allclose(shown_target(target, "reference_first"), target[::-1])
    schedule = GRMSchedule(max_steps=1, examples=1, batch_rows=2)
    collator = GRMCollator(grm.encoder, critique_share=1.0, seed=0, schedule=schedule)
    batch = collator([(example, "policy_first", 0), (example, "reference_first", 0)])
    np.testing.assert_allclose(batch["target"][1].numpy(), example.target[::-1])
    text = [
        grm.tokenizer.decode(row[row != grm.tokenizer.pad_token_id]) for row in batch["input_ids"]
    ]
    policy, reference = example.item.task.policy.text, example.item.task.reference.text
    assert f"Response 1: {policy}" in text[0] and f"Response 1: {reference}" in text[1]
    # the critique follows the responses it talks about
    critiques = [
        grm.tokenizer.decode(row[labels != -100])
        for row, labels in zip(batch["input_ids"], batch["labels"], strict=True)
    ]
    assert critiques[0].strip() == example.critique
    assert critiques[1].strip() == swap_response_labels(example.critique)


def test_split_keeps_leakage_groups_together_and_is_reproducible(world):
    examples = world["examples"]
    train, held_out = split_examples(examples, 0.3, seed=5)
    assert {e.group for e in train}.isdisjoint({e.group for e in held_out})
    assert len(train) + len(held_out) == len(examples) and held_out
    twins = [e for e in examples if e.item.task.metadata["truth"]["audio_only"]]
    assert len({e.group for e in twins}) == len(twins) // 2  # spoken twins share one group
    again, _ = split_examples(examples, 0.3, seed=5)
    assert [e.task_id for e in again] == [e.task_id for e in train]


# -- scoring -----------------------------------------------------------------------------------


def test_shared_history_scoring_equals_one_full_pass_per_order(world):
    grm = grm_of(world)
    items = [e.item for e in world["examples"][:5]]
    dist = grm.judge(items, batch_size=3)
    prompts = [grm.encoder.encode(item, order) for item in items for order in dist.orders]
    grm.model.eval()
    with torch.no_grad():
        full = torch.softmax(grm._full_forward(prompts), -1).view(5, 2, -1).numpy()
    full[:, 1] = full[:, 1, ::-1]  # canonical orientation
    np.testing.assert_allclose(dist.probs, full, atol=1e-5)
    np.testing.assert_allclose(dist.probs.sum(-1), 1.0, atol=1e-5)
    assert dist.expected_level().shape == (5, 2)


def test_group_shared_histories_score_as_unshared_ones_in_the_order_given(world):
    """G candidates per (dialogue, turn), each with its own reference and rubric or none,
    interleaved: each distinct history runs once per batch, and the scores equal one history
    pass per item and one full pass per (item, order)."""
    from rewardlab.rl.grm_reward import judge_item

    grm = grm_of(world)
    sources = [e.item for e in world["examples"][:3]]
    rubric = next(iter(world["rubrics"].values()))
    items = [
        judge_item(
            f"{source.task.id}.g{g}",
            source.dialogue,
            source.task.turn_index,
            f"candidate {g} for {source.task.id}",
            None,
            f"reference {g % 2}",
            rubric if g % 2 else None,
            k=3,
        )
        for g in range(4)
        for source in sources
    ]  # dialogue-interleaved: groups are not contiguous as given
    history_rows = []
    hook = grm.model.register_forward_pre_hook(
        lambda _, args, kwargs: (
            history_rows.append(kwargs["input_ids"].shape[0])
            if kwargs.get("cache") is None
            else None
        ),
        with_kwargs=True,
    )
    shared = grm.judge(items, batch_size=12)
    assert history_rows == [3]  # one history per dialogue for 12 items
    unshared = grm.judge(items, batch_size=5, share_history="item")
    assert history_rows[1:] == [5, 5, 2]
    hook.remove()
    assert shared.task_ids == unshared.task_ids == [item.task.id for item in items]
    np.testing.assert_allclose(shared.probs, unshared.probs, atol=1e-5)
    prompts = [grm.encoder.encode(item, order) for item in items for order in shared.orders]
    with torch.no_grad():
        full = torch.softmax(grm._full_forward(prompts), -1).view(12, 2, -1).numpy()
    full[:, 1] = full[:, 1, ::-1]
    np.testing.assert_allclose(shared.probs, full, atol=1e-5)
    assert np.ptp(shared.probs[:, 0, 3]) > 0  # the candidates are told apart


def test_clip_caches_are_shared_only_where_the_features_agree(world, tmp_path):
    from rewardlab.grm.encoding import ClipFeatures

    extractor = grm_of(world).template.feature_extractor
    same = ClipFeatures(extractor, world["media"])
    assert same.same_features_as(ClipFeatures(extractor, world["media"]))
    assert not same.same_features_as(ClipFeatures(extractor, tmp_path))  # another media folder
    other = type(extractor)(**{**extractor.to_dict(), "chunk_length": 5})
    assert not same.same_features_as(ClipFeatures(other, world["media"]))
    assert not same.same_features_as(ClipFeatures(None, world["media"]))  # a text backbone
    # a tower that hears whole windows (Voxtral) cuts a long clip otherwise
    assert not same.same_features_as(ClipFeatures(extractor, world["media"], whole_windows=True))


def test_reasoning_mode_generates_a_critique_then_reads_the_verdict(world):
    grm = grm_of(world)
    items = [e.item for e in world["examples"][:2]]
    dist = grm.judge(items, mode="reasoning", max_new_tokens=8)
    assert dist.probs.shape == (2, 2, 7) and len(dist.critiques) == 2
    assert all(isinstance(c, str) and c for row in dist.critiques for c in row)
    np.testing.assert_allclose(dist.probs.sum(-1), 1.0, atol=1e-5)


def test_text_backbone_reads_transcripts(world):
    grm = GenerativeRewardModel.load(world["text_backbone"])
    assert not grm.encoder.is_audio
    item = world["examples"][0].item
    encoded = grm.encoder.encode(item, "policy_first")
    assert not encoded.features
    text = grm.tokenizer.decode(encoded.history_ids)
    assert all(t.text in text for t in item.dialogue.turns)
    assert grm.judge([item]).probs.shape == (1, 2, 7)


# -- bad input --------------------------------------------------------------------------------


def test_missing_audio_names_the_task_and_clip(world, tmp_path):
    item = world["examples"][0].item
    ref = item.dialogue.turns[0].audio
    missing = AudioRef(path="tts/nowhere.flac", sha256=ref.sha256, sample_rate=16000, duration_s=1)
    turns = [item.dialogue.turns[0].model_copy(update={"audio": missing}), *item.dialogue.turns[1:]]
    broken = JudgeItem(item.task, item.dialogue.model_copy(update={"turns": turns}), item.rubric)
    with pytest.raises(JudgeInputError, match=r"task 'demo-t\d+': audio 'tts/nowhere.flac'"):
        grm_of(world).judge([broken])


def test_unknown_rubric_and_empty_reply_are_refused(world):
    grm = grm_of(world)
    item = world["examples"][0].item
    unknown = JudgeItem(item.task.model_copy(update={"rubric_id": "no_such_rubric"}), item.dialogue)
    with pytest.raises(JudgeInputError, match="rubric_id: rubric 'no_such_rubric' not given"):
        grm.judge([unknown])
    blank = item.task.policy.model_copy(update={"text": "   "})
    empty = JudgeItem(item.task.model_copy(update={"policy": blank}), item.dialogue, item.rubric)
    with pytest.raises(JudgeInputError, match=r"policy\.text: the reply is empty"):
        grm.judge([empty])
    frame = world["frame"].with_columns(pl.lit("no_such_rubric").alias("rubric_id"))
    with pytest.raises(JudgeInputError, match="unknown rubric 'no_such_rubric'"):
        examples_from_frame(frame, world["rubrics"], 3)


def test_over_long_dialogues_drop_their_oldest_turns_or_are_refused(world):
    item = max((e.item for e in world["examples"]), key=lambda i: len(i.dialogue.turns))
    fmt = JudgeFormat()
    grm = grm_of(world)
    full = grm.encoder.encode(item, "policy_first")
    tight = PromptEncoder(grm.template, fmt, media_root=world["media"], max_tokens=len(full) - 1)
    cut = tight.encode(item, "policy_first")
    assert len(cut) < len(full) and len(cut.features) < len(full.features)
    assert "earlier turns left out" in grm.tokenizer.decode(cut.history_ids)
    hopeless = PromptEncoder(grm.template, fmt, media_root=world["media"], max_tokens=40)
    with pytest.raises(JudgeInputError, match=r"dialogue: .* tokens with only the last turn"):
        hopeless.encode(item, "policy_first")


# -- training ---------------------------------------------------------------------------------


def _params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_training_lowers_the_loss_and_moves_exactly_the_trainable_weights(world, tmp_path):
    grm = grm_of(world)
    before = _params(grm.model)
    # four tasks in both orders, one full batch per step: the loss must fall as it fits them
    args = config(tmp_path, max_steps=25, per_device_train_batch_size=8, fixed_order_share=0)
    trainer = GRMTrainer(grm.model, args, grm.encoder, world["examples"][:4])
    trainer.train()
    losses = [log["verdict_loss"] for log in trainer.state.log_history if "verdict_loss" in log]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert any("critique_loss" in log for log in trainer.state.log_history)
    for name, param in grm.model.named_parameters():
        moved = not torch.equal(param, before[name])
        if "audio_tower" in name:
            assert not param.requires_grad and not moved, name
        else:
            assert moved, f"{name} did not change"


def test_lora_trains_only_the_language_model_adapters(world, tmp_path):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)")
    grm = grm_of(world, lora=lora)
    before = _params(grm.model)
    GRMTrainer(grm.model, config(tmp_path), grm.encoder, world["examples"]).train()
    trainable = [n for n, p in grm.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    for name, param in grm.model.named_parameters():
        assert torch.equal(param, before[name]) != param.requires_grad or "lora_A" in name, name
    out = grm.save(tmp_path / "saved")
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    reloaded = GenerativeRewardModel.load(out, media_root=world["media"])
    items = [e.item for e in world["examples"][:4]]
    np.testing.assert_allclose(reloaded.judge(items).probs, grm.judge(items).probs, atol=1e-6)


def test_checkpoint_round_trip_gives_identical_scores(world, tmp_path):
    grm = grm_of(world)
    GRMTrainer(grm.model, config(tmp_path), grm.encoder, world["examples"]).train()
    saved = grm.save(tmp_path / "final")
    assert {"judge_format.json", "config.json", "processor_config.json"} <= {
        p.name for p in saved.iterdir()
    }
    reloaded = GenerativeRewardModel.load(saved, media_root=world["media"])
    items = [e.item for e in world["examples"][:6]]
    np.testing.assert_array_equal(reloaded.judge(items).probs, grm.judge(items).probs)


class StopAt(TrainerCallback):
    """Ends training after `step`, as a crash right after a checkpoint would."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_resume_continues_the_same_run(world, tmp_path):
    def run(folder: Path, resume: str | None = None, stop: int | None = None):
        # as train_grm does: weights from the checkpoint, optimizer and step from the Trainer
        grm = GenerativeRewardModel.load(resume or world["backbone"], media_root=world["media"])
        args = config(folder, max_steps=6, save_strategy="steps", save_steps=3)
        trainer = GRMTrainer(grm.model, args, grm.encoder, world["examples"])
        if stop:
            trainer.add_callback(StopAt(stop))
        trainer.train(resume_from_checkpoint=resume)
        return grm

    before = _params(grm_of(world).model)
    straight = run(tmp_path / "a")
    run(tmp_path / "b", stop=3)
    checkpoint = tmp_path / "b" / "run" / "checkpoint-3"
    assert (checkpoint / "judge_format.json").exists() and (checkpoint / "grm_config.yaml").exists()
    resumed = run(tmp_path / "b", resume=str(checkpoint))
    pairs = zip(straight.model.named_parameters(), resumed.model.named_parameters(), strict=True)
    for (name, a), (_, b) in pairs:
        assert not torch.equal(a, before[name]) or "audio_tower" in name, name
        assert (a - b).abs().max() < 1e-5, name


def test_config_rejects_bad_values(tmp_path):
    with pytest.raises(ValueError, match="fixed_order_share must be in"):
        config(tmp_path, fixed_order_share=1.5)
    with pytest.raises(ValueError, match="lora_r must be >= 0"):
        config(tmp_path, lora_r=-1)
    for spec in ("instruction_retention", "instruction_retention:0", ":5", "a:b"):
        with pytest.raises(ValueError, match="expected 'RUBRIC"):
            config(tmp_path, curriculum=spec)
    parsed = config(tmp_path, curriculum=" a+b:3 ; c:2 ;").curriculum_stages()
    assert parsed == [(frozenset({"a", "b"}), 3), (frozenset({"c"}), 2)]


def test_curriculum_stages_draw_only_their_rubrics_tasks(world, tmp_path):
    grm = grm_of(world)
    examples = world["examples"]
    rubric = next(e.item.task.rubric_id for e in examples if e.item.task.rubric_id)
    args = config(tmp_path, curriculum=f"{rubric}:2", per_device_train_batch_size=2)
    trainer = GRMTrainer(grm.model, args, grm.encoder, examples)
    order = rows_of(trainer.batch_sampler())
    assert {examples[i // 2].item.task.rubric_id for i in order[:4]} == {rubric}
    assert trainer.schedule.rubrics(1) == {rubric} and trainer.schedule.rubrics(2) is None
    unknown = config(tmp_path, curriculum="no_such_rubric:5")
    with pytest.raises(ValueError, match="no_such_rubric:5: 0 training tasks"):
        GRMTrainer(grm.model, unknown, grm.encoder, examples)


def test_batches_are_collated_with_the_verdict_slot_last(world):
    grm = grm_of(world)
    prompts = [grm.encoder.encode(e.item, "policy_first") for e in world["examples"][:3]]
    batch = collate_full(prompts, grm.tokenizer.pad_token_id)
    marker = grm.encoder.marker_ids
    for row, index in enumerate(batch["verdict_index"].tolist()):
        assert batch["input_ids"][row, index - len(marker) + 1 : index + 1].tolist() == marker
        assert batch["attention_mask"][row, index + 1 :].sum() == 0
    assert batch["input_features"].shape[0] == sum(len(p.features) for p in prompts)


def test_cli_builds_trains_and_judges(world, tmp_path):
    from rewardlab.cli import main

    project = world["project"]
    backbone = tmp_path / "backbone"
    assert (
        main(
            [
                "tiny-grm",
                "--project",
                str(project),
                "--out",
                str(backbone),
                "--hidden",
                "32",
                "--layers",
                "1",
            ]
        )
        == 0
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model_path: {backbone}\nproject: {project}\noutput_dir: {tmp_path / 'run'}\n"
        "max_steps: 2\nper_device_train_batch_size: 2\nuse_cpu: true\nsave_strategy: 'no'\n"
    )
    assert main(["train-grm", "--config", str(recipe), "--learning_rate", "1e-3"]) == 0
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert {"judge/accuracy", "judge/qwk", "judge/consistency", "silence/judge/accuracy"} <= set(
        report
    )
    scores = tmp_path / "scores.jsonl"
    assert (
        main(
            [
                "judge",
                "--grm",
                str(tmp_path / "run" / "final"),
                "--project",
                str(project),
                "--out",
                str(scores),
            ]
        )
        == 0
    )
    rows = [json.loads(line) for line in scores.read_text().splitlines()]
    assert len(rows) == 24 and all(-3 <= r["expected_level"] <= 3 for r in rows)
    assert abs(sum(rows[0]["probs_policy_first"]) - 1) < 1e-3


def test_training_recipes_load_and_validate():
    from rewardlab.grm.recipe import parse_config

    recipes = sorted(Path(__file__).parents[1].joinpath("training").glob("grm_*.yaml"))
    assert recipes
    for recipe in recipes:
        # bf16 needs a GPU to validate; everything else is checked as written
        parsed = parse_config(recipe, ["--output_dir", "/tmp/unused", "--bf16", "false"])
        assert parsed.model_path and parsed.project, recipe


def test_worker_processes_load_the_same_batches_as_the_main_process(world, tmp_path):
    """Each worker collates with its own copy of the collator: the step comes with the batch,
    so the fixed-order share and the history warm-up come out as in the main process."""
    grm = grm_of(world)
    settings = dict(history_warmup_steps=2, fixed_order_share=1.0, fixed_order_anneal=1.0)

    def batches(workers: int) -> list[dict[str, torch.Tensor]]:
        args = config(tmp_path, dataloader_num_workers=workers, **settings)
        loader = GRMTrainer(grm.model, args, grm.encoder, world["examples"]).get_train_dataloader()
        return list(loader)

    main, workers = batches(0), batches(2)
    assert len(main) == len(workers) == 12
    for one, other in zip(main, workers, strict=True):
        assert one.keys() == other.keys()
        assert all(torch.equal(one[key], other[key]) for key in one)
    # step 0 shows every row policy-first (share 1.0): both rows of a pair have one target
    assert torch.equal(main[0]["target"][0], main[0]["target"][1])
    assert any(not torch.equal(b["target"][0], b["target"][1]) for b in main[6:])


def test_load_examples_reads_k_from_the_source_and_refuses_an_export_without_it(world, tmp_path):
    from rewardlab.store import Store
    from rewardlab.store.export import export_parquet

    project = world["project"]
    data = load_examples(project)
    assert data.k == 3 and data.media_root == world["media"]
    with Store(project) as store:
        export = export_parquet(store, tmp_path / "judgments.parquet")
    exported = load_examples(export)
    assert exported.k == 3 and [e.task_id for e in exported.examples] == [
        e.task_id for e in data.examples
    ]
    pl.read_parquet(export).drop("k").write_parquet(tmp_path / "no_k.parquet")
    with pytest.raises(ValueError, match=r"no_k\.parquet: k: no values of K"):
        load_examples(tmp_path / "no_k.parquet")
    with pytest.raises(FileNotFoundError, match="neither a rewardlab project"):
        load_examples(tmp_path)


def test_checkpoint_owns_config_split_mapper_and_model(world, tmp_path):
    import shutil

    from rewardlab.grm.checkpoint import GRMCheckpoint
    from rewardlab.reward import RewardMapper

    project = world["project"]
    ckpt = GRMCheckpoint(shutil.copytree(world["backbone"], tmp_path / "grm"))
    with pytest.raises(FileNotFoundError, match=r"grm_config\.yaml not found.*--eval-share"):
        ckpt.split(project)
    given = ckpt.split(project, eval_share=0.3, split_seed=5)  # no config: both given
    trained = config(tmp_path, project=str(project), eval_share=0.3, split_seed=5, max_tokens=1000)
    assert ckpt.save_config(trained) == tmp_path / "grm" / "grm_config.yaml"
    saved = ckpt.config()
    assert isinstance(saved, GRMConfig)
    assert (saved.project, saved.eval_share, saved.split_seed, saved.max_tokens) == (
        str(project),
        0.3,
        5,
        1000,
    )
    split = ckpt.split(project)
    expected_train, expected_held = split_examples(load_examples(project).examples, 0.3, 5)
    assert [e.task_id for e in split.held_out] == [e.task_id for e in expected_held]
    assert [e.task_id for e in split.train] == [e.task_id for e in expected_train]
    assert [e.task_id for e in given.held_out] == [e.task_id for e in expected_held]
    assert ckpt.split(project, eval_share=0.5).eval_share == 0.5  # given beats saved
    assert ckpt.mapper(k=3) == RewardMapper(k=3)  # never calibrated: the identity
    RewardMapper(k=3, clip=2.0).save(ckpt.path)
    assert ckpt.mapper(k=3).clip == 2.0 and ckpt.mapper_path.exists()
    grm = ckpt.load_model(media_root=world["media"], k=3)
    assert grm.encoder.max_tokens == 1000  # as it trained
    with pytest.raises(ValueError, match="the GRM has K=3 but the data has K=2"):
        ckpt.load_model(k=2)
    # a config written before GRMConfig.data was renamed GRMConfig.project
    text = ckpt.config_path.read_text().replace("\nproject:", "\ndata:")
    ckpt.config_path.write_text(text)
    assert ckpt.config().project == str(project)
