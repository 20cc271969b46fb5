"""`AudioPPOTrainer`: PPO for an audio-LLM policy, scored by the generative reward model.

One update:

1. **rollout**: sample ``rollout_batch_size`` prompts; encode their clips once (frozen tower);
   sample replies (audio special tokens suppressed); one no-grad pass per chunk gives the
   policy's log-probs and values, one more with the reference policy its log-probs.
2. **reward**: decode each reply, split the reasoning trace off at ``separator``, and score the
   reply with the reward source (the GRM, both orders, through its `RewardMapper`); subtract
   ``missing_eos_penalty`` from replies without EOS and ``missing_separator_penalty`` from
   replies without the separator.
3. **advantages**: per-token rewards are -kl_coef * KL (k1 or k3) on every token plus the score
   on the reply's last real token; GAE gives advantages (whitened over the batch's tokens) and
   returns.
4. **optimisation**: ``num_ppo_epochs`` shuffled passes of mini-batches split into
   micro-batches (gradient accumulation); clipped policy loss + vf_coef * clipped value loss.

Differences from TRL's last PPO trainer (v1.12, text only): audio features travel with every
pass and are sliced per clip when a batch is split; a frozen audio tower runs once per rollout;
the value head shares the policy's trunk (one forward gives logits and values, where TRL ran a
separate value model); the score lands on the reply's EOS token rather than on the padding
position after it; the reward is any `RewardSource` working on decoded text, so the policy and
the judge need not share a tokenizer; prompt order and sampling are seeded per update, so a
resumed run continues exactly where a straight one would be.

Metrics use TRL's names (``objective/kl``, ``objective/scores``, ``policy/clipfrac_avg``,
``val/ratio``, ...) plus ``objective/grm_reward`` (before penalties) and ``time/*_s``.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerState
from trl.models import unwrap_model_for_generation
from trl.trainer.utils import disable_dropout_in_model, entropy_from_logits, selective_log_softmax

from rewardlab.grm.encoding import AudioMode
from rewardlab.rl import ppo_math
from rewardlab.rl.grm_reward import split_reasoning
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.prompts import (
    Clips,
    PolicyPromptEncoder,
    PPOPrompt,
    PromptBatch,
    collate_prompts,
)
from rewardlab.rl.rewards import RewardSource

INVALID_LOGPROB = 1.0  # stands in for log-probs of padding; masked out of every sum
OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE = "optimizer.pt", "scheduler.pt", "rng_state.pth"
STATE_FILE = "trainer_state.json"


@dataclass
class Rollout:
    """One update's rollouts, everything PPO needs, rows aligned."""

    prompts: list[PPOPrompt]
    query_responses: torch.Tensor  # (B, Tq + R)
    attention_mask: torch.Tensor  # (B, Tq + R)
    clips: Clips | None
    context_length: int  # Tq
    responses: torch.Tensor  # (B, R)
    mask: torch.Tensor  # (B, R) True on real reply tokens
    logprobs: torch.Tensor  # (B, R)
    ref_logprobs: torch.Tensor  # (B, R)
    values: torch.Tensor  # (B, R)
    scores: torch.Tensor  # (B,) what PPO optimises: reward minus penalties
    rewards: torch.Tensor  # (B,) the reward source's score alone
    has_eos: torch.Tensor  # (B,)
    has_separator: torch.Tensor  # (B,)


