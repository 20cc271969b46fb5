"""Import an HF dataset of 1,000 dialogues with audio (`rewardlab import --hf`), against the
JSONL import of the same project in the same run.

    python benchmarks/bench_hf_import.py
    python benchmarks/bench_hf_import.py --dialogues 200

Setup (not timed): a project of N dialogues, each a user clip, an assistant turn and a second
user clip (1 s FLAC at 16 kHz, distinct), one task per dialogue with the policy's reply as a
clip too, and 3 judgments per task; then its export with `export --format hf` (clips
embedded), and the same records as `dialogues.jsonl`, `tasks.jsonl` and `judgments.jsonl`
beside the media folder. Then, each into a fresh empty project:

  (a) `import_hf(store, folder)`: read the rows, stage the embedded clips, validate, store
      dialogues, tasks and judgments in one transaction, copy the clips in;
  (b) baseline: `import_jsonl` (dialogues and tasks, clips copied from the media folder) then
      `import_judgments`, the project's own format.

Printed: seconds, dialogues/s and judgments/s of each, and HF / JSONL. Each import is checked:
every dialogue, task, judgment and clip stored.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from rewardlab.schema import ProjectSettings
from rewardlab.store import Store
from rewardlab.store.export import export_hf
from rewardlab.store.hf_import import import_hf
from rewardlab.store.importer import import_jsonl
from rewardlab.store.judgment_import import import_judgments

RATE = 16_000
JUDGMENTS_PER_TASK = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dialogues", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def clip(rng: np.random.Generator) -> np.ndarray:
    """One second of amplitude-modulated noise: not silent, different every time."""
    t = np.arange(RATE) / RATE
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t)
    return (0.2 * envelope * rng.standard_normal(RATE)).astype(np.float32)


def build(root: Path, n: int, seed: int) -> tuple[Path, Path]:
    """(source folder with JSONL + media, HF export folder)."""
    rng, pick = np.random.default_rng(seed), random.Random(seed)
    source = root / "source"
    dialogues, tasks, judgments = [], [], []
    for i in range(n):
        names = [f"clips/{i // 100:02d}/d{i}-{turn}.flac" for turn in (0, 2)]
        reply = f"replies/{i // 100:02d}/r{i}.flac"
        for name in [*names, reply]:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            sf.write(source / name, clip(rng), RATE)
        dialogues.append(
            {
                "id": f"d{i}",
                "turns": [
                    {"role": "user", "text": f"question {i}", "audio": {"path": names[0]}},
                    {"role": "assistant", "text": f"answer {i}"},
                    {"role": "user", "text": f"follow-up {i}", "audio": {"path": names[1]}},
                ],
                "metadata": {"speaker": f"s{i % 17}"},
            }
        )
        tasks.append(
            {
                "id": f"t{i}",
                "dialogue_id": f"d{i}",
                "turn_index": 2,
                "policy": {"text": f"reply {i}", "source": "ckpt", "audio": {"path": reply}},
                "reference": {"text": f"reference {i}", "source": "reference"},
            }
        )
        for a in pick.sample(range(40), JUDGMENTS_PER_TASK):
            judgments.append(
                {
                    "id": f"j{i}-{a}",
                    "task_id": f"t{i}",
                    "annotator_id": f"ann-{a}",
                    "level": pick.randint(-3, 3),
                    "created_at": "2026-11-01T12:00:00+00:00",
                }
            )
    for name, records in (("dialogues", dialogues), ("tasks", tasks), ("judgments", judgments)):
        (source / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    with Store.create(root / "original", ProjectSettings(name="bench")) as store:
        import_jsonl(store, dialogues=source / "dialogues.jsonl", tasks=source / "tasks.jsonl")
        import_judgments(store, source / "judgments.jsonl")
        folder = export_hf(store, root / "hf")
    return source, folder


def check(store: Store, n: int) -> None:
    counts = (store.count("dialogues"), store.count("tasks"), store.count("judgments"))
    assert counts == (n, n, n * JUDGMENTS_PER_TASK), counts
    assert sum(1 for p in store.media_root.rglob("*.flac")) == 3 * n


def timed_hf(root: Path, folder: Path, n: int) -> float:
    with Store.create(root, ProjectSettings(name="hf")) as store:
        start = time.perf_counter()
        import_hf(store, folder)
        seconds = time.perf_counter() - start
        check(store, n)
    return seconds


def timed_jsonl(root: Path, source: Path, n: int) -> float:
    with Store.create(root, ProjectSettings(name="jsonl")) as store:
        start = time.perf_counter()
        import_jsonl(store, dialogues=source / "dialogues.jsonl", tasks=source / "tasks.jsonl")
        import_judgments(store, source / "judgments.jsonl")
        seconds = time.perf_counter() - start
        check(store, n)
    return seconds


def main() -> None:
    args = parse_args()
    n = args.dialogues
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-hf-") as tmp:
        root = Path(tmp)
        print(f"building {n} dialogues with {3 * n} clips and their HF export ...")
        source, folder = build(root, n, args.seed)
        runs = {
            "import --hf (export folder)": timed_hf(root / "a", folder, n),
            "import JSONL + judgments": timed_jsonl(root / "b", source, n),
        }
    judged = n * JUDGMENTS_PER_TASK
    print(f"\n{n} dialogues, {n} tasks, {3 * n} clips, {judged} judgments\n")
    print(f"{'run':<30}{'seconds':>9}{'dialogues/s':>13}{'judgments/s':>13}")
    for name, seconds in runs.items():
        print(f"{name:<30}{seconds:>9.2f}{n / seconds:>13,.0f}{judged / seconds:>13,.0f}")
    hf, jsonl = runs.values()
    print(f"HF / JSONL: {jsonl / hf:.2f}x the throughput")


if __name__ == "__main__":
    main()
