"""`rewardlab sample`: a policy checkpoint's replies become tasks that import as they are, that
the app serves, and that an interrupted run completes without writing any twice."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from app_harness import running_app
from gradio_client import Client

from rewardlab.cli import main
from rewardlab.rl.sampling import EMPTY_REPLY
from rewardlab.store import Store
from rewardlab.store.accounts import add_account

WORLD = {"n": 12, "seed": 3}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, demo_world) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sample")
    project = root / "project"
    shutil.copytree(demo_world(**WORLD), project)
    policy = root / "policy-ckpt"
    assert main(["tiny-policy", "--project", str(project), "--out", str(policy),
                 "--steps", "5"]) == 0  # fmt: skip
    with Store(project) as store:
        prompts = len({(t.dialogue_id, t.turn_index) for t in store.tasks()})
    return {"root": root, "project": project, "policy": policy, "prompts": prompts}


def sample_args(setup: dict, out: Path, *extra: str) -> list[str]:
    return ["sample", "--policy", str(setup["policy"]), "--project", str(setup["project"]),
            "--out", str(out), "--n-per-prompt", "2", "--max-new-tokens", "24", *extra]  # fmt: skip


def read(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_sampled_tasks_import_as_they_are_and_the_app_serves_one(setup, tmp_path):
    out = tmp_path / "round2.jsonl"
    assert main(sample_args(setup, out, "--round", "2", "--seed", "7")) == 0
    records = read(out)
    assert len(records) == 2 * setup["prompts"]
    assert len({r["id"] for r in records}) == len(records)
    with Store(setup["project"]) as store:
        sources = {t.id: t for t in store.tasks()}
    for record in records:
        source = sources[record["metadata"]["sampled_from"]]
        assert (record["dialogue_id"], record["turn_index"]) == (source.dialogue_id,
                                                                  source.turn_index)  # fmt: skip
        assert record["reference"]["text"] == source.reference.text
        assert record["rubric_id"] == source.rubric_id
        assert record["policy"]["source"] == "policy-ckpt" and record["metadata"]["round"] == 2
        assert record["policy"]["text"] and "<|" not in record["policy"]["text"]
    assert any(r["policy"]["text"] != EMPTY_REPLY for r in records)
    # the same seed draws the same replies
    again = tmp_path / "again.jsonl"
    assert main(sample_args(setup, again, "--round", "2", "--seed", "7")) == 0
    assert read(again) == records

    # round 2 in a project that holds the dialogues and none of round 1's tasks
    project = setup["root"] / "round2"
    source = setup["project"] / "source"
    assert main(["init", str(project)]) == 0
    assert main(["import", str(project), "--dialogues", str(source / "dialogues.jsonl"),
                 "--media", str(setup["project"] / "media")]) == 0  # fmt: skip
    assert main(["import", str(project), "--tasks", str(out)]) == 0
    with Store(project) as store:
        assert store.count("tasks") == len(records)
        add_account(store, "ann-1", "password-1")
    with running_app(project, tmp_path / "server.log") as url:
        client = Client(url, auth=("ann-1", "password-1"), verbose=False, analytics_enabled=False)
        task = client.predict(api_name="/next_task")
    served = {r["id"]: r for r in records}[task["task_id"]]
    shown = {response["text"] for response in task["responses"]}
    assert shown == {served["policy"]["text"], served["reference"]["text"]}


def test_held_out_of_a_grm_samples_only_the_dialogues_it_held_out(setup, tmp_path):
    from rewardlab.grm.checkpoint import CONFIG_FILE
    from rewardlab.grm.examples import load_examples, split_examples

    grm = tmp_path / "grm"  # a GRM folder as far as its split goes: the config it trained with
    grm.mkdir()
    (grm / CONFIG_FILE).write_text("eval_share: 0.25\nsplit_seed: 3\n")
    _, held = split_examples(load_examples(setup["project"]).examples, 0.25, 3)
    held_dialogues = {e.item.task.dialogue_id for e in held}
    assert 0 < len(held_dialogues) < setup["prompts"]
    out = tmp_path / "held.jsonl"
    assert main(sample_args(setup, out, "--held-out-of", str(grm))) == 0
    records = read(out)
    assert {r["dialogue_id"] for r in records} == held_dialogues
    assert len(records) == 2 * len(held_dialogues)


def test_an_interrupted_run_resumes_without_writing_a_task_twice(setup, tmp_path):
    out = tmp_path / "resumed.jsonl"
    command = [sys.executable, "-m", "rewardlab.cli", *sample_args(setup, out, "--batch-size", "1")]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out.exists() and out.read_text().count("\n") >= 2):
        assert run.poll() is None and time.monotonic() < deadline, "no batch was written"
        time.sleep(0.02)
    run.kill()
    run.wait()
    # as if the kill had cut the next batch's line short
    first_batch = out.read_text().splitlines(keepends=True)[:2]
    out.write_text("".join(first_batch) + '{"id": "cut short')
    assert main(sample_args(setup, out, "--batch-size", "1")) == 0
    ids = [r["id"] for r in read(out)]
    assert len(ids) == len(set(ids)) == 2 * setup["prompts"]
    assert ids[:2] == [json.loads(line)["id"] for line in first_batch]


def test_a_checkpoint_that_does_not_load_is_named_and_nothing_is_written(
    demo_world, tmp_path, capsys
):
    project = demo_world(**WORLD)
    not_a_policy = tmp_path / "not-a-policy"
    not_a_policy.mkdir()
    (not_a_policy / "config.json").write_text("{}")
    for policy in (tmp_path / "missing", not_a_policy):
        out = tmp_path / "tasks.jsonl"
        args = ["sample", "--policy", str(policy), "--project", str(project), "--out", str(out)]
        assert main(args) == 1
        assert str(policy) in capsys.readouterr().err
        assert not out.exists()
