"""`AudioPPOTrainer`: PPO for an audio-LLM policy, scored by the generative reward model.

    trainer = AudioPPOTrainer(config, policy=policy, reward=reward, train_prompts=prompts,
                              processing_class=processor, media_root=split.media_root)
    trainer.train()                       # or trainer.train(resume_from_checkpoint=...)

The face TRL's users know, composed over the recipe's pieces (`rl.ppo_recipe`): the
constructor is `setup` (seed, accelerator, optimizer, scheduler, ``accelerator.prepare``),
`train` is `run` (rollout -> advantages -> optimise -> log -> checkpoint per update). It is not
a `transformers.Trainer`: PPO's loop is not Trainer's, and one loop is easier to read than two.

Differences from TRL's last PPO trainer (v1.12, text only): audio features travel with every
pass and are sliced per clip when a batch is split; a frozen audio tower runs once per rollout;
the value head shares the policy's trunk (one forward gives logits and values, where TRL ran a
separate value model); the score lands on the reply's EOS token rather than on the padding
position after it; the reward is any `RewardSource` working on decoded text, so the policy and
the judge need not share a tokenizer; prompt order and sampling are seeded per update, so a
resumed run continues exactly where a straight one would be.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rewardlab.grm.encoding import AudioMode
from rewardlab.rl.checkpoint import RunState
from rewardlab.rl.evaluation import evaluate_prompts
from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.ppo_recipe import PPORun, run, setup
from rewardlab.rl.prompts import PPOPrompt
from rewardlab.rl.rewards import RewardSource
from rewardlab.rl.rollout import RolloutCollector


class AudioPPOTrainer:
    def __init__(
        self,
        args: AudioPPOConfig,
        *,
        policy: AudioPolicy,
        reward: RewardSource,
        train_prompts: Sequence[PPOPrompt],
        processing_class: Any,
        media_root: Path | None = None,
    ):
        """`processing_class`: the policy's processor (audio) or tokenizer; `media_root`: where
        the prompts' audio files are (a project's media folder)."""
        self.args = args
        self.run: PPORun = setup(args, policy, reward, train_prompts, processing_class, media_root)

    def train(self, resume_from_checkpoint: str | Path | None = None) -> RunState:
        return run(self.run, resume_from_checkpoint)

    def evaluate_prompts(
        self,
        prompts: Sequence[PPOPrompt],
        *,
        seed: int = 1234,
        samples: int = 1,
        batch_size: int = 16,
        audio: AudioMode = "audio",
    ) -> dict[str, Any]:
        """Held-out scores of sampled replies (`rl.evaluation.evaluate_prompts`)."""
        return evaluate_prompts(
            self.collector, self.policy, prompts,
            seed=seed, samples=samples, batch_size=batch_size, audio=audio,
        )  # fmt: skip

    # the recipe's pieces, by the names TRL's users look for
    @property
    def policy(self) -> AudioPolicy:
        return self.run.policy

    @property
    def model(self) -> Any:
        """The policy as prepared by accelerate (DDP / DeepSpeed wrapped where it applies)."""
        return self.run.model

    @property
    def accelerator(self) -> Any:
        return self.run.accelerator

    @property
    def reward(self) -> RewardSource:
        return self.run.reward

    @property
    def collector(self) -> RolloutCollector:
        return self.run.collector

    @property
    def optimizer(self) -> Any:
        return self.run.optimizer

    @property
    def lr_scheduler(self) -> Any:
        return self.run.scheduler

    @property
    def state(self) -> RunState:
        return self.run.state

    @property
    def train_prompts(self) -> list[PPOPrompt]:
        return self.run.train_prompts
