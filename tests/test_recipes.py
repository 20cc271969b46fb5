"""Every `training/*.yaml` recipe holds overrides only and is headed by the exact command that
runs it; the demo recipes' headers are exactly what `make demo` runs (with its default
DEMO_DIR), and every doc spells flags `--kebab-case`."""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from rewardlab.cli import build_parser
from rewardlab.commands.options import kebab_flags
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.recipe import parse_config
from rewardlab.grm.rm_config import RMConfig
from rewardlab.rl.ppo_config import AudioPPOConfig

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "training").glob("*.yaml"))
CONFIG_OF_VERB = {"train-grm": GRMConfig, "train-rm": RMConfig, "ppo": AudioPPOConfig}


def header(path: Path) -> list[str]:
    """The recipe's first comment: a command line (continued with backslashes), as argv."""
    lines = []
    for line in path.read_text().splitlines():
        assert line.startswith("# "), f"{path.name}: start with '# <the command that runs it>'"
        lines.append(line[2:].rstrip())
        if not lines[-1].endswith("\\"):
            break
    return shlex.split(" ".join(line.rstrip("\\") for line in lines))


def rewardlab_args(argv: list[str]) -> list[str]:
    """The arguments after `rewardlab` (or after `-m rewardlab.cli` under accelerate launch)."""
    if argv[0] == "rewardlab":
        return argv[1:]
    assert argv[:2] == ["accelerate", "launch"], argv
    return argv[argv.index("-m") + 2 :]


def default_of(config_class: type, name: str):
    (field,) = [f for f in dataclasses.fields(config_class) if f.name == name]
    default = field.default_factory() if field.default is dataclasses.MISSING else field.default
    return getattr(default, "value", default)  # an enum default compares as its value


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.name)
def test_recipe_header_runs_it_and_the_file_holds_overrides_only(path: Path):
    args = rewardlab_args(header(path))
    parsed, overrides = build_parser().parse_known_args(kebab_flags(args))
    assert args[:3] == [parsed.verb, "--config", f"training/{path.name}"], args
    assert all(not a.startswith("--") or "_" not in a for a in args), "spell flags --kebab-case"
    config_class = CONFIG_OF_VERB[parsed.verb]
    values = yaml.safe_load(path.read_text())
    for name, value in values.items():
        assert value != default_of(config_class, name), f"{name}: {value!r} is the default"
    # bf16 needs a GPU to validate; everything else is checked as written
    config = parse_config(REPO / parsed.config, [*overrides, "--bf16", "false"], config_class)
    for name, value in values.items():
        if name != "bf16":
            assert getattr(config, name) == value or str(getattr(config, name)) == str(value)


def make_demo_commands() -> dict[str, list[str]]:
    """What `make demo` runs with its defaults, per recipe it reads (make -n: nothing runs)."""
    shown = subprocess.run(
        ["make", "-n", "-B", "demo"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.replace("\\\n", " ")
    commands = {}
    for line in shown.splitlines():
        if "--config training/" in line:
            argv = shlex.split(line)
            while "=" in argv[0]:  # HF_HUB_OFFLINE=1 ...
                argv.pop(0)
            argv[0] = Path(argv[0]).name
            commands[argv[argv.index("--config") + 1]] = argv
    return commands


def test_make_demo_runs_each_demo_recipe_as_its_header_says():
    commands = make_demo_commands()
    assert set(commands) == {
        "training/grm_demo.yaml",
        "training/grm_demo_refine.yaml",
        "training/grm_demo_round2.yaml",
        "training/ppo_demo.yaml",
    }
    for recipe, argv in commands.items():
        assert argv == header(REPO / recipe), recipe


DOCS = [
    "README.md",
    "ARCHITECTURE.md",
    "Makefile",
    "training/README.md",
    "benchmarks/README.md",
    *(str(p.relative_to(REPO)) for p in (REPO / "datasets").glob("*.md")),
    *(str(p.relative_to(REPO)) for p in RECIPES),
]


@pytest.mark.parametrize("doc", DOCS)
def test_docs_spell_flags_in_kebab_case(doc: str):
    flags = set(re.findall(r"(?<![\w-])--[a-z0-9]+_[\w]+", (REPO / doc).read_text()))
    # accelerate's own flag, and OpenRLHF's name for its remote reward URL before 0.10.2
    assert flags <= {"--config_file", "--remote_rm_url"}, f"{doc}: {flags}"
