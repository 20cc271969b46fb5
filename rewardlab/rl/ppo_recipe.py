"""The PPO recipe, top to bottom: build, evaluate, loop over updates, evaluate, save.

    rewardlab tiny-policy --project demo_out --out demo_out/policy-init   # demo policy (SFT)
    rewardlab ppo --config training/ppo_demo.yaml

`train(config)` builds the policy (and its frozen reference), the GRM reward, the prompts
(split as the GRM split them: held-out prompts are dialogues neither model has seen), then
`setup` builds the optimizer and scheduler and hands them to ``accelerator.prepare``. Each
update of `run` is: `RolloutCollector.collect` -> `compute_advantages` (GAE, `ppo_math`) ->
`optimise` -> log -> checkpoint. accelerate is the device / DDP / DeepSpeed layer.

Writes to ``output_dir``: ``checkpoint-N/`` (resumable, `rl.checkpoint`), ``final/`` (the
policy, loadable with `load_policy`), ``ppo_config.yaml`` and ``ppo_eval.json`` (held-out
score before and after, mean and standard error, and the log history).

Prompt order and sampling are seeded per update (`update_generator`), so a resumed run draws
what the straight run drew. Metrics use TRL's names (``objective/kl``, ``objective/scores``,
``policy/clipfrac_avg``, ``val/ratio``, ...) plus ``objective/grm_reward`` (before penalties)
and ``time/*_s``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from accelerate import Accelerator, DistributedDataParallelKwargs
from tqdm.auto import tqdm
from transformers import enable_full_determinism, set_seed
from trl.trainer.utils import disable_dropout_in_model

from rewardlab.rl.checkpoint import RunState, load_checkpoint, save_checkpoint
from rewardlab.rl.evaluation import evaluate_held_out, paired_gain
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.rl.optimise import build_optimizer, build_scheduler, compute_advantages, optimise
from rewardlab.rl.policy import AudioPolicy, load_policy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.prompt_split import load_prompts
from rewardlab.rl.prompts import PolicyPromptEncoder, PPOPrompt
from rewardlab.rl.rewards import GRMPromptReward, RewardSource
from rewardlab.rl.rollout import RolloutCollector


def train(config: AudioPPOConfig) -> dict[str, Any]:
    """Train a policy with PPO against a GRM; returns the held-out evaluation."""
    set_seed(config.seed)
    split = load_prompts(config.project, config.eval_share, config.split_seed, grm_path=config.grm)
    print(f"{len(split.train)} training prompts, {len(split.held_out)} held out (by leakage group)")
    policy, template = build_policy(config)
    grm_reward = GRMReward.from_checkpoint(config.grm, project=config.project)
    grm_reward.batch_size = config.reward_batch_size
    reward = GRMPromptReward(grm_reward)
    ppo = setup(config, policy, reward, split.train, template, split.media_root)
    held = split.held_out[: config.eval_prompts]
    report: dict[str, Any] = {"train_prompts": len(split.train), "eval_prompts": len(held)}
    if held:
        report |= evaluate_held_out(ppo.collector, ppo.policy, held, config, "before")
    run(ppo, config.resume_from_checkpoint)
    if held:
        report |= evaluate_held_out(ppo.collector, ppo.policy, held, config, "after")
        report |= gains(report, config.eval_silence and ppo.collector.encoder.is_audio)
    if ppo.accelerator.is_main_process:
        save_outputs(ppo, report)
    return report


def build_policy(config: AudioPPOConfig) -> tuple[AudioPolicy, Any]:
    """(policy, processor) to train, from ``resume_from_checkpoint`` or ``model_path``; a full
    fine-tune with a KL term gets a frozen reference: the policy the run started from."""
    resume = config.resume_from_checkpoint
    policy, template = load_policy(
        resume or config.model_path,
        lora=config.lora_config(),
        freeze_audio_tower=config.freeze_audio_tower,
        dtype=torch.bfloat16 if config.bf16 else None,
        reference=False,
    )
    if not policy.is_lora and config.kl_coef:
        start, _ = load_policy(config.model_path, reference=False)
        policy.set_reference(AudioPolicy.frozen_reference(start.model))
    return policy, template


@dataclass
class PPORun:
    """The built pieces of one run: what `run` loops over."""

    config: AudioPPOConfig
    accelerator: Accelerator
    model: torch.nn.Module  # the policy as `accelerator.prepare` returned it (DDP, DeepSpeed)
    policy: AudioPolicy  # the same, unwrapped
    template: Any  # its processor or tokenizer
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    collector: RolloutCollector
    reward: RewardSource
    train_prompts: list[PPOPrompt]
    state: RunState


def setup(
    config: AudioPPOConfig,
    policy: AudioPolicy,
    reward: RewardSource,
    train_prompts: Sequence[PPOPrompt],
    template: Any,
    media_root: Path | None = None,
) -> PPORun:
    """Seed, accelerator, optimizer and scheduler, ``accelerator.prepare``, rollout collector."""
    check_prompts(config, train_prompts)
    if config.full_determinism:
        enable_full_determinism(config.seed)
    else:
        set_seed(config.seed)  # as Trainer did: the run's draws do not depend on what came before
    accelerator = Accelerator(
        cpu=config.use_cpu,
        mixed_precision=config.mixed_precision,
        deepspeed_plugin=config.deepspeed_plugin,
        log_with=config.report_to or None,
        project_dir=config.output_dir,
        # the value head is outside the LM's graph on some passes: let DDP find unused ones
        kwargs_handlers=[
            DistributedDataParallelKwargs(
                find_unused_parameters=config.ddp_find_unused_parameters is not False
            )
        ],
    )
    if config.deepspeed_plugin is not None and not policy.is_lora and config.kl_coef:
        raise ValueError(
            "with DeepSpeed, train a LoRA policy (lora_r > 0): its reference is the same"
            " network with the adapters off; a separate frozen reference is not sharded"
        )
    disable_dropout_in_model(policy)
    if config.activation_checkpointing:  # (``gradient_checkpointing``, its old name, maps here)
        policy.gradient_checkpointing_enable(config.activation_checkpointing_kwargs)
    if policy.reference is not None:
        policy.reference.to(accelerator.device)
    optimizer = build_optimizer(policy, config)
    scheduler = build_scheduler(optimizer, config)
    model, optimizer = accelerator.prepare(policy, optimizer)
    encoder = PolicyPromptEncoder(
        template, media_root=media_root, max_prompt_tokens=config.max_prompt_tokens
    )
    return PPORun(
        config, accelerator, model, accelerator.unwrap_model(model), template, optimizer,
        scheduler, RolloutCollector(config, encoder, reward, accelerator.device), reward,
        list(train_prompts), RunState(max_steps=config.max_steps),
    )  # fmt: skip


def check_prompts(config: AudioPPOConfig, train_prompts: Sequence[PPOPrompt]) -> None:
    if not train_prompts:
        raise ValueError("no training prompts")
    needed = config.rollout_batch_size // config.rollouts_per_prompt
    if len(train_prompts) < needed:
        raise ValueError(
            f"{len(train_prompts)} training prompts, fewer than one rollout batch needs"
            f" ({needed} = per_device_train_batch_size"
            f" {config.per_device_train_batch_size} x gradient_accumulation_steps"
            f" {config.gradient_accumulation_steps} x num_mini_batches {config.num_mini_batches}"
            f" / rollouts_per_prompt {config.rollouts_per_prompt})"
        )


def run(ppo: PPORun, resume_from_checkpoint: str | Path | None = None) -> RunState:
    """The loop: updates until ``max_steps``, logging and checkpointing as configured."""
    config, accelerator = ppo.config, ppo.accelerator
    if resume_from_checkpoint:
        ppo.state = load_checkpoint(
            resume_from_checkpoint, ppo.policy, ppo.optimizer, ppo.scheduler, ppo.reward
        )
        ppo.state.max_steps = config.max_steps
    if config.report_to:
        accelerator.init_trackers(config.run_name or "rewardlab-ppo")
    bar = tqdm(
        total=config.max_steps,
        initial=ppo.state.global_step,
        disable=config.disable_tqdm or not accelerator.is_local_main_process,
    )
    pending: list[dict[str, float]] = []  # the updates since the last log
    while ppo.state.global_step < config.max_steps:
        step = ppo.state.global_step
        pending.append(update(ppo, step))
        ppo.scheduler.step()
        ppo.state.global_step = step + 1
        ppo.state.epoch = (
            (step + 1) * config.rollout_batch_size / config.rollouts_per_prompt
        ) / len(ppo.train_prompts)
        bar.update(1)
        if config.logging_steps and (step + 1) % max(int(config.logging_steps), 1) == 0:
            log(ppo, mean_metrics(pending), bar)
            pending.clear()
        if should_save(config, step + 1):
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(
                    config.output_dir, ppo.state, ppo.policy, ppo.template, ppo.optimizer,
                    ppo.scheduler, ppo.reward, config,
                )  # fmt: skip
    bar.close()
    if config.report_to:
        accelerator.end_training()
    return ppo.state


def update_generator(seed: int, update: int, purpose: int, device: Any = "cpu") -> torch.Generator:
    """A generator seeded by (seed, update, purpose): 0 prompt order, 1 sampling (on the
    device), 2 mini-batch order. Resumed runs draw what straight ones drew."""
    return torch.Generator(device=device).manual_seed(
        (seed * 1_000_003 + update * 7919 + purpose) % (2**63 - 1)
    )


def update(ppo: PPORun, step: int) -> dict[str, float]:
    """One update: rollout -> advantages -> optimise; returns its metrics."""
    config, device = ppo.config, ppo.accelerator.device
    order = torch.randperm(len(ppo.train_prompts), generator=update_generator(config.seed, step, 0))
    distinct = config.rollout_batch_size // config.rollouts_per_prompt
    prompts = [
        ppo.train_prompts[i]
        for i in order[:distinct].tolist()
        for _ in range(config.rollouts_per_prompt)
    ]
    start = time.perf_counter()
    rollout, reward_s = ppo.collector.collect(
        ppo.model, ppo.accelerator, prompts, update_generator(config.seed, step, 1, device)
    )
    rollout_s = time.perf_counter() - start - reward_s
    advantages, returns, token_stats = compute_advantages(rollout, config)
    start = time.perf_counter()
    stats = optimise(
        ppo.model, ppo.accelerator, ppo.optimizer, rollout, advantages, returns,
        update_generator(config.seed, step, 2), config,
    )  # fmt: skip
    optimise_s = time.perf_counter() - start
    return (
        token_stats
        | stats
        | {
            "objective/scores": rollout.scores.mean().item(),
            "objective/grm_reward": rollout.rewards.mean().item(),
            "val/num_eos_tokens": rollout.has_eos.sum().item(),
            "val/separator_share": rollout.has_separator.float().mean().item(),
            "val/response_length": rollout.mask.sum(1).float().mean().item(),
            "time/rollout_s": rollout_s,
            "time/reward_s": reward_s,
            "time/optimize_s": optimise_s,
            "lr": ppo.scheduler.get_last_lr()[0],
            "episode": (step + 1) * config.rollout_batch_size,
        }
    )


def mean_metrics(updates: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each metric averaged over the updates that report it: a logged entry stands for every
    update since the previous one, not only the last (one rollout batch is a noisy sample)."""
    keys = dict.fromkeys(key for metrics in updates for key in metrics)
    return {
        key: float(np.mean([metrics[key] for metrics in updates if key in metrics])) for key in keys
    }


