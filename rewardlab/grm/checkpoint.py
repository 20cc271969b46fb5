"""`GRMCheckpoint`: a GRM folder as `train-grm` writes it, and the one owner of its file names.

    ckpt = GRMCheckpoint("demo_out/grm/final")
    grm = ckpt.load_model(media_root=...)           # GenerativeRewardModel
    split = ckpt.split("demo_out")                  # the project's tasks, split as it trained
    mapper = ckpt.mapper(k=3)                       # RewardMapper (identity if none saved)

A folder (``final/``, a resumable ``checkpoint-N/``) holds the model or LoRA adapter and its
processor (transformers' own names), the judge format (``judge_format.json``, `JudgeFormat`),
the resolved training config (``grm_config.yaml``, `GRMConfig`) and, once calibrated, the
reward mapper (``reward_mapper.json``, `RewardMapper`). Everything that reads or writes one of
these goes through this object, so the layout has one owner.

A scalar reward model's folder (`train-rm`) is opened the same way: its score head
(``score_head.safetensors``) marks it, ``rm_config.yaml`` (`RMConfig`) replaces
``grm_config.yaml``, and `load_model` returns a `ScalarRewardModel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from inspect import get_annotations
from pathlib import Path
from typing import Any

import yaml

from rewardlab.grm.examples import GRMExample, ProjectExamples, load_examples, split_examples
from rewardlab.grm.grm_config import BackboneArguments, DataArguments, GRMConfig
from rewardlab.grm.judge_format import FORMAT_FILE, JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.rm_config import RMConfig
from rewardlab.grm.scalar_rm import SCORE_HEAD_FILE, ScalarRewardModel
from rewardlab.reward import MAPPER_FILE, RewardMapper

CONFIG_FILE = "grm_config.yaml"  # the resolved GRMConfig train-grm saves beside the model
RM_CONFIG_FILE = "rm_config.yaml"  # the resolved RMConfig train-rm saves beside a scalar RM
# what a config records of the run itself; the Trainer's device and precision settings stay at
# their defaults when read back (a GRM trained in bf16 on a GPU is often scored on a CPU)
RUN_FIELDS = ("output_dir", "max_steps", "learning_rate", "seed")


@dataclass
class GRMSplit:
    """A project's judged tasks split by leakage group as the GRM's training split them."""

    data: ProjectExamples
    train: list[GRMExample]
    held_out: list[GRMExample]
    eval_share: float
    split_seed: int


class GRMCheckpoint:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"GRMCheckpoint({str(self.path)!r})"

    @property
    def is_scalar(self) -> bool:
        """A scalar reward model (`train-rm`), told by its score head or its config."""
        return (self.path / SCORE_HEAD_FILE).exists() or (self.path / RM_CONFIG_FILE).exists()

    @property
    def config_path(self) -> Path:
        return self.path / (RM_CONFIG_FILE if self.is_scalar else CONFIG_FILE)

    @property
    def mapper_path(self) -> Path:
        return self.path / MAPPER_FILE

    @property
    def format_path(self) -> Path:
        return self.path / FORMAT_FILE

    # -- writing -------------------------------------------------------------------------------

    def save_config(self, config: GRMConfig | RMConfig) -> Path:
        resolved = {k: v for k, v in config.to_dict().items() if not k.startswith("_")}
        self.path.mkdir(parents=True, exist_ok=True)
        path = self.path / (RM_CONFIG_FILE if isinstance(config, RMConfig) else CONFIG_FILE)
        path.write_text(yaml.safe_dump(resolved, sort_keys=True))
        return path

    def save_settings(self, config: GRMConfig, fmt: JudgeFormat) -> None:
        """The judge format and the resolved config, beside the weights."""
        fmt.save(self.path)
        self.save_config(config)

    # -- reading -------------------------------------------------------------------------------

    def has_config(self) -> bool:
        return self.config_path.exists()

    def config(self) -> GRMConfig | RMConfig:
        """The model's settings as trained (`RUN_FIELDS` and the config's own fields; the rest
        at their defaults): a `GRMConfig`, or an `RMConfig` for a scalar RM. Refuses a folder
        without its config file."""
        if not self.has_config():
            verb = "train-rm" if self.is_scalar else "train-grm"
            raise FileNotFoundError(
                f"{self.config_path} not found: {self.path} is not a model that {verb} saved"
            )
        saved: dict[str, Any] = yaml.safe_load(self.config_path.read_text()) or {}
        if "data" in saved:  # written before GRMConfig.data became GRMConfig.project
            saved.setdefault("project", saved.pop("data"))
        config_class = RMConfig if self.is_scalar else GRMConfig
        own = {
            *get_annotations(config_class),
            *get_annotations(DataArguments),
            *get_annotations(BackboneArguments),
            *RUN_FIELDS,
        }
        return config_class(**{name: saved[name] for name in own if name in saved})

    def judge_format(self) -> JudgeFormat:
        return JudgeFormat.load(self.path)

    def mapper(self, k: int) -> RewardMapper:
        """The saved reward mapper, or the identity mapping if it was never calibrated."""
        return RewardMapper.load(self.path, k=k)

    def load_model(
        self, *, k: int | None = None, **kwargs: Any
    ) -> GenerativeRewardModel | ScalarRewardModel:
        """The GRM (`GenerativeRewardModel.load` keywords: media_root, lora, dtype, ...), or the
        scalar RM the folder holds, with the prompt length it trained with; `k`: refuse a
        model whose K differs (the data's)."""
        if self.has_config():
            kwargs.setdefault("max_tokens", self.config().max_tokens)
        if self.is_scalar:
            return ScalarRewardModel.load(self.path, k=k, **kwargs)
        grm = GenerativeRewardModel.load(self.path, **kwargs)
        if k is not None and grm.format.k != k:
            raise ValueError(f"{self.path}: the GRM has K={grm.format.k} but the data has K={k}")
        return grm

    def split(
        self,
        project: Path | str,
        eval_share: float | None = None,
        split_seed: int | None = None,
    ) -> GRMSplit:
        """`project`'s judged tasks, train and held out as this GRM's training split them:
        `eval_share` and `split_seed` from its config unless given. Without a config both must
        be given: the split is never guessed."""
        if eval_share is None or split_seed is None:
            if not self.has_config():
                raise FileNotFoundError(
                    f"{self.config_path} not found, so the GRM's held-out split is unknown:"
                    " pass --eval-share and --split-seed as it was trained with"
                    " (--eval-share 1: data it never saw)"
                )
            config = self.config()
            eval_share = config.eval_share if eval_share is None else eval_share
            split_seed = config.split_seed if split_seed is None else split_seed
        data = load_examples(project)
        train, held_out = split_examples(data.examples, eval_share, split_seed)
        return GRMSplit(data, train, held_out, eval_share, split_seed)
