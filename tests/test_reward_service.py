"""`rewardlab serve-reward`: the GRM over real HTTP, in a real server process.

The GRM is a tiny random-init Qwen2-Audio over the demo world's real speech, with a saved
mapper whose running normalisation has statistics (the service must apply them frozen). The
rewards the service answers are compared with in-process `GRMReward` on the same items."""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from builders import TINY_GRM_SIZE
from processes import free_port, stop_process, wait_until_answering
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from datasets import Dataset
from rewardlab.grm.examples import load_examples
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.tiny import build_tiny_backbone, corpus_texts
from rewardlab.reward import RewardMapper
from rewardlab.rl.grm_reward import GRMReward, judge_item
from rewardlab.rl.remote import RemoteGRMReward, compute_score
from rewardlab.rl.reward_batcher import RewardBatcher
from rewardlab.rubrics import load_library
from rewardlab.schema import Dialogue
from rewardlab.store import Store

SMALL = replace(TINY_GRM_SIZE, layers=1)
TOKEN = "test-token-123"


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_world):
    root = tmp_path_factory.mktemp("reward-service")
    project = demo_world(n=12, seed=3)
    data = load_examples(project)
    texts = corpus_texts(data.examples, JudgeFormat(), data.rubrics.values())
    grm = build_tiny_backbone(root / "grm", texts, size=SMALL)
    mapper = RewardMapper(k=3, normalize="running", clip=5.0)
    mapper(np.random.default_rng(0).dirichlet(np.ones(7), size=(40, 2)))  # statistics to freeze
    mapper.save(grm)
    with Store(project) as store:
        tasks, dialogues = store.tasks(), {d.id: d for d in store.dialogues()}
        rubrics = load_library() | {r.id: r for r in store.rubrics()}
        media = store.media_root
    return {
        "root": root,
        "project": project,
        "grm": grm,
        "mapper": mapper,
        "policy": build_tiny_backbone(root / "policy", texts, audio=False, size=SMALL, seed=1),
        "tasks": tasks,
        "dialogues": dialogues,
        "rubrics": rubrics,
        "media": media,
    }


@contextmanager
def reward_server(world, log: Path, port: int | None = None, *flags: str):
    port = port or free_port()
    command = [sys.executable, "-m", "rewardlab.cli", "serve-reward", str(world["grm"]),
               "--project", str(world["project"]), "--port", str(port), *flags]  # fmt: skip
    env = os.environ | {"REWARDLAB_REWARD_TOKEN": TOKEN}
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(server, f"{url}/health", log, 120)
            yield url, server
        finally:
            if server.poll() is None:
                stop_process(server)


@pytest.fixture(scope="module")
def service(world, tmp_path_factory):
    log = tmp_path_factory.mktemp("reward-service-log") / "service.log"
    with reward_server(world, log, None, "--max-wait-ms", "30") as (url, _):
        yield url, log


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def request_items(world) -> list[dict]:
    """Items of every kind: by dialogue id (G=4 candidates of one turn, with and without a
    rubric), by task id, an inline dialogue with the project's audio as base64, an empty reply."""
    items = []
    for task in world["tasks"][:6]:
        for g in range(4):
            items.append({
                "dialogue_id": task.dialogue_id, "turn_index": task.turn_index,
                "reference": task.reference.text, "rubric_id": task.rubric_id if g % 2 else None,
                "response": f"<think>try {g}</think>Reply {g}: {task.policy.text[: 20 + 5 * g]}",
            })  # fmt: skip
        items.append({"task_id": task.id, "response": f"Another reply for {task.id}."})
    dialogue = world["dialogues"][world["tasks"][0].dialogue_id]
    turns = []
    for turn in dialogue.turns:
        entry = {"role": turn.role, "text": turn.text}
        if turn.audio:
            clip = (world["media"] / turn.audio.path).read_bytes()
            entry["audio"] = {"base64": base64.b64encode(clip).decode()}
        turns.append(entry)
    items.append({"dialogue": {"turns": turns}, "reference": "Sure.", "response": "Inline reply."})
    items.append({"dialogue_id": dialogue.id, "reference": "Sure.", "response": "   "})
    return items


