"""`RMTrainer`: a scalar reward model trained Bradley-Terry on the GRM's labels.

Per task, with r_p and r_r the rewards of the policy and the reference reply and q the soft
target over the 2K+1 levels (policy vs reference), the target probability that the policy is
better counts a tie as half a win::

    y    = sum_{j > 0} q_j + q_0 / 2
    loss = -(y log sigmoid(r_p - r_r) + (1 - y) log sigmoid(r_r - r_p))

For a task every annotator decided the same way this is the Bradley-Terry loss
-log sigmoid(r_better - r_worse); a tie is pulled towards r_p = r_r.

Why not TRL's `RewardTrainer` (trl 1.16): it tokenizes text ``chosen`` / ``rejected``
columns, its collator pads token ids only, and it builds the model with
`AutoModelForSequenceClassification`. Qwen2-Audio has no sequence-classification class, and
nothing carries the log-mel features and their masks to the model, so the audio (the demo
world's mood cue, the audio-only pairs) would be lost. This trainer is the same loss over
`transformers.Trainer`'s public hooks (`compute_loss`, the collator, `save_model`), with the
prompts built by the GRM's own encoder.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.examples import GRMExample
from rewardlab.grm.rm_config import RMConfig
from rewardlab.grm.scalar_rm import ScalarRewardModel, reply_batch


def preference_target(target: np.ndarray) -> float:
    """P(policy better) of a soft target over -K..K, a tie counted as half."""
    k = (len(target) - 1) // 2
    return float(target[k + 1 :].sum() + target[k] / 2)


def bradley_terry_loss(rewards: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B, 2) rewards (policy, reference) and (B,) P(policy better) -> mean loss."""
    return F.binary_cross_entropy_with_logits(rewards[:, 0] - rewards[:, 1], target)


class RMCollator:
    """Examples -> both replies of each task (`reply_batch`) and its BT target."""

    def __init__(self, rm: ScalarRewardModel):
        self.encoder = rm.encoder

    def __call__(self, examples: list[GRMExample]) -> dict[str, torch.Tensor]:
        batch = reply_batch(self.encoder, [e.item for e in examples])
        targets = [preference_target(e.target) for e in examples]
        batch["target"] = torch.tensor(targets, dtype=torch.float32)  # (B,)
        return batch


class RMTrainer(Trainer):
    def __init__(self, rm: ScalarRewardModel, args: RMConfig, train_examples: list[GRMExample]):
        self.rm = rm
        super().__init__(
            model=rm.net,
            args=args,
            train_dataset=train_examples,
            data_collator=RMCollator(rm),
            processing_class=rm.template,
        )
        self.step_metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target = inputs["target"]  # (B,)
        features = {k: v for k, v in inputs.items() if k != "target"}
        rewards = model(**features).float().view(-1, 2)  # (B, 2): policy, reference
        loss = bradley_terry_loss(rewards, target)
        decided = (target - 0.5).abs() > 0.25  # most annotators on one side
        if decided.any():
            right = (rewards[:, 0] > rewards[:, 1]) == (target > 0.5)
            self.step_metrics["rm/train_accuracy"].append(right[decided].float().mean().item())
        self.step_metrics["bt_loss"].append(loss.item())
        margin = (rewards[:, 0] - rewards[:, 1]).abs().mean()
        self.step_metrics["rm/margin"].append(margin.item())
        return (loss, {"rewards": rewards}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for name, values in self.step_metrics.items():
            logs[name] = round(float(np.mean(values)), 4)
        self.step_metrics.clear()
        super().log(logs, *args, **kwargs)

    def save_model(self, output_dir: str | None = None, *args, **kwargs) -> None:
        """A checkpoint folder is a complete scalar RM (`ScalarRewardModel.load` reads it) with
        its resolved config; the Trainer adds its optimizer and scheduler states beside it."""
        if self.args.should_save:
            out = output_dir or self.args.output_dir
            self.rm.save(out)
            GRMCheckpoint(out).save_config(self.args)
