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
"""

from __future__ import annotations

from dataclasses import dataclass
from inspect import get_annotations
from pathlib import Path
from typing import Any

import yaml

from rewardlab.grm.examples import GRMExample, ProjectExamples, load_examples, split_examples
from rewardlab.grm.grm_config import BackboneArguments, GRMConfig
from rewardlab.grm.judge_format import FORMAT_FILE, JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.reward import MAPPER_FILE, RewardMapper

CONFIG_FILE = "grm_config.yaml"  # the resolved GRMConfig train-grm saves beside the model
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
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def mapper_path(self) -> Path:
        return self.path / MAPPER_FILE

    @property
    def format_path(self) -> Path:
        return self.path / FORMAT_FILE

    # -- writing -------------------------------------------------------------------------------

    def save_config(self, config: GRMConfig) -> Path:
        resolved = {k: v for k, v in config.to_dict().items() if not k.startswith("_")}
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(resolved, sort_keys=True))
        return self.config_path

    def save_settings(self, config: GRMConfig, fmt: JudgeFormat) -> None:
        """The judge format and the resolved config, beside the weights."""
        fmt.save(self.path)
        self.save_config(config)

    # -- reading -------------------------------------------------------------------------------

    def has_config(self) -> bool:
        return self.config_path.exists()

    def config(self) -> GRMConfig:
        """The GRM's settings as trained (`RUN_FIELDS` and GRMConfig's own fields; the rest at
        their defaults). Refuses a folder without ``grm_config.yaml``."""
        if not self.has_config():
            raise FileNotFoundError(
                f"{self.config_path} not found: {self.path} is not a GRM that train-grm saved"
            )
        saved: dict[str, Any] = yaml.safe_load(self.config_path.read_text()) or {}
        if "data" in saved:  # written before GRMConfig.data became GRMConfig.project
            saved.setdefault("project", saved.pop("data"))
        own = {*get_annotations(GRMConfig), *get_annotations(BackboneArguments), *RUN_FIELDS}
        return GRMConfig(**{name: saved[name] for name in own if name in saved})

    def judge_format(self) -> JudgeFormat:
        return JudgeFormat.load(self.path)

    def mapper(self, k: int) -> RewardMapper:
        """The saved reward mapper, or the identity mapping if it was never calibrated."""
        return RewardMapper.load(self.path, k=k)

    def load_model(self, *, k: int | None = None, **kwargs: Any) -> GenerativeRewardModel:
        """The GRM (`GenerativeRewardModel.load` keywords: media_root, lora, dtype, ...), with
        the prompt length it trained with; `k`: refuse a GRM whose K differs (the data's)."""
        if self.has_config():
            kwargs.setdefault("max_tokens", self.config().max_tokens)
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