class AudioPPOTrainer(Trainer):
    def __init__(
        self,
        policy: AudioPolicy,
        args: AudioPPOConfig,
        encoder: PolicyPromptEncoder,
        train_prompts: Sequence[PPOPrompt],
        reward: RewardSource,
    ):
        if not train_prompts:
            raise ValueError("no training prompts")
        if len(train_prompts) < args.rollout_batch_size:
            raise ValueError(
                f"{len(train_prompts)} training prompts, fewer than one rollout batch"
                f" ({args.rollout_batch_size} = per_device_train_batch_size"
                f" {args.per_device_train_batch_size} x gradient_accumulation_steps"
                f" {args.gradient_accumulation_steps} x num_mini_batches {args.num_mini_batches})"
            )
        super().__init__(model=policy, args=args, processing_class=encoder.tokenizer)
        self.policy, self.encoder, self.reward = policy, encoder, reward
        self.train_prompts = list(train_prompts)
        self.tokenizer = encoder.tokenizer
        self.eos_id = self.tokenizer.eos_token_id
        self.pad_id = self.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = self.eos_id
        self.suppress_ids = encoder.suppressed_token_ids()
        disable_dropout_in_model(policy)
        if policy.reference is not None:
            policy.reference.to(self.args.device)
        if self.is_deepspeed_enabled and not policy.is_lora and args.kl_coef:
            raise ValueError(
                "with DeepSpeed, train a LoRA policy (lora_r > 0): its reference is the same"
                " network with the adapters off; a separate frozen reference is not sharded"
            )

    # -- the loop --------------------------------------------------------------------------

    def train(self, resume_from_checkpoint: str | Path | None = None, **_: Any) -> TrainerState:
        args = self.args
        self.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
        self.model_wrapped, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        self.state = TrainerState(
            max_steps=args.max_steps,
            logging_steps=args.logging_steps,
            save_steps=args.save_steps,
            is_local_process_zero=self.is_local_process_zero(),
            is_world_process_zero=self.is_world_process_zero(),
        )
        if resume_from_checkpoint:
            self._load_checkpoint(Path(resume_from_checkpoint))
        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        while self.state.global_step < args.max_steps:
            update = self.state.global_step
            metrics = self.update(update)
            self.lr_scheduler.step()
            self.state.global_step = update + 1
            self.state.epoch = (update + 1) * args.rollout_batch_size / len(self.train_prompts)
            self.control = self.callback_handler.on_step_end(args, self.state, self.control)
            if args.logging_steps and (update + 1) % max(int(args.logging_steps), 1) == 0:
                self.log(metrics)
            if self._should_save(update + 1):
                self.save_checkpoint()
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        return self.state

    def _should_save(self, step: int) -> bool:
        strategy = str(getattr(self.args.save_strategy, "value", self.args.save_strategy))
        if strategy != "steps" or not self.args.save_steps:
            return False
        return step % max(int(self.args.save_steps), 1) == 0 or step == self.args.max_steps

    def _generator(self, update: int, purpose: int) -> torch.Generator:
        """A generator seeded by (seed, update, purpose): resumed runs draw what straight ones
        drew."""
        device = self.args.device if purpose == 1 else "cpu"
        seed = (self.args.seed * 1_000_003 + update * 7919 + purpose) % (2**63 - 1)
        return torch.Generator(device=device).manual_seed(seed)

    def update(self, update: int) -> dict[str, float]:
        """One rollout + PPO optimisation; returns its metrics."""
        args = self.args
        order = torch.randperm(len(self.train_prompts), generator=self._generator(update, 0))
        prompts = [self.train_prompts[i] for i in order[: args.rollout_batch_size].tolist()]
        start = time.perf_counter()
        rollout, reward_s = self.rollout(prompts, self._generator(update, 1))
        rollout_s = time.perf_counter() - start - reward_s
        advantages, returns, token_stats = self.advantages(rollout)
        start = time.perf_counter()
        stats = self.optimise(rollout, advantages, returns, self._generator(update, 2))
        optimise_s = time.perf_counter() - start
        metrics = token_stats | stats
        metrics |= {
            "objective/scores": rollout.scores.mean().item(),
            "objective/grm_reward": rollout.rewards.mean().item(),
            "val/num_eos_tokens": rollout.has_eos.sum().item(),
            "val/separator_share": rollout.has_separator.float().mean().item(),
            "val/response_length": rollout.mask.sum(1).float().mean().item(),
            "time/rollout_s": rollout_s,
            "time/reward_s": reward_s,
            "time/optimize_s": optimise_s,
            "lr": self.lr_scheduler.get_last_lr()[0],
            "episode": (update + 1) * args.rollout_batch_size,
        }
        return metrics

    # -- 1 + 2: rollout and reward ---------------------------------------------------------

    def encode(self, prompts: Sequence[PPOPrompt], audio: AudioMode = "audio") -> PromptBatch:
        """Left-padded prompts; ``audio="silence"`` puts the same second of silence in every
        clip's place (what the policy does without hearing the user)."""
        encoded = [self.encoder.encode(p, audio=audio) for p in prompts]
        return collate_prompts(encoded, self.pad_id)

    def generate(
        self, policy: AudioPolicy, batch: PromptBatch, generator: torch.Generator
    ) -> torch.Tensor:
        """(B, response_length) sampled responses, in chunks of the forward batch size."""
        args, device = self.args, self.args.device
        chunk = args.local_rollout_forward_batch_size
        out = []
        for start in range(0, len(batch.input_ids), chunk):
            rows = torch.arange(start, min(start + chunk, len(batch.input_ids)))
            clips = batch.clips.select(rows).to(device) if batch.clips is not None else None
            out.append(
                policy.sample(
                    batch.input_ids[rows].to(device),
                    batch.attention_mask[rows].to(device),
                    clips,
                    max_new_tokens=args.response_length,
                    eos_token_id=self.eos_id,
                    pad_token_id=self.pad_id,
                    temperature=args.temperature,
                    top_k=args.top_k,
                    suppress_token_ids=self.suppress_ids,
                    generator=generator,
                )
            )
        width = max(r.shape[1] for r in out)
        padded = [
            torch.nn.functional.pad(r, (0, width - r.shape[1]), value=self.pad_id) for r in out
        ]
        return torch.cat(padded)

    def response_logprobs(
        self,
        policy: AudioPolicy,
        query_responses: torch.Tensor,
        attention_mask: torch.Tensor,
        clips: Clips | None,
        context_length: int,
        rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, values, logits) of the response tokens of `rows`, one pass."""
        sub_clips = clips.select(rows) if clips is not None else None
        logits, values, _ = policy(query_responses[rows], attention_mask[rows], sub_clips)
        logits = logits[:, context_length - 1 : -1].float() / (self.args.temperature + 1e-7)
        responses = query_responses[rows, context_length:]
        return selective_log_softmax(logits, responses), values[:, context_length - 1 : -1], logits

    @torch.no_grad()
    def rollout(
        self, prompts: Sequence[PPOPrompt], generator: torch.Generator
    ) -> tuple[Rollout, float]:
        """Sampled replies with their log-probs, values and scores; also the reward seconds."""
        args, device = self.args, self.args.device
        batch = self.encode(prompts)
        with unwrap_model_for_generation(
            self.model_wrapped, self.accelerator, gather_deepspeed3_params=True
        ) as unwrapped:
            policy: AudioPolicy = unwrapped
            clips = batch.clips.to(device) if batch.clips is not None else None
            if args.cache_audio:
                clips = policy.encode_audio(clips)
            batch = PromptBatch(batch.input_ids, batch.attention_mask, clips)
            responses = self.generate(policy, batch, generator)
        context = batch.input_ids.shape[1]
        mask = ppo_math.response_mask(responses, self.eos_id, self.pad_id)
        query_responses = torch.cat([batch.input_ids.to(device), responses], dim=1)
        attention_mask = torch.cat([batch.attention_mask.to(device), mask.long()], dim=1)
        logprobs, ref_logprobs, values = [], [], []
        policy = self.accelerator.unwrap_model(self.model_wrapped)
        chunk = args.local_rollout_forward_batch_size
        for start in range(0, len(prompts), chunk):
            rows = torch.arange(start, min(start + chunk, len(prompts)), device=device)
            lp, value, _ = self.response_logprobs(
                policy, query_responses, attention_mask, clips, context, rows
            )
            logprobs.append(lp)
            values.append(value)
            if args.kl_coef:
                with policy.reference_mode():
                    ref, _, _ = self.response_logprobs(
                        policy, query_responses, attention_mask, clips, context, rows
                    )
            else:
                ref = lp
            ref_logprobs.append(ref)
        start = time.perf_counter()
        _, scores, rewards, has_eos, has_separator = self.score_responses(prompts, responses)
        reward_s = time.perf_counter() - start
        return (
            Rollout(
                list(prompts),
                query_responses,
                attention_mask,
                clips,
                context,
                responses,
                mask,
                torch.cat(logprobs).masked_fill(~mask, INVALID_LOGPROB),
                torch.cat(ref_logprobs).masked_fill(~mask, INVALID_LOGPROB),
                torch.cat(values).masked_fill(~mask, 0.0),
                scores.to(device),
                rewards.to(device),
                has_eos.to(device),
                has_separator.to(device),
            ),
            reward_s,
        )

    def score_responses(
        self, prompts: Sequence[PPOPrompt], responses: torch.Tensor, *, update: bool = True
    ) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(texts, scores less both penalties, reward-source scores, has-EOS, has-separator)
        of sampled responses (B, R), padded after their EOS."""
        mask = ppo_math.response_mask(responses, self.eos_id, self.pad_id)
        texts = self.tokenizer.batch_decode(
            torch.where(mask, responses, torch.full_like(responses, self.pad_id)),
            skip_special_tokens=True,
        )
        scores, rewards, has_separator = self.score(prompts, texts, update=update)
        has_eos = (responses == self.eos_id).any(dim=1).cpu()
        scores = scores - self.args.missing_eos_penalty * (~has_eos).float()
        return texts, scores, rewards, has_eos, has_separator

    def score(
        self, prompts: Sequence[PPOPrompt], texts: Sequence[str], *, update: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scores less the separator penalty, reward-source scores, has-separator) of
        decoded responses; EOS is judged on tokens, in `score_responses`."""
        separator = self.args.separator
        has_separator = torch.tensor([separator in t for t in texts])
        split = [split_reasoning(t, separator) for t in texts]
        reasoning = [trace for trace, _ in split]
        replies = [reply for _, reply in split]
        rewards = torch.as_tensor(
            self.reward(prompts, replies, reasoning, update=update), dtype=torch.float32
        )
        scores = rewards - self.args.missing_separator_penalty * (~has_separator).float()
        return scores, rewards, has_separator

    # -- 3: advantages ---------------------------------------------------------------------

    def advantages(self, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, dict]:
        args, mask = self.args, rollout.mask
        kl = ppo_math.kl_per_token(rollout.logprobs, rollout.ref_logprobs, args.kl_estimator)
        kl = kl.masked_fill(~mask, 0.0)
        rewards = ppo_math.token_rewards(rollout.scores, kl, mask, args.kl_coef)
        if args.whiten_rewards:
            rewards = ppo_math.masked_whiten(rewards, mask, shift_mean=False)
        advantages, returns = ppo_math.gae(rewards, rollout.values, mask, args.gamma, args.lam)
        if int(mask.sum()) > 1:
            advantages = ppo_math.masked_whiten(advantages, mask)
        non_score = (-args.kl_coef * kl).sum(1)
        stats = {
            "objective/kl": kl.sum(1).mean().item(),
            "objective/entropy": (-rollout.logprobs).masked_fill(~mask, 0).sum(1).mean().item(),
            "objective/non_score_reward": non_score.mean().item(),
            "objective/rlhf_reward": (rollout.scores + non_score).mean().item(),
        }
        return advantages, returns, stats

    # -- 4: optimisation -------------------------------------------------------------------

    def optimise(
        self,
        rollout: Rollout,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        generator: torch.Generator,
    ) -> dict[str, float]:
        args = self.args
        model = self.model_wrapped
        policy = self.accelerator.unwrap_model(model)
        collected: dict[str, list[float]] = defaultdict(list)
        rows_total = len(rollout.prompts)
        device = rollout.responses.device
        model.train()
        for _ in range(args.num_ppo_epochs):
            order = torch.randperm(rows_total, generator=generator).to(device)
            for mini_start in range(0, rows_total, args.mini_batch_size):
                mini = order[mini_start : mini_start + args.mini_batch_size]
                micros = mini.split(args.per_device_train_batch_size)
                # gradient accumulation by hand: the Trainer's accelerator steps every call
                for index, rows in enumerate(micros):
                    last = index == len(micros) - 1
                    self.accelerator.gradient_state._set_sync_gradients(last)
                    context = nullcontext() if last else self.accelerator.no_sync(model)
                    with context:
                        stats = self._micro_step(
                            policy, rollout, advantages, returns, rows, 1 / len(micros)
                        )
                    if last:
                        if args.max_grad_norm:
                            self.accelerator.clip_grad_norm_(model.parameters(), args.max_grad_norm)
                        self.optimizer.step()
                        self.optimizer.zero_grad()
                    for name, value in stats.items():
                        collected[name].append(value)
        out = {name: float(np.mean(values)) for name, values in collected.items()}
        out["val/ratio_var"] = float(np.var(collected["val/ratio"]))
        return out

    def _micro_step(
        self,
        policy: AudioPolicy,
        rollout: Rollout,
        advantages: torch.Tensor,
        returns: torch.Tensor,
        rows: torch.Tensor,
        loss_scale: float,
    ) -> dict[str, float]:
        """Forward and backward of one micro-batch; the caller steps the optimizer."""
        args, mask = self.args, rollout.mask[rows]
        logprobs, values, logits = self.response_logprobs(
            policy,
            rollout.query_responses,
            rollout.attention_mask,
            rollout.clips,
            rollout.context_length,
            rows,
        )
        logprobs = logprobs.masked_fill(~mask, INVALID_LOGPROB)
        values = values.masked_fill(~mask, 0.0)
        pg_loss, pg_stats = ppo_math.policy_loss(
            logprobs, rollout.logprobs[rows], advantages[rows], mask, args.cliprange
        )
        vf_loss, vf_stats = ppo_math.value_loss(
            values, rollout.values[rows], returns[rows], mask, args.cliprange_value
        )
        loss = pg_loss + args.vf_coef * vf_loss
        self.accelerator.backward(loss * loss_scale)
        with torch.no_grad():
            entropy = ppo_math.masked_mean(entropy_from_logits(logits), mask)
        return {
            "policy/approxkl_avg": pg_stats["approxkl"].item(),
            "policy/clipfrac_avg": pg_stats["clipfrac"].item(),
            "loss/policy_avg": pg_loss.item(),
            "loss/value_avg": vf_loss.item(),
            "val/clipfrac_avg": vf_stats["clipfrac"].item(),
            "policy/entropy_avg": entropy.item(),
            "val/ratio": pg_stats["ratio"].item(),
        }

    # -- evaluation ------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate_prompts(
        self,
        prompts: Sequence[PPOPrompt],
        *,
        seed: int = 1234,
        samples: int = 1,
        batch_size: int = 16,
        audio: AudioMode = "audio",
    ) -> dict[str, Any]:
        """Sample `samples` replies per prompt (a fixed seed: before and after see the same
        draws) and score them; the reward source's normalisation is not updated. Means and
        standard errors are over prompts, each prompt's samples averaged first. With
        ``audio="silence"`` the policy hears silence; the judge still hears the dialogue."""
        policy = self.accelerator.unwrap_model(self.model_wrapped or self.model)
        was_training = policy.training
        policy.eval()
        generator = torch.Generator(device=self.args.device).manual_seed(seed)
        repeated = [prompt for prompt in prompts for _ in range(samples)]
        scores, rewards, texts = [], [], []
        for start in range(0, len(repeated), batch_size):
            chunk = repeated[start : start + batch_size]
            batch = self.encode(chunk, audio)
            clips = batch.clips.to(self.args.device) if batch.clips is not None else None
            batch = PromptBatch(batch.input_ids, batch.attention_mask, policy.encode_audio(clips))
            responses = self.generate(policy, batch, generator)
            decoded, score, reward, _, _ = self.score_responses(chunk, responses, update=False)
            scores.append(score)
            rewards.append(reward)
            texts += decoded
        policy.train(was_training)
        score = torch.cat(scores).numpy().reshape(len(prompts), samples).mean(axis=1)
        reward = torch.cat(rewards).numpy().reshape(len(prompts), samples).mean(axis=1)
        return {
            "prompts": len(prompts),
            "samples_per_prompt": samples,
            "score_mean": float(score.mean()),
            "score_sem": _sem(score),
            "reward_mean": float(reward.mean()),
            "reward_sem": _sem(reward),
            "reward_per_prompt": reward.tolist(),
            "samples": texts[: 5 * samples : samples],
        }

    # -- checkpoints -----------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """checkpoint-N/: policy (or adapter), value head, processor, optimizer, scheduler,
        RNG, trainer state, reward mapper. Written beside and renamed into place, so a crash
        never leaves a half-written checkpoint under the final name."""
        out = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        policy: AudioPolicy = self.accelerator.unwrap_model(self.model_wrapped)
        policy.save(partial, template=self.encoder.template)
        torch.save(self.optimizer.state_dict(), partial / OPTIMIZER_FILE)
        torch.save(self.lr_scheduler.state_dict(), partial / SCHEDULER_FILE)
        torch.save(
            {
                "python": random.getstate(),
                "numpy": np.random.get_state(),
                "torch": torch.random.get_rng_state(),
            },
            partial / RNG_FILE,
        )
        self.state.save_to_json(str(partial / STATE_FILE))
        mapper = getattr(getattr(self.reward, "reward", None), "mapper", None)
        if mapper is not None:
            mapper.save(partial)
        (partial / "ppo_config.json").write_text(self.args.to_json_string())
        shutil.rmtree(out, ignore_errors=True)
        partial.rename(out)
        self._rotate_checkpoints()
        return out

    def _rotate_checkpoints(self) -> None:
        limit = self.args.save_total_limit
        if not limit:
            return
        found = sorted(
            Path(self.args.output_dir).glob("checkpoint-*"),
            key=lambda p: int(p.name.split("-")[1]) if p.name.split("-")[1].isdigit() else -1,
        )
        for old in [p for p in found if p.name.split("-")[1].isdigit()][:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self, path: Path) -> None:
        """Everything but the policy weights (the caller loads the policy from `path`)."""
        if not (path / STATE_FILE).exists():
            raise FileNotFoundError(f"{path} is not a PPO checkpoint (no {STATE_FILE})")
        policy: AudioPolicy = self.accelerator.unwrap_model(self.model_wrapped)
        if not policy.load_value_head(path):
            raise FileNotFoundError(f"{path}: no value head saved")
        self.optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=False))
        self.lr_scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, weights_only=False))
        rng = torch.load(path / RNG_FILE, weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.random.set_rng_state(rng["torch"])
        saved = json.loads((path / STATE_FILE).read_text())
        self.state.global_step = saved["global_step"]
        self.state.log_history = saved.get("log_history", [])
        mapper = getattr(getattr(self.reward, "reward", None), "mapper", None)
        if mapper is not None and (path / "reward_mapper.json").exists():
            from rewardlab.reward import RewardMapper

            saved_mapper = RewardMapper.load(path, k=mapper.k)
            mapper.count, mapper.mean, mapper.m2 = (
                saved_mapper.count,
                saved_mapper.mean,
                saved_mapper.m2,
            )


def _sem(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
