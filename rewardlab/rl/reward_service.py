"""The GRM as an HTTP reward service: `rewardlab serve-reward GRM --project P`.

One process holds the judge; RL workers anywhere call it. Routes (all but ``/health`` need
``Authorization: Bearer <token>``):

    POST /v1/reward   rewardlab's own request (`reward_requests` documents an item):
                      {"items": [...]} -> {"rewards": [...], "items": [{"reward", "expected_level",
                      "levels": {"policy_first": [...], "reference_first": [...]}}]}
    POST /get_reward  OpenRLHF's remote reward protocol: {"query": [...], "prompts": [...],
                      "labels": [...]} -> {"rewards": [...], "scores": [...], "extra_logs": {...}}
    GET  /health      {"status": "ok", ...}, no token
    GET  /metrics     Prometheus text: requests, items, batch sizes, queue, latency, errors

OpenRLHF sends one sample per request: ``query`` is the prompt and the response decoded with
special tokens kept, ``prompts`` the prompt alone. The response is ``query`` after its prompt,
with trailing special tokens (the tokenizer's and common end-of-turn markers) stripped. Each
label names what to judge against: a task id of the project (its dialogue, turn, reference and
rubric), or a JSON object with the fields of a `/v1/reward` item but ``response``. ``scores``
are the expected level mapped to [0, 1] ((E + K) / 2K), for OpenRLHF's dynamic filtering.

The reward is a fixed function of the judgment: the mapper's normalisation statistics are
those saved with the GRM, never updated by traffic. Requests are coalesced into judge batches
(`reward_batcher`); items of one dialogue and turn share their history in the judge.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from rewardlab.grm.encoding import JudgeItem
from rewardlab.grm.judge_format import JudgeInputError
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.rl.reward_batcher import Metrics, RewardBatcher
from rewardlab.rl.reward_requests import (
    ItemError,
    ItemResolver,
    ResolvedItem,
    RewardItem,
    label_fields,
)
from rewardlab.schema import Order

END_MARKERS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<|end|>", "<eos>")


@dataclass
class ServiceSettings:
    token: str
    max_batch: int = 64  # items per judge call
    max_wait_ms: float = 10.0  # how long the first request of a batch waits for company


class RewardService:
    """Judges resolved items in batches and maps them to rewards, frozen."""

    def __init__(self, reward: GRMReward, resolver: ItemResolver, settings: ServiceSettings):
        self.reward, self.resolver, self.settings = reward, resolver, settings
        self.metrics = Metrics()
        self.batcher = RewardBatcher(
            self.score,
            max_batch=settings.max_batch,
            max_wait_ms=settings.max_wait_ms,
            metrics=self.metrics,
        )
        tokenizer = reward.grm.tokenizer
        self.end_markers = tuple(set(END_MARKERS) | set(tokenizer.all_special_tokens))

    def score(self, items: list[JudgeItem | None]) -> tuple[np.ndarray, np.ndarray]:
        """(probs (N, O, 2K+1), rewards (N,)): the mapper applied without updating it."""
        probs = self.reward.level_probs(items)
        return probs, self.reward.mapper(probs, update=False)

    async def judge(self, items: Sequence[RewardItem]) -> tuple[np.ndarray, np.ndarray]:
        resolved: list[ResolvedItem] = []
        try:
            for index, item in enumerate(items):
                resolved.append(self.resolver.resolve(index, item))
            for index, entry in enumerate(resolved):  # too long for the GRM: this request only
                if entry.item is not None:
                    self._check_fits(index, entry.item)
            return await self.batcher.submit([entry.item for entry in resolved])
        finally:
            for entry in resolved:
                self.resolver.release(entry.pinned)

    def _check_fits(self, index: int, item: JudgeItem) -> None:
        try:
            for order in Order:
                self.reward.grm.encoder.encode(item, order)
        except JudgeInputError as error:
            raise ItemError(index, "response", str(error)) from None

    def reply_of(self, query: str, prompt: str, index: int) -> str:
        if not query.startswith(prompt):
            raise ItemError(index, "query", "does not start with its prompt (prompts[i])")
        reply = query[len(prompt) :].rstrip()
        stripped = True
        while stripped:
            stripped = False
            for marker in self.end_markers:
                if marker and reply.endswith(marker):
                    reply, stripped = reply[: -len(marker)].rstrip(), True
        return reply


def openrlhf_items(body: Any, service: RewardService) -> list[dict]:
    """`/get_reward`'s body as `/v1/reward` items (see the module docstring)."""
    if not isinstance(body, dict):
        raise ItemError(-1, "<body>", "give a JSON object with query, prompts and labels")
    query, prompts, labels = (body.get(name) for name in ("query", "prompts", "labels"))
    for name, value in (("query", query), ("prompts", prompts), ("labels", labels)):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ItemError(-1, name, "give a list of strings")
    if not len(query) == len(prompts) == len(labels):
        raise ItemError(-1, "labels", "query, prompts and labels must be as long as each other")
    items = []
    for index, (text, prompt, label) in enumerate(zip(query, prompts, labels, strict=True)):
        response = service.reply_of(text, prompt, index)
        items.append(label_fields(label, index) | {"response": response})
    return items


