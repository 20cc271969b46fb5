"""A regular install works: build a real wheel from the project's files, install it into a
fresh venv and run the verbs that need the shipped rubric library, from outside the repository
so that its `rubrics/` folder cannot be picked up. The editable install `make` does is run the
same way.

No network: the wheel is built with the shared environment's setuptools (no build isolation),
and the fresh venv reaches the dependencies through a .pth line naming the shared environment's
site-packages (a plain path line: the editable rewardlab's own .pth there is not processed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from builders import dialogue, task, write_clips, write_jsonl

REPO = Path(__file__).resolve().parents[1]


def run(*command: object, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


def project_files(destination: Path) -> Path:
    """The files a git URL install would see (tracked and untracked-not-ignored), copied with
    symlinks kept as symlinks: the build must not read anything else of this checkout."""
    listed = run("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=REPO)
    for name in filter(None, listed.split("\0")):
        source, target = REPO / name, destination / name
        if not source.is_symlink() and not source.exists():  # deleted, not yet committed
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return destination


def fresh_venv(root: Path) -> Path:
    """A venv with no packages of its own; the shared environment's serve as dependencies."""
    venv = root / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=root)
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(run(venv / "bin" / "python", "-c", code, cwd=root).strip())
    (purelib / "shared_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


@pytest.fixture(scope="module", params=["wheel", "editable"])
def installed(request, tmp_path_factory) -> tuple[Path, Path]:
    """(the fresh venv, the folder rewardlab must be imported from): the project's wheel
    installed into it, or the copied project installed in editable mode as `make` does."""
    root = tmp_path_factory.mktemp(request.param)
    source = project_files(root / "src")
    venv = fresh_venv(root)
    pip = [sys.executable, "-m", "pip", "--python", venv / "bin" / "python"]
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "-q"]
    if request.param == "editable":
        run(*pip, "install", *offline, "-e", source, cwd=root)
        return venv, source
    run(*pip, "wheel", *offline, "-w", root / "dist", source, cwd=root)
    (wheel,) = (root / "dist").glob("rewardlab-*.whl")
    run(*pip, "install", *offline, wheel, cwd=root)
    return venv, venv


@pytest.mark.slow
def test_install_runs_init_import_and_demo_data(installed: tuple[Path, Path], tmp_path: Path):
    venv, home = installed
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    where = run(
        venv / "bin" / "python",
        "-c",
        "import rewardlab.rubrics as r; print(r.__file__); print(r.LIBRARY_DIR)",
        cwd=tmp_path,
        env=env,
    ).split()
    assert all(Path(path).is_relative_to(home) for path in where), where  # not this checkout
    library = Path(where[1])
    assert not library.is_symlink() and sorted(library.glob("*.yaml"))
    if home == venv:  # a wheel holds the files themselves, inside the package
        assert library.parent.name == "rewardlab"
    else:  # an editable install reads the one source, rubrics/, through the package's link
        assert library == home / "rubrics"

    source = tmp_path / "source"
    write_clips(source, {"a.wav": 1.0, "c.wav": 0.8})
    write_jsonl(source / "dialogues.jsonl", [dialogue("d1", ["a.wav"]), dialogue("d2", ["c.wav"])])
    rubric_task = task("t2", "d1", 0, rubric_id="inference_memory")  # a shipped rubric
    write_jsonl(source / "tasks.jsonl", [task("t1", "d2", 0), rubric_task])

    rewardlab = venv / "bin" / "rewardlab"
    made = run(rewardlab, "init", "proj", cwd=tmp_path, env=env)
    assert "K=3, 7 levels" in made
    imported = run(
        rewardlab,
        "import",
        "proj",
        "--dialogues",
        source / "dialogues.jsonl",
        "--tasks",
        source / "tasks.jsonl",
        cwd=tmp_path,
        env=env,
    )
    assert "2 new tasks" in imported
    demo = run(rewardlab, "demo-data", "--out", "demo", "--n", "4", cwd=tmp_path, env=env)
    assert "4 dialogues, 4 tasks, 12 judgments" in demo
