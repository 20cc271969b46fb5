"""`GRMConfig`: every setting of a GRM training run, one dataclass (extends TrainingArguments).

    rewardlab train-grm --config training/grm_demo.yaml [--learning-rate 1e-3 ...]

YAML recipes hold overrides only; each run folder gets the resolved config
(``grm_config.yaml``) beside its checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from peft import LoraConfig
from transformers import TrainingArguments


@dataclass
class BackboneArguments:
    """How a backbone is trained: LoRA (on the language model) or every weight, and whether
    the audio tower is frozen. Shared by the GRM and PPO configs."""

    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains every weight"})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator"})
    lora_target: str = field(
        default=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
        metadata={"help": "regex of modules LoRA adapts (keep the audio tower out)"},
    )
    freeze_audio_tower: bool = field(
        default=True, metadata={"help": "keep the audio encoder's weights fixed"}
    )

    def check_backbone(self) -> None:
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0 = full fine-tuning), got {self.lora_r}")

    def lora_config(self) -> LoraConfig | None:
        """The PEFT LoRA config these settings ask for; None trains every weight."""
        if not self.lora_r:
            return None
        return LoraConfig(
            r=self.lora_r, lora_alpha=self.lora_alpha, target_modules=self.lora_target
        )


@dataclass
class DataArguments:
    """What a reward model trains from, and the held-out split: shared by the GRM and the
    scalar RM, so both hold out the same tasks when given the same values. Listed first among
    a config's bases: its `project` must win over TrainingArguments' field of that name."""

    model_path: str = field(
        default="", metadata={"help": "local backbone directory (or a saved model to fine-tune)"}
    )
    # replaces TrainingArguments' `project` (a Trackio project name): one name per concept in
    # the CLI, and a run that logs to Trackio does so under its project's path
    project: str = field(
        default="", metadata={"help": "a rewardlab project folder or a Parquet export"}
    )
    eval_share: float = field(
        default=0.2, metadata={"help": "share of leakage groups held out for evaluation"}
    )
    split_seed: int = field(default=0, metadata={"help": "seed of the train/eval split"})
    max_tokens: int = field(
        default=2048, metadata={"help": "longest prompt; older turns are dropped to fit"}
    )

    def check_data(self) -> None:
        if not 0 <= self.eval_share <= 1:
            raise ValueError(f"eval_share must be in [0, 1], got {self.eval_share}")


@dataclass
class GRMConfig(DataArguments, TrainingArguments, BackboneArguments):
    # -- the objective -----------------------------------------------------------------------
    critique_weight: float = field(
        default=0.1, metadata={"help": "weight of the LM loss on critiques (rationales)"}
    )
    critique_share: float = field(
        default=0.3, metadata={"help": "share of examples with a rationale trained with it"}
    )
    order_consistency_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the symmetric KL between the verdict distributions of a task's "
            "two presentation orders (both policy vs reference), applied once the fixed-order "
            "share is 0 and the history warm-up is over; 0 trains each order alone"
        },
    )
    fixed_order_share: float = field(
        default=0.5,
        metadata={
            "help": "at step 0, share of examples shown policy-first whatever their order; "
            "a random-init model needs this to start learning audio cues"
        },
    )
    fixed_order_anneal: float = field(
        default=0.5, metadata={"help": "fraction of training over which that share falls to 0"}
    )
    curriculum: str = field(
        default="",
        metadata={
            "help": "stages trained before the full mixture, 'RUBRIC[+RUBRIC...]:STEPS' joined "
            "by ';', e.g. 'instruction_retention:150;emotional_continuity:150': each stage "
            "draws only that rubric's tasks; a random-init model learns one criterion at a "
            "time where it learns none from the mixture"
        },
    )
    history_warmup_steps: int = field(
        default=0,
        metadata={
            "help": "for this many first steps prompts keep only the last turn (shorter "
            "prompts: attention finds the cue before it has to search the whole dialogue)"
        },
    )
    history_restart_lr: float = field(
        default=0.0,
        metadata={
            "help": "with history_warmup_steps: 0 keeps one learning-rate schedule over the "
            "run; > 0 gives the warm-up its own cosine schedule, ending at the warm-up's end, "
            "then starts a second one (warmup_steps up to this peak, cosine to the end) for "
            "the full prompts. What a random-init judge learned from the last turn alone "
            "carried over to full prompts only this way"
        },
    )
    # -- TrainingArguments defaults that suit this trainer -----------------------------------
    remove_unused_columns: bool = False  # the collator builds the model inputs itself
    train_sampling_strategy: str = "group_by_length"  # `PairedBatchSampler`: the only one
    logging_steps: float = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_data()
        for name in ("critique_share", "fixed_order_share", "fixed_order_anneal"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        self.check_backbone()
        if self.history_warmup_steps < 0:
            raise ValueError(f"history_warmup_steps must be >= 0, got {self.history_warmup_steps}")
        if self.history_restart_lr < 0:
            raise ValueError(f"history_restart_lr must be >= 0, got {self.history_restart_lr}")
        if self.history_restart_lr and not 0 < self.history_warmup_steps < self.max_steps:
            raise ValueError(
                "history_restart_lr restarts the schedule when the history warm-up ends: it"
                " needs 0 < history_warmup_steps < max_steps, got"
                f" history_warmup_steps={self.history_warmup_steps}, max_steps={self.max_steps}"
            )
        self.curriculum_stages()  # fails early on a malformed spec
        if self.train_sampling_strategy != "group_by_length":
            raise ValueError(
                f"train_sampling_strategy {self.train_sampling_strategy!r}: a GRM trains on"
                " batches that keep both orders of a task together (group_by_length, the"
                " default); leave the field out"
            )
        if self.order_consistency_weight < 0:
            raise ValueError(
                f"order_consistency_weight must be >= 0, got {self.order_consistency_weight}"
            )
        if self.critique_weight < 0:
            raise ValueError(f"critique_weight must be >= 0, got {self.critique_weight}")

    def curriculum_stages(self) -> list[tuple[frozenset[str], int]]:
        """`curriculum` parsed: (rubric ids, optimizer steps) per stage, in order."""
        stages = []
        for part in filter(None, (p.strip() for p in self.curriculum.split(";"))):
            rubrics, sep, steps = part.rpartition(":")
            ids = frozenset(filter(None, (r.strip() for r in rubrics.split("+"))))
            if not sep or not ids or not steps.strip().isdigit() or int(steps) < 1:
                raise ValueError(
                    f"curriculum stage {part!r}: expected 'RUBRIC[+RUBRIC...]:STEPS' with"
                    " STEPS a positive integer"
                )
            stages.append((ids, int(steps)))
        return stages
