"""Prompts for PPO from a project's judged tasks, split as the GRM split them.

Prompts are grouped by the same leakage groups (and by default the same share and seed) as the
GRM was trained with: held-out prompts are dialogues neither the GRM nor the policy has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.examples import load_examples, split_examples
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.rl.prompts import PPOPrompt, prompts_from_examples


@dataclass
class PromptSplit:
    train: list[PPOPrompt]
    held_out: list[PPOPrompt]
    media_root: Path


@dataclass
class ExampleSplit:
    examples: list[Any]
    train: list[Any]
    held_out: list[Any]
    media_root: Path


def split_like_grm(
    data: Path | str,
    eval_share: float | None = None,
    split_seed: int | None = None,
    *,
    grm_path: Path | str | None = None,
) -> ExampleSplit:
    """A project's judged tasks split by leakage group as the GRM at `grm_path` split them
    (`GRMCheckpoint.split`: its saved eval_share and split_seed unless given, refused when it
    has no config and they are not given): what the GRM held out stays held out for the
    policy too. Without a GRM, None takes GRMConfig's defaults."""
    if grm_path is not None:
        split = GRMCheckpoint(grm_path).split(data, eval_share, split_seed)
        project, train, held = split.data, split.train, split.held_out
    else:
        project = load_examples(data)
        share = GRMConfig.eval_share if eval_share is None else eval_share
        seed = GRMConfig.split_seed if split_seed is None else split_seed
        train, held = split_examples(project.examples, share, seed)
    if project.judgments.is_empty():
        raise ValueError(f"{data}: no judged tasks to take prompts from")
    return ExampleSplit(project.examples, train, held, project.media_root)


def load_prompts(
    data: Path | str,
    eval_share: float | None,
    split_seed: int | None,
    *,
    grm_path: Path | str | None = None,
) -> PromptSplit:
    """Prompts of a project's judged tasks, split as `split_like_grm` splits them."""
    split = split_like_grm(data, eval_share, split_seed, grm_path=grm_path)
    return PromptSplit(
        prompts_from_examples(split.train), prompts_from_examples(split.held_out), split.media_root
    )
