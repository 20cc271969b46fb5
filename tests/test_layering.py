"""The code map's rules (ARCHITECTURE.md), checked on the source: what each package must not
import, no private names across modules, no Trainer subclass in PPO, and the size limits that
keep files and functions readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    path for folder in ("rewardlab", "annotation_ui") for path in (ROOT / folder).rglob("*.py")
)

# package (or module) -> what it must not import (ARCHITECTURE.md, "Code map")
FORBIDDEN = {
    "rewardlab.schema": ("rewardlab.",),
    "rewardlab.store": ("rewardlab.grm", "rewardlab.rl", "rewardlab.eval", "annotation_ui"),
    "rewardlab.backbones": ("rewardlab.grm", "rewardlab.rl"),
    "rewardlab.grm": ("rewardlab.rl", "rewardlab.cli", "rewardlab.commands", "annotation_ui"),
    "rewardlab.rl": ("rewardlab.cli", "rewardlab.commands", "annotation_ui"),
    "rewardlab.eval": ("rewardlab.store", "rewardlab.grm", "rewardlab.rl", "annotation_ui"),
    "rewardlab.demo": ("rewardlab.grm", "rewardlab.rl", "annotation_ui"),
    "rewardlab.reward": ("rewardlab.store", "rewardlab.grm", "rewardlab.rl", "annotation_ui"),
}
# the leaves import only rewardlab.schema
_PACKAGES = ("store", "data", "backbones", "grm", "rl", "eval", "demo", "reward", "rubrics", "cli")
LEAF = (*(f"rewardlab.{name}" for name in _PACKAGES), "rewardlab.commands", "annotation_ui")
FORBIDDEN |= {leaf: LEAF for leaf in ("rewardlab.audio", "rewardlab.audio_probes")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import statement, nested ones included."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_code_map(path: Path):
    name = module_name(path)
    rules = [
        bad for owner, bad in FORBIDDEN.items() if name == owner or name.startswith(owner + ".")
    ]
    tree = ast.parse(path.read_text())
    for module, names in imports(tree):
        for forbidden in (prefix for bad in rules for prefix in bad):
            assert not (module + ".").startswith(forbidden), f"{name} imports {module}"
        local = module.split(".")[0] in ("rewardlab", "annotation_ui")
        private = [n for n in names if n.startswith("_") and not n.startswith("__")]
        assert not (local and private and module != name), f"{name}: {module}.{private}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_files_and_functions_stay_short(path: Path):
    text = path.read_text()
    assert text.count("\n") <= 450, f"{path.name}: {text.count(chr(10))} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= 80, f"{path.name}:{node.lineno} {node.name}: {length} lines"


def test_ppo_subclasses_no_trainer():
    for path in (ROOT / "rewardlab" / "rl").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(base) for base in node.bases]
                assert not any("Trainer" in base for base in bases), f"{path.name}: {node.name}"
