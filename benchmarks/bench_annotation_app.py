"""The annotation web app under load: simulated annotators, each its own client and login
session, working through a demo-world project at once over real HTTP.

    python benchmarks/bench_annotation_app.py
    python benchmarks/bench_annotation_app.py --annotators 20 --tasks 60 --k 2

Builds an unjudged demo project (espeak-ng speech) in a temporary directory, adds one login
account per annotator, starts `rewardlab serve` as a subprocess and logs every client in before
the clock starts. Each annotator then loops /next_task -> /submit (a random level, no think
time) until the queue has nothing left for them, through Gradio's REST call API
(``POST /gradio_api/call/<endpoint>``, then read the result's event stream). The clients are
httpx sessions on one event loop: gradio_client (which the tests use) spends about 100 ms of
client CPU per call, and on a small machine 50 of them would measure the clients, not the app.

Printed: submit latency (p50, p95, max) and tasks/s, against the same work done two other ways
on fresh copies of the project, in the same run:

- in-process: the app's handlers (`AnnotationService`) called from as many threads, no HTTP;
  the ratio prices HTTP, Gradio's queue and the session checks;
- direct: the same judgments through `Store.submit_judgment`, one call after another: the
  store's own write path, without the queue's checks;
- with ``--baseline-ref REF`` (a commit, a branch): the app as it is at REF, served from a
  temporary git worktree of it, on its own copy of the project, by the same clients: what a
  change to the app costs, measured in one run.

It ends by checking the app's store: every acknowledged judgment stored exactly once, nothing
stored that was not acknowledged, every ordinary task judged by exactly k annotators (never
more), no annotator twice on a task.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from annotation_ui.service import AnnotationService
from rewardlab.demo import DemoConfig, build_demo_project
from rewardlab.schema import Judgment
from rewardlab.store import Store
from rewardlab.store.accounts import add_account

PASSWORD = "bench-password"


@dataclass
class Run:
    name: str
    wall_s: float = 0.0
    submit_ms: list[float] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    refused: int = 0

    @property
    def tasks_per_s(self) -> float:
        return len(self.acknowledged) / self.wall_s

    def percentile(self, q: int) -> float:
        return statistics.quantiles(self.submit_ms, n=100, method="inclusive")[q - 1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotators", type=int, default=50, help="concurrent clients")
    parser.add_argument("--tasks", type=int, default=200, help="demo dialogues (one task each)")
    parser.add_argument("--k", type=int, default=3, help="annotators per task")
    parser.add_argument("--gold-share", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--baseline-ref", help="also serve the app as it is at this git ref, for comparison"
    )
    return parser.parse_args()


def build(root: Path, args: argparse.Namespace) -> tuple[Path, list[str]]:
    config = DemoConfig(
        n=args.tasks,
        seed=args.seed,
        annotators_per_task=args.k,
        annotators=max(8, args.k),
        gold_share=args.gold_share,
    )
    names = [f"bench-{i:02d}" for i in range(args.annotators)]
    with build_demo_project(root / "app", config, progress=False, annotate=False) as store:
        for name in names:
            add_account(store, name, PASSWORD)
    for copy in ("in-process", "direct", "baseline"):
        shutil.copytree(root / "app", root / copy)
    return root / "app", names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(
    project: Path, log: Path, source: Path | None = None
) -> tuple[subprocess.Popen, str]:
    """`rewardlab serve` of this checkout, or of the checkout at `source` (its packages go
    first on the path: the installed rewardlab's editable finder comes after it)."""
    port = free_port()
    command = [sys.executable, "-m", "rewardlab.cli", "serve", str(project), "--port", str(port)]
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False"}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    server = subprocess.Popen(
        command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=source
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.3)
    server.kill()
    raise RuntimeError(f"the app did not start:\n{log.read_text()}")


