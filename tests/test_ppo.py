"""`AudioPPOTrainer` on real parts: the demo world's speech, a tiny Qwen2-Audio policy warm-
started on the world's replies, and a tiny audio GRM judging every reply in both orders.

Audio travels through every pass: these tests check that slicing a batch into micro-batches
keeps each row's clips, that the frozen tower's cached states give the passes re-encoding
gives, that audio tokens are never sampled, and that a resumed run is the straight run.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE, ppo_trainer

from rewardlab.cli import main
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts
from rewardlab.reward import RewardMapper
from rewardlab.rl.checkpoint import PARTIAL, REWARD_FILE, STATE_FILE, RunState, save_checkpoint
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.rl.policy import load_policy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.ppo_math import response_mask
from rewardlab.rl.ppo_trainer import AudioPPOTrainer
from rewardlab.rl.prompt_split import load_prompts
from rewardlab.rl.rewards import GRMPromptReward
from rewardlab.rl.rollout import response_logprobs
from rewardlab.rl.warm_start import build_tiny_policy

SMALL = replace(TINY_GRM_SIZE, layers=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("ppo")
    project = demo_world(n=24, seed=4)
    data = load_examples(project)
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    grm = build_tiny_backbone(root / "grm", texts, size=SMALL)
    RewardMapper(k=3, normalize="running", clip=5.0).save(grm)
    policy = root / "policy"
    warm = build_tiny_policy(project, policy, steps=80, size=SMALL, progress=False)
    return {"project": project, "grm": grm, "policy": policy, "warm": warm, "root": root}


def config(tmp_path, world=None, **changes) -> AudioPPOConfig:
    values = {
        "output_dir": str(tmp_path / "run"),
        "model_path": str(world["policy"]) if world else "",
        "use_cpu": True,
        "seed": 0,
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "num_mini_batches": 2,
        "num_ppo_epochs": 2,
        "response_length": 12,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "disable_tqdm": True,
        "local_rollout_forward_batch_size": 3,
    }
    return AudioPPOConfig(**(values | changes))


def rollout_of(trainer: AudioPPOTrainer, rows: int = 6):
    prompts = trainer.train_prompts[:rows]
    generator = torch.Generator().manual_seed(0)
    rollout, _ = trainer.collector.collect(trainer.model, trainer.accelerator, prompts, generator)
    return rollout


def test_warm_start_teaches_the_reply_format(world):
    assert world["warm"]["last_loss"] < 0.7 * world["warm"]["first_loss"]


def test_micro_batches_give_the_log_probs_of_the_whole_batch(world, tmp_path):
    """Rows taken out of order, two at a time: every row keeps its own clips."""
    trainer = ppo_trainer(world, config(tmp_path, world))
    rollout = rollout_of(trainer)
    assert rollout.clips is not None and len(rollout.clips) > len(rollout.prompts)
    policy = trainer.policy
    args = (rollout.query_responses, rollout.attention_mask, rollout.clips, rollout.context_length)
    whole, whole_values, _ = response_logprobs(policy, *args, torch.arange(6), 1.0)
    for rows in ([4, 1], [0, 5], [3, 2]):
        part, part_values, _ = response_logprobs(policy, *args, torch.tensor(rows), 1.0)
        mask = rollout.mask[rows]
        torch.testing.assert_close(part[mask], whole[rows][mask], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(part_values[mask], whole_values[rows][mask])
    # and they are the rollout's own (old) log-probs
    torch.testing.assert_close(whole[rollout.mask], rollout.logprobs[rollout.mask])


def test_cached_audio_states_give_the_passes_of_re_encoding(world, tmp_path):
    trainer = ppo_trainer(world, config(tmp_path, world))
    rollout = rollout_of(trainer)
    assert rollout.clips.states is not None  # the frozen tower ran once, at rollout time
    raw = replace(rollout.clips, states=None)
    rows = torch.arange(6)
    cached, _, _ = response_logprobs(
        trainer.policy, rollout.query_responses, rollout.attention_mask, rollout.clips,
        rollout.context_length, rows, 1.0,
    )  # fmt: skip
    encoded, _, _ = response_logprobs(
        trainer.policy, rollout.query_responses, rollout.attention_mask, raw,
        rollout.context_length, rows, 1.0,
    )  # fmt: skip
    torch.testing.assert_close(cached[rollout.mask], encoded[rollout.mask])


def test_audio_special_tokens_are_never_sampled(world, tmp_path):
    trainer = ppo_trainer(world, config(tmp_path, world))
    policy, collector = trainer.policy, trainer.collector
    suppressed = collector.suppress_ids
    assert set(suppressed) >= {collector.encoder.audio_token_id}
    head = policy.base.lm_head.weight
    with torch.no_grad():  # make the audio tokens the policy's favourites
        head[suppressed] = head[suppressed] * 0 + head.abs().max() * 40
    batch = collector.encode(trainer.train_prompts[:4])
    clips = policy.encode_audio(batch.clips)
    kwargs = {
        "max_new_tokens": 10,
        "eos_token_id": collector.eos_id,
        "pad_token_id": collector.pad_id,
    }
    free = policy.sample(batch.input_ids, batch.attention_mask, clips, **kwargs)
    audio = torch.tensor(suppressed[:3])  # <|AUDIO|>, <|audio_bos|>, <|audio_eos|>
    assert torch.isin(free, audio).float().mean() > 0.5  # unsuppressed, they would win
    kept = policy.sample(
        batch.input_ids, batch.attention_mask, clips, suppress_token_ids=suppressed, **kwargs
    )
    real = response_mask(kept, collector.eos_id, collector.pad_id)
    assert real.any() and not torch.isin(kept[real], torch.tensor(suppressed)).any()


def test_replies_without_separator_or_eos_pay_their_penalties(world, tmp_path):
    args = config(tmp_path, world, missing_eos_penalty=2.0, missing_separator_penalty=0.5)
    trainer = ppo_trainer(world, args)
    prompts = trainer.train_prompts[:3]
    texts = [
        "<think>Recall what they told me.</think>Thanks for telling me.",
        "Thanks for telling me.",
        "<think>Recall what they told me.</think>",
    ]
    scores, rewards, has_separator = trainer.collector.score(prompts, texts, update=False)
    assert has_separator.tolist() == [True, False, True]
    assert scores[0] == rewards[0] and scores[1] == pytest.approx(rewards[1] - 0.5)
    # an empty reply is a certain "much worse" before any normalisation
    raw = GRMReward.from_checkpoint(world["grm"], project=world["project"])
    raw.mapper = RewardMapper(k=3)
    empty = GRMPromptReward(raw)(prompts[2:], [""], [None])
    assert empty.tolist() == [-3.0]
    rollout = rollout_of(trainer)
    penalty = 2.0 * (~rollout.has_eos).float() + 0.5 * (~rollout.has_separator).float()
    torch.testing.assert_close(rollout.scores, rollout.rewards - penalty)


def test_an_update_moves_the_policy_and_value_head_but_not_the_tower_or_reference(world, tmp_path):
    trainer = ppo_trainer(world, config(tmp_path, world, max_steps=1, kl_estimator="k3"))
    policy = trainer.policy
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    reference = {n: p.detach().clone() for n, p in policy.reference.named_parameters()}
    trainer.train()
    moved = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert {"value_head.weight", "value_head.bias"} <= moved
    assert any("language_model.layers.0.self_attn" in n for n in moved)
    assert any("multi_modal_projector" in n for n in moved)
    assert not any("audio_tower" in n for n in moved)
    assert all(torch.equal(p, reference[n]) for n, p in policy.reference.named_parameters())
    log = trainer.state.log_history[-1]
    for name in ("objective/kl", "objective/scores", "policy/entropy_avg", "policy/clipfrac_avg",
                 "val/ratio", "loss/value_avg", "time/reward_s", "time/rollout_s"):  # fmt: skip
        assert np.isfinite(log[name]), name
    assert log["objective/kl"] == pytest.approx(0.0, abs=1e-5)  # the first rollout is the ref's


def test_lora_policy_uses_its_disabled_adapters_as_the_reference(world, tmp_path):
    lora = {"lora_r": 4, "lora_alpha": 8, "lora_target": r".*language_model.*\.(q_proj|v_proj)"}
    trainer = ppo_trainer(world, config(tmp_path, world, max_steps=2, **lora))
    assert trainer.policy.is_lora and trainer.policy.reference is None
    trainer.train()
    rollout = rollout_of(trainer, rows=4)
    # the adapters moved, so policy and reference now disagree; the base weights did not
    assert (rollout.logprobs - rollout.ref_logprobs)[rollout.mask].abs().max() > 1e-4
    trained = [n for n, p in trainer.policy.named_parameters() if p.requires_grad]
    assert all("lora_" in n or n.startswith("value_head") for n in trained)


def test_resume_continues_the_same_run(world, tmp_path):
    straight = ppo_trainer(world, config(tmp_path / "a", world, max_steps=3,
                                         save_strategy="steps", save_steps=2))  # fmt: skip
    straight.train()
    checkpoint = tmp_path / "a" / "run" / "checkpoint-2"
    assert (checkpoint / "value_head.safetensors").exists()
    assert not list((tmp_path / "a" / "run").glob("*.partial"))
    # the GRM's running normalisation saw 2 updates x 8 rollouts when checkpoint-2 was written
    assert json.loads((checkpoint / REWARD_FILE).read_text())["mapper"]["count"] == 16
    resumed = ppo_trainer(
        world, config(tmp_path / "b", world, max_steps=3, resume_from_checkpoint=str(checkpoint))
    )
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == 3
    straight_mapper, resumed_mapper = straight.reward.reward.mapper, resumed.reward.reward.mapper
    assert resumed_mapper.count == straight_mapper.count
    assert (resumed_mapper.mean, resumed_mapper.m2) == (straight_mapper.mean, straight_mapper.m2)
    for (name, p), q in zip(
        straight.policy.named_parameters(), resumed.policy.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)
    # and the third update logged what the straight run's did (timings aside)
    last = (straight.state.log_history[-1], resumed.state.log_history[-1])
    untimed = [{k: v for k, v in log.items() if not k.startswith("time/")} for log in last]
    assert untimed[0] == pytest.approx(untimed[1])
    # logged every 3 updates, the one entry is the mean of the straight run's three
    averaged = ppo_trainer(world, config(tmp_path / "c", world, max_steps=3, logging_steps=3))
    averaged.train()
    (entry,) = averaged.state.log_history
    for name in ("objective/kl", "objective/scores", "loss/value_avg", "policy/entropy_avg"):
        mean = np.mean([log[name] for log in straight.state.log_history])
        assert entry[name] == pytest.approx(mean, rel=1e-5, abs=1e-7), name


class UnwritableReward(GRMPromptReward):
    """A reward source whose state cannot be written: a save that fails half-way."""

    def state_dict(self) -> dict:
        raise OSError("disk full")


def test_checkpoints_are_atomic_and_rotated(world, tmp_path):
    args = config(tmp_path, world, save_total_limit=2)
    trainer = ppo_trainer(world, args)
    run, out = trainer.run, tmp_path / "run"

    def save(step: int, reward=run.reward):
        run.state.global_step = step
        pieces = (run.policy, run.template, run.optimizer, run.scheduler, reward, args)
        return save_checkpoint(out, run.state, *pieces)

    first = save(1)
    saved = {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()}
    assert {STATE_FILE, REWARD_FILE, "value_head.safetensors"} <= set(saved)
    with pytest.raises(OSError, match="disk full"):  # a crash mid-save
        save(2, UnwritableReward(run.reward.reward))
    assert not (out / "checkpoint-2").exists() and (out / f"checkpoint-2{PARTIAL}").exists()
    assert {p.name: p.read_bytes() for p in first.iterdir() if p.is_file()} == saved
    save(2)
    save(3)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "checkpoint-3"]
    assert RunState.load(out / "checkpoint-3" / STATE_FILE).global_step == 3


def test_reward_state_round_trips(world):
    prompts = load_prompts(world["project"], 0.25, 0).train[:4]
    replies = ["Thanks for telling me.", "Sorry to hear that.", "", "Okay."]

    def reward() -> GRMPromptReward:
        return GRMPromptReward(GRMReward.from_checkpoint(world["grm"], project=world["project"]))

    used = reward()
    used(prompts, replies, [None] * 4)  # the running normalisation absorbs this batch
    state = json.loads(json.dumps(used.state_dict()))
    assert state["mapper"]["count"] == 4
    fresh = reward()
    assert fresh.state_dict() != state
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state
    again = [fresh(prompts, replies, [None] * 4, update=False)]
    again.append(used(prompts, replies, [None] * 4, update=False))
    np.testing.assert_array_equal(*again)


def test_config_rejects_bad_values(tmp_path):
    for bad in ({"kl_estimator": "k2"}, {"num_ppo_epochs": 0}, {"temperature": 0.0},
                {"separator": ""}, {"max_steps": -1}, {"eval_share": 1.5},
                {"eval_samples": 0}, {"optim": "sgd"}, {"rollouts_per_prompt": 0},
                {"rollouts_per_prompt": 3}, {"truth_scorer": "rewardlab.demo.world"},
                {"truth_scorer": "rewardlab.demo.world:no_such_scorer"},
                {"truth_scorer": "rewardlab.demo.world:MOODS"}):  # fmt: skip
        with pytest.raises(ValueError):
            config(tmp_path, **bad)


def test_g_rollouts_per_prompt_share_one_grm_history_each(world, tmp_path):
    """rollouts_per_prompt=4, 8 rollouts an update: 2 prompts, each sampled 4 times, and the
    reward phase runs 2 histories through the GRM, not 8."""
    trainer = ppo_trainer(world, config(tmp_path, world, max_steps=1, rollouts_per_prompt=4))
    grm_encoder = trainer.collector.reward.reward.grm.encoder
    assert grm_encoder.clip_features is trainer.collector.encoder.clip_features  # one cache
    seen, history_rows = [], []
    collect = trainer.collector.collect

    def recording(model, accelerator, prompts, generator):
        seen.append([p.id for p in prompts])
        return collect(model, accelerator, prompts, generator)

    trainer.collector.collect = recording
    grm = trainer.collector.reward.reward.grm.model
    hook = grm.register_forward_pre_hook(
        lambda _, args, kwargs: (
            history_rows.append(kwargs["input_ids"].shape[0])
            if kwargs.get("cache") is None
            else None
        ),
        with_kwargs=True,
    )
    trainer.train()
    hook.remove()
    ((ids,),) = [seen]
    assert len(ids) == 8 and ids[:4] == [ids[0]] * 4 and ids[4:] == [ids[4]] * 4
    assert ids[0] != ids[4] and history_rows == [2]


def test_too_few_prompts_for_a_rollout_batch_is_refused(world, tmp_path):
    with pytest.raises(ValueError, match="fewer than one rollout batch"):
        ppo_trainer(world, config(tmp_path, world, per_device_train_batch_size=64))


def test_cli_trains_and_reports_the_held_out_reward(world, tmp_path, capsys):
    recipe = tmp_path / "ppo.yaml"
    recipe.write_text(
        f"model_path: {world['policy']}\ngrm: {world['grm']}\nproject: {world['project']}\n"
        f"output_dir: {tmp_path / 'run'}\nuse_cpu: true\nmax_steps: 1\neval_share: 0.25\n"
        "split_seed: 0\n"
        "per_device_train_batch_size: 4\nresponse_length: 8\neval_prompts: 5\neval_samples: 2\n"
        "disable_tqdm: true\nsave_strategy: 'no'\n"
        "truth_scorer: rewardlab.demo.world:truth_of_reply\n"
    )
    assert main(["ppo", "--config", str(recipe), "--num_ppo_epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "held-out GRM reward (5 prompts x 2 replies): before" in out
    report = json.loads((tmp_path / "run" / "ppo_eval.json").read_text())
    before, after = report["before"], report["after"]
    assert before["prompts"] == after["prompts"] == 5
    assert report["after_silence"]["samples_per_prompt"] == 2 and "gain_silence" in report
    # every reply scored by the world's own rules too, per axis and in total, and the gains
    # split by prompt kind (the held-out prompts hold both kinds)
    kinds = before["kind_per_prompt"]
    assert set(kinds) == {"plain", "rubric"}, kinds
    assert after["truth_axes"] == ["memory", "retention", "tone"]
    for axis in after["truth_axes"]:
        assert -1 <= after[f"truth_{axis}_mean"] <= 1
        diff = np.subtract(after[f"truth_{axis}_per_prompt"], before[f"truth_{axis}_per_prompt"])
        assert report[f"truth_{axis}_gain"]["mean"] == pytest.approx(diff.mean())
    truth_diff = np.asarray(after["truth_per_prompt"]) - np.asarray(before["truth_per_prompt"])
    assert report["truth_gain"]["mean"] == pytest.approx(truth_diff.mean())
    assert report["truth_gain"]["n"] == 5
    for kind in ("plain", "rubric"):
        gain = report[f"gain_{kind}"]
        diff = [a - b for a, b, k in zip(after["reward_per_prompt"], before["reward_per_prompt"],
                                          kinds, strict=True) if k == kind]  # fmt: skip
        assert gain["n"] == len(diff) and gain["mean"] == pytest.approx(np.mean(diff))
        assert f"truth_gain_{kind}" in report
    assert "held-out truth gain:" in out
    policy, _ = load_policy(tmp_path / "run" / "final")
    assert policy.is_audio
    assert main(["ppo", "--config", str(recipe), "--kl_estimator", "k9"]) == 1


def test_ppo_recipes_load_and_validate():
    from pathlib import Path

    from rewardlab.rl.ppo_config import parse_ppo_config

    recipes = sorted(Path(__file__).parents[1].joinpath("training").glob("ppo_*.yaml"))
    assert len(recipes) == 5  # the demo, Qwen2-Audio, Qwen2.5-Omni, Qwen3-Omni, Voxtral
    for recipe in recipes:
        # bf16 needs a GPU to validate; everything else is checked as written
        parsed = parse_ppo_config(recipe, ["--output_dir", "/tmp/unused", "--bf16", "false"])
        assert parsed.model_path and parsed.grm and parsed.project, recipe


def test_one_optimizer_step_per_mini_batch_with_gradient_accumulation(world, tmp_path):
    """2 epochs x 2 mini-batches, each accumulated over 2 micro-batches: 4 optimizer steps."""
    trainer = ppo_trainer(world, config(tmp_path, world, max_steps=1))
    trainer.train()
    steps = {int(state["step"]) for state in trainer.optimizer.state.values()}
    assert steps == {2 * 2}
