"""The app's CLI verbs as a user runs them: accounts and demo logins (`serve` runs in the API,
security and browser tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rewardlab.demo.accounts import DEMO_ACCOUNTS
from rewardlab.store import Store
from rewardlab.store.accounts import authenticate


def rewardlab(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rewardlab.cli", *map(str, args)],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )


def test_add_annotator_with_a_chosen_or_generated_password(tmp_path: Path):
    project = tmp_path / "proj"
    assert rewardlab("init", project).returncode == 0
    chosen = rewardlab(
        "add-annotator", project, "lead", "--admin", "--password-stdin", stdin="a long secret\n"
    )
    assert chosen.returncode == 0 and "added admin 'lead'" in chosen.stdout
    assert "password" not in chosen.stdout  # a chosen password is never echoed
    generated = rewardlab("add-annotator", project, "ann-1", "--name", "Ann")
    assert generated.returncode == 0
    password = generated.stdout.split("password (shown once): ")[1].strip()
    with Store(project) as store:
        assert authenticate(store, "lead", "a long secret").is_admin
        assert authenticate(store, "ann-1", password).display_name == "Ann"
    again = rewardlab("add-annotator", project, "ann-1")
    assert again.returncode == 1 and "annotator 'ann-1' already exists" in again.stderr
    short = rewardlab("add-annotator", project, "ann-2", "--password-stdin", stdin="short\n")
    assert short.returncode == 1 and "ann-2': password: give at least 8" in short.stderr
    bad = rewardlab(
        "add-annotator", project, "has space", "--password-stdin", stdin="long enough\n"
    )
    assert bad.returncode == 1 and "'has space': id:" in bad.stderr
    snake = rewardlab("add-annotator", project, "ann-3", "--password_stdin", stdin="also long\n")
    assert snake.returncode == 0  # the underscore spelling of a flag is read the same
    with Store(project) as store:
        assert authenticate(store, "ann-3", "also long").role == "annotator"


def test_demo_accounts_print_how_to_start_the_app(tmp_path: Path):
    project = tmp_path / "proj"
    rewardlab("init", project)
    for _ in range(2):  # a second run resets the passwords instead of failing
        printed = rewardlab("demo-accounts", project)
        assert printed.returncode == 0, printed.stderr
        assert f"rewardlab serve {project}" in printed.stdout
        assert "http://127.0.0.1:7860/" in printed.stdout
    with Store(project) as store:
        for annotator_id, role, password in DEMO_ACCOUNTS:
            assert f"{annotator_id}" in printed.stdout and password in printed.stdout
            assert authenticate(store, annotator_id, password).role == role
