"""The scalar reward-model recipe, top to bottom: data, split, model, train, link, save,
evaluate. The baseline the GRM is measured against, on the same labels and the same split.

    rewardlab train-rm --config training/rm_demo.yaml

Writes to ``output_dir``: ``final/`` (the scalar RM: backbone or adapter, processor,
``judge_format.json``, ``score_head.safetensors``, ``ordinal_link.json``, ``rm_config.yaml``),
``checkpoint-N/`` at each save (complete RMs, with the initial link: the link is fitted once,
after training), ``rm_config.yaml`` and ``eval.json`` (held-out metrics with the audio and with
every clip replaced by silence, as `train-grm` writes them). `rewardlab evaluate --grm
OUT/final` and `--baseline OUT/final` read the folder like a GRM's.
"""

from __future__ import annotations

import numpy as np

from rewardlab.grm.examples import load_examples, split_examples
from rewardlab.grm.recipe import save_run
from rewardlab.grm.rm_config import RMConfig
from rewardlab.grm.rm_trainer import RMTrainer
from rewardlab.grm.scalar_rm import ScalarRewardModel


def train_rm(config: RMConfig) -> dict[str, float]:
    data = load_examples(config.project)
    # the GRM's split function and fields: the same values hold out the same tasks
    train, held_out = split_examples(data.examples, config.eval_share, config.split_seed)
    print(f"{len(train)} training tasks, {len(held_out)} held out (by leakage group)")
    if not train:
        raise ValueError(
            f"eval_share={config.eval_share} leaves no task of {config.project} to train on"
        )
    rm = ScalarRewardModel.load(
        config.model_path,
        k=data.k,
        lora=config.lora_config(),
        freeze_audio_tower=config.freeze_audio_tower,
        media_root=data.media_root,
        max_tokens=config.max_tokens,
        seed=config.seed,
    )
    RMTrainer(rm, config, train).train()
    # the link reads d on the training tasks' labels: held-out tasks stay unseen
    targets = np.stack([e.target for e in train]).astype(np.float64)
    link = rm.fit_link([e.item for e in train], targets, progress=True)
    print(
        f"ordinal link: slope {link.slope:.3f}, cutpoints {[round(c, 3) for c in link.cutpoints]}"
    )
    return save_run(rm, config, held_out)
