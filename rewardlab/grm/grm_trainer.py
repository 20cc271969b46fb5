"""`GRMTrainer`: a `transformers.Trainer` whose loss is on the verdict distribution.

Per example, with ``q`` the soft target over the 2K+1 levels *as shown* and ``z`` the logits of
the verdict tokens at the verdict slot::

    verdict_loss  = -sum_i q_i * log_softmax(z)_i            (cross-entropy to a soft target)
    critique_loss = mean token NLL of the critique (rationale), where the example has one
    loss          = verdict_loss + critique_weight * critique_loss

Every example appears in both presentation orders (`SwappedPairs`): shown reference-first,
its target is reversed (level negated) and its critique re-labelled. Early in training a
share of examples is shown policy-first whatever their order (`OrderCurriculum`): which slot
holds the better reply and what the audio says form an XOR that a random-init model does not
start on; learning the cue in one order first, then both, does.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset, Sampler
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback

from rewardlab.grm.encoding import PromptEncoder, collate_full
from rewardlab.grm.examples import GRMExample
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.judge_format import JudgeFormat, swap_response_labels
from rewardlab.grm.model import verdict_logits
from rewardlab.schema import Order


class SwappedPairs(Dataset):
    """Each example twice: index 2i is policy-first, 2i+1 reference-first."""

    def __init__(self, examples: list[GRMExample]):
        self.examples = examples

    def __len__(self) -> int:
        return 2 * len(self.examples)

    def __getitem__(self, index: int) -> tuple[GRMExample, Order]:
        return self.examples[index // 2], tuple(Order)[index % 2]


def shown_target(target: np.ndarray, order: str) -> np.ndarray:
    """The target over *shown* levels: reference-first negates the level (reverses -K..K)."""
    return Order(order).to_shown_levels(target).copy()


class PairedLengthSampler(Sampler[int]):
    """Indices of `SwappedPairs` with both orders of an example side by side, examples grouped
    by prompt length.

    Both orders in one batch: the two rows share every token and have opposite targets, so
    what the batch's gradient asks for is exactly the order-sensitive part, the hard part for a
    model that starts out reading a bag of words. Grouping by length: padding is otherwise
    most of the cost, as rubric and dialogue lengths vary several-fold. Shuffled from
    (seed, epoch), the Trainer setting the epoch, so a resumed run sees the same batches.

    The first epoch can open with curriculum `stages`: (example indices, number of batches)
    each, drawn only from those examples (reshuffled as often as it takes), before the epoch
    over everything.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int,
        group: int = 50,
        stages: list[tuple[list[int], int]] = (),
    ):
        if batch_size % 2:
            raise ValueError(f"batch size must be even to keep both orders together: {batch_size}")
        self.lengths, self.per_batch, self.seed, self.group = lengths, batch_size // 2, seed, group
        self.stages = [(list(examples), batches) for examples, batches in stages]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        opening = sum(2 * self.per_batch * n for _, n in self.stages) if self.epoch == 0 else 0
        return opening + 2 * len(self.lengths)

    def _batches(self, examples: list[int], rng: random.Random) -> list[list[int]]:
        examples = list(examples)
        rng.shuffle(examples)
        span = self.per_batch * self.group
        batches = []
        for start in range(0, len(examples), span):  # sort within groups of `group` batches
            chunk = sorted(examples[start : start + span], key=self.lengths.__getitem__)
            batches += [chunk[i : i + self.per_batch] for i in range(0, len(chunk), self.per_batch)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        rng = random.Random(f"{self.seed}:{self.epoch}")
        batches = []
        if self.epoch == 0:
            for examples, count in self.stages:
                drawn: list[list[int]] = []
                while len(drawn) < count:
                    drawn += [b for b in self._batches(examples, rng) if len(b) == self.per_batch]
                batches += drawn[:count]
        batches += self._batches(list(range(len(self.lengths))), rng)
        for batch in batches:
            for example in batch:
                yield 2 * example
                yield 2 * example + 1


class GRMCollator:
    """(example, order) rows -> a padded batch with ``target`` (B, 2K+1) and critique labels.

    Its random choices are seeded by (seed, step, task, order), not drawn from a running
    generator, so a resumed run draws exactly what the uninterrupted run would have. The step
    is the one the batch trains in, counted here: the data loader collates a batch ahead, so
    the Trainer's live step is one behind except right after a (re)start.
    """

    def __init__(
        self,
        encoder: PromptEncoder,
        critique_share: float,
        seed: int,
        curriculum: tuple = (0, 0),
        history_warmup_steps: int = 0,
    ):
        self.encoder, self.critique_share, self.seed = encoder, critique_share, seed
        self.fixed_start, self.fixed_anneal = curriculum
        self.history_warmup_steps = history_warmup_steps
        self.state = None  # the Trainer's state, handed over by OrderCurriculum
        self.batches, self.accumulation = 0, 1  # batches collated so far; per optimizer step

    @property
    def fixed_order_share(self) -> float:
        """Linearly from `fixed_start` at step 0 to 0 after `fixed_anneal` of training."""
        if self.state is None or not self.fixed_start:
            return 0.0
        horizon = max(1.0, self.fixed_anneal * self.state.max_steps)
        return self.fixed_start * max(0.0, 1 - self.step / horizon)

    @property
    def step(self) -> int:
        """The optimizer step the next batch trains in."""
        return self.batches // self.accumulation

    def __call__(self, rows: list[tuple[GRMExample, Order]]) -> dict[str, torch.Tensor]:
        step, share = self.step, self.fixed_order_share
        last_turns = 1 if step < self.history_warmup_steps else None
        self.batches += 1
        prompts, targets = [], []
        for example, order in rows:
            rng = random.Random(f"{self.seed}:{step}:{example.task_id}:{order}")
            if rng.random() < share:
                order = Order.POLICY_FIRST
            critique = example.critique if rng.random() < self.critique_share else None
            if critique is not None and order == Order.REFERENCE_FIRST:
                critique = swap_response_labels(critique)
            prompts.append(
                self.encoder.encode(example.item, order, critique=critique, last_turns=last_turns)
            )
            targets.append(shown_target(example.target, order))
        batch = collate_full(prompts, self.encoder.tokenizer.pad_token_id)
        batch["target"] = torch.from_numpy(np.stack(targets)).float()
        return batch


class OrderCurriculum(TrainerCallback):
    """Hands the collator the Trainer's state when training starts, and the count of batches
    already trained (non-zero on resume)."""

    def __init__(self, collator: GRMCollator):
        self.collator = collator

    def on_train_begin(self, args, state, control, **kwargs):
        self.collator.state = state
        self.collator.accumulation = args.gradient_accumulation_steps
        self.collator.batches = state.global_step * args.gradient_accumulation_steps


class HistoryRestart(TrainerCallback):
    """With `history_restart_lr`: when the history warm-up ends, the optimizer forgets its
    moment estimates, which measured gradients of last-turn prompts; the second phase starts
    as a fresh run from the warm-up's weights would (audio-only demo world, 700 steps:
    held-out 0.881 with the reset, 0.856 without).
    """

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        if args.history_restart_lr and state.global_step == args.history_warmup_steps:
            optimizer.state.clear()


class SaveJudgeFiles(TrainerCallback):
    """Every checkpoint also holds the judge format and the resolved config."""

    def __init__(self, fmt: JudgeFormat):
        self.format = fmt

    def on_save(self, args, state, control, **kwargs):
        checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            self.format.save(checkpoint)
            save_config(args, checkpoint)


def save_config(args: GRMConfig, directory: Path) -> None:
    resolved = {k: v for k, v in args.to_dict().items() if not k.startswith("_")}
    (Path(directory) / "grm_config.yaml").write_text(yaml.safe_dump(resolved, sort_keys=True))


def two_phase_schedule(switch: int, total: int, warmup: int, second_peak: float):
    """Learning-rate factor per step: linear warm-up then cosine to 0 over [0, switch), and
    again over [switch, total) with its peak at `second_peak` (a factor of learning_rate)."""

    def factor(step: int) -> float:
        start, end, peak = (0, switch, 1.0) if step < switch else (switch, total, second_peak)
        done, length = step - start, max(1, end - start)
        if done < warmup:
            return peak * (done + 1) / warmup
        progress = (done - warmup) / max(1, length - warmup)
        return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class GRMTrainer(Trainer):
    def __init__(
        self,
        model,
        args: GRMConfig,
        encoder: PromptEncoder,
        train_examples: list[GRMExample],
        **kwargs,
    ):
        self.collator = GRMCollator(
            encoder,
            args.critique_share,
            args.seed,
            curriculum=(args.fixed_order_share, args.fixed_order_anneal),
            history_warmup_steps=args.history_warmup_steps,
        )
        super().__init__(
            model=model,
            args=args,
            train_dataset=SwappedPairs(train_examples),
            data_collator=self.collator,
            processing_class=encoder.template,
            callbacks=[
                OrderCurriculum(self.collator),
                HistoryRestart(),
                SaveJudgeFiles(encoder.format),
            ],
            **kwargs,
        )
        self.verdict_ids = torch.tensor(encoder.format.verdict_token_ids(encoder.tokenizer))
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The Trainer's schedule, or with `history_restart_lr` two cosine cycles that meet
        where the history warm-up ends (see `two_phase_schedule`)."""
        args = self.args
        if not args.history_restart_lr:
            return super().create_scheduler(num_training_steps, optimizer)
        if self.lr_scheduler is None:
            self.lr_scheduler = LambdaLR(
                optimizer if optimizer is not None else self.optimizer,
                two_phase_schedule(
                    args.history_warmup_steps,
                    num_training_steps,
                    args.get_warmup_steps(num_training_steps),
                    args.history_restart_lr / args.learning_rate,
                ),
            )
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _get_train_sampler(self, train_dataset=None):
        """`group_by_length` (the default): `PairedLengthSampler`; otherwise the Trainer's."""
        if self.args.train_sampling_strategy != "group_by_length":
            if self.args.curriculum:
                raise ValueError("curriculum needs train_sampling_strategy: group_by_length")
            return super()._get_train_sampler(train_dataset)
        pairs: SwappedPairs = train_dataset or self.train_dataset
        encoder = self.collator.encoder
        lengths = [  # also fills the clip-feature cache the collator reads from
            len(encoder.encode(example.item, Order.POLICY_FIRST))
            for example in tqdm(pairs.examples, desc="measuring prompts", leave=False)
        ]
        # per device batch: each one the loader cuts must hold whole pairs
        return PairedLengthSampler(
            lengths,
            self.args.train_batch_size,
            self.args.seed,
            stages=self._curriculum_stages(pairs.examples),
        )

    def _curriculum_stages(self, examples: list[GRMExample]) -> list[tuple[list[int], int]]:
        """`args.curriculum` as (example indices, device batches) per stage."""
        per_step = self.args.gradient_accumulation_steps * self.args.world_size
        per_batch = self.args.train_batch_size // 2
        stages = []
        for rubric_ids, steps in self.args.curriculum_stages():
            chosen = [i for i, e in enumerate(examples) if e.item.task.rubric_id in rubric_ids]
            if len(chosen) < per_batch:
                raise ValueError(
                    f"curriculum stage {'+'.join(sorted(rubric_ids))}:{steps}: "
                    f"{len(chosen)} training tasks have those rubrics; a batch needs {per_batch}"
                )
            stages.append((chosen, steps * per_step))
        return stages

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        target = inputs["target"]  # (B, L)
        logits, lm_logits = verdict_logits(model, inputs, self.verdict_ids.to(target.device))
        log_p = F.log_softmax(logits.float(), dim=-1)  # (B, L)
        verdict_loss = -(target * log_p).sum(-1).mean()
        loss = verdict_loss
        labels = inputs["labels"]  # (B, T), -100 outside critiques
        if self.args.critique_weight and (labels != -100).any():
            critique_loss = F.cross_entropy(
                lm_logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100
            )
            loss = loss + self.args.critique_weight * critique_loss
            self._metrics["critique_loss"].append(critique_loss.item())
        levels = torch.arange(logits.shape[-1], device=logits.device) - logits.shape[-1] // 2
        predicted, wanted = log_p.exp() @ levels.float(), target @ levels.float()
        decided = wanted.abs() > 0.5
        if decided.any():
            agree = (predicted[decided].sign() == wanted[decided].sign()).float().mean()
            self._metrics["judge/train_accuracy"].append(agree.item())
        self._metrics["verdict_loss"].append(verdict_loss.item())
        self._metrics["fixed_order_share"].append(self.collator.fixed_order_share)
        return (loss, {"logits": logits}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        for name, values in self._metrics.items():
            logs[name] = round(float(np.mean(values)), 4)
        self._metrics.clear()
        super().log(logs, *args, **kwargs)
