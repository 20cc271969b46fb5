"""The PPO recipe, top to bottom: prompts, policy, GRM reward, evaluate, train, evaluate.

    rewardlab tiny-policy --project demo_out --out demo_out/policy-init   # demo policy (SFT)
    rewardlab ppo --config training/ppo_demo.yaml

Prompts come from the judged tasks of a project, split by the same leakage groups (and by
default the same share and seed) as the GRM was trained with: held-out prompts are dialogues
neither the GRM nor the policy has seen. Writes to ``output_dir``: ``checkpoint-N/``
(resumable), ``final/`` (the policy, loadable with `load_policy`), ``ppo_config.yaml`` and
``ppo_eval.json`` (held-out score before and after, mean and standard error).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from peft import LoraConfig, PeftModel, get_peft_model
from tqdm.auto import tqdm
from transformers import PreTrainedModel, set_seed

from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.examples import load_examples, split_examples
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.model import _load_backbone, _load_template
from rewardlab.grm.recipe import parse_config
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.ppo_trainer import AudioPPOTrainer
from rewardlab.rl.prompts import (
    PolicyPromptEncoder,
    PPOPrompt,
    collate_prompts,
    prompts_from_examples,
)
from rewardlab.rl.rewards import GRMPromptReward
from rewardlab.schema import THINK_END, THINK_START


def parse_ppo_config(path: Path, overrides: list[str] | None = None) -> AudioPPOConfig:
    return parse_config(path, overrides, AudioPPOConfig)


@dataclass
class PromptSplit:
    train: list[PPOPrompt]
    held_out: list[PPOPrompt]
    media_root: Path


@dataclass
class ExampleSplit:
    examples: list[Any]
    train: list[Any]
    held_out: list[Any]
    media_root: Path


def split_like_grm(
    data: Path | str,
    eval_share: float | None = None,
    split_seed: int | None = None,
    *,
    grm_path: Path | str | None = None,
) -> ExampleSplit:
    """A project's judged tasks split by leakage group as the GRM at `grm_path` split them
    (`GRMCheckpoint.split`: its saved eval_share and split_seed unless given, refused when it
    has no config and they are not given): what the GRM held out stays held out for the
    policy too. Without a GRM, None takes GRMConfig's defaults."""
    if grm_path is not None:
        split = GRMCheckpoint(grm_path).split(data, eval_share, split_seed)
        project, train, held = split.data, split.train, split.held_out
    else:
        project = load_examples(data)
        share = GRMConfig.eval_share if eval_share is None else eval_share
        seed = GRMConfig.split_seed if split_seed is None else split_seed
        train, held = split_examples(project.examples, share, seed)
    if project.judgments.is_empty():
        raise ValueError(f"{data}: no judged tasks to take prompts from")
    return ExampleSplit(project.examples, train, held, project.media_root)


def load_prompts(
    data: Path | str,
    eval_share: float | None,
    split_seed: int | None,
    *,
    grm_path: Path | str | None = None,
) -> PromptSplit:
    """Prompts of a project's judged tasks, split as `split_like_grm` splits them."""
    split = split_like_grm(data, eval_share, split_seed, grm_path=grm_path)
    return PromptSplit(
        prompts_from_examples(split.train), prompts_from_examples(split.held_out), split.media_root
    )