def build_app(service: RewardService) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(title="rewardlab reward service", lifespan=lifespan)
    metrics = service.metrics
    k = service.reward.mapper.k

    @app.middleware("http")
    async def guard(request: Request, call_next):
        route = request.url.path
        metrics.requests[route] += 1
        if route != "/health" and not _authorised(request, service.settings.token):
            metrics.errors["unauthorized"] += 1
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        start = time.perf_counter()
        response = await call_next(request)
        metrics.latency.observe(time.perf_counter() - start)
        return response

    async def judged(request: Request, to_items) -> tuple[Any, np.ndarray, np.ndarray] | Any:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            metrics.errors["bad_request"] += 1
            return JSONResponse({"detail": {"item": -1, "field": "<body>",
                                            "message": "not JSON"}}, status_code=400)  # fmt: skip
        try:
            items = service.resolver.parse(to_items(body))
            metrics.items += len(items)
            probs, rewards = await service.judge(items)
        except ItemError as error:
            metrics.errors["bad_item"] += 1
            return JSONResponse({"detail": error.detail()}, status_code=422)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the judge failed on this batch
            return JSONResponse({"detail": f"judging failed: {error}"}, status_code=500)
        return items, probs, rewards

    @app.post("/v1/reward")
    async def reward(request: Request):
        out = await judged(request, lambda body: body)
        if isinstance(out, JSONResponse):
            return out
        _, probs, rewards = out
        return own_answer(probs, rewards, k)

    @app.post("/get_reward")
    async def get_reward(request: Request):
        out = await judged(request, lambda body: {"items": openrlhf_items(body, service)})
        if isinstance(out, JSONResponse):
            return out
        _, probs, rewards = out
        expected = probs.mean(axis=1) @ np.arange(-k, k + 1)
        return {
            "rewards": rewards.tolist(),
            "scores": ((expected + k) / (2 * k)).tolist(),
            "extra_logs": {"expected_level": expected.tolist()},
        }

    @app.get("/health")
    async def health():
        return {"status": "ok", "k": k, "queued_items": metrics.queued_items}

    @app.get("/metrics")
    async def prometheus():
        return PlainTextResponse(metrics.text(), media_type="text/plain; version=0.0.4")

    return app


def own_answer(probs: np.ndarray, rewards: np.ndarray, k: int) -> dict[str, Any]:
    """`/v1/reward`'s answer: rewards, and per item its expected level and both orders'
    level distributions (canonical: policy vs reference)."""
    expected = probs.mean(axis=1) @ np.arange(-k, k + 1)
    return {
        "rewards": rewards.tolist(),
        "items": [
            {
                "reward": float(r),
                "expected_level": float(e),
                "levels": {o.value: p[j].tolist() for j, o in enumerate(Order)},
            }
            for r, e, p in zip(rewards, expected, probs, strict=True)
        ],
    }


def _authorised(request: Request, token: str) -> bool:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip(), token)
