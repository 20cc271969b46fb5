"""Option spellings shared by the verbs: one name per concept, one spelling per name.

Every long option is `--kebab-case`; `kebab_flags` lets the underscore form through too
(`--batch_size` reads as `--batch-size`), so help texts and docs show one spelling while old
command lines and the config fields' own names (`--max_steps`) keep working.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Protocol


class Verbs(Protocol):
    """What `ArgumentParser.add_subparsers()` returns (argparse has no public name for it)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def kebab_flags(argv: list[str]) -> list[str]:
    """`--snake_case[=value]` options spelled `--kebab-case[=value]`; values, positionals and
    everything after a bare `--` are left as they are."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        if arg == "--":
            return out + argv[i:]
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            arg = name.replace("_", "-") + sep + value
        out.append(arg)
    return out


def add_grm(parser: argparse.ArgumentParser, help: str, *, required: bool = True) -> None:
    """`--grm CKPT`: a GRM checkpoint folder (`train-grm`'s final/) in every verb that reads one."""
    parser.add_argument("--grm", required=required, type=Path, metavar="CKPT", help=help)


def add_project(parser: argparse.ArgumentParser, help: str) -> None:
    """`--project P`: a project folder (or a Parquet export beside its media/) that a verb reads
    beside its main subject. Verbs whose subject is the project take it as a positional."""
    parser.add_argument("--project", required=True, type=Path, metavar="PROJECT", help=help)


# the families `rewardlab.grm.tiny` builds (named here: the CLI parses without importing torch)
TINY_FAMILIES = ("qwen2_audio", "qwen2_5_omni", "qwen3_omni_moe", "audioflamingo3", "voxtral")


def add_tiny_size(parser: argparse.ArgumentParser, *, hidden: int, layers: int) -> None:
    """`--hidden`, `--layers`, `--seed` of a random-init tiny backbone (`rewardlab.grm.tiny`)."""
    parser.add_argument(
        "--hidden", type=int, default=hidden, help=f"hidden size (default {hidden})"
    )
    parser.add_argument(
        "--layers", type=int, default=layers, help=f"decoder layers (default {layers})"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--family",
        default="qwen2_audio",
        choices=TINY_FAMILIES,
        help="the audio LLM family to build, by its model_type (default qwen2_audio)",
    )


def add_config_verb(
    verbs: Verbs, name: str, help: str, *, config: str, example: str, recipe: str, run
) -> argparse.ArgumentParser:
    """A verb run from `--config YAML` (a recipe in training/) whose remaining `--field value`
    flags override it; `config` names the dataclass whose fields they are."""
    parser = verbs.add_parser(
        name,
        help=help,
        epilog=f"any {config} field as a --kebab-case flag overrides the YAML,\ne.g. {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", required=True, type=Path, help=recipe)
    parser.set_defaults(config_overrides=True, run=run)
    return parser
