"""Build the demo project: speak the world, import it, and let simulated annotators judge it.

    rewardlab demo-data --out DIR --n 240

DIR becomes an ordinary rewardlab project (``project.sqlite`` + ``media/``) with the world's
source files in ``DIR/source/`` (dialogues.jsonl, tasks.jsonl: what a user would import). The
records go in through the real importer and the judgments through the store's write path, so
the demo exercises the same code as real data.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from rewardlab.demo.annotators import judge, make_annotators
from rewardlab.demo.tts import synthesise_all
from rewardlab.demo.world import (
    ACKNOWLEDGEMENTS,
    Scene,
    make_scenes,
    more_pairs,
    scene_rules,
    true_level,
)
from rewardlab.schema import ProjectSettings
from rewardlab.store import DB_NAME, Store
from rewardlab.store.importer import import_jsonl


@dataclass(frozen=True)
class DemoConfig:
    n: int = 240  # dialogues
    pairs_per_dialogue: int = 1  # tasks per dialogue: different candidate pairs, same context
    seed: int = 0
    k: int = 3
    annotators: int = 8
    annotators_per_task: int = 3
    gold_share: float = 0.05
    audio_only_share: float = 0.3
    rubric_share: float = 0.4

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError(f"n must be at least 2 (audio-only items come in twins), got {self.n}")
        for name in ("audio_only_share", "rubric_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.pairs_per_dialogue < 1:
            raise ValueError(
                f"pairs_per_dialogue must be at least 1, got {self.pairs_per_dialogue}"
            )
        if not 1 <= self.annotators_per_task <= self.annotators:
            raise ValueError(
                f"annotators_per_task={self.annotators_per_task} must be in 1..annotators"
                f" ({self.annotators})"
            )


def task_id(index: int, pair: int) -> str:
    """The first pair keeps the plain id, so a one-pair world's ids never change."""
    return f"demo-t{index:05d}" + (f"-p{pair}" if pair else "")


def scene_records(scene: Scene, k: int, gold: bool) -> tuple[dict, dict]:
    """The JSONL records (dialogue, task) of one scene; audio refs give only their path."""
    turns = []
    speeches = scene.user_turns()
    # audio-only twins must share every word, the assistant's acknowledgements included
    base = scene.index if scene.twin is None else min(scene.index, scene.twin)
    for i, speech in enumerate(speeches):
        turns.append({"role": "user", "text": speech.text, "audio": {"path": speech.media_path}})
        if i < len(speeches) - 1:
            turns.append(
                {
                    "role": "assistant",
                    "text": ACKNOWLEDGEMENTS[(base + i) % len(ACKNOWLEDGEMENTS)],
                }
            )
    dialogue_id = f"demo-d{scene.index:05d}"
    level = true_level(scene, k)
    truth = {
        "level": level,
        "axis": scene.axis,
        "rubric_axis": "memory" if scene.axis == "correction" else scene.axis,
        "audio_only": scene.audio_only,
        "twin": None if scene.twin is None else task_id(scene.twin, scene.pair),
        "mood": scene.mood,
        "scores": {
            "policy": scene.scores(scene.policy),
            "reference": scene.scores(scene.reference),
        },
    }
    task = {
        "id": task_id(scene.index, scene.pair),
        "dialogue_id": dialogue_id,
        "turn_index": len(turns) - 1,
        "policy": {"text": scene.reply_text(scene.policy), "source": "demo-policy"},
        "reference": {"text": scene.reply_text(scene.reference), "source": "reference"},
        "rubric_id": scene.rubric_id,
        "gold": gold,
        "gold_level": level if gold else None,
        "metadata": {"truth": truth},
    }
    metadata = {"world": "rewardlab-demo", "rules": scene_rules(scene)}
    dialogue = {"id": dialogue_id, "turns": turns, "metadata": metadata}
    return dialogue, task


def build_demo_project(
    out: Path,
    config: DemoConfig,
    *,
    force: bool = False,
    progress: bool = True,
    annotate: bool = True,
) -> Store:
    """The demo project at `out`; `annotate=False` leaves its tasks unjudged, for people."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not force:
            raise FileExistsError(f"{out} is not empty: pass --force to rebuild the demo there")
        if not (out / DB_NAME).exists():
            raise FileExistsError(
                f"{out} holds something other than a rewardlab project; not removing it"
            )
        shutil.rmtree(out)
    settings = ProjectSettings(
        name="rewardlab demo world",
        k=config.k,
        annotators_per_task=config.annotators_per_task,
        gold_share=config.gold_share,
        guidelines="Judge Response 1 against Response 2 as a reply to the last user turn. "
        "Listen to the user: how they sound matters.",
    )
    store = Store.create(out, settings)
    rng = random.Random(config.seed)
    scenes = make_scenes(
        config.n,
        config.seed,
        audio_only_share=config.audio_only_share,
        rubric_share=config.rubric_share,
    )
    synthesise_all(
        (speech for scene in scenes for speech in scene.user_turns()),
        store.media_root,
        progress=progress,
    )
    scenes += more_pairs(
        scenes, config.pairs_per_dialogue, config.seed, rubric_share=config.rubric_share
    )
    source = out / "source"
    source.mkdir()
    with (
        (source / "dialogues.jsonl").open("w") as dialogues,
        (source / "tasks.jsonl").open("w") as tasks,
    ):
        for scene in scenes:
            dialogue, task = scene_records(scene, config.k, gold=rng.random() < config.gold_share)
            if scene.pair == 0:  # the extra pairs share their dialogue
                dialogues.write(json.dumps(dialogue) + "\n")
            tasks.write(json.dumps(task) + "\n")
    import_jsonl(
        store,
        dialogues=source / "dialogues.jsonl",
        tasks=source / "tasks.jsonl",
        media_dir=store.media_root,
        progress=progress,
    )
    if annotate:
        simulate_annotations(store, config, progress=progress)
    return store


def simulate_annotations(store: Store, config: DemoConfig, *, progress: bool = True) -> int:
    """Each task judged by `annotators_per_task` different simulated annotators."""
    rng = random.Random(config.seed + 1)
    annotators = make_annotators(config.annotators, config.seed)
    for annotator in annotators:
        store.add_annotator(
            annotator.id, f"Simulated annotator {annotator.id[-2:]}", role="simulated"
        )
    judgments = []
    for task in tqdm(store.tasks(), desc="annotating", unit="task", disable=not progress):
        dialogue = store.dialogue(task.dialogue_id)
        clips = [ref.path for ref in dialogue.audio_refs()] + [
            ref.path for ref in task.audio_refs()
        ]
        rubric = store.rubric(task.rubric_id) if task.rubric_id else None
        for annotator in rng.sample(annotators, config.annotators_per_task):
            judgments.append(judge(annotator, task, rubric, clips, config.k, rng))
    store.submit_judgments(judgments)
    return len(judgments)
