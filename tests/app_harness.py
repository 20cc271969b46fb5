"""Real projects and a real server for the annotation app's tests.

`make_app_project` builds a project from the demo world (espeak-ng speech, unjudged) through
the importer, preceded by two hand-made tasks so the queue serves them first:

    spoken-t   the first demo dialogue, both responses spoken (real clips), a rubric
    xss-t      a dialogue and responses whose text is HTML and template syntax

`make_project` builds a small text-only project for the queue's tests. `running_app` starts
`rewardlab serve` as a subprocess on a free port and stops it after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from builders import write_jsonl
from processes import free_port, stop_process, wait_until_answering

from rewardlab.demo.tts import Speech, synthesise
from rewardlab.schema import Dialogue, ProjectSettings, Task, Turn
from rewardlab.store import Store
from rewardlab.store.accounts import add_account
from rewardlab.store.importer import import_jsonl

PASSWORDS = {"admin": "admin-password", **{f"ann-{i}": f"password-{i}" for i in range(1, 5)}}
XSS_TEXT = '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'
TEMPLATE_TEXT = "{{value}} ${window.__xss = 3} <b>not bold</b>"


APP_WORLD = {"n": 6, "seed": 11}  # the demo world (`demo_world` fixture) the app's tests use


def make_app_project(root: Path, world: Path, **settings) -> Path:
    """The project folder (root/project) made from the demo project `world` (read only: its
    source records and clips are imported, unjudged); `settings` are ProjectSettings fields."""
    source = world / "source"
    first_dialogue = json.loads((source / "dialogues.jsonl").read_text().splitlines()[0])
    first_task = json.loads((source / "tasks.jsonl").read_text().splitlines()[0])
    extra = root / "extra"
    spoken = {"id": "spoken-t", "rubric_id": "prosodic_naturalness", "metadata": {}}
    for side, voice in (("policy", "en-us"), ("reference", "en-gb")):
        speech = Speech(first_task[side]["text"], voice, 190, 50)
        synthesise(speech, extra / speech.media_path)
        spoken[side] = first_task[side] | {"audio": {"path": speech.media_path}}
    # the dialogue's clips live in the world's media folder: link them beside the new ones
    for turn in first_dialogue["turns"]:
        if turn.get("audio"):
            target = extra / turn["audio"]["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes((world / "media" / turn["audio"]["path"]).read_bytes())
    xss_dialogue = {"id": "xss-d", "turns": [{"role": "user", "text": XSS_TEXT}]}
    xss_task = {
        "id": "xss-t",
        "dialogue_id": "xss-d",
        "turn_index": 0,
        "policy": {"text": TEMPLATE_TEXT, "source": "ckpt"},
        "reference": {"text": XSS_TEXT, "source": "reference"},
    }
    write_jsonl(extra / "dialogues.jsonl", [first_dialogue, xss_dialogue])
    write_jsonl(extra / "tasks.jsonl", [first_task | spoken, xss_task])

    project = root / "project"
    with Store.create(project, ProjectSettings(name="app test project", **settings)) as store:
        for folder, media in ((extra, extra), (source, world / "media")):
            import_jsonl(
                store,
                dialogues=folder / "dialogues.jsonl",
                tasks=folder / "tasks.jsonl",
                media_dir=media,
            )
        for name, password in PASSWORDS.items():
            add_account(store, name, password, role="admin" if name == "admin" else "annotator")
    return project


def make_project(root: Path, n_tasks: int, *, gold: int = 0, **settings) -> Store:
    """Text-only tasks t00..; the last `gold` of them are gold items at level 1."""
    store = Store.create(root, ProjectSettings(**settings))
    dialogue = Dialogue(id="d", turns=[Turn(role="user", text="Hello?")])
    candidate = {"text": "Hi.", "source": "reference"}
    tasks = [
        Task(
            id=f"t{i:02d}",
            dialogue_id="d",
            turn_index=0,
            policy=candidate,
            reference=candidate,
            gold=i >= n_tasks - gold,
            gold_level=1 if i >= n_tasks - gold else None,
        )
        for i in range(n_tasks)
    ]
    store.add_records(dialogues=[dialogue], tasks=tasks)
    return store


@contextmanager
def running_app(project: Path, log: Path, *flags: str) -> Iterator[str]:
    """`rewardlab serve PROJECT [flags]` on a free port; yields its URL once it answers."""
    port = free_port()
    project = str(project)
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"}
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "rewardlab.cli", "serve", project, "--port", str(port), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(server, f"{url}/login", log, 90)
            yield url
        finally:
            stop_process(server)


@contextmanager
def login(url: str, name: str) -> Iterator[httpx.Client]:
    """An HTTP client holding `name`'s session cookie."""
    with httpx.Client(base_url=url, timeout=30) as client:
        response = client.post("/login", data={"username": name, "password": PASSWORDS[name]})
        response.raise_for_status()
        yield client
