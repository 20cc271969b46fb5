"""Prompts for PPO from a project's judged tasks, split as the GRM split them.

Prompts are grouped by the same leakage groups (and by default the same share and seed) as the
GRM was trained with: held-out prompts are dialogues neither the GRM nor the policy has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rewardlab.grm.evaluate import CONFIG_FILE
from rewardlab.grm.examples import examples_from_frame, load_judgments, split_examples
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
    """A project's judged tasks split by leakage group; `eval_share` and `split_seed` None take
    the GRM's own (its saved config), else GRMConfig's defaults: what the GRM held out stays
    held out for the policy too."""
    saved: dict[str, Any] = {}
    if grm_path is not None and (Path(grm_path) / CONFIG_FILE).exists():
        saved = yaml.safe_load((Path(grm_path) / CONFIG_FILE).read_text()) or {}
    share = saved.get("eval_share", 0.2) if eval_share is None else eval_share
    seed = saved.get("split_seed", 0) if split_seed is None else split_seed
    frame, rubrics, media_root = load_judgments(Path(data))
    if frame.is_empty():
        raise ValueError(f"{data}: no judged tasks to take prompts from")
    k = int(frame["k"][0]) if "k" in frame.columns else 3
    examples = examples_from_frame(frame, rubrics, k)
    train, held = split_examples(examples, share, seed)
    return ExampleSplit(examples, train, held, media_root)


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
