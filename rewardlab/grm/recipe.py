"""The GRM training recipe, top to bottom: data, split, model, train, save, evaluate.

    rewardlab train-grm --config training/grm_demo.yaml

Writes to ``output_dir``: ``checkpoint-N/`` (model or adapter, processor, judge format,
resolved config, trainer state: resumable), ``final/`` (the trained GRM, loadable with
`GenerativeRewardModel.load`), ``grm_config.yaml`` and ``eval.json`` (held-out metrics with the
audio, and with every clip replaced by the same second of silence).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from rewardlab.eval.judge_metrics import judge_metrics
from rewardlab.grm.batches import prompt_lengths
from rewardlab.grm.checkpoint import GRMCheckpoint
from rewardlab.grm.examples import GRMExample, load_examples, split_examples
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.grm_trainer import GRMTrainer
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.scalar_rm import ScalarRewardModel


def reference_levels(examples: list[GRMExample], *, truth: bool = True) -> np.ndarray:
    """The known level where the data has one (``metadata.truth.level``, as in the demo
    world) and `truth` is on, else the annotators' mean level, rounded."""
    levels = []
    for example in examples:
        known = example.item.task.metadata.get("truth", {}) if truth else {}
        if "level" in known:
            levels.append(known["level"])
        else:
            k = (len(example.target) - 1) // 2
            levels.append(round(float(example.target @ np.arange(-k, k + 1))))
    return np.asarray(levels)


def evaluate_grm(
    grm: GenerativeRewardModel | ScalarRewardModel,
    examples: list[GRMExample],
    *,
    batch_size: int = 32,
) -> dict[str, float]:
    """Held-out metrics with the audio, and with the audio removed (fixed-length silence); a
    scalar RM (`train-rm`) is judged through its ordinal link the same way."""
    reference = reference_levels(examples)
    audio_only = np.array(
        [bool(e.item.task.metadata.get("truth", {}).get("audio_only")) for e in examples]
    )
    subsets = {"audio_only": audio_only, "text_decidable": ~audio_only}
    items = [e.item for e in examples]
    report: dict[str, float] = {}
    for mode in ("audio", "silence") if grm.encoder.is_audio else ("audio",):
        dist = grm.judge(items, audio=mode, batch_size=batch_size, progress=True)
        metrics = judge_metrics(dist.expected_level(), reference, grm.format.k, subsets)
        prefix = "" if mode == "audio" else "silence/"
        report |= {f"{prefix}{name}": value for name, value in metrics.items()}
    return report


def save_run(
    model: GenerativeRewardModel | ScalarRewardModel, config, held_out: list[GRMExample]
) -> dict[str, float]:
    """A trained model into ``output_dir/final`` with its config, then ``eval.json``: the
    held-out metrics (empty without a held-out split)."""
    out = Path(config.output_dir)
    # final/ is replaced whole: a reward mapper calibrated for an earlier model must not survive
    shutil.rmtree(out / "final", ignore_errors=True)
    model.save(out / "final")
    GRMCheckpoint(out).save_config(config)
    GRMCheckpoint(out / "final").save_config(config)
    report = evaluate_grm(model, held_out) if held_out else {}
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def parse_config(path: Path, overrides: list[str] | None = None, config_class: type = GRMConfig):
    """A YAML recipe, then `--field-name value` overrides (`--field_name` is read the same);
    unknown fields are errors."""
    import yaml
    from transformers import HfArgumentParser

    values = yaml.safe_load(Path(path).read_text()) or {}
    args: list[str] = []
    for name, value in values.items():
        args += (
            [f"--{name}", *(str(v) for v in value)]
            if isinstance(value, list)
            else [
                f"--{name}",
                str(value),
            ]
        )
    (config,) = HfArgumentParser(config_class).parse_args_into_dataclasses(
        args + list(overrides or []), args_filename=None
    )
    return config


def train_grm(config: GRMConfig) -> dict[str, float]:
    data = load_examples(config.project)
    train, held_out = split_examples(data.examples, config.eval_share, config.split_seed)
    print(f"{len(train)} training tasks, {len(held_out)} held out (by leakage group)")
    lora = config.lora_config()
    # resuming: the weights come from the checkpoint (loaded with the model's own key
    # mapping), the optimizer, scheduler, RNG and step from the Trainer
    grm = GenerativeRewardModel.load(
        config.resume_from_checkpoint or config.model_path,
        lora=lora,
        freeze_audio_tower=config.freeze_audio_tower,
        media_root=data.media_root,
        max_tokens=config.max_tokens,
    )
    if grm.format.k != data.k:
        raise ValueError(f"the judge format has K={grm.format.k} but the data has K={data.k}")
    # measure every prompt once: the sampler groups by length, and every clip lands in the
    # encoder's feature cache before the first batch
    lengths = prompt_lengths(grm.encoder, train)
    trainer = GRMTrainer(grm.model, config, grm.encoder, train, lengths=lengths)
    trainer.train(resume_from_checkpoint=config.resume_from_checkpoint)
    return save_run(grm, config, held_out)
