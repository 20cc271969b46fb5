"""The real `rewardlab` command, run as a subprocess."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from builders import colour_share, dialogue, write_jsonl

from rewardlab.cli import main
from rewardlab.commands.options import kebab_flags
from rewardlab.grm.recipe import parse_config
from rewardlab.store import Store


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
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each panel drew its bars in its own third: levels (blue), position bias (orange),
    # distance from the others (green); none bleeds into another panel
    panels = {"#4c72b0": (0.0, 0.34), "#dd8452": (0.34, 0.67), "#55a868": (0.67, 1.0)}
    for colour, band in panels.items():
        assert colour_share(plot, colour, band) > 0.01, colour
        others = [b for b in panels.values() if b != band]
        assert all(colour_share(plot, colour, other) == 0 for other in others), colour
    refused = rewardlab("demo-data", "--out", out, "--n", "12")
    assert refused.returncode == 1 and "--force" in refused.stderr


# --- one spelling, one name per concept ---------------------------------------------------


def help_of(capsys, *words: str) -> str:
    with pytest.raises(SystemExit) as done:
        main([*words, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


def listed(help_text: str, heading: str) -> list[str]:
    """The sub-commands a help text lists under `heading` (argparse's own layout)."""
    section = help_text.split(f"  {heading}\n")[1].split("\n\n")[0]
    return [line.split()[0] for line in section.splitlines() if re.match(r"    \S", line)]


def every_help(capsys) -> dict[str, str]:
    """`rewardlab [VERB [ACTION]] --help` of every verb and action, keyed by the command."""
    helps = {}
    for verb in listed(help_of(capsys), "VERB"):
        helps[verb] = help_of(capsys, verb)
        if "  ACTION\n" in helps[verb]:
            for action in listed(helps[verb], "ACTION"):
                helps[f"{verb} {action}"] = help_of(capsys, verb, action)
    return helps


def test_every_verb_is_in_the_usage_table_and_its_help_shows_only_kebab_case(capsys):
    import rewardlab.cli

    helps = every_help(capsys)
    assert {"init", "judge", "ppo", "argilla push", "argilla pull", "serve"} <= set(helps)
    table = rewardlab.cli.__doc__
    for command in helps:
        if command != "argilla":
            assert f"    rewardlab {command} " in table, f"{command} missing from cli's usage"
    for command, text in helps.items():
        options = set(re.findall(r"(?<![\w-])--[\w-]+", text))
        assert options, command
        assert not [o for o in options if "_" in o], f"rewardlab {command} --help: {options}"
        assert all(kebab_flags(["--" + o[2:].replace("-", "_")]) == [o] for o in options)


def test_one_name_per_concept_across_verbs(capsys):
    helps = every_help(capsys)
    for verb in ("judge", "calibrate", "evaluate", "tiny-policy"):
        assert "--grm CKPT" in helps[verb], verb
    for verb in ("judge", "calibrate", "evaluate", "tiny-policy", "tiny-grm"):
        assert "--project PROJECT" in helps[verb], verb
    for verb, text in helps.items():
        options = set(re.findall(r"(?<![\w-])--[\w-]+", text))
        assert not options & {"--data", "--grm-path", "--model", "--model-path"}, verb
    # the config verbs name the same concepts with their config fields' flags
    assert "--grm CKPT" in helps["ppo"] and "--project P" in helps["train-grm"]


def test_kebab_flags_reads_the_underscore_form_and_leaves_values_alone():
    assert kebab_flags(["init", "p_1", "--gold_share=0.5", "--annotators_per_task", "2"]) == [
        "init",
        "p_1",
        "--gold-share=0.5",
        "--annotators-per-task",
        "2",
    ]
    assert kebab_flags(["--lora_target", ".*q_proj", "--", "--not_a_flag"]) == [
        "--lora-target",
        ".*q_proj",
        "--",
        "--not_a_flag",
    ]


def test_underscore_spellings_are_still_accepted(tmp_path: Path):
    project = tmp_path / "proj"
    made = rewardlab("init", project, "--annotators_per_task", "2", "--gold_share=0.25")
    assert made.returncode == 0, made.stderr
    with Store(project) as store:
        assert store.settings.annotators_per_task == 2 and store.settings.gold_share == 0.25
    unknown = rewardlab("stats", project, "--no_such_flag")
    assert unknown.returncode == 2 and "unrecognized arguments: --no-such-flag" in unknown.stderr


def test_config_fields_take_both_spellings(tmp_path: Path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model_path: m\nproject: d\noutput_dir: o\nuse_cpu: true\n")
    kebab = parse_config(recipe, ["--max-steps", "7", "--output-dir", "x", "--eval-share", "0.5"])
    snake = parse_config(recipe, ["--max_steps", "7", "--output_dir", "x", "--eval_share", "0.5"])
    assert (kebab.max_steps, kebab.output_dir, kebab.eval_share) == (7, "x", 0.5)
    assert (snake.max_steps, snake.output_dir, snake.eval_share) == (7, "x", 0.5)
    # what the CLI passes on: a boolean's negation, snake-case on the command line
    assert not parse_config(recipe, kebab_flags(["--no_freeze_audio_tower"])).freeze_audio_tower


def test_only_the_serve_and_argilla_commands_import_annotation_ui_and_only_lazily():
    """The composition root's rule: rewardlab never imports its front ends, except the two
    verbs that start them, inside their commands (so `import rewardlab.cli` loads neither)."""
    import ast

    import rewardlab

    package = Path(rewardlab.__file__).parent
    found = {}
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top_level = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(name.split(".")[0] == "annotation_ui" for name in names):
                assert id(node) not in top_level, f"{path}: import annotation_ui lazily"
                found.setdefault(str(path.relative_to(package)), []).append(node.lineno)
    assert set(found) == {"commands/serve.py", "commands/argilla.py"}, found
