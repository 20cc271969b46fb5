"""Every backbone family the GRM and the PPO policy run, each a tiny random-init model of its
real architecture, over the demo world's speech: the same mechanics, family by family.

Qwen2.5-Omni is the multimodal-RoPE family: its shared-history cache, its batched reasoning on
that cache and its policy's embedding path are checked against the model's own full forward.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE, ppo_trainer, short_run
from peft import LoraConfig

from rewardlab.backbones import family_of, family_of_path, load_backbone
from rewardlab.cli import main as cli
from rewardlab.commands.options import TINY_FAMILIES
from rewardlab.grm.examples import load_examples
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.grm_trainer import GRMTrainer
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.tiny import TINY_BUILDERS, build_tiny_backbone, corpus_texts
from rewardlab.reward import RewardMapper
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.ppo_math import response_mask
from rewardlab.rl.rollout import response_logprobs
from rewardlab.rl.warm_start import build_tiny_policy

SMALL = replace(TINY_GRM_SIZE, layers=1)
AUDIO_FAMILIES = list(TINY_FAMILIES)


@pytest.fixture(scope="module")
def project(demo_world):
    return demo_world(n=24, seed=5)


@pytest.fixture(scope="module")
def data(project):
    return load_examples(project)


@pytest.fixture(scope="module", params=[*AUDIO_FAMILIES, "text"])
def backbone(request, tmp_path_factory, data):
    """(family name, a tiny GRM backbone of it)."""
    name = request.param
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    out = tmp_path_factory.mktemp(f"grm-{name}") / "backbone"
    build_tiny_backbone(out, texts, audio=name != "text", size=SMALL, family=name)
    return name, out


def grm_of(backbone, data, **kwargs) -> GenerativeRewardModel:
    return GenerativeRewardModel.load(backbone[1], media_root=data.media_root, **kwargs)


def grm_config(tmp_path, config_class=GRMConfig, **overrides):
    """3 short CPU steps of `config_class` (GRMConfig, or RMConfig for the scalar RM)."""
    return short_run(config_class, tmp_path, **({"max_steps": 3} | overrides))


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# -- the judge ------------------------------------------------------------------------------------


def test_the_family_is_read_from_the_saved_config(backbone):
    name, path = backbone
    family = family_of_path(path)
    assert family.name == name
    assert family_of(load_backbone(path)) is family


def test_cli_builds_each_family(project, tmp_path):
    assert set(TINY_FAMILIES) == set(TINY_BUILDERS)  # the CLI's --family choices
    for family in AUDIO_FAMILIES:
        out = tmp_path / family
        args = ["--project", str(project), "--out", str(out), "--family", family]
        assert cli(["tiny-grm", *args, "--hidden", "32", "--layers", "1"]) == 0
        assert family_of_path(out).name == family
    policy = tmp_path / "policy"
    assert cli(["tiny-policy", "--project", str(project), "--out", str(policy), "--steps", "2",
                "--family", "qwen3_omni_moe", "--hidden", "32", "--layers", "1"]) == 0  # fmt: skip
    assert family_of_path(policy).name == "qwen3_omni_moe"
    with pytest.raises(SystemExit):  # not a family the tiny builders know
        cli(
            [
                "tiny-grm",
                "--project",
                str(project),
                "--out",
                str(tmp_path / "x"),
                "--family",
                "gemma3n",
            ]
        )


def test_verdict_tokens_are_single_tokens(backbone, data):
    grm = grm_of(backbone, data)
    for token, token_id in zip(grm.format.verdict_tokens, grm.verdict_ids.tolist(), strict=True):
        assert grm.tokenizer.encode(token, add_special_tokens=False) == [token_id]


def test_shared_history_judge_equals_one_full_forward_per_order(backbone, data):
    grm = grm_of(backbone, data)
    items = [e.item for e in data.examples[:5]]
    dist = grm.judge(items, batch_size=3)
    prompts = [grm.encoder.encode(item, order) for item in items for order in dist.orders]
    with torch.no_grad():
        full = torch.softmax(grm._full_forward(prompts), -1).view(5, 2, -1).numpy()
    full[:, 1] = full[:, 1, ::-1]  # canonical orientation
    np.testing.assert_allclose(dist.probs, full, atol=1e-4)


def test_batched_reasoning_on_the_generation_cache_equals_one_at_a_time(backbone, data):
    grm = grm_of(backbone, data)
    items = [e.item for e in data.examples[:3]]
    batched = grm.judge(items, mode="reasoning", max_new_tokens=6)
    single = grm.judge(items, mode="reasoning", max_new_tokens=6, generation="item")
    assert batched.critiques == single.critiques
    np.testing.assert_allclose(batched.probs, single.probs, atol=1e-4)


def test_clips_become_what_the_familys_own_processor_makes(backbone, data):
    """Where rewardlab reads a family's processor as is (Qwen2-Audio, Audio Flamingo 3), the
    encoder's ids (placeholders expanded) and features are the processor's own; the Omni
    thinkers' processors need torchvision, so their token counts are checked against their
    towers instead (tests/test_backbone_info.py)."""
    from rewardlab.audio import load_ref

    grm = grm_of(backbone, data)
    if grm.family.processor_class is None:
        pytest.skip("read through SpeechChatTemplate, or a text backbone")
    item = data.examples[0].item
    if grm.family.name == "audioflamingo3":  # its processor takes one clip per text: 1 turn
        first = item.dialogue.model_copy(update={"turns": item.dialogue.turns[:1]})
        item = replace(item, dialogue=first, task=item.task.model_copy(update={"turn_index": 0}))
    encoded = grm.encoder.encode(item, "policy_first")
    history, _, _ = grm.format.render(
        grm.template, item.dialogue, item.task, item.rubric, "policy_first", audio=True
    )
    clips = [load_ref(data.media_root, ref).samples for ref in item.dialogue.audio_refs()]
    reference = grm.template(text=history, audio=clips, return_tensors="pt")
    assert encoded.history_ids == reference["input_ids"][0].tolist()
    features = np.stack(encoded.features).astype(np.float32)
    assert np.abs(features - reference["input_features"].numpy()).max() < 1e-2  # float16 cache


def test_silence_changes_the_verdict(backbone, data):
    if backbone[0] == "text":
        pytest.skip("a text backbone reads transcripts, no audio")
    grm = grm_of(backbone, data)
    items = [e.item for e in data.examples[:4]]
    heard, silent = grm.judge(items), grm.judge(items, audio="silence")
    assert np.abs(heard.probs - silent.probs).max() > 1e-3


def test_three_training_steps_move_every_trainable_weight_and_no_frozen_one(
    backbone, data, tmp_path
):
    grm = grm_of(backbone, data)
    before = params(grm.model)
    GRMTrainer(grm.model, grm_config(tmp_path), grm.encoder, data.examples[:8]).train()
    frozen = 0
    for name, param in grm.model.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == param.requires_grad, name
        frozen += not param.requires_grad
    # the audio tower (and an Omni thinker's unused vision encoder) stay as loaded
    assert (frozen > 0) == (backbone[0] != "text")


def test_lora_touches_the_language_model_only_and_round_trips(backbone, data, tmp_path):
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)")
    if backbone[0] == "text":
        lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    grm = grm_of(backbone, data, lora=lora)
    GRMTrainer(grm.model, grm_config(tmp_path), grm.encoder, data.examples[:8]).train()
    trainable = [n for n, p in grm.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert not any("audio_tower" in n or "visual" in n for n in trainable)
    saved = grm.save(tmp_path / "saved")
    reloaded = GenerativeRewardModel.load(saved, media_root=data.media_root)
    items = [e.item for e in data.examples[:4]]
    np.testing.assert_array_equal(reloaded.judge(items).probs, grm.judge(items).probs)


def test_full_checkpoint_round_trip_gives_identical_scores(backbone, data, tmp_path):
    grm = grm_of(backbone, data)
    GRMTrainer(grm.model, grm_config(tmp_path), grm.encoder, data.examples[:8]).train()
    reloaded = GenerativeRewardModel.load(grm.save(tmp_path / "final"), media_root=data.media_root)
    items = [e.item for e in data.examples[:4]]
    np.testing.assert_array_equal(reloaded.judge(items).probs, grm.judge(items).probs)


def test_the_scalar_rm_trains_on_every_family_and_hears_its_audio(backbone, data, tmp_path):
    """The scalar reward model baseline (a score head on the same backbone) goes through the
    same layer: a few Bradley-Terry steps move its head and every trainable weight, and for
    an audio family silence changes its rewards."""
    from rewardlab.grm.rm_config import RMConfig
    from rewardlab.grm.rm_trainer import RMTrainer
    from rewardlab.grm.scalar_rm import ScalarRewardModel

    rm = ScalarRewardModel.load(backbone[1], k=data.k, media_root=data.media_root)
    before = params(rm.net)
    RMTrainer(rm, grm_config(tmp_path, RMConfig), data.examples[:8]).train()
    for name, param in rm.net.named_parameters():
        assert (not torch.equal(param, before[name])) == param.requires_grad, name
    items = [e.item for e in data.examples[:4]]
    heard = rm.rewards(items)
    assert np.isfinite(heard).all()
    if backbone[0] != "text":
        assert np.abs(heard - rm.rewards(items, audio="silence")).max() > 1e-4


@pytest.mark.parametrize("family", ["qwen2_5_omni", "qwen3_omni_moe"])
def test_a_full_omni_checkpoint_loads_its_thinker_only(family, data, tmp_path):
    """Thinker + talker saved as one checkpoint (model_type qwen2_5_omni / qwen3_omni_moe):
    the judge is the thinker, weight for weight, and scores as the thinker saved alone."""
    import transformers

    full_class = {
        "qwen2_5_omni": transformers.Qwen2_5OmniForConditionalGeneration,
        "qwen3_omni_moe": transformers.Qwen3OmniMoeForConditionalGeneration,
    }[family]
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    thinker_path = build_tiny_backbone(tmp_path / "thinker", texts, size=SMALL, family=family)
    thinker = load_backbone(thinker_path)
    config = full_class.config_class(
        thinker_config=thinker.config.to_dict(), enable_audio_output=False
    )
    full = full_class(config)
    full.thinker.load_state_dict(thinker.state_dict())
    full.save_pretrained(tmp_path / "full")
    GenerativeRewardModel.load(thinker_path).template.save_pretrained(tmp_path / "full")
    assert json.loads((tmp_path / "full" / "config.json").read_text())["model_type"] == family
    loaded = load_backbone(tmp_path / "full")
    assert family_of(loaded).name == family and not hasattr(loaded, "talker")
    assert loaded.state_dict().keys() == thinker.state_dict().keys()
    for name, weight in thinker.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight), name
    items = [e.item for e in data.examples[:3]]
    alone = GenerativeRewardModel.load(thinker_path, media_root=data.media_root).judge(items)
    whole = GenerativeRewardModel.load(tmp_path / "full", media_root=data.media_root).judge(items)
    np.testing.assert_array_equal(whole.probs, alone.probs)


def test_an_omni_checkpoint_is_read_with_its_processors_chat_template(data, tmp_path):
    """A checkpoint's tokenizer may carry a text-only chat template beside the processor's
    chat_template.json, which places the audio: the audio one is read. None at all: refused."""
    from transformers import AutoTokenizer

    from rewardlab.backbones import load_processor

    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    path = build_tiny_backbone(tmp_path / "omni", texts, size=SMALL, family="qwen2_5_omni")
    placing = (path / "chat_template.jinja").read_text()
    (path / "chat_template.jinja").unlink()
    (path / "chat_template.json").write_text(json.dumps({"chat_template": placing}))
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    assert AutoTokenizer.from_pretrained(path).chat_template == config["chat_template"]
    assert load_processor(path).chat_template == placing
    (path / "chat_template.json").unlink()
    del config["chat_template"]
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match="no chat template"):
        load_processor(path)


# -- the policy -----------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=AUDIO_FAMILIES)
def policy_world(request, tmp_path_factory, project, data):
    """A tiny policy of one family, warm-started a little, and a tiny GRM of the same family."""
    name = request.param
    root = tmp_path_factory.mktemp(f"ppo-{name}")
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    grm = build_tiny_backbone(root / "grm", texts, size=SMALL, family=name)
    RewardMapper(k=3, normalize="running", clip=5.0).save(grm)
    build_tiny_policy(project, root / "policy", steps=20, size=SMALL, progress=False, family=name)
    return {"name": name, "project": project, "grm": grm, "policy": root / "policy"}


def ppo_config(tmp_path, world, **changes) -> AudioPPOConfig:
    values = {
        "output_dir": str(tmp_path / "run"),
        "model_path": str(world["policy"]),
        "use_cpu": True,
        "seed": 0,
        "max_steps": 1,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "num_mini_batches": 2,
        "num_ppo_epochs": 1,
        "response_length": 8,
        "learning_rate": 1e-3,
        "save_strategy": "no",
        "disable_tqdm": True,
        "local_rollout_forward_batch_size": 4,
    }
    return AudioPPOConfig(**(values | changes))


def test_policy_embeddings_are_the_models_own_audio_placement(policy_world, tmp_path):
    """The policy builds its input embeddings itself (tower once, projector, placeholders
    filled): its logits are the family model's own forward with the raw features."""
    trainer = ppo_trainer(policy_world, ppo_config(tmp_path, policy_world))
    policy, collector = trainer.policy, trainer.collector
    batch = collector.encode(trainer.train_prompts[:3])
    mask = batch.attention_mask
    mask_key = family_of(policy.base).feature_mask_key  # Voxtral's forward takes no mask
    frame_masks = {mask_key: batch.clips.feature_mask} if mask_key else {}
    with torch.no_grad():
        mine, _, _ = policy(batch.input_ids, mask, policy.encode_audio(batch.clips))
        own = policy.base(
            input_ids=batch.input_ids,
            attention_mask=mask,
            input_features=batch.clips.features,
            **frame_masks,
            position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
        ).logits
    torch.testing.assert_close(mine[mask.bool()], own[mask.bool()], atol=1e-5, rtol=1e-5)


