"""The demo world: real espeak-ng speech, known truth, realistic simulated annotators."""

from __future__ import annotations

import filecmp
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rewardlab.audio import load_ref
from rewardlab.demo import DemoConfig, build_demo_project
from rewardlab.demo.world import (
    Reply,
    make_scenes,
    more_pairs,
    scene_rules,
    score_reply,
    true_level,
    truth_of_reply,
)
from rewardlab.store import Store
from rewardlab.store.export import judgments_frame

CONFIG = DemoConfig(n=30, seed=7)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Store:
    store = build_demo_project(tmp_path_factory.mktemp("demo") / "project", CONFIG, progress=False)
    yield store
    store.close()


def test_scenes_are_seeded():
    assert make_scenes(50, seed=1) == make_scenes(50, seed=1)
    assert make_scenes(50, seed=1) != make_scenes(50, seed=2)


def test_true_level_by_hand():
    """The user sounded sad and gave a fact; no standing instruction.
    policy:    sad opener (tone +1), right fact (memory +1)    -> retention 0
    reference: excited opener (tone -1), generic (memory 0)
    plain:  (1 - -1) + (1 - 0) + 0 = 3;  under a memory rubric: 2 * (1 - 0) = 2;
    under a tone rubric 2 * 2 = 4, clipped to K = 3; with K = 1 the plain level clips to 1."""
    scene = make_scenes(1, seed=0)[0]
    scene = replace(
        scene,
        mood="sad",
        instruction=None,
        stale_value=None,
        policy=Reply("sad", "right", False),
        reference=Reply("excited", "generic", True),
        rubric_id=None,
    )
    assert true_level(scene, k=3) == 3
    assert true_level(replace(scene, rubric_id="inference_memory", axis="memory"), k=3) == 2
    assert true_level(replace(scene, rubric_id="emotional_continuity", axis="tone"), k=3) == 3
    assert true_level(scene, k=1) == 1
    swapped = replace(scene, policy=scene.reference, reference=scene.policy)
    assert true_level(swapped, k=3) == -3


def test_the_reply_scorer_reads_back_every_reply_the_world_writes():
    """Free text scored by the world's rules gives the scores the reply was built with, for
    every reply of every scene, every mood and every instruction."""
    scenes = make_scenes(300, seed=4)
    scenes += more_pairs(scenes, 3, seed=4)
    checked = 0
    for scene in scenes:
        for tone in ("excited", "sad", "whisper", "neutral"):
            for memory in ("right", "generic", "wrong"):
                for retention in (True, False):
                    reply = Reply(tone, memory, retention)
                    text = scene.reply_text(reply)
                    assert score_reply(scene_rules(scene), text) == scene.scores(reply), text
                    checked += 1
    assert checked == len(scenes) * 24


def test_the_reply_scorer_on_text_no_scene_wrote():
    scene = replace(
        make_scenes(1, seed=0)[0],
        fact="colour",
        value="blue",
        stale_value="red",
        instruction="sign_off",
        mood="sad",
    )
    rules = scene_rules(scene)
    assert score_reply(rules, "") == {"tone": -1, "memory": -1, "retention": -1}
    both_openers = "Oh, I am so sorry to hear that. That is fantastic news! Paint it blue."
    assert score_reply(rules, both_openers)["tone"] == -1
    assert score_reply(rules, "oh,  I am SO sorry to hear that.   blue over and out.") == {
        "tone": 1,
        "memory": 1,
        "retention": 1,
    }
    assert score_reply(rules, "Paint it blue or red.")["memory"] == -1  # the stale value too
    assert score_reply(rules, "Paint it blueberry.")["memory"] == -1  # whole words only
    dialogue = type("D", (), {"metadata": {"rules": rules}})()
    assert truth_of_reply(dialogue, "Paint it blue. Over and out.") == {
        "tone": -1,
        "memory": 1,
        "retention": 1,
        "total": 1,
    }
    assert truth_of_reply(type("D", (), {"metadata": {}})(), "anything") is None


