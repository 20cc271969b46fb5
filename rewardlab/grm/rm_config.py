"""`RMConfig`: every setting of a scalar reward-model run, one dataclass (extends
TrainingArguments), on the `GRMConfig` pattern.

    rewardlab train-rm --config training/rm_demo.yaml [--learning-rate 1e-3 ...]

The data and split fields are the GRM's own (`DataArguments`): the same ``project``,
``eval_share`` and ``split_seed`` hold out the same tasks, so the two models compare on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import TrainingArguments

from rewardlab.grm.grm_config import BackboneArguments, DataArguments


@dataclass
class RMConfig(DataArguments, TrainingArguments, BackboneArguments):
    # -- TrainingArguments defaults that suit this trainer -----------------------------------
    remove_unused_columns: bool = False  # the collator builds the model inputs itself
    logging_steps: float = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_data()
        self.check_backbone()
        if self.resume_from_checkpoint:
            raise ValueError(
                f"resume_from_checkpoint {self.resume_from_checkpoint!r}: train-rm does not"
                " resume a run; a checkpoint-N folder is a complete scalar RM, so set"
                " model_path to it to train on from its weights (with a fresh optimizer)"
            )
