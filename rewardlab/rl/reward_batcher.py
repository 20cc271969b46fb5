"""Dynamic batching for the reward service, and its Prometheus metrics.

Requests from any number of clients wait in one queue; a single batching task takes what is
waiting (up to `max_batch` items, or whatever came within `max_wait_ms` of the first) and
runs one judge call for all of it on one worker thread, so the GRM sees large batches whose
items of one dialogue and turn share their history (`GenerativeRewardModel.judge`). While a
batch runs, the next one fills. An exception in the judge fails that batch's requests and no
others; a client that went away is simply not answered.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: Sequence[float]):
        self.buckets, self.counts = tuple(buckets), [0] * len(buckets)
        self.total, self.sum = 0, 0.0

    def observe(self, value: float) -> None:
        self.total += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1

    def lines(self, name: str) -> list[str]:
        out = [f"# TYPE {name} histogram"]
        out += [
            f'{name}_bucket{{le="{b:g}"}} {c}'
            for b, c in zip(self.buckets, self.counts, strict=True)
        ]
        out += [f'{name}_bucket{{le="+Inf"}} {self.total}', f"{name}_sum {self.sum:.6f}"]
        return [*out, f"{name}_count {self.total}"]


@dataclass
class Metrics:
    requests: Counter = field(default_factory=Counter)  # by route
    errors: Counter = field(default_factory=Counter)  # by kind
    items: int = 0
    queued_items: int = 0
    latency: Histogram = field(default_factory=lambda: Histogram(LATENCY_BUCKETS_S))
    batch_items: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))

    def text(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        prefix = "rewardlab_reward"
        lines = [f"# TYPE {prefix}_requests_total counter"]
        lines += [
            f'{prefix}_requests_total{{route="{route}"}} {n}'
            for route, n in sorted(self.requests.items())
        ]
        lines += [f"# TYPE {prefix}_errors_total counter"]
        lines += [
            f'{prefix}_errors_total{{kind="{kind}"}} {n}' for kind, n in sorted(self.errors.items())
        ]
        lines += [f"# TYPE {prefix}_items_total counter", f"{prefix}_items_total {self.items}"]
        lines += [f"# TYPE {prefix}_queue_items gauge", f"{prefix}_queue_items {self.queued_items}"]
        lines += self.latency.lines(f"{prefix}_request_seconds")
        lines += self.batch_items.lines(f"{prefix}_batch_items")
        return "\n".join(lines) + "\n"


@dataclass
class _Pending:
    items: list[Any]
    future: asyncio.Future
    arrived: float


class RewardBatcher:
    """`await batcher.submit(items)` -> `score(items)`'s answer for those items.

    `score(all_items)` runs on one worker thread and returns arrays whose first axis follows
    the items (e.g. ``(probs, rewards)``); each request gets its own rows back.
    """

    def __init__(
        self,
        score: Callable[[list[Any]], tuple[np.ndarray, ...]],
        *,
        max_batch: int = 64,
        max_wait_ms: float = 10.0,
        metrics: Metrics | None = None,
    ):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.score, self.max_batch, self.max_wait_s = score, max_batch, max_wait_ms / 1000
        self.metrics = metrics or Metrics()
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")
        self._task: asyncio.Task | None = None
        self._carried: _Pending | None = None  # did not fit the last batch: starts the next

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._worker.shutdown(wait=False, cancel_futures=True)

    async def submit(self, items: list[Any]) -> tuple[np.ndarray, ...]:
        pending = _Pending(items, asyncio.get_running_loop().create_future(), time.monotonic())
        self.metrics.queued_items += len(items)
        await self._queue.put(pending)
        return await pending.future

    async def _next_batch(self) -> list[_Pending]:
        first, self._carried = self._carried, None
        batch = [first if first is not None else await self._queue.get()]
        size = len(batch[0].items)
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                if self._queue.empty():
                    timeout = deadline - time.monotonic()
                    if timeout <= 0:
                        break
                    pending = await asyncio.wait_for(self._queue.get(), timeout)
                else:
                    pending = self._queue.get_nowait()
            except TimeoutError:
                break
            if size + len(pending.items) > self.max_batch:
                self._carried = pending
                break
            batch.append(pending)
            size += len(pending.items)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            items = [item for pending in batch for item in pending.items]
            self.metrics.queued_items -= len(items)
            self.metrics.batch_items.observe(len(items))
            try:
                arrays = await loop.run_in_executor(self._worker, self.score, items)
            except Exception as error:  # the batch fails, the service goes on
                self.metrics.errors["batch_failure"] += len(batch)
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            start = 0
            for pending in batch:
                rows = slice(start, start + len(pending.items))
                start = rows.stop
                if not pending.future.done():  # a client that left is not answered
                    pending.future.set_result(tuple(array[rows] for array in arrays))
