"""Small real inputs for tests: audio clips on disk and JSONL records that reference them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rewardlab.audio import write_audio
from rewardlab.grm.tiny import TinySize
from rewardlab.schema import Judgment


def speechlike(seconds: float, rate: int = 16_000, seed: int = 0) -> np.ndarray:
    """A voiced-sounding clip: a 150 Hz tone with harmonics under a syllable-rate envelope."""
    t = np.arange(round(rate * seconds)) / rate
    tone = sum(np.sin(2 * np.pi * 150 * h * t) / h for h in (1, 2, 3))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + seed)
    return (0.3 * tone * envelope / 1.9).astype(np.float32)


def write_clips(folder: Path, names: dict[str, float]) -> None:
    """Write one clip per relative name (suffix picks the format) with the given seconds."""
    for seed, (name, seconds) in enumerate(names.items()):
        write_audio(folder / name, speechlike(seconds, seed=seed), 16_000)


def dialogue(dialogue_id: str, clips: list[str]) -> dict:
    """user(audio) / assistant(text) / ... ending on a user turn; one user turn per clip."""
    turns = []
    for i, clip in enumerate(clips):
        if i:
            turns.append({"role": "assistant", "text": f"Reply {i}."})
        turns.append({"role": "user", "text": f"User turn {i}.", "audio": {"path": clip}})
    return {"id": dialogue_id, "turns": turns, "metadata": {"source": "test"}}


def task(task_id: str, dialogue_id: str, turn_index: int, **extra) -> dict:
    return {
        "id": task_id,
        "dialogue_id": dialogue_id,
        "turn_index": turn_index,
        "policy": {"text": "A warm, specific reply.", "source": "ckpt-1"},
        "reference": {"text": "A flat reply.", "source": "reference"},
        **extra,
    }


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def judgment(
    judgment_id: str, task_id: str, annotator_id: str, level: int = 1, **extra
) -> Judgment:
    return Judgment(
        id=judgment_id, task_id=task_id, annotator_id=annotator_id, level=level, **extra
    )


# a tiny GRM backbone that builds and trains in seconds (tests check mechanics, not learning)
TINY_GRM_SIZE = TinySize(
    hidden_size=32,
    layers=2,
    heads=2,
    kv_heads=1,
    intermediate_size=64,
    audio_d_model=32,
    audio_layers=1,
    audio_heads=2,
    audio_ffn=64,
    vocab_size=600,
)


def colour_share(png: Path, colour: str, columns: tuple[float, float] = (0.0, 1.0)) -> float:
    """Share of a PNG's pixels, in a band of its columns (fractions of the width), drawn in
    `colour` ("#rrggbb"): checks that a plot drew its bars where they belong, not only that a
    file was written."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]  # (H, W, 3) floats in [0, 1]
    width = pixels.shape[1]
    band = pixels[:, int(columns[0] * width) : int(columns[1] * width)]
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return float((np.abs(band - rgb).max(axis=-1) < 0.02).mean())


def ppo_trainer(world: dict, args):
    """An `AudioPPOTrainer` from the recipe's own pieces: its policy (resumed, LoRA, reference)
    from `args`, the GRM at ``world["grm"]`` as the reward, ``world["project"]``'s prompts split
    as in the recipe."""
    from rewardlab.rl.grm_reward import GRMReward
    from rewardlab.rl.ppo_recipe import build_policy
    from rewardlab.rl.ppo_trainer import AudioPPOTrainer
    from rewardlab.rl.prompt_split import load_prompts
    from rewardlab.rl.rewards import GRMPromptReward

    split = load_prompts(world["project"], 0.25, 0)
    policy, template = build_policy(args)
    reward = GRMReward.from_checkpoint(world["grm"], project=world["project"])
    return AudioPPOTrainer(
        args,
        policy=policy,
        reward=GRMPromptReward(reward),
        train_prompts=split.train,
        processing_class=template,
        media_root=split.media_root,
    )


def short_run(config_class, tmp_path: Path, **overrides):
    """A `config_class` (GRMConfig, RMConfig) of a short CPU run under ``tmp_path/run``: batch 4,
    lr 3e-3, every step logged, nothing saved; `overrides` on top (max_steps first of all)."""
    values = dict(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        learning_rate=3e-3,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return config_class(**(values | overrides))
