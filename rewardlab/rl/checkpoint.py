"""PPO checkpoints: ``checkpoint-N/`` folders written atomically, rotated, and resumed from.

A checkpoint holds everything a resumed run needs to continue exactly where the straight run
would: the policy (or its adapter) with its value head and processor, the optimizer and the
scheduler, the RNG states (python, numpy, torch, and CUDA where present), the run state
(`RunState`: step, log history) and the reward source's state (`reward.state_dict()`: a GRM's
running normalisation), plus the resolved config. It is written into ``checkpoint-N.partial``
and renamed into place, so a crash mid-save leaves the earlier checkpoints and never a
half-written one under a checkpoint's name.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardlab.rl.policy import AudioPolicy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.rewards import RewardSource

PREFIX, PARTIAL = "checkpoint-", ".partial"
OPTIMIZER_FILE, SCHEDULER_FILE, RNG_FILE = "optimizer.pt", "scheduler.pt", "rng_state.pth"
STATE_FILE, REWARD_FILE, CONFIG_FILE = "trainer_state.json", "reward_state.json", "ppo_config.json"


@dataclass
class RunState:
    """Where a run is: updates done, epochs of the prompt set seen, every logged line."""

    max_steps: int
    global_step: int = 0
    epoch: float = 0.0
    log_history: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunState:
        return cls(**json.loads(path.read_text()))


def checkpoint_step(path: Path) -> int | None:
    """N of a finished ``checkpoint-N`` folder; None for anything else (a ``.partial``)."""
    number = path.name.removeprefix(PREFIX)
    return int(number) if path.name.startswith(PREFIX) and number.isdigit() else None


def rng_states() -> dict[str, Any]:
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.random.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.random.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    output_dir: Path | str,
    state: RunState,
    policy: AudioPolicy,
    template: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    reward: RewardSource,
    config: AudioPPOConfig,
) -> Path:
    """``output_dir/checkpoint-<global_step>``, written beside and renamed into place; then
    older checkpoints beyond ``save_total_limit`` are removed."""
    out = Path(output_dir) / f"{PREFIX}{state.global_step}"
    partial = out.with_name(out.name + PARTIAL)
    shutil.rmtree(partial, ignore_errors=True)  # what a crashed save left
    policy.save(partial, template=template)
    torch.save(optimizer.state_dict(), partial / OPTIMIZER_FILE)
    torch.save(scheduler.state_dict(), partial / SCHEDULER_FILE)
    torch.save(rng_states(), partial / RNG_FILE)
    state.save(partial / STATE_FILE)
    (partial / REWARD_FILE).write_text(json.dumps(reward.state_dict(), indent=2) + "\n")
    (partial / CONFIG_FILE).write_text(config.to_json_string())
    shutil.rmtree(out, ignore_errors=True)
    partial.rename(out)
    rotate_checkpoints(Path(output_dir), config.save_total_limit)
    return out


def rotate_checkpoints(output_dir: Path, limit: int | None) -> None:
    """Keep the `limit` latest finished checkpoints (all of them when `limit` is None/0)."""
    if not limit:
        return
    found = sorted(
        (p for p in output_dir.glob(f"{PREFIX}*") if checkpoint_step(p) is not None),
        key=checkpoint_step,
    )
    for old in found[:-limit]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(
    path: Path | str,
    policy: AudioPolicy,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    reward: RewardSource,
) -> RunState:
    """Everything but the policy's own weights (the caller loaded the policy from `path`):
    value head, optimizer, scheduler, RNG states, reward state; returns the run state."""
    path = Path(path)
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(f"{path} is not a PPO checkpoint (no {STATE_FILE})")
    if not policy.load_value_head(path):
        raise FileNotFoundError(f"{path}: no value head saved")
    optimizer.load_state_dict(torch.load(path / OPTIMIZER_FILE, weights_only=False))
    scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, weights_only=False))
    set_rng_states(torch.load(path / RNG_FILE, weights_only=False))
    reward.load_state_dict(json.loads((path / REWARD_FILE).read_text()))
    return RunState.load(path / STATE_FILE)
