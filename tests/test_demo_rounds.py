"""A second round in the demo world: free-text replies labelled by the world's own rules and
judged by its simulated annotators, all or nothing, and never twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rewardlab.cli import main
from rewardlab.demo.world import FACTS, MOODS
from rewardlab.store import Store

WORLD = {"n": 12, "seed": 6}


@pytest.fixture
def project(demo_world, tmp_path) -> Path:
    copy = tmp_path / "world"
    shutil.copytree(demo_world(**WORLD), copy)
    return copy


def replies(store: Store) -> list[dict]:
    """Per dialogue a reply that gets every axis right and one that gets every axis wrong,
    each against the dialogue's first task's reference, one of them under its rubric."""
    tasks = []
    for i, dialogue in enumerate(store.dialogues()):
        rules = dialogue.metadata["rules"]
        source = min((t for t in store.tasks() if t.dialogue_id == dialogue.id), key=lambda t: t.id)
        values, _, _, specific, _ = FACTS[rules["fact"]]
        wrong = next(v for v in values if v != rules["value"])
        good = f"{MOODS[rules['mood']][3]} {specific.format(value=rules['value'])}"
        if rules["instruction"] == "captain":
            good = f"Captain, {good}"
        elif rules["instruction"] == "sign_off":
            good += " Over and out."
        elif rules["instruction"] == "ask_back":
            good += " What do you think?"
        other = next(m for m in MOODS if m != rules["mood"])
        bad = f"{MOODS[other][3]} {specific.format(value=wrong)}"
        for name, text in (("good", good), ("bad", bad)):
            tasks.append({
                "id": f"{dialogue.id}.r2.{name}",
                "dialogue_id": dialogue.id,
                "turn_index": source.turn_index,
                "policy": {"text": text, "source": "policy-r2"},
                "reference": {"text": source.reference.text, "source": "reference"},
                "rubric_id": source.rubric_id if i % 2 else None,
                "metadata": {"round": 2},
            })  # fmt: skip
    return tasks


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_a_round_is_labelled_by_the_rules_and_judged_once(project, tmp_path, capsys):
    with Store(project) as store:
        records = replies(store)
        before = store.count("judgments")
        per_task = store.settings.annotators_per_task
    path = write(tmp_path / "round2.jsonl", records)
    assert main(["demo-annotate", str(project), "--tasks", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{len(records)} tasks labelled by the world's rules" in out
    assert "policy-r2: mean true level" in out and f"over {len(records)} replies" in out
    with Store(project) as store:
        assert store.count("judgments") == before + per_task * len(records)
        for record in records:
            task = store.task(record["id"])
            truth = task.metadata["truth"]
            assert task.metadata["round"] == 2
            good = record["id"].endswith("good")
            # the all-right reply is never worse than a world reference, the all-wrong one never
            # better; every axis of the all-right reply scores +1 (retention 0 without one)
            assert (truth["level"] >= 0) if good else (truth["level"] <= 0), record
            if good:
                assert truth["scores"]["policy"]["tone"] == truth["scores"]["policy"]["memory"] == 1
            judgments = store.judgments(task_id=task.id)
            assert len({j.annotator_id for j in judgments}) == per_task
            if task.rubric_id:
                assert all(j.rubric_scores for j in judgments)
        # simulated annotators follow the truth: on decided tasks most judgments agree in sign
        decided = [
            (j.level, store.task(j.task_id).metadata["truth"]["level"])
            for r in records
            for j in store.judgments(task_id=r["id"])
            if store.task(r["id"]).metadata["truth"]["level"] != 0
        ]
        agree = sum((level > 0) == (truth > 0) for level, truth in decided if level != 0)
        assert agree >= 0.7 * len(decided)
        total = store.count("judgments")
    assert main(["demo-annotate", str(project), "--tasks", str(path)]) == 0  # again: nothing new
    with Store(project) as store:
        assert store.count("judgments") == total


def test_a_task_outside_the_world_is_refused_naming_it_and_nothing_is_stored(
    project, tmp_path, capsys
):
    with Store(project) as store:
        records = replies(store)[:3]
        counts = (store.count("tasks"), store.count("judgments"))
    records[1]["rubric_id"] = "no_such_axis"
    records[2]["dialogue_id"] = "not-a-dialogue"
    path = write(tmp_path / "bad.jsonl", records)
    assert main(["demo-annotate", str(project), "--tasks", str(path)]) == 1
    err = capsys.readouterr().err
    assert "line 2" in err and "rubric_id" in err and "no_such_axis" in err
    assert "line 3" in err and "dialogue_id" in err
    with Store(project) as store:
        assert (store.count("tasks"), store.count("judgments")) == counts