def run_clients(run: Run, workers: list, step) -> None:
    """Start one thread per worker at the same moment; `step(worker, rng)` does one task or
    returns False when the worker has nothing left. Fills `run`."""
    lock = threading.Lock()
    barrier = threading.Barrier(len(workers) + 1)
    bar = tqdm(desc=run.name, unit="task")

    def loop(worker, seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait()
        while True:
            outcome = step(worker, rng)
            if outcome is None:
                return
            with lock:
                if outcome[0] is None:
                    run.refused += 1
                else:
                    run.acknowledged.append(outcome[0])
                    run.submit_ms.append(outcome[1])
                    bar.update()

    threads = [threading.Thread(target=loop, args=(w, i)) for i, w in enumerate(workers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    run.wall_s = time.perf_counter() - start
    bar.close()


class Refused(Exception):
    """The app answered a call with an error (its message)."""


async def call(client: httpx.AsyncClient, endpoint: str, *args: object) -> object:
    """One API call through Gradio's REST call API; its result, or Refused.

    The client's session hash (as gradio_client sends one) keeps Gradio from building a
    fresh session state for every call."""
    body = {"data": list(args), "session_hash": client.headers["x-session"]}
    posted = await client.post(f"/gradio_api/call/{endpoint}", json=body)
    posted.raise_for_status()
    stream = await client.get(f"/gradio_api/call/{endpoint}/{posted.json()['event_id']}")
    event = data = None
    for line in stream.text.splitlines():  # the last event is the outcome
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data = line.removeprefix("data: ")
    if event != "complete":
        raise Refused(data)
    return json.loads(data)[0]


async def annotate(client: httpx.AsyncClient, rng: random.Random, run: Run, bar: tqdm) -> None:
    while (task := await call(client, "next_task")) is not None:
        args = (task["task_id"], task["judgment_id"], rng.randint(-3, 3), {}, "", {})
        start = time.perf_counter()
        try:
            result = await call(client, "submit", *args)
        except Refused:  # e.g. the task filled up meanwhile: counted, then go on
            run.refused += 1
            continue
        run.submit_ms.append((time.perf_counter() - start) * 1000)
        run.acknowledged.append(result["judgment_id"])
        bar.update()


async def run_app_clients(url: str, names: list[str]) -> Run:
    limits = httpx.Limits(max_connections=4)
    clients = [
        httpx.AsyncClient(
            base_url=url, timeout=120, limits=limits, headers={"x-session": uuid.uuid4().hex}
        )
        for _ in names
    ]
    for client, name in zip(clients, names, strict=True):  # set-up, not timed
        response = await client.post("/login", data={"username": name, "password": PASSWORD})
        response.raise_for_status()
    run = Run("app over HTTP")
    with tqdm(desc=run.name, unit="task") as bar:
        start = time.perf_counter()
        await asyncio.gather(
            *(annotate(c, random.Random(i), run, bar) for i, c in enumerate(clients))
        )
        run.wall_s = time.perf_counter() - start
    for client in clients:
        await client.aclose()
    return run


def run_app(project: Path, names: list[str], log: Path, source: Path | None = None) -> Run:
    server, url = start_server(project, log, source)
    try:
        run = asyncio.run(run_app_clients(url, names))
    finally:
        server.terminate()
        server.wait(timeout=30)
    if source is not None:
        run.name = f"app at {source.name}"
    return run


def run_baseline(project: Path, names: list[str], ref: str, root: Path) -> Run:
    """The app as it is at git `ref`, from a temporary worktree of this repository."""
    repo = Path(__file__).resolve().parents[1]
    source = root / ref.replace("/", "-")
    git = ["git", "-C", str(repo), "worktree"]
    subprocess.run([*git, "add", "--detach", str(source), ref], check=True, capture_output=True)
    try:
        return run_app(project, names, root / "baseline-server.log", source)
    finally:
        subprocess.run([*git, "remove", "--force", str(source)], check=True)


def run_in_process(project: Path, names: list[str]) -> Run:
    with Store(project) as store:
        service = AnnotationService(store)

        def step(name: str, rng: random.Random):
            task = service.next_task(name)
            if task is None:
                return None
            form = {
                "task_id": task["task_id"],
                "judgment_id": task["judgment_id"],
                "level": rng.randint(-3, 3),
            }
            start = time.perf_counter()
            result = service.submit(name, form)
            return (result.judgment_id, (time.perf_counter() - start) * 1000)

        run = Run("in-process handlers")
        run_clients(run, names, step)
    return run


def run_direct(project: Path, judgments: list[Judgment]) -> Run:
    run = Run("direct Store.submit_judgment")
    with Store(project) as store:
        start = time.perf_counter()
        for judgment in judgments:
            t0 = time.perf_counter()
            run.acknowledged.append(store.submit_judgment(judgment).judgment_id)
            run.submit_ms.append((time.perf_counter() - t0) * 1000)
        run.wall_s = time.perf_counter() - start
    return run


def check(project: Path, run: Run, k: int) -> list[str]:
    """The exactly-once and overlap checks on the app's store; returns lines to print."""
    with Store(project) as store:
        stored = [j.id for j in store.judgments()]
        per_task = Counter(j.task_id for j in store.judgments())
        gold = {t.id for t in store.tasks() if t.gold}
        ordinary = [t.id for t in store.tasks() if not t.gold]
        pairs = Counter((j.task_id, j.annotator_id) for j in store.judgments())
    problems = []
    if len(set(run.acknowledged)) != len(run.acknowledged):
        problems.append("an id was acknowledged twice")
    if sorted(stored) != sorted(run.acknowledged):
        problems.append(f"stored {len(stored)} ids, acknowledged {len(run.acknowledged)}")
    over = [t for t in ordinary if per_task[t] > k]
    short = [t for t in ordinary if per_task[t] < k]
    if over:
        problems.append(f"{len(over)} tasks have more than k={k} judgments: {over[:5]}")
    if short:
        problems.append(f"{len(short)} tasks have fewer than k={k} judgments: {short[:5]}")
    if max(pairs.values()) > 1:
        problems.append("an annotator judged a task twice")
    if problems:
        raise RuntimeError("store check failed: " + "; ".join(problems))
    return [
        f"acknowledged {len(run.acknowledged)} judgments, stored {len(stored)}: each exactly once",
        f"{len(ordinary)} ordinary tasks, each judged by exactly k={k} annotators (none more)",
        f"{len(gold)} gold items, {sum(per_task[t] for t in gold)} gold judgments,"
        " at most one per annotator",
    ]


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-app-") as tmp:
        root = Path(tmp)
        print(f"building a demo project: {args.tasks} tasks, {args.annotators} accounts")
        project, names = build(root, args)
        app = run_app(project, names, root / "server.log")
        baseline = None
        if args.baseline_ref:
            baseline = run_baseline(root / "baseline", names, args.baseline_ref, root)
        in_process = run_in_process(root / "in-process", names)
        with Store(project) as store:
            judgments = store.judgments()
        direct = run_direct(root / "direct", judgments)
        checks = check(project, app, args.k)

    print(
        f"\n{args.annotators} annotators at once, {args.tasks} demo tasks, k={args.k},"
        f" gold share {args.gold_share}; each client its own login session\n"
    )
    header = (
        f"{'run':<30}{'judgments':>10}{'wall s':>8}{'tasks/s':>9}"
        f"{'p50 ms':>8}{'p95 ms':>8}{'max ms':>8}{'refused':>8}"
    )
    print(header)
    print("-" * len(header))
    for run in (app, *([baseline] if baseline else []), in_process, direct):
        print(
            f"{run.name:<30}{len(run.acknowledged):>10}{run.wall_s:>8.2f}{run.tasks_per_s:>9.1f}"
            f"{run.percentile(50):>8.2f}{run.percentile(95):>8.2f}{max(run.submit_ms):>8.2f}"
            f"{run.refused:>8}"
        )
    if baseline:
        print(
            f"\napp / {baseline.name}: {app.tasks_per_s / baseline.tasks_per_s:.2f}x tasks/s,"
            f" p95 submit {app.percentile(95) / baseline.percentile(95):.2f}x"
        )
    print(
        f"\napp / in-process: {app.tasks_per_s / in_process.tasks_per_s:.2f}x tasks/s,"
        f" p95 submit {app.percentile(95) / in_process.percentile(95):.1f}x"
    )
    print(
        f"app / direct Store.submit_judgment: {app.tasks_per_s / direct.tasks_per_s:.3f}x"
        f" tasks/s, p95 submit {app.percentile(95) / direct.percentile(95):.1f}x"
    )
    print("\nchecks on the app's store:")
    for line in checks:
        print(f"  {line}")


if __name__ == "__main__":
    main()
