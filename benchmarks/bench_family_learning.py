"""Does each backbone family learn to hear? One audio-only world, one recipe, every family.

    .venv/bin/python benchmarks/bench_family_learning.py [--family qwen2_5_omni ...]
        [--max-steps 700] [--history-warmup-steps 400]

The world is the demo's audio-only world (`demo-data --n 200 --pairs 4 --audio-only-share 1
--seed 5`: every task has a twin with the same words spoken in another mood, so only the audio
decides). Each family gets a tiny random-init judge (`tiny-grm --family F`, same sizes) trained
with `training/grm_audio_demo.yaml` unchanged: the recipe was tuned on Qwen2-Audio and is not
re-tuned per family. Qwen2-Audio always runs first, as the baseline. Prints, per family,
held-out accuracy with the audio and with every clip replaced by the same second of silence
(chance is 0.5: a judge that learned the words alone sits there), the training time, and the
accuracy relative to the baseline's. About 5 minutes per family on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rewardlab.cli import main as cli
from rewardlab.commands.options import TINY_FAMILIES

RECIPE = "training/grm_audio_demo.yaml"


def train_family(family: str, world: Path, root: Path, args) -> dict:
    init, run = root / f"{family}-init", root / f"{family}-run"
    assert cli(["tiny-grm", "--project", str(world), "--out", str(init), "--family", family]) == 0
    start = time.perf_counter()
    assert cli(["train-grm", "--config", RECIPE, "--model-path", str(init), "--project",
                str(world), "--output-dir", str(run), "--max-steps", str(args.max_steps),
                "--history-warmup-steps", str(args.history_warmup_steps),
                "--disable-tqdm", "true", "--save-strategy", "no"]) == 0  # fmt: skip
    report = json.loads((run / "eval.json").read_text())
    return {
        "family": family,
        "audio": report["judge/accuracy_audio_only"],
        "silence": report["silence/judge/accuracy_audio_only"],
        "pairs": int(report["judge/n_audio_only"]),
        "seconds": time.perf_counter() - start,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--family",
        action="append",
        choices=TINY_FAMILIES,
        help="a family to train besides the qwen2_audio baseline (repeat; default: all)",
    )
    parser.add_argument("--max-steps", type=int, default=700)
    parser.add_argument("--history-warmup-steps", type=int, default=400)
    args = parser.parse_args()
    families = ["qwen2_audio"] + [f for f in args.family or TINY_FAMILIES if f != "qwen2_audio"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = root / "world"
        assert cli(["demo-data", "--out", str(world), "--n", "200", "--pairs", "4",
                    "--audio-only-share", "1", "--seed", "5"]) == 0  # fmt: skip
        results = [train_family(family, world, root, args) for family in families]
    base = results[0]["audio"]
    print(
        f"\nheld-out audio-only pairs ({results[0]['pairs']}), {args.max_steps} steps of {RECIPE}"
    )
    print("| family | accuracy, audio | accuracy, silence | training | vs qwen2_audio |")
    print("| --- | --- | --- | --- | --- |")
    for r in results:
        print(
            f"| {r['family']} | {r['audio']:.3f} | {r['silence']:.3f} |"
            f" {r['seconds'] / 60:.1f} min | {r['audio'] / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
