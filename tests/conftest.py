from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # tests/builders.py

from builders import dialogue, task, write_clips, write_jsonl

from rewardlab.store import Store
from rewardlab.store.importer import import_jsonl


@pytest.fixture(scope="session")
def demo_world(tmp_path_factory):
    """`demo_world(n=..., seed=..., ...)`: the project folder of that demo world (`DemoConfig`'s
    fields), built once per test run however many tests ask for it. Treat it as read-only: a
    test that writes to a project copies it first (`shutil.copytree`)."""
    from rewardlab.demo import DemoConfig, build_demo_project

    base = tmp_path_factory.getbasetemp()

    def world(**fields) -> Path:
        config = DemoConfig(**fields)  # refuses unknown fields before anything is built
        name = "-".join(f"{key}{value}" for key, value in sorted(fields.items()))
        root = base / f"demo-world-{name}"
        if not (root / "built").exists():  # a marker: a build that failed halfway is redone
            shutil.rmtree(root, ignore_errors=True)
            build_demo_project(root / "project", config, progress=False).close()
            (root / "built").touch()
        return root / "project"

    return world


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A folder with real clips in three formats and JSONL files that reference them."""
    folder = tmp_path / "source"
    write_clips(folder, {"a.wav": 1.0, "sub/b.flac": 1.5, "c.ogg": 0.8, "cand.wav": 0.6})
    write_jsonl(
        folder / "dialogues.jsonl",
        [dialogue("d1", ["a.wav", "sub/b.flac"]), dialogue("d2", ["c.ogg"])],
    )
    rubric_task = task("t2", "d1", 2, rubric_id="inference_memory")
    rubric_task["policy"]["audio"] = {"path": "cand.wav"}
    gold_task = task("t3", "d2", 0, gold=True, gold_level=2)
    write_jsonl(folder / "tasks.jsonl", [task("t1", "d1", 0), rubric_task, gold_task])
    return folder


@pytest.fixture
def store(tmp_path: Path):
    with Store.create(tmp_path / "project") as opened:
        yield opened


@pytest.fixture
def filled(store: Store, source: Path) -> Store:
    """The `source` records imported, with two annotators."""
    import_jsonl(store, dialogues=source / "dialogues.jsonl", tasks=source / "tasks.jsonl")
    store.add_annotator("ann-1")
    store.add_annotator("ann-2")
    return store