def test_audio_only_twins_differ_only_in_how_they_sound():
    scenes = make_scenes(200, seed=3)
    twins = [s for s in scenes if s.audio_only]
    assert 0.2 < len(twins) / len(scenes) < 0.45
    for scene in twins:
        other = scenes[scene.twin]
        assert other.twin == scene.index and other.mood != scene.mood
        assert [t.text for t in scene.user_turns()] == [t.text for t in other.user_turns()]
        assert scene.reply_text(scene.policy) == other.reply_text(other.policy)
        assert scene.reply_text(scene.reference) == other.reply_text(other.reference)
        assert true_level(scene, 3) == -true_level(other, 3) != 0


def test_more_pairs_share_the_dialogue_and_keep_twins_audio_only():
    scenes = make_scenes(120, seed=5)
    extra = more_pairs(scenes, 4, seed=5)
    assert len(extra) == 3 * len(scenes) and extra == more_pairs(scenes, 4, seed=5)
    by_key = {(s.index, s.pair): s for s in extra}
    for scene in extra:
        base = scenes[scene.index]
        assert [t.text for t in scene.user_turns()] == [t.text for t in base.user_turns()]
        if scene.audio_only:
            twin = by_key[(scene.twin, scene.pair)]
            assert scene.reply_text(scene.policy) == twin.reply_text(twin.policy)
            assert scene.reply_text(scene.reference) == twin.reply_text(twin.reference)
            assert true_level(scene, 3) == -true_level(twin, 3) != 0
        else:  # an axis the dialogue can support
            assert scene.axis != "correction" or base.stale_value
            assert scene.axis != "retention" or base.instruction
    # the same context with opposite verdicts: the reply decides, not the dialogue
    signs = {}
    for scene in scenes + extra:
        signs.setdefault(scene.index, set()).add(np.sign(true_level(scene, 3)))
    assert sum({-1, 1} <= found for found in signs.values()) > len(scenes) / 3
    with pytest.raises(ValueError, match="per_dialogue"):
        more_pairs(scenes, 0, seed=5)


def test_a_world_with_several_pairs_per_dialogue(tmp_path: Path):
    config = DemoConfig(n=6, seed=11, pairs_per_dialogue=3)
    with build_demo_project(tmp_path / "p", config, progress=False) as store:
        assert (store.count("dialogues"), store.count("tasks")) == (6, 18)
        tasks = store.tasks()
        assert {t.id for t in tasks if t.dialogue_id == "demo-d00002"} == {
            "demo-t00002",
            "demo-t00002-p1",
            "demo-t00002-p2",
        }
        assert store.count("judgments") == 18 * config.annotators_per_task
    with pytest.raises(ValueError, match="pairs_per_dialogue"):
        DemoConfig(pairs_per_dialogue=0)
    with pytest.raises(ValueError, match="audio_only_share"):
        DemoConfig(audio_only_share=1.5)


def test_every_axis_and_level_occurs():
    scenes = make_scenes(400, seed=0)
    assert {s.axis for s in scenes} == {"tone", "memory", "correction", "retention"}
    levels = {true_level(s, 3) for s in scenes}
    assert levels == set(range(-3, 4))
    assert any(s.rubric_id for s in scenes) and any(s.rubric_id is None for s in scenes)


def test_the_project_is_fully_imported_and_judged(demo: Store):
    assert demo.count("dialogues") == demo.count("tasks") == 30
    assert demo.count("judgments") == 30 * CONFIG.annotators_per_task
    assert demo.integrity_problems() == []
    for task in demo.tasks():
        judges = {j.annotator_id for j in demo.judgments(task_id=task.id)}
        assert len(judges) == CONFIG.annotators_per_task
        dialogue = demo.dialogue(task.dialogue_id)
        assert task.turn_index == len(dialogue.turns) - 1
        assert all(t.audio and t.text for t in dialogue.turns if t.role == "user")
        rules = dialogue.metadata["rules"]
        assert rules["mood"] == task.metadata["truth"]["mood"]
        scores = task.metadata["truth"]["scores"]
        assert score_reply(rules, task.policy.text) == scores["policy"]
        assert score_reply(rules, task.reference.text) == scores["reference"]
    rubric_judgments = [j for j in demo.judgments() if demo.task(j.task_id).rubric_id]
    assert rubric_judgments
    for judgment in rubric_judgments:
        rubric = demo.rubric(demo.task(judgment.task_id).rubric_id)
        assert set(judgment.rubric_scores["policy"]) == {c.id for c in rubric.criteria}