def test_one_update_cached_tower_equals_re_encoding_and_audio_is_never_sampled(
    policy_world, tmp_path
):
    trainer = ppo_trainer(policy_world, ppo_config(tmp_path, policy_world))
    before = params(trainer.policy)
    trainer.train()
    moved = {n for n, p in trainer.policy.named_parameters() if not torch.equal(p, before[n])}
    assert any("language_model" in n for n in moved) and "value_head.weight" in moved
    assert not any("audio_tower" in n or "visual" in n for n in moved)
    prompts = trainer.train_prompts[:4]
    rollout, _ = trainer.collector.collect(
        trainer.model, trainer.accelerator, prompts, torch.Generator().manual_seed(0)
    )
    assert rollout.clips.states is not None  # the frozen tower ran once, at rollout time
    args = (rollout.query_responses, rollout.attention_mask)
    rows = torch.arange(len(prompts))
    cached, _, _ = response_logprobs(
        trainer.policy, *args, rollout.clips, rollout.context_length, rows, 1.0
    )
    raw = replace(rollout.clips, states=None)
    encoded, _, _ = response_logprobs(trainer.policy, *args, raw, rollout.context_length, rows, 1.0)
    torch.testing.assert_close(cached[rollout.mask], encoded[rollout.mask], atol=1e-5, rtol=1e-5)
    # make the audio placeholders the policy's favourites: still never sampled
    suppressed = trainer.collector.suppress_ids
    assert trainer.collector.encoder.audio_token_id in suppressed
    head = trainer.policy.base.lm_head.weight
    with torch.no_grad():
        head[suppressed] = head[suppressed] * 0 + head.abs().max() * 40
    batch = trainer.collector.encode(prompts)
    kept = trainer.policy.sample(
        batch.input_ids,
        batch.attention_mask,
        trainer.policy.encode_audio(batch.clips),
        max_new_tokens=6,
        eos_token_id=trainer.collector.eos_id,
        pad_token_id=trainer.collector.pad_id,
        suppress_token_ids=suppressed,
    )
    real = response_mask(kept, trainer.collector.eos_id, trainer.collector.pad_id)
    assert real.any() and not torch.isin(kept[real], torch.tensor(suppressed)).any()