def in_process_rewards(world, items: list[dict]) -> np.ndarray:
    """`GRMReward` on the same items, built here from the records (not by the service)."""
    reward = GRMReward.from_checkpoint(world["grm"], project=world["project"])
    assert reward.mapper.count == world["mapper"].count > 0
    judge_items = []
    for index, item in enumerate(items):
        if "task_id" in item:
            task = next(t for t in world["tasks"] if t.id == item["task_id"])
            fields = (task.dialogue_id, task.turn_index, task.reference.text, task.rubric_id)
        else:
            fields = (item.get("dialogue_id"), item.get("turn_index"), item["reference"],
                      item.get("rubric_id"))  # fmt: skip
        dialogue_id, turn_index, reference, rubric_id = fields
        if dialogue_id is None:  # the inline copy of the first task's dialogue, same clips
            dialogue: Dialogue = world["dialogues"][world["tasks"][0].dialogue_id]
        else:
            dialogue = world["dialogues"][dialogue_id]
        trace, _, reply = item["response"].rpartition("</think>")
        reply = reply.strip()
        if not reply:
            judge_items.append(None)
            continue
        judge_items.append(judge_item(
            f"x{index}", dialogue, len(dialogue.turns) - 1 if turn_index is None else turn_index,
            reply, trace.replace("<think>", "").strip() or None, reference,
            world["rubrics"][rubric_id] if rubric_id else None, k=3,
        ))  # fmt: skip
    return reward.reward_items(judge_items, update=False)


def metric(text: str, name: str) -> float:
    return float(re.search(rf"^{re.escape(name)} (\S+)$", text, re.M).group(1))


def test_64_concurrent_clients_get_the_in_process_rewards(world, service):
    url, log = service
    assert "frozen at mean" in log.read_text()  # the statistics it applies, printed at start
    items = request_items(world)
    expected = in_process_rewards(world, items)
    assert len(set(np.round(expected, 4))) > 10  # items the judge tells apart

    async def client(number: int, session: httpx.AsyncClient) -> list[tuple[int, float]]:
        got = []
        for r in range(8):
            index = (number * 8 + r) % len(items)
            answer = await session.post(f"{url}/v1/reward", json={"items": [items[index]]},
                                        headers=auth())  # fmt: skip
            assert answer.status_code == 200, answer.text
            got.append((index, answer.json()["rewards"][0]))
        return got

    async def load() -> list[tuple[int, float]]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(timeout=300, limits=limits) as session:
            results = await asyncio.gather(*(client(n, session) for n in range(64)))
        return [pair for result in results for pair in result]

    answers = asyncio.run(load())
    assert len(answers) == 512
    for index, reward in answers:
        assert reward == pytest.approx(expected[index], abs=1e-5), items[index]
    assert {index for index, _ in answers} == set(range(len(items)))

    whole = httpx.post(f"{url}/v1/reward", json={"items": items}, headers=auth(), timeout=300)
    body = whole.json()
    np.testing.assert_allclose(body["rewards"], expected, atol=1e-5)
    first = body["items"][0]
    assert set(first["levels"]) == {"policy_first", "reference_first"}
    assert sum(first["levels"]["policy_first"]) == pytest.approx(1.0)
    assert body["items"][-1]["expected_level"] == pytest.approx(-3.0)  # the empty reply

    metrics = httpx.get(f"{url}/metrics", headers=auth()).text
    batches = metric(metrics, "rewardlab_reward_batch_items_count")
    assert metric(metrics, "rewardlab_reward_batch_items_sum") / batches > 1
    assert metric(metrics, "rewardlab_reward_items_total") >= 512 + len(items)
    assert 'rewardlab_reward_request_seconds_bucket{le="+Inf"}' in metrics


