"""Exports round-trip: Parquet, JSONL and an HF dataset with Audio(decode=False) columns."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import soundfile as sf
from builders import judgment

from rewardlab.data import aggregate_by_task
from rewardlab.store import Store
from rewardlab.store.export import (
    export_hf,
    export_jsonl,
    export_parquet,
    judgments_frame,
    to_hf_dataset,
)
from rewardlab.store.judgment_import import read_judgments


@pytest.fixture
def judged(filled: Store) -> Store:
    rubric = filled.rubric("inference_memory")
    binary = next(c.id for c in rubric.criteria if c.scale == "binary")
    filled.submit_judgments(
        [
            judgment(
                "j1",
                "t1",
                "ann-1",
                level=2,
                rationale="Response 1 remembers.",
                listened={"a.wav": 1.0, "sub/b.flac": 0.5},
                time_spent_s=31.5,
            ),
            judgment("j2", "t1", "ann-2", level=-1, shown_order="reference_first"),
            judgment("j3", "t2", "ann-1", level=0, rubric_scores={"policy": {binary: 1}}),
            judgment("j4", "t3", "ann-2", level=2),
        ]
    )
    return filled


@pytest.mark.parametrize(
    ("exporter", "name"), [(export_parquet, "j.parquet"), (export_jsonl, "j.jsonl")]
)
def test_exports_round_trip_to_the_stored_judgments(judged: Store, tmp_path: Path, exporter, name):
    path = exporter(judged, tmp_path / "out" / name)
    assert read_judgments(path) == judged.judgments()
    assert [p.name for p in path.parent.iterdir()] == [name]  # no temporary files left


def test_export_rows_carry_the_task_and_history(judged: Store, tmp_path: Path):
    frame = pl.read_parquet(export_parquet(judged, tmp_path / "j.parquet"))
    row = frame.filter(pl.col("judgment_id") == "j3").row(0, named=True)
    assert row["rubric_id"] == "inference_memory"
    assert row["history_audio"] == ["a.wav", "sub/b.flac"]
    assert row["policy_audio"] == "cand.wav" and row["reference_audio"] is None
    assert row["k"] == 3 and row["turn_index"] == 2 and row["dialogue_id"] == "d1"
    gold = frame.filter(pl.col("judgment_id") == "j4").row(0, named=True)
    assert gold["gold"] is True and gold["gold_level"] == 2
    assert frame.schema["created_at"] == pl.Datetime("us", "UTC")


def test_hf_dataset_has_undecoded_audio_that_soundfile_reads(judged: Store, tmp_path: Path):
    from datasets import Audio, List, load_from_disk

    stored, _ = sf.read(judged.media_root / "sub/b.flac")
    in_memory = to_hf_dataset(judged)
    assert in_memory.features["policy_audio"] == Audio(decode=False)
    assert in_memory.features["history_audio"] == List(Audio(decode=False))
    row = in_memory[in_memory["judgment_id"].index("j3")]
    assert row["reference_audio"] is None
    assert row["history_audio"][1]["path"] == str(judged.media_root.resolve() / "sub/b.flac")
    assert np.array_equal(sf.read(row["history_audio"][1]["path"])[0], stored)

    export_hf(judged, tmp_path / "hf")
    saved = load_from_disk(str(export_hf(judged, tmp_path / "hf")))  # replaced; clips embedded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "project", "source"]  # no staging
    assert saved.num_rows == 4 and saved.features == in_memory.features
    history = saved[saved["judgment_id"].index("j3")]["history_audio"]
    assert [clip["path"] for clip in history] == ["a.wav", "b.flac"]
    samples, rate = sf.read(io.BytesIO(history[1]["bytes"]))
    assert rate == 16_000 and np.array_equal(samples, stored)


def test_aggregate_by_task_by_hand():
    """Task A, levels (2, 2, -1): n=3, mean=1, std=sqrt(((1)^2+(1)^2+(-2)^2)/3)=sqrt(2),
    majority 2 with 2 of 3 votes; soft target over -2..2 = (0, 1/3, 0, 0, 2/3).
    Task B, levels (1, -1): a tie for the majority, broken towards zero: -1 (|-1| = |1|, and
    -1 comes first); agreement 1/2; soft target (0, 1/2, 0, 1/2, 0)."""
    frame = pl.DataFrame({"task_id": ["A", "A", "A", "B", "B"], "level": [2, 2, -1, 1, -1]})
    out = aggregate_by_task(frame, k=2).to_dicts()
    a, b = out
    assert a["n"] == 3 and a["level_mean"] == pytest.approx(1.0)
    assert a["level_std"] == pytest.approx(2**0.5)
    assert a["majority_level"] == 2 and a["agreement"] == pytest.approx(2 / 3)
    assert a["soft_target"] == pytest.approx([0, 1 / 3, 0, 0, 2 / 3])
    assert b["majority_level"] == -1 and b["agreement"] == pytest.approx(0.5)
    assert b["soft_target"] == pytest.approx([0, 0.5, 0, 0.5, 0])


def test_judgments_frame_is_empty_but_typed_without_judgments(filled: Store):
    frame = judgments_frame(filled)
    assert frame.height == 0 and "policy_text" in frame.columns


def test_per_annotator_by_hand():
    """Task A: x +2 (policy shown first), y 0, z -1 (policy first). Task B (gold -2): x -2
    (reference first), y +1 (policy first).
    x: no ties; first shown wins in A (+2, policy first) and B (-2, reference first): 1.0;
       gap A |2 - mean(0, -1)| = 2.5, B |-2 - 1| = 3 -> 2.75; gold 1/1.
    y: ties 1/2; first-shown wins 1/1 (B); gap A |0 - mean(2, -1)| = 0.5, B |1 - -2| = 3
       -> 1.75; gold 0/1.
    z: -1 with the policy shown first: the second-shown won, 0.0; gap |-1 - mean(2, 0)| = 2."""
    from rewardlab.data import per_annotator

    frame = pl.DataFrame(
        {
            "task_id": ["A", "A", "A", "B", "B"],
            "annotator_id": ["x", "y", "z", "x", "y"],
            "level": [2, 0, -1, -2, 1],
            "shown_order": [
                "policy_first",
                "reference_first",
                "policy_first",
                "reference_first",
                "policy_first",
            ],
            "gold": [False, False, False, True, True],
            "gold_level": [None, None, None, -2, -2],
            "time_spent_s": [10.0, 20.0, 30.0, 40.0, 50.0],
        }
    )
    rows = {r["annotator_id"]: r for r in per_annotator(frame, k=2).to_dicts()}
    assert rows["x"] | {"annotator_id": None} == pytest.approx(
        {
            "annotator_id": None,
            "judgments": 2,
            "tie_share": 0.0,
            "first_shown_wins": 1.0,
            "mean_abs_gap": 2.75,
            "gold_accuracy": 1.0,
            "median_time_s": 25.0,
        }
    )
    assert (rows["y"]["tie_share"], rows["y"]["first_shown_wins"]) == (0.5, 1.0)
    assert rows["y"]["mean_abs_gap"] == pytest.approx(1.75) and rows["y"]["gold_accuracy"] == 0.0
    assert rows["z"]["first_shown_wins"] == 0.0 and rows["z"]["mean_abs_gap"] == pytest.approx(2.0)
    assert rows["z"]["gold_accuracy"] is None


def test_trl_preference_export_trains_trls_reward_trainer_as_it_stands(demo_world, tmp_path):
    """`export --format trl-preference` is loaded by `datasets` and trained on by TRL's
    RewardTrainer (a tiny text model, 2 steps) with no conversion code in between."""
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from datasets import load_dataset
    from rewardlab.cli import main
    from rewardlab.grm.tiny import build_tiny_backbone

    world = demo_world(n=12, seed=3)
    out = tmp_path / "prefs.parquet"
    assert main(["export", str(world), "--format", "trl-preference", "--out", str(out)]) == 0
    with Store(world) as store:
        judged = {j.id: j for j in store.judgments()}
        tasks = {t.id: t for t in store.tasks()}
    rows = pl.read_parquet(out).to_dicts()
    assert len(rows) == sum(j.level != 0 for j in judged.values()) > 10  # ties left out
    for row in rows:
        judgment, task = judged[row["judgment_id"]], tasks[row["task_id"]]
        winner, loser = (task.policy, task.reference) if judgment.level > 0 else (
            task.reference, task.policy)  # fmt: skip
        assert row["chosen"] == [{"role": "assistant", "content": winner.text}]
        assert row["rejected"] == [{"role": "assistant", "content": loser.text}]
        assert row["margin"] == abs(judgment.level)
        assert row["prompt"][-1]["role"] == "user" and len(row["prompt"]) == task.turn_index + 1
        assert row["chosen_audio"] == (winner.audio.path if winner.audio else None)
    assert any(path for row in rows for path in row["prompt_audio"])

    texts = [m["content"] for row in rows for m in row["prompt"] + row["chosen"] + row["rejected"]]
    model_dir = build_tiny_backbone(tmp_path / "tiny", texts, audio=False)
    dataset = load_dataset("parquet", data_files=str(out), split="train")
    trainer = RewardTrainer(
        model=str(model_dir),
        args=RewardConfig(output_dir=str(tmp_path / "rm"), max_steps=2, report_to=[],
                          per_device_train_batch_size=4, use_cpu=True, save_strategy="no",
                          logging_steps=1),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )  # fmt: skip
    trainer.train()
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert trainer.state.global_step == 2 and len(losses) == 2
    assert all(0 < loss < 20 for loss in losses), losses
