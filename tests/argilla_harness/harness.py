"""A real argilla-server 2.8 for the tests: its own venv, Redis, SQLite, the memory engine.

    with ArgillaServer.start(tmp_dir) as server:
        client = argilla.Argilla(api_url=server.url, api_key=server.api_key)

- The server lives in its own venv (its fastapi/pydantic pins clash with gradio's), built on
  first use (about a minute) under ``~/.cache/rewardlab/`` (``$XDG_CACHE_HOME`` if set) in a
  folder named after the pins and the Python version, then reused; see `server_venv` for how a
  killed install never leaves a half venv. ``click<8.2``: with newer click every
  ``python -m argilla_server`` command crashes (its typer is old).
- Redis is Debian's ``redis-server`` on a free loopback port, without persistence.
- The database is SQLite in `tmp_dir`; the search engine is `memory_engine.py`.
- The default owner ``argilla`` gets the key `api_key`; tests create annotators through it.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from processes import free_port, stop_process  # tests/, on the path under pytest

SERVER_PINS = ("argilla-server==2.8.0", "click<8.2")
HERE = Path(__file__).resolve().parent
OWNER_PASSWORD = "rewardlab-owner"
OWNER_API_KEY = "rewardlab.owner.key"


class HarnessError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rewardlab"


def server_venv() -> Path:
    """The cached server venv, built if missing; returns its folder.

    Built under a lock (one builder at a time; a killed one releases it) in a temporary folder
    that is renamed into place when complete, so a venv folder is always a whole venv. Leftovers
    of killed builds are removed by the next one.
    """
    tag = "-".join(pin.replace("==", "-").replace("<", "-lt") for pin in SERVER_PINS)
    venv = cache_dir() / f"{tag}-py{sys.version_info.major}.{sys.version_info.minor}"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / "bin" / "python").exists():
            return venv
        for leftover in venv.parent.glob(f"{venv.name}.building-*"):
            shutil.rmtree(leftover)
        building = Path(tempfile.mkdtemp(prefix=f"{venv.name}.building-", dir=venv.parent))
        subprocess.run([sys.executable, "-m", "venv", building], check=True)
        pip = [building / "bin" / "python", "-m", "pip", "install", "--disable-pip-version-check"]
        installed = subprocess.run([*pip, *SERVER_PINS], capture_output=True, text=True)
        if installed.returncode:
            shutil.rmtree(building)
            output = installed.stdout[-4000:] + installed.stderr[-4000:]
            raise HarnessError(f"installing {SERVER_PINS} failed:\n{output}")
        building.rename(venv)  # a venv run through `bin/python -m` survives the move
    return venv


def _die_with_parent() -> None:
    """Linux: SIGTERM this child when the test process dies, even by SIGKILL (no orphans)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _wait(check, what: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HarnessError(f"{what} exited ({process.returncode}):\n{log.read_text()[-4000:]}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise HarnessError(f"{what} not ready after {timeout:.0f} s:\n{log.read_text()[-4000:]}")


def _redis_answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")


def _server_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/version", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class ArgillaServer:
    url: str
    api_key: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def start(cls, root: Path) -> ArgillaServer:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise HarnessError(
                "redis-server is not installed: `make test` installs it"
                " (or: apt-get install redis-server)"
            )
        python = server_venv() / "bin" / "python"
        root.mkdir(parents=True, exist_ok=True)
        redis_port, port = free_port(), free_port()
        env = {
            **os.environ,
            "ARGILLA_HOME_PATH": str(root / "home"),
            "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{root / 'home' / 'argilla.db'}",
            "ARGILLA_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "ARGILLA_SEARCH_ENGINE": "rewardlab-memory",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_OFFLINE": "1",
        }
        server = cls(url=f"http://127.0.0.1:{port}", api_key=OWNER_API_KEY)
        try:
            redis_log = root / "redis.log"
            redis_args = ["--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
            redis_args += ["--appendonly", "no", "--dir", str(root), "--logfile", str(redis_log)]
            redis_log.touch()
            redis = subprocess.Popen([redis_server, *redis_args], preexec_fn=_die_with_parent)
            server.processes.append(redis)
            _wait(lambda: _redis_answers(redis_port), "redis", server.processes[0], redis_log, 20)

            log = root / "argilla-server.log"
            with log.open("w") as out:
                command = [python, HERE / "serve.py", str(port), OWNER_API_KEY, OWNER_PASSWORD]
                process = subprocess.Popen(
                    command, env=env, cwd=root, stdout=out, stderr=out, preexec_fn=_die_with_parent
                )
            server.processes.append(process)
            _wait(lambda: _server_answers(server.url), "argilla-server", process, log, 120)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop_process(process, timeout=15)
        self.processes.clear()

    def __enter__(self) -> ArgillaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