def test_openrlhf_payload_and_verl_arguments_get_the_same_rewards(world, service):
    url, _ = service
    task = world["tasks"][1]
    reply = "Captain, that sounds like a fine plan."
    own = httpx.post(f"{url}/v1/reward", json={"items": [{"task_id": task.id, "response": reply}]},
                     headers=auth(), timeout=120).json()["items"][0]  # fmt: skip
    prompt = "<|im_start|>user\nWhat should I do?<|im_end|>\n<|im_start|>assistant\n"
    label = json.dumps({"dialogue_id": task.dialogue_id, "turn_index": task.turn_index,
                        "reference": task.reference.text, "rubric_id": task.rubric_id})  # fmt: skip
    payload = {  # OpenRLHF: one sample per request, special tokens kept in the query
        "query": [prompt + reply + "<|im_end|><|endoftext|>", prompt + reply + "<|im_end|>"],
        "prompts": [prompt, prompt],
        "labels": [task.id, label],
    }
    answer = httpx.post(f"{url}/get_reward", json=payload, headers=auth(), timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["rewards"] == pytest.approx([own["reward"]] * 2, abs=1e-6)
    assert body["scores"][0] == pytest.approx((own["expected_level"] + 3) / 6, abs=1e-6)
    # batches of other sizes round float32 sums apart: absolute, as the level is near 0
    assert body["extra_logs"]["expected_level"][0] == pytest.approx(own["expected_level"], abs=1e-6)

    verl = asyncio.run(compute_score(data_source="rewardlab", solution_str=reply,
                                     ground_truth=task.id, extra_info={"index": 0},
                                     url=url, token=TOKEN))  # fmt: skip
    assert verl["score"] == pytest.approx(own["reward"], abs=1e-6)
    by_json = asyncio.run(compute_score("rewardlab", reply, label, None, url=url, token=TOKEN))
    assert by_json["score"] == pytest.approx(own["reward"], abs=1e-6)


def test_every_bad_input_is_a_4xx_naming_item_and_field(world, service, tmp_path):
    url, _ = service
    task = world["tasks"][0]
    good = {"dialogue_id": task.dialogue_id, "reference": "Sure.", "response": "A reply."}
    noise = base64.b64encode(b"RIFF....WAVEfmt not really audio").decode()
    cases = [
        ({"items": [good, good | {"dialogue_id": "nope"}]}, 1, "dialogue_id", "unknown dialogue"),
        ({"items": [{"task_id": "nope", "response": "x"}]}, 0, "task_id", "unknown task"),
        ({"items": [good | {"rubric_id": "nope"}]}, 0, "rubric_id", "unknown rubric"),
        ({"items": [{"dialogue_id": task.dialogue_id, "response": "x"}]}, 0, "reference", ""),
        ({"items": [good | {"response": "x" * 9000}]}, 0, "response", "at most 8000"),
        ({"items": [good | {"turn_index": 99}]}, 0, "turn_index", "is not a turn"),
        ({"items": [{"dialogue": {"turns": [{"role": "user", "text": "hi", "audio": {
            "base64": noise}}]}, "reference": "r", "response": "x"}]}, 0,
         "dialogue.turns.0.audio.base64", "unreadable"),
        ({"items": [{"dialogue": {"turns": [{"role": "user", "audio": {
            "path": "../../etc/passwd"}}]}, "reference": "r", "response": "x"}]}, 0,
         "dialogue.turns.0.audio.path", "reads no paths"),
        ({"items": [{"task_id": task.id, "reference": "r", "response": "x"}]}, 0, "reference",
         "task_id gives it"),
        ({"items": []}, -1, "items", ""),
    ]  # fmt: skip
    for body, item, field, message in cases:
        answer = httpx.post(f"{url}/v1/reward", json=body, headers=auth(), timeout=60)
        assert answer.status_code == 422, (body, answer.text)
        detail = answer.json()["detail"]
        assert (detail["item"], detail["field"]) == (item, field), detail
        assert message in detail["message"]
    raw = httpx.post(f"{url}/v1/reward", content=b"{not json", headers=auth())
    assert raw.status_code == 400 and raw.json()["detail"]["field"] == "<body>"
    bad_query = {"query": ["other text"], "prompts": ["prompt"], "labels": [task.id]}
    answer = httpx.post(f"{url}/get_reward", json=bad_query, headers=auth())
    assert answer.status_code == 422 and answer.json()["detail"]["field"] == "query"
    # and it goes on serving
    assert httpx.post(f"{url}/v1/reward", json={"items": [good]}, headers=auth(),
                      timeout=60).status_code == 200  # fmt: skip


def test_every_route_but_health_needs_the_token(service):
    url, _ = service
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    for headers in ({}, auth("wrong"), {"Authorization": TOKEN}):
        assert httpx.get(f"{url}/metrics", headers=headers).status_code == 401
        answer = httpx.post(f"{url}/v1/reward", json={"items": []}, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
        assert httpx.post(f"{url}/get_reward", json={}, headers=headers).status_code == 401


def test_an_idle_connection_outlasts_a_client_pools_expiry(service):
    """A server that drops idle connections when a pool does (httpx: 5 s) races the pool's next
    request on them; the service keeps them 75 s, so one socket idle 6 s still answers."""
    host, port = service[0].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for pause in (0, 6):
            time.sleep(pause)
            connection.request("GET", "/health")  # on the socket kept from the first request
            answer = connection.getresponse()  # RemoteDisconnected had the server closed it
            assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
            assert answer.getheader("connection") != "close"
    finally:
        connection.close()


def test_a_two_step_grpo_run_rewarded_by_the_remote_judge(world, service, tmp_path):
    url, _ = service
    tasks = world["tasks"][:4]
    prompts = [
        [{"role": turn.role, "content": turn.text}
         for turn in world["dialogues"][t.dialogue_id].turns[: t.turn_index + 1]]
        for t in tasks
    ]  # fmt: skip
    dataset = Dataset.from_dict({
        "prompt": prompts, "reference": [t.reference.text for t in tasks],
        "dialogue_id": [t.dialogue_id for t in tasks], "turn_index": [t.turn_index for t in tasks],
        "rubric_id": [t.rubric_id for t in tasks],
    })  # fmt: skip
    policy = AutoModelForCausalLM.from_pretrained(world["policy"])
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    config = GRPOConfig(
        output_dir=str(tmp_path / "run"), use_cpu=True, bf16=False,
        activation_checkpointing=False, max_steps=2, per_device_train_batch_size=4,
        num_generations=2, max_completion_length=8, learning_rate=1e-2, logging_steps=1,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=0,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=policy,
        reward_funcs=RemoteGRMReward(url, TOKEN),
        args=config,
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(world["policy"]),
    )
    trainer.train()
    logs = [log for log in trainer.state.log_history if "rewards/remote_grm/mean" in log]
    assert len(logs) == 2 and all(np.isfinite(log["rewards/remote_grm/mean"]) for log in logs)
    moved = [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]
    assert any("layers.0.self_attn" in n for n in moved)


def test_killed_under_load_clients_get_errors_and_a_restart_answers_the_same(world, tmp_path):
    port = free_port()
    items = request_items(world)[:8]

    async def fire(url: str) -> list:
        async with httpx.AsyncClient(timeout=60) as session:
            calls = [session.post(f"{url}/v1/reward", json={"items": items}, headers=auth())
                     for _ in range(24)]  # fmt: skip
            return await asyncio.gather(*calls, return_exceptions=True)

    with reward_server(world, tmp_path / "a.log", port) as (url, server):
        before = httpx.post(f"{url}/v1/reward", json={"items": items}, headers=auth(),
                            timeout=120).json()["rewards"]  # fmt: skip

        async def load_then_kill() -> list:
            fired = asyncio.ensure_future(fire(url))
            await asyncio.sleep(1.0)
            os.kill(server.pid, signal.SIGKILL)
            return await fired

        results = asyncio.run(load_then_kill())
        server.wait()
    failed = [r for r in results if isinstance(r, Exception)]
    assert failed and all(isinstance(r, httpx.HTTPError) for r in failed)
    with reward_server(world, tmp_path / "b.log", port) as (url, _):
        after = httpx.post(f"{url}/v1/reward", json={"items": items}, headers=auth(),
                           timeout=120).json()["rewards"]  # fmt: skip
    assert after == pytest.approx(before, abs=1e-6)


# ---- the batcher alone: a failing batch, a client that leaves ------------------------------


def test_a_failing_batch_fails_only_its_requests_and_a_leaving_client_costs_nothing():
    calls = []

    def score(items):
        calls.append(list(items))
        time.sleep(0.2)
        if "poison" in items:
            raise RuntimeError("the judge broke")
        return (np.array([len(item) for item in items]),)

    async def scenario():
        batcher = RewardBatcher(score, max_batch=4, max_wait_ms=50)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(["aa", "poison"]))  # batch 1
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(["bbb"]))  # batch 2, filling meanwhile
        leaving = asyncio.ensure_future(batcher.submit(["cccc"]))
        await asyncio.sleep(0.05)
        leaving.cancel()  # the client went away while its batch waits
        outcome = await asyncio.gather(first, second, return_exceptions=True)
        third = await batcher.submit(["d", "ee"])
        await batcher.stop()
        return outcome, third, batcher.metrics

    (first, second), third, metrics = asyncio.run(scenario())
    assert isinstance(first, RuntimeError)
    assert second[0].tolist() == [3] and third[0].tolist() == [1, 2]
    assert calls[0] == ["aa", "poison"] and calls[1] == ["bbb", "cccc"]
    assert metrics.errors["batch_failure"] == 1 and metrics.queued_items == 0
