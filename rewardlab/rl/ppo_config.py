"""`AudioPPOConfig`: every setting of a PPO run, one dataclass (extends TrainingArguments).

    rewardlab ppo --config training/ppo_demo.yaml [--kl-coef 0.1 ...]

Batch sizes follow TRL's PPO trainer, so its users can carry their settings over: a *micro-
batch* is ``per_device_train_batch_size`` rollouts; ``gradient_accumulation_steps`` of them
make a *mini-batch* (one optimizer step); ``num_mini_batches`` mini-batches make the rollout
batch sampled per update. Each update trains ``num_ppo_epochs`` passes over its rollouts.
``max_steps`` counts updates (rollouts), not optimizer steps.

Of TrainingArguments' settings the recipe honours the run's (``output_dir``, ``seed``,
``use_cpu``, ``bf16``, ``deepspeed``, ``activation_checkpointing``, ``report_to``), the
optimizer's (``learning_rate``, ``weight_decay``, ``adam_*``, ``max_grad_norm``, ``optim``:
AdamW, fused or not), the schedule's (``lr_scheduler_type``, ``lr_scheduler_kwargs``,
``warmup_steps``) and the checkpoints' (``save_strategy``, ``save_steps``,
``save_total_limit``, ``resume_from_checkpoint``); ``logging_steps`` (each logged entry averages
the updates since the previous one) and ``disable_tqdm``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import TrainingArguments

from rewardlab.grm.grm_config import BackboneArguments
from rewardlab.schema import THINK_END

OPTIMIZERS = ("adamw_torch", "adamw_torch_fused")  # what `optimise.build_optimizer` builds


@dataclass
class AudioPPOConfig(TrainingArguments, BackboneArguments):
    # -- models and data ---------------------------------------------------------------------
    model_path: str = field(default="", metadata={"help": "local policy directory"})
    grm: str = field(default="", metadata={"help": "a trained GRM (train-grm's final/)"})
    # (replaces TrainingArguments' Trackio project name, which this recipe does not use)
    project: str = field(
        default="", metadata={"help": "the project (or Parquet export) whose dialogues prompt"}
    )
    eval_share: float | None = field(
        default=None,
        metadata={
            "help": "share of leakage groups held out for evaluation; default: the GRM's own "
            "(so held-out prompts are new to both the GRM and the policy)"
        },
    )
    split_seed: int | None = field(default=None, metadata={"help": "default: the GRM's"})
    eval_prompts: int = field(
        default=64, metadata={"help": "held-out prompts scored before and after (0: none)"}
    )
    eval_samples: int = field(
        default=4, metadata={"help": "replies sampled per held-out prompt when evaluating"}
    )
    eval_silence: bool = field(
        default=True,
        metadata={
            "help": "also evaluate with the policy hearing silence in every clip's place: a "
            "gain that survives it did not come from listening"
        },
    )
    truth_scorer: str | None = field(
        default=None,
        metadata={
            "help": "'module:function' scoring a held-out reply by known truth, (dialogue,"
            " reply) -> {axis: score, 'total': ...} or None; reported beside the GRM reward"
            " (e.g. rewardlab.demo.world:truth_of_reply for the demo world)"
        },
    )
    max_prompt_tokens: int = field(
        default=1024, metadata={"help": "longest prompt; older turns are dropped to fit"}
    )
    # -- the policy --------------------------------------------------------------------------
    cache_audio: bool = field(
        default=True,
        metadata={"help": "with a frozen tower, encode each rollout's clips once and reuse them"},
    )
    # -- generation --------------------------------------------------------------------------
    response_length: int = field(default=48, metadata={"help": "most tokens per response"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_k: int = field(default=0, metadata={"help": "sample among the top k tokens; 0: all"})
    separator: str = field(
        default=THINK_END, metadata={"help": "ends the reasoning trace; the reply follows it"}
    )
    # -- rewards -----------------------------------------------------------------------------
    missing_eos_penalty: float = field(
        default=1.0, metadata={"help": "subtracted from the score of a reply without EOS"}
    )
    missing_separator_penalty: float = field(
        default=1.0, metadata={"help": "subtracted from the score of a reply without separator"}
    )
    reward_batch_size: int = field(default=32, metadata={"help": "GRM judging batch size"})
    whiten_rewards: bool = field(
        default=False, metadata={"help": "whiten the per-token rewards (mean kept)"}
    )
    # -- PPO ---------------------------------------------------------------------------------
    num_mini_batches: int = field(default=1, metadata={"help": "mini-batches per rollout batch"})
    num_ppo_epochs: int = field(default=4, metadata={"help": "passes over each rollout batch"})
    rollouts_per_prompt: int = field(
        default=1,
        metadata={
            "help": "replies sampled per prompt in an update (G); the rollout batch holds"
            " rollout_batch_size / G prompts, and the GRM runs each one's history once"
        },
    )
    local_rollout_forward_batch_size: int = field(
        default=16, metadata={"help": "rows per no-grad forward pass during rollouts"}
    )
    kl_coef: float = field(default=0.05, metadata={"help": "KL penalty coefficient"})
    kl_estimator: str = field(
        default="k1", metadata={"help": "'k1' (-log r) or 'k3' ((r - 1) - log r)"}
    )
    cliprange: float = field(default=0.2, metadata={"help": "policy ratio clip"})
    cliprange_value: float = field(default=0.2, metadata={"help": "value clip"})
    vf_coef: float = field(default=0.1, metadata={"help": "value loss weight"})
    gamma: float = field(default=1.0, metadata={"help": "discount"})
    lam: float = field(default=0.95, metadata={"help": "GAE lambda"})
    # -- TrainingArguments defaults that suit this trainer -----------------------------------
    remove_unused_columns: bool = False
    logging_steps: float = 1
    save_strategy: str = "steps"
    save_steps: float = 50
    report_to: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps <= 0:
            raise ValueError(f"max_steps (PPO updates) must be > 0, got {self.max_steps}")
        if self.kl_estimator not in ("k1", "k3"):
            raise ValueError(f"kl_estimator must be 'k1' or 'k3', got {self.kl_estimator!r}")
        for name in (
            "num_mini_batches",
            "num_ppo_epochs",
            "response_length",
            "eval_samples",
            "rollouts_per_prompt",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.rollout_batch_size % self.rollouts_per_prompt:
            raise ValueError(
                f"rollouts_per_prompt={self.rollouts_per_prompt} must divide the rollout batch"
                f" ({self.rollout_batch_size} = per_device_train_batch_size x"
                " gradient_accumulation_steps x num_mini_batches)"
            )
        if self.eval_share is not None and not 0 < self.eval_share < 1:
            raise ValueError(f"eval_share must be in (0, 1), got {self.eval_share}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        self.check_backbone()
        if self.truth_scorer is not None:
            resolve_truth_scorer(self.truth_scorer)  # a typo fails now, not after training
        if not self.separator:
            raise ValueError("separator must be non-empty: it splits reasoning from the reply")
        if self.optim not in OPTIMIZERS:
            raise ValueError(f"optim must be one of {OPTIMIZERS} for PPO, got {self.optim!r}")

    @property
    def mini_batch_size(self) -> int:
        return self.per_device_train_batch_size * self.gradient_accumulation_steps

    @property
    def rollout_batch_size(self) -> int:
        """Prompts sampled per update (on this process)."""
        return self.mini_batch_size * self.num_mini_batches


def parse_ppo_config(path: Path, overrides: list[str] | None = None) -> AudioPPOConfig:
    """A ``training/ppo_*.yaml`` recipe, then ``--flag value`` overrides."""
    from rewardlab.grm.recipe import parse_config  # the GRM's parser (and its trainer) on demand

    return parse_config(path, overrides, AudioPPOConfig)


def resolve_truth_scorer(spec: str) -> Callable[[Any, str], dict[str, float] | None]:
    """The function a ``module:function`` spec names, or a ValueError saying what is wrong."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ValueError(f"truth_scorer must be 'module:function', got {spec!r}")
    try:
        scorer = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"truth_scorer {spec!r} cannot be imported: {err}") from err
    if not callable(scorer):
        raise ValueError(f"truth_scorer {spec!r} is not callable")
    return scorer