def f0_hz(samples: np.ndarray, rate: int = 16_000) -> float:
    """Median pitch of the loud 40 ms frames, by autocorrelation over 60..400 Hz."""
    frame, pitches = int(0.04 * rate), []
    loud = np.quantile(np.abs(samples), 0.9) * 0.3
    for start in range(0, len(samples) - frame, frame):
        chunk = samples[start : start + frame]
        if np.abs(chunk).max() < loud:
            continue
        corr = np.correlate(chunk, chunk, "full")[frame - 1 :]
        low, high = rate // 400, rate // 60
        pitches.append(rate / (low + int(np.argmax(corr[low:high]))))
    return float(np.median(pitches))


def test_the_audio_carries_the_mood(demo: Store):
    """Twins say the same words; the excited one is faster and higher than the sad one."""
    tasks = {t.id: t for t in demo.tasks()}
    compared = 0
    for task in tasks.values():
        truth = task.metadata["truth"]
        if not truth["audio_only"] or truth["mood"] != "excited":
            continue
        twin = tasks[truth["twin"]]
        if twin.metadata["truth"]["mood"] != "sad":
            continue
        excited, sad = (
            load_ref(demo.media_root, demo.dialogue(t.dialogue_id).turns[t.turn_index].audio)
            for t in (task, twin)
        )
        assert excited.duration_s < 0.75 * sad.duration_s
        assert f0_hz(excited.samples) > 1.2 * f0_hz(sad.samples)
        compared += 1
    assert compared >= 1


def test_simulated_annotators_disagree_realistically(demo: Store):
    frame = judgments_frame(demo).with_columns(
        pl.col("task_metadata").str.json_path_match("$.truth.level").cast(pl.Int64).alias("truth")
    )
    correlation = np.corrcoef(frame["level"], frame["truth"])[0, 1]
    assert 0.75 < correlation < 0.99  # they track the truth, not perfectly
    exact = (frame["level"] == frame["truth"]).mean()
    assert 0.3 < exact < 0.9
    assert 0 < (frame["level"] == 0).mean() < 0.35  # some ties
    assert frame["shown_order"].n_unique() == 2


def test_the_same_seed_builds_the_same_project(tmp_path: Path):
    config = DemoConfig(n=8, seed=11)
    first = build_demo_project(tmp_path / "a", config, progress=False)
    second = build_demo_project(tmp_path / "b", config, progress=False)
    for name in ("dialogues.jsonl", "tasks.jsonl"):
        assert filecmp.cmp(
            first.root / "source" / name, second.root / "source" / name, shallow=False
        )
    assert first.judgments() == second.judgments()
    clips = sorted(p.name for p in first.media_root.rglob("*.flac"))
    assert clips == sorted(p.name for p in second.media_root.rglob("*.flac"))
    assert all(
        filecmp.cmp(first.media_root / "tts" / c, second.media_root / "tts" / c, shallow=False)
        for c in clips
    )
    with pytest.raises(FileExistsError, match="--force"):
        build_demo_project(tmp_path / "a", config, progress=False)
    build_demo_project(tmp_path / "a", config, force=True, progress=False).close()
    first.close()
    second.close()


def test_bad_demo_settings_are_refused():
    with pytest.raises(ValueError, match="annotators_per_task"):
        DemoConfig(annotators=2, annotators_per_task=3)
