"""Judgments per second of the GRM as a reward: per-item judge, group-shared judge, the reward
service under 64 concurrent clients, and a scalar sequence-classification RM as the floor.

    .venv/bin/python benchmarks/bench_reward_service.py [--prompts 24] [--per-prompt 8]

Setup (not timed): a demo world; its dialogues of five turns (three user clips, the reply
answers the last turn) are the prompts, each with G = --per-prompt candidate replies of about
30 tokens judged against its reference (every other prompt under its rubric); the tiny audio
GRM (random weights, 10 s audio window) saved with a mapper. Every run is warmed up with one
untimed pass (clip features cached), then timed over all prompts x G items:

  (a) `GRMReward.level_probs`, history once per item (both orders share it), as before
  (b) the same with the history once per prompt for its G items and both orders
  (c) `rewardlab serve-reward` in its own process, 64 asyncio clients each posting one item
      per request (OpenRLHF's way) until all are judged; latency per request
  (d) the floor: a scalar reward model on the same audio backbone, one pass per full sequence
      (dialogue with its clips + reply, one order, one logit read at the end), as TRL's and
      OpenRLHF's reward models score: what an audio RM of the same size costs
  (e) for reference, a text-only sequence-classification model of the GRM's size over the
      transcript and the reply (hears no audio)

Prints judgments/s, p50/p95 latency (per request for (c), per 32-item judge call otherwise),
and the ratios (b)/(a), (b)/(d), (c)/(b).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import torch
from transformers import Qwen2Config, Qwen2ForSequenceClassification

from rewardlab.demo import DemoConfig, build_demo_project
from rewardlab.grm.encoding import collate_full
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import verdict_logits
from rewardlab.grm.tiny import TinySize, build_tiny_backbone, corpus_texts
from rewardlab.reward import RewardMapper
from rewardlab.rl.grm_reward import GRMReward, judge_item
from rewardlab.rl.prompts import PPOPrompt
from rewardlab.rl.rewards import ScalarModelReward
from rewardlab.schema import Order
from rewardlab.store import Store

BATCH = 32
CLIENTS = 64


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--per-prompt", type=int, default=8, help="candidates per prompt (G)")
    parser.add_argument("--dialogues", type=int, default=96, help="size of the demo world")
    return parser.parse_args()


def build(root: Path, args) -> dict:
    project = root / "project"
    build_demo_project(project, DemoConfig(n=args.dialogues, seed=0), progress=False).close()
    data = load_examples(project)
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    grm = build_tiny_backbone(root / "grm", texts, size=replace(TinySize(), chunk_length=10))
    RewardMapper(k=3).save(grm)
    with Store(project) as store:
        tasks = [t for t in store.tasks() if t.turn_index == 4][: args.prompts]
    if len(tasks) < args.prompts:
        raise SystemExit(f"only {len(tasks)} five-turn tasks; raise --dialogues")
    rng = np.random.default_rng(0)
    words = " ".join(texts).split()
    requests = []
    for p, task in enumerate(tasks):
        for _ in range(args.per_prompt):
            reply = " ".join(rng.choice(words, size=24))
            requests.append({"dialogue_id": task.dialogue_id, "turn_index": task.turn_index,
                             "reference": task.reference.text, "response": reply,
                             "rubric_id": task.rubric_id if p % 2 else None})  # fmt: skip
    return {"project": project, "grm": grm, "requests": requests}


def judge_items(reward: GRMReward, requests: list[dict]):
    return [
        judge_item(
            f"b{i}",
            reward.dialogues[r["dialogue_id"]],
            r["turn_index"],
            r["response"],
            None,
            r["reference"],
            reward.rubrics.get(r["rubric_id"]),
            k=3,
        )
        for i, r in enumerate(requests)
    ]


def timed_batches(score, items) -> tuple[float, list[float]]:
    score(items)  # warm-up: clip features, allocator
    latencies, start = [], time.perf_counter()
    for first in range(0, len(items), BATCH):
        begin = time.perf_counter()
        score(items[first : first + BATCH])
        latencies.append(time.perf_counter() - begin)
    return time.perf_counter() - start, latencies


def run_judge(world, share: str) -> tuple[float, list[float]]:
    reward = GRMReward.from_checkpoint(world["grm"], project=world["project"], batch_size=BATCH,
                                       share_history=share)  # fmt: skip
    return timed_batches(reward.level_probs, judge_items(reward, world["requests"]))


def run_audio_floor(world) -> tuple[float, list[float]]:
    reward = GRMReward.from_checkpoint(world["grm"], project=world["project"])
    grm, pad = reward.grm, reward.grm.tokenizer.pad_token_id
    grm.model.eval()
    head = grm.verdict_ids[:1].to(grm.device)  # one output unit: a scalar head's cost

    @torch.no_grad()
    def score(items):
        prompts = [grm.encoder.encode(item, Order.POLICY_FIRST) for item in items]
        batch = grm._to_device(collate_full(prompts, pad, grm.encoder.feature_mask_key))
        return verdict_logits(grm.model, batch, head)[0]

    return timed_batches(score, judge_items(reward, world["requests"]))


def run_text_floor(world) -> tuple[float, list[float]]:
    reward = GRMReward.from_checkpoint(world["grm"], project=world["project"])
    tokenizer = reward.grm.tokenizer
    text = reward.grm.model.config.get_text_config()
    fields = {k: v for k, v in text.to_dict().items() if k not in ("id2label", "label2id")}
    config = Qwen2Config(**fields, num_labels=1)
    config.pad_token_id = tokenizer.pad_token_id
    scalar = ScalarModelReward(Qwen2ForSequenceClassification(config), tokenizer, batch_size=BATCH)
    prompts = [
        PPOPrompt(f"p{i}", reward.dialogues[r["dialogue_id"]], r["turn_index"], r["reference"])
        for i, r in enumerate(world["requests"])
    ]
    replies = [r["response"] for r in world["requests"]]
    pairs = list(zip(prompts, replies, strict=True))

    def score(chunk):
        scalar([p for p, _ in chunk], [r for _, r in chunk], [None] * len(chunk))

    return timed_batches(score, pairs)


def run_service(world) -> tuple[float, list[float], float]:
    port, token = 8700 + os.getpid() % 200, "bench-token"
    command = [sys.executable, "-m", "rewardlab.cli", "serve-reward", str(world["grm"]),
               "--project", str(world["project"]), "--port", str(port), "--token", token,
               "--batch-size", str(BATCH)]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        requests = world["requests"]

        async def load() -> tuple[float, list[float]]:
            queue: asyncio.Queue = asyncio.Queue()
            for item in requests:
                queue.put_nowait(item)
            latencies: list[float] = []

            async def client(session):
                while not queue.empty():
                    item = queue.get_nowait()
                    begin = time.perf_counter()
                    answer = await session.post(f"{url}/v1/reward", json={"items": [item]},
                                                headers=headers)  # fmt: skip
                    answer.raise_for_status()
                    latencies.append(time.perf_counter() - begin)

            limits = httpx.Limits(max_connections=CLIENTS)
            async with httpx.AsyncClient(timeout=600, limits=limits) as session:
                start = time.perf_counter()
                await asyncio.gather(*(client(session) for _ in range(CLIENTS)))
                return time.perf_counter() - start, latencies

        asyncio.run(load())  # warm-up
        seconds, latencies = asyncio.run(load())
        metrics = httpx.get(f"{url}/metrics", headers=headers).text
        lines = dict(line.rsplit(" ", 1) for line in metrics.splitlines() if "batch_items_" in line
                     and not line.startswith("#") and "bucket" not in line)  # fmt: skip
        mean_batch = float(lines["rewardlab_reward_batch_items_sum"]) / float(
            lines["rewardlab_reward_batch_items_count"]
        )
        return seconds, latencies, mean_batch
    finally:
        server.terminate()
        server.wait()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory(prefix="rewardlab-bench-service-") as tmp:
        world = build(Path(tmp), args)
        n = len(world["requests"])
        runs = {
            "(a) judge, history per item": run_judge(world, "item"),
            "(b) judge, history per prompt": run_judge(world, "group"),
        }
        seconds, latencies, mean_batch = run_service(world)
        runs[f"(c) service, {CLIENTS} clients"] = (seconds, latencies)
        runs["(d) scalar audio RM, full seqs"] = run_audio_floor(world)
        runs["(e) scalar text RM (no audio)"] = run_text_floor(world)
    print(f"\n{args.prompts} prompts x G={args.per_prompt} = {n} judgments (both orders each),")
    print(f"five-turn dialogues with three clips; latency per {BATCH}-item call, per request (c)\n")
    print(f"{'run':<32}{'judgments/s':>12}{'p50 ms':>9}{'p95 ms':>9}")
    rates = {}
    for name, (seconds, latencies) in runs.items():
        rates[name[:3]] = n / seconds
        p50, p95 = np.percentile(latencies, [50, 95]) * 1000
        print(f"{name:<32}{n / seconds:>12.1f}{p50:>9.0f}{p95:>9.0f}")
    print(f"\nservice: mean judge batch {mean_batch:.1f} items")
    print(f"(b)/(a) {rates['(b)'] / rates['(a)']:.2f}x   (b)/(d) {rates['(b)'] / rates['(d)']:.2f}"
          f" (goal >= 0.7)   (c)/(b) {rates['(c)'] / rates['(b)']:.2f} (goal >= 0.8)")  # fmt: skip


if __name__ == "__main__":
    main()
