"""The real `rewardlab` command, run as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
from builders import dialogue, write_jsonl


def rewardlab(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_init_import_export_stats(tmp_path: Path, source: Path):
    project = tmp_path / "proj"
    made = rewardlab("init", project, "--k", "2", "--annotators-per-task", "2")
    assert made.returncode == 0 and "K=2, 5 levels" in made.stdout
    again = rewardlab("init", project)
    assert again.returncode == 1 and "already exists" in again.stderr

    files = ["--dialogues", source / "dialogues.jsonl", "--tasks", source / "tasks.jsonl"]
    dry = rewardlab("import", project, *files, "--dry-run")
    assert dry.returncode == 0 and "dry run: 2 dialogues, 3 tasks, 4 audio files" in dry.stdout
    done = rewardlab("import", project, *files)
    assert done.returncode == 0 and "3 new tasks" in done.stdout

    out = tmp_path / "judgments.parquet"
    exported = rewardlab("export", project, "--format", "parquet", "--out", out)
    assert exported.returncode == 0 and pl.read_parquet(out).height == 0

    stats = rewardlab("stats", project, "--json")
    assert json.loads(stats.stdout) | {"project": None} == {
        "project": None,
        "per_annotator": [],
        "k": 2,
        "dialogues": 2,
        "tasks": 3,
        "annotators": 0,
        "judgments": 0,
    }


def test_import_errors_name_the_record_and_field_and_exit_nonzero(tmp_path: Path, source: Path):
    project = tmp_path / "proj"
    rewardlab("init", project)
    write_jsonl(source / "bad.jsonl", [dialogue("ok", ["a.wav"]), dialogue("d-bad", ["../x.wav"])])
    result = rewardlab("import", project, "--dialogues", source / "bad.jsonl")
    assert result.returncode == 1
    assert "1 bad records; nothing was imported" in result.stderr
    assert "bad.jsonl line 2 ('d-bad'): turns.0.audio.path:" in result.stderr
    assert json.loads(rewardlab("stats", project, "--json").stdout)["dialogues"] == 0


def test_missing_project_says_how_to_make_one(tmp_path: Path):
    result = rewardlab("stats", tmp_path / "nope")
    assert result.returncode == 1 and "rewardlab init" in result.stderr


def test_demo_data_then_stats(tmp_path: Path):
    out = tmp_path / "demo"
    built = rewardlab("demo-data", "--out", out, "--n", "12", "--seed", "3")
    assert built.returncode == 0, built.stderr
    assert "12 dialogues, 12 tasks, 36 judgments" in built.stdout
    plot = tmp_path / "overview.png"
    stats = json.loads(rewardlab("stats", out, "--json", "--plot", plot).stdout.split("\nplot:")[0])
    assert stats["judgments"] == 36 and stats["annotators"] == 8
    assert 0 <= stats["first_shown_wins"] <= 1
    assert sum(row["judgments"] for row in stats["per_annotator"]) == 36
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 20_000
    refused = rewardlab("demo-data", "--out", out, "--n", "12")
    assert refused.returncode == 1 and "--force" in refused.stderr