def log(ppo: PPORun, metrics: dict[str, float], bar: tqdm) -> None:
    """Append to the log history (with epoch and step), print, and send to any tracker."""
    logs = metrics | {"epoch": ppo.state.epoch}
    ppo.state.log_history.append(logs | {"step": ppo.state.global_step})
    if ppo.config.report_to:
        ppo.accelerator.log(logs, step=ppo.state.global_step)
    if ppo.accelerator.is_local_main_process:
        line = str({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in logs.items()})
        if bar.disable:
            print(line)
        else:
            bar.write(line)  # above the progress bar


def should_save(config: AudioPPOConfig, step: int) -> bool:
    """Every ``save_steps`` updates and after the last, when ``save_strategy`` is steps."""
    if config.save_strategy != "steps" or not config.save_steps:
        return False
    return step % max(int(config.save_steps), 1) == 0 or step == config.max_steps


def gains(report: dict[str, Any], silence: bool) -> dict[str, Any]:
    """The paired held-out gains: overall and per prompt kind, of the GRM reward and (with a
    truth scorer) of the truth, and with the policy hearing silence; printed as a table."""
    before, after = report["before"], report["after"]
    keys = ["reward"] + (["truth"] if "truth_per_prompt" in before else [])
    kinds = sorted(set(before["kind_per_prompt"]))
    out: dict[str, Any] = {}
    for key in keys:
        name = "gain" if key == "reward" else f"{key}_gain"
        out[name] = paired_gain(before, after, key)
        for kind in kinds if len(kinds) > 1 else []:
            out[f"{name}_{kind}"] = paired_gain(before, after, key, kind)
    for axis in before.get("truth_axes", []):  # paired per axis: what PPO actually improved
        out[f"truth_{axis}_gain"] = paired_gain(before, after, f"truth_{axis}")
    if silence:
        out["gain_silence"] = paired_gain(report["before_silence"], report["after_silence"])
    for name, gain in out.items():
        print(
            f"held-out {name.replace('_', ' ')}: {gain['mean']:+.3f} ± {gain['sem']:.3f}"
            f" ({gain['n']} prompts, paired)"
        )
    return out


def save_outputs(ppo: PPORun, report: dict[str, Any]) -> None:
    """``final/`` (the policy), ``ppo_config.yaml`` and ``ppo_eval.json`` in ``output_dir``."""
    out = Path(ppo.config.output_dir)
    shutil.rmtree(out / "final", ignore_errors=True)
    ppo.policy.save(out / "final", template=ppo.template)
    (out / "ppo_config.yaml").write_text(yaml.safe_dump(ppo.config.to_dict(), sort_keys=True))
    report["log_history"] = ppo.state.log_history
    (out / "ppo_eval.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