def test_resume_equals_the_straight_run(policy_world, tmp_path):
    changes = {"max_steps": 2, "save_strategy": "steps", "save_steps": 1}
    straight = ppo_trainer(policy_world, ppo_config(tmp_path / "a", policy_world, **changes))
    straight.train()
    checkpoint = tmp_path / "a" / "run" / "checkpoint-1"
    resumed = ppo_trainer(
        policy_world,
        ppo_config(
            tmp_path / "b", policy_world, max_steps=2, resume_from_checkpoint=str(checkpoint)
        ),
    )
    resumed.train(resume_from_checkpoint=checkpoint)
    assert resumed.state.global_step == 2
    for (name, p), q in zip(
        straight.policy.named_parameters(), resumed.policy.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, msg=name)


def test_the_gpu_smoke_script_runs_on_a_cpu_with_a_tiny_config(tmp_path):
    """`training/gpu_smoke.sh FAMILY` as a GPU machine would run it, on a tiny config: a
    judge batch, 3 GRM steps and 1 PPO update, each printing its figures."""
    env = os.environ | {"SIZE": "tiny", "DEVICE": "cpu", "PY": sys.executable,
                        "OUT": str(tmp_path / "smoke")}  # fmt: skip
    done = subprocess.run(
        ["bash", "training/gpu_smoke.sh", "qwen3_omni_moe"],
        cwd=Path(__file__).parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("qwen3_omni_moe (tiny)") for line in lines)
    for start in ("judge: ", "GRM: 3 steps", "PPO: 1 update"):
        assert any(line.startswith(start) for line in lines), (start, done.stdout[-2000:])
