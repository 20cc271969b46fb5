"""`GRMReward`: the GRM as a TRL reward function, called directly and inside a real GRPO run.

The GRM is a tiny random-init Qwen2-Audio over the demo world's real speech; the policy a tiny
Qwen2 text model. Both are built from configs with a tokenizer trained here."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

from datasets import Dataset
from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts
from rewardlab.reward import RewardMapper
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.schema import Candidate, Dialogue, Task, Turn
from rewardlab.store import Store

SMALL = replace(TINY_GRM_SIZE, layers=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("grpo")
    project = demo_world(n=12, seed=3)
    data = load_examples(project)
    media = data.media_root
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    with Store(project) as store:
        tasks = store.tasks()
        dialogues = {d.id: d for d in store.dialogues()}
        rubrics = {r.id: r for r in store.rubrics()}
    return {
        "project": project,
        "media": media,
        "grm": build_tiny_backbone(root / "grm", texts, size=SMALL),
        "policy": build_tiny_backbone(root / "policy", texts, audio=False, size=SMALL, seed=1),
        "tasks": tasks,
        "dialogues": dialogues,
        "rubrics": rubrics,
    }


def grm_of(world) -> GenerativeRewardModel:
    return GenerativeRewardModel.load(world["grm"], media_root=world["media"])


def columns(tasks) -> dict[str, list]:
    return {
        "reference": [t.reference.text for t in tasks],
        "dialogue_id": [t.dialogue_id for t in tasks],
        "turn_index": [t.turn_index for t in tasks],
        "rubric_id": [t.rubric_id for t in tasks],
    }


def test_rewards_are_the_mapped_grm_judgments_of_the_completions(world):
    """The reward of a completion is the mapper applied to the GRM's judgment of the task with
    the completion as the policy reply, the dialogue (and audio) coming from its id."""
    grm = grm_of(world)
    tasks = world["tasks"][:3]
    completions = ["Captain, that sounds wonderful.", "Read a guide.", "Get Pip a toy."]
    reward = GRMReward(grm, dialogues=world["dialogues"], rubrics=world["rubrics"])
    got = reward(prompts=["unused"] * 3, completions=completions, **columns(tasks))
    items = [
        JudgeItem(
            task.model_copy(update={"policy": Candidate(text=text, source="policy")}),
            world["dialogues"][task.dialogue_id],
            world["rubrics"].get(task.rubric_id),
        )
        for task, text in zip(tasks, completions, strict=True)
    ]
    expected = RewardMapper(k=3)(grm.judge(items).probs)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert any(turn.audio for turn in items[0].dialogue.turns)  # the audio was there to hear


def test_plain_and_conversational_prompts_are_the_dialogue_without_an_id(world):
    """No dialogue_id column: a string prompt is one user turn, a conversational prompt one turn
    per message. Conversational completions, reasoning traces and empty replies."""
    grm = grm_of(world)
    reward = GRMReward(grm)
    text = "My favourite colour is green. What colour should I paint my kitchen?"
    chat = [{"role": "user", "content": text}]
    reply = "Paint it green, your favourite colour."
    plain = reward(prompts=[text], completions=[reply], reference=["Any colour."])
    conversational = reward(
        prompts=[chat],
        completions=[[{"role": "assistant", "content": f"<think>green</think> {reply}"}]],
        reference=["Any colour."],
    )
    assert plain == pytest.approx(conversational, abs=1e-6)
    dialogue = Dialogue(id="d", turns=[Turn(role="user", text=text)])
    task = {
        "id": "t",
        "dialogue_id": "d",
        "turn_index": 0,
        "policy": {"text": reply, "source": "policy"},
        "reference": {"text": "Any colour.", "source": "reference"},
    }
    by_hand = grm.judge([JudgeItem(Task.model_validate(task), dialogue)]).probs
    assert plain[0] == pytest.approx(RewardMapper(k=3)(by_hand)[0], abs=1e-6)
    # an empty reply is judged "much worse" with certainty: the lowest level's value
    assert reward(prompts=[text], completions=["  "], reference=["Any colour."]) == [-3.0]


def test_bad_rows_are_named(world):
    reward = GRMReward(grm_of(world), dialogues=world["dialogues"])
    with pytest.raises(ValueError, match="needs a 'reference' dataset column"):
        reward(prompts=["hi"], completions=["hello"])
    with pytest.raises(ValueError, match="completion 1: dialogue_id: 'nope' is not among"):
        reward(
            prompts=["a", "b"],
            completions=["x", "y"],
            reference=["r", "r"],
            dialogue_id=[world["tasks"][0].dialogue_id, "nope"],
        )
    with pytest.raises(ValueError, match="completion 0: rubric_id: unknown rubric 'nope'"):
        reward(prompts=["a"], completions=["x"], reference=["r"], rubric_id=["nope"])
    with pytest.raises(ValueError, match=r"prompt 0 \('prompt-0'\): turns.0.role: Input should be"):
        reward(prompts=[[{"role": "robot", "content": "beep"}]], completions=["x"], reference=["r"])


@pytest.mark.parametrize(
    ("trainer_class", "config_class"), [(GRPOTrainer, GRPOConfig), (RLOOTrainer, RLOOConfig)]
)
def test_trl_trainers_train_a_text_policy_against_the_grm(
    world, tmp_path, trainer_class, config_class
):
    """Two GRPO (and RLOO) steps of a tiny Qwen2 policy, rewarded by the audio GRM through
    TRL's own `reward_funcs` call: the rewards are logged and the policy's weights move."""
    RewardMapper(k=3, normalize="running", clip=5.0).save(world["grm"])
    reward = GRMReward.from_checkpoint(world["grm"], project=world["project"])
    assert reward.mapper.normalize == "running" and reward.mapper.count == 0
    tasks = world["tasks"][:4]
    prompts = [
        [
            {"role": turn.role, "content": turn.text}
            for turn in world["dialogues"][t.dialogue_id].turns[: t.turn_index + 1]
        ]
        for t in tasks
    ]
    dataset = Dataset.from_dict({"prompt": prompts, **columns(tasks)})
    policy = AutoModelForCausalLM.from_pretrained(world["policy"])
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    config = config_class(
        output_dir=str(tmp_path / "run"),
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = trainer_class(
        model=policy,
        reward_funcs=reward,
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(world["policy"]),
    )
    trainer.train()
    logs = [log for log in trainer.state.log_history if "rewards/GRMReward/mean" in log]
    assert len(logs) == 2 and all(np.isfinite(log["rewards/GRMReward/mean"]) for log in logs)
    assert all("grm/expected_level" in log for log in logs)
    assert reward.mapper.count == 8  # 2 steps x 4 completions went through the mapper
    moved = [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]
    assert any("layers.0.self_attn" in n for n in moved) and "model.norm.weight" in moved