def load_policy(
    path: Path | str,
    *,
    lora: LoraConfig | None = None,
    freeze_audio_tower: bool = True,
    dtype: torch.dtype | None = None,
    reference: bool = True,
) -> tuple[AudioPolicy, Any]:
    """(policy with value head, processor or tokenizer) from a local directory: a backbone,
    a saved full policy, or a saved LoRA adapter (its base path is in the adapter config).

    `reference`: give a full fine-tune a frozen copy of the weights loaded here.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no policy directory at {path} (models load from local paths)")
    adapter = path / "adapter_config.json"
    base_path = path
    if adapter.exists():
        base_path = Path(json.loads(adapter.read_text())["base_model_name_or_path"])
    model: PreTrainedModel | PeftModel = _load_backbone(base_path, dtype)
    template = _load_template(path if (path / "tokenizer_config.json").exists() else base_path)
    frozen = None
    if adapter.exists():
        model = PeftModel.from_pretrained(model, path, is_trainable=True)
    elif lora is not None:
        model = get_peft_model(model, lora)
    elif reference:
        frozen = AudioPolicy.frozen_reference(model)
    policy = AudioPolicy(model, reference=frozen)
    if freeze_audio_tower and policy.is_audio:
        policy.base.model.audio_tower.requires_grad_(False)
    policy.load_value_head(path)
    return policy, template


def run_ppo(config: AudioPPOConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train a policy with PPO against a GRM; returns the held-out evaluation."""
    set_seed(config.seed)
    split = load_prompts(
        config.data, config.eval_share, config.split_seed, grm_path=config.grm_path
    )
    print(f"{len(split.train)} training prompts, {len(split.held_out)} held out (by leakage group)")
    lora = config.lora_config()
    resume = config.resume_from_checkpoint
    policy, template = load_policy(
        resume or config.model_path,
        lora=lora,
        freeze_audio_tower=config.freeze_audio_tower,
        dtype=torch.bfloat16 if config.bf16 else None,
        reference=False,
    )
    if not policy.is_lora and config.kl_coef:
        # the reference is the policy the run started from, also when resuming
        start, _ = load_policy(config.model_path, reference=False)
        policy.set_reference(AudioPolicy.frozen_reference(start.model))
    reward = GRMReward.from_checkpoint(config.grm_path, project=config.data)
    reward.batch_size = config.reward_batch_size
    encoder = PolicyPromptEncoder(
        template, media_root=split.media_root, max_prompt_tokens=config.max_prompt_tokens
    )
    trainer = AudioPPOTrainer(policy, config, encoder, split.train, GRMPromptReward(reward))
    held = split.held_out[: config.eval_prompts]
    report: dict[str, Any] = {"train_prompts": len(split.train), "eval_prompts": len(held)}
    if held:
        report |= evaluate_held_out(trainer, held, config, "before")
    trainer.train(resume_from_checkpoint=resume)
    if held:
        report |= evaluate_held_out(trainer, held, config, "after")
        report["gain"] = paired_gain(report["before"], report["after"])
        gain = report["gain"]
        print(f"held-out gain: {gain['mean']:+.3f} ± {gain['sem']:.3f} (paired by prompt)")
        if config.eval_silence and trainer.encoder.is_audio:
            silent = paired_gain(report["before_silence"], report["after_silence"])
            report["gain_silence"] = silent
            print(
                f"held-out gain with the policy hearing silence: {silent['mean']:+.3f} ±"
                f" {silent['sem']:.3f}"
            )
    out = Path(config.output_dir)
    shutil.rmtree(out / "final", ignore_errors=True)
    policy.save(out / "final", template=template)
    (out / "ppo_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=True))
    report["log_history"] = trainer.state.log_history
    (out / "ppo_eval.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


def evaluate_held_out(
    trainer: AudioPPOTrainer, held: list[PPOPrompt], config: AudioPPOConfig, when: str
) -> dict[str, Any]:
    """{when: ...} and, for an audio policy with eval_silence, {when_silence: ...}."""
    modes = ["audio"] + (["silence"] if config.eval_silence and trainer.encoder.is_audio else [])
    out = {}
    for mode in modes:
        key = when if mode == "audio" else f"{when}_silence"
        out[key] = trainer.evaluate_prompts(
            held, seed=config.seed, samples=config.eval_samples, audio=mode
        )
        print(_describe(key.replace("_", ", policy hearing "), out[key]))
    return out


def paired_gain(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """After minus before, per prompt: its mean and standard error."""
    import numpy as np

    diff = np.asarray(after["reward_per_prompt"]) - np.asarray(before["reward_per_prompt"])
    sem = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return {"mean": float(diff.mean()), "sem": sem}


def _describe(when: str, result: dict[str, Any]) -> str:
    return (
        f"held-out {when}: score {result['score_mean']:+.3f} ± {result['score_sem']:.3f}"
        f" (GRM reward {result['reward_mean']:+.3f} ± {result['reward_sem']:.3f},"
        f" {result['prompts']} prompts x {result['samples_per_prompt']} replies)"
    )


# -- a warm start: supervised fine-tuning on the project's replies ------------------------------

TRACES = (
    "Listen to how they sound.",
    "Recall what they told me.",
    "Answer the question kindly.",
)


def warm_start_pairs(
    examples: list[Any], separator: str = THINK_END
) -> list[tuple[PPOPrompt, str]]:
    """(prompt, target) pairs: every candidate reply of every task, after a short trace."""
    pairs = []
    prompts = {(p.dialogue.id, p.turn_index): p for p in prompts_from_examples(examples)}
    for number, example in enumerate(sorted(examples, key=lambda e: e.item.task.id)):
        task = example.item.task
        prompt = prompts[(task.dialogue_id, task.turn_index)]
        for side, candidate in enumerate((task.policy, task.reference)):
            trace = TRACES[(number + side) % len(TRACES)]
            pairs.append((prompt, f"{THINK_START}{trace}{separator}{candidate.text}"))
    return pairs


def supervised_warm_start(
    policy: AudioPolicy,
    encoder: PolicyPromptEncoder,
    pairs: list[tuple[PPOPrompt, str]],
    *,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Teach a fresh policy the shape of a reply (trace, separator, reply, EOS) by
    next-token loss on `pairs`; returns the loss per step."""
    tokenizer = encoder.tokenizer
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 10) * max(0.05, 1 - step / max(steps, 1))
    )
    generator = torch.Generator().manual_seed(seed)
    device = next(policy.parameters()).device
    encoded_prompts: dict[str, Any] = {}
    losses = []
    policy.train()
    for _ in tqdm(range(steps), desc="warm start", disable=not progress):
        rows = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
        prompts = []
        targets = []
        for row in rows:
            prompt, target = pairs[row]
            if prompt.id not in encoded_prompts:
                encoded_prompts[prompt.id] = encoder.encode(prompt)
            prompts.append(encoded_prompts[prompt.id])
            targets.append([*tokenizer.encode(target, add_special_tokens=False), eos])
        batch = collate_prompts(prompts, pad)
        width = max(len(t) for t in targets)
        target_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        target_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(targets):
            target_ids[row, : len(ids)] = torch.tensor(ids)
            target_mask[row, : len(ids)] = 1
        input_ids = torch.cat([batch.input_ids, target_ids], dim=1).to(device)
        mask = torch.cat([batch.attention_mask, target_mask], dim=1).to(device)
        clips = batch.clips.to(device) if batch.clips is not None else None
        logits, _, _ = policy(input_ids, mask, policy.encode_audio(clips))
        context = batch.input_ids.shape[1]
        predicted = logits[:, context - 1 : -1].float()
        loss = torch.nn.functional.cross_entropy(
            predicted.reshape(-1, predicted.shape[-1]),
            target_ids.to(device).masked_fill(target_mask.to(device) == 0, -100).reshape(-1),
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    policy.eval()
    return losses


def build_tiny_policy(
    project: Path | str,
    out: Path | str,
    *,
    steps: int = 300,
    grm_path: Path | str | None = None,
    size: Any = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, float]:
    """A random-init tiny audio policy (`rewardlab.grm.tiny`), warm-started on the replies of
    the project's training split (the GRM's split: held-out dialogues stay unseen)."""
    from rewardlab.grm.tiny import TinySize, build_tiny_backbone
    from rewardlab.rl.prompts import DEFAULT_POLICY_SYSTEM

    split = split_like_grm(project, grm_path=grm_path)
    examples, train, media_root = split.examples, split.train, split.media_root
    pairs = warm_start_pairs(train)
    texts = [DEFAULT_POLICY_SYSTEM, THINK_START, THINK_END, *TRACES]
    texts += [t.text or "" for e in examples for t in e.item.dialogue.turns]
    texts += [target for _, target in pairs]
    out = build_tiny_backbone(Path(out), texts, audio=True, size=size or TinySize(), seed=seed)
    set_seed(seed)
    policy, template = load_policy(out, reference=False)
    encoder = PolicyPromptEncoder(template, media_root=media_root)
    losses = supervised_warm_start(
        policy, encoder, pairs, steps=steps, seed=seed, progress=progress
    )
    policy.model.save_pretrained(out)
    tail = losses[-10:] or [float("nan")]
    return {"pairs": len(pairs), "first_loss": losses[0], "last_loss": sum(tail) / len(tail)}
