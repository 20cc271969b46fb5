"""GRM training batches: both orders of each task, grouped by length, each row with its step.

`PairedBatchSampler` yields device batches of ``(row, step)``: a row of `SwappedPairs` and the
optimizer step it trains in (`GRMSchedule.step_of_batch`). `SwappedPairs` hands the step on
with the row and `GRMCollator` reads its settings for that step from the schedule: nothing
counts batches, so every data-loader worker (and a resumed run) computes the same batch.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from rewardlab.grm.encoding import EncodedPrompt, PromptEncoder, collate_full
from rewardlab.grm.examples import GRMExample
from rewardlab.grm.judge_format import swap_response_labels
from rewardlab.grm.schedule import GRMSchedule
from rewardlab.schema import Order

Row = tuple[GRMExample, Order, int]  # (example, order, step)


class SwappedPairs(Dataset):
    """Each example twice: row 2i is policy-first, 2i+1 reference-first; indexed by the
    sampler's ``(row, step)``, it returns ``(example, order, step)``."""

    def __init__(self, examples: list[GRMExample]):
        self.examples = examples

    def __len__(self) -> int:
        return 2 * len(self.examples)

    def __getitem__(self, key: tuple[int, int]) -> Row:
        row, step = key
        return self.examples[row // 2], tuple(Order)[row % 2], step


def shown_target(target: np.ndarray, order: str) -> np.ndarray:
    """The target over *shown* levels: reference-first negates the level (reverses -K..K)."""
    return Order(order).to_shown_levels(target).copy()


def prompt_lengths(encoder: PromptEncoder, examples: list[GRMExample]) -> list[int]:
    """Tokens of each example's full prompt, policy-first. Encoding decodes every clip once
    into the encoder's feature cache, which the collator then reads from."""
    return [
        len(encoder.encode(example.item, Order.POLICY_FIRST))
        for example in tqdm(examples, desc="measuring prompts", leave=False)
    ]


def stage_examples(examples: list[GRMExample], schedule: GRMSchedule) -> list[list[int]]:
    """Per curriculum stage, the indices of the examples whose rubric it trains."""
    per_batch = schedule.batch_rows // 2
    stages = []
    for rubric_ids, steps in schedule.stages:
        chosen = [i for i, e in enumerate(examples) if e.item.task.rubric_id in rubric_ids]
        if len(chosen) < per_batch:
            raise ValueError(
                f"curriculum stage {'+'.join(sorted(rubric_ids))}:{steps}: "
                f"{len(chosen)} training tasks have those rubrics; a batch needs {per_batch}"
            )
        stages.append(chosen)
    return stages


class PairedBatchSampler:
    """Device batches of `SwappedPairs` rows with both orders of an example side by side,
    examples grouped by prompt length, each row labelled with its optimizer step.

    Both orders in one batch: the two rows share every token and have opposite targets, so
    what the batch's gradient asks for is exactly the order-sensitive part, the hard part for a
    model that starts out reading a bag of words. Grouping by length: padding is otherwise
    most of the cost, as rubric and dialogue lengths vary several-fold. Shuffled from
    (seed, epoch), the Trainer setting the epoch, so a resumed run sees the same batches.

    The first epoch opens with the curriculum stages (`stages`: example indices per stage,
    `schedule.stage_batches` batches each), drawn only from those examples (reshuffled as often
    as it takes), before the epoch over everything. Example batches are laid end to end and cut
    into device batches of `schedule.batch_rows` rows.
    """

    def __init__(
        self,
        lengths: list[int],
        schedule: GRMSchedule,
        seed: int,
        stages: list[list[int]] = (),
        group: int = 50,
    ):
        self.lengths, self.schedule, self.seed, self.group = lengths, schedule, seed, group
        self.batch_size, self.drop_last = schedule.batch_rows, schedule.drop_last  # accelerate
        self.per_batch = schedule.batch_rows // 2
        self.stages = list(zip(stages, schedule.stage_batches, strict=True))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.schedule.batches_in_epoch(self.epoch)

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

    def example_batches(self) -> list[list[int]]:
        """This epoch's example batches, before they are cut into device batches."""
        rng = random.Random(f"{self.seed}:{self.epoch}")
        batches = []
        if self.epoch == 0:
            for examples, count in self.stages:
                drawn: list[list[int]] = []
                while len(drawn) < count:
                    drawn += [b for b in self._batches(examples, rng) if len(b) == self.per_batch]
                batches += drawn[:count]
        return batches + self._batches(list(range(len(self.lengths))), rng)

    def __iter__(self):
        rows = [r for batch in self.example_batches() for e in batch for r in (2 * e, 2 * e + 1)]
        size, processes = self.batch_size, self.schedule.processes
        device = [rows[i : i + size] for i in range(0, len(rows), size)]
        if self.drop_last:
            device = [b for b in device if len(b) == size]
            device = device[: len(device) // processes * processes]
        else:  # whole rounds for all processes, completed from the start as accelerate would
            device += device[: -len(device) % processes]
        for index, batch in enumerate(device):
            step = self.schedule.step_of_batch(self.epoch, index)
            yield [(row, step) for row in batch]


class GRMCollator:
    """(example, order, step) rows -> a padded batch with ``target`` (B, 2K+1), critique
    labels, and for the order-consistency term each row's shown order and its twin's row.

    Its random choices are seeded by (seed, step, task, order), not drawn from a running
    generator, so a resumed run draws exactly what the uninterrupted run would have; what
    depends on the step (fixed-order share, history warm-up) comes from the schedule.

    Each distinct prompt is rendered and tokenized once: a run sees every example in a few
    forms only (order x critique or not x history cut or not), and encoding is deterministic.
    """

    def __init__(
        self, encoder: PromptEncoder, critique_share: float, seed: int, schedule: GRMSchedule
    ):
        self.encoder, self.critique_share, self.seed = encoder, critique_share, seed
        self.schedule = schedule
        # keyed by the example object: examples live as long as the run, and two examples
        # of one task (other labels) may render alike but need not
        self._encoded: dict[tuple[int, Order, str | None, int | None], EncodedPrompt] = {}

    def encode(
        self, example: GRMExample, order: Order, critique: str | None, last_turns: int | None
    ) -> EncodedPrompt:
        key = (id(example), order, critique, last_turns)
        if key not in self._encoded:
            self._encoded[key] = self.encoder.encode(
                example.item, order, critique=critique, last_turns=last_turns
            )
        return self._encoded[key]

    def __call__(self, rows: list[Row]) -> dict[str, torch.Tensor]:
        # one step per batch (accelerate may complete a short last batch with first rows)
        step = rows[0][2]
        share = self.schedule.fixed_order_share_at(step)
        last_turns = self.schedule.last_turns(step)
        prompts, targets, shown = [], [], []
        for example, order, _ in rows:
            rng = random.Random(f"{self.seed}:{step}:{example.task_id}:{order}")
            if rng.random() < share:
                order = Order.POLICY_FIRST
            shown.append(order)
            critique = example.critique if rng.random() < self.critique_share else None
            if critique is not None and order == Order.REFERENCE_FIRST:
                critique = swap_response_labels(critique)
            prompts.append(self.encode(example, order, critique, last_turns))
            targets.append(shown_target(example.target, order))
        batch = collate_full(
            prompts, self.encoder.tokenizer.pad_token_id, self.encoder.feature_mask_key
        )
        batch["target"] = torch.from_numpy(np.stack(targets)).float()  # (B, 2K+1)
        batch["reference_first"] = torch.tensor([o == Order.REFERENCE_FIRST for o in shown])
        batch["partner"] = order_partners([id(row[0]) for row in rows], shown)
        return batch


def order_partners(examples: list[int], shown: list[Order]) -> torch.Tensor:
    """(B,) per row, the row showing the same example in the other order, or -1: the pairs
    the order-consistency term compares. Rows the fixed-order share turned policy-first, and a
    row whose twin fell into another device batch, have none."""
    first_row: dict[tuple[int, Order], int] = {}
    for row, key in enumerate(zip(examples, shown, strict=True)):
        first_row.setdefault(key, row)
    partner = []
    for example, order in zip(examples, shown, strict=True):
        other = Order.POLICY_FIRST if order == Order.REFERENCE_FIRST else Order.REFERENCE_FIRST
        partner.append(first_row.get((example, other), -1))
    return torch.tensor(partner)
