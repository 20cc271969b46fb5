"""Clients of `rewardlab serve-reward`: the GRM as the reward of TRL, veRL and OpenRLHF runs.

TRL (`GRPOTrainer` / `RLOOTrainer` await async reward functions concurrently):

    reward = RemoteGRMReward("http://judge-host:8000", token=os.environ["REWARDLAB_REWARD_TOKEN"])
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, train_dataset=dataset, args=config)

It reads the dataset columns `GRMReward` reads (``reference``, ``dialogue_id``,
``turn_index``, ``rubric_id``; or ``task_id``, a task of the served project); without a
``dialogue_id`` or ``task_id`` the prompt itself is sent as an inline text dialogue.

veRL (its reward loop calls ``compute_score``, sync or async; point
``custom_reward_function.path`` at this module and ``.name`` at ``compute_score``):

    await compute_score(data_source, solution_str, ground_truth, extra_info)

``ground_truth`` names what to judge against: a task id, or a JSON object of `/v1/reward` item
fields (``{"dialogue_id": ..., "turn_index": ..., "reference": ..., "rubric_id": ...}``); the
service's address and token come from ``url=`` / ``token=`` (veRL's ``reward_kwargs``) or
``REWARDLAB_REWARD_URL`` / ``REWARDLAB_REWARD_TOKEN``.

OpenRLHF needs no client: ``--reward.remote_url http://judge-host:8000/get_reward`` (before
0.10.2: ``--remote_rm_url``), with the token in the URL's proxy or a header your launcher adds;
the label column holds task ids or JSON objects as above (README, "At scale").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import httpx

from rewardlab.rl.grm_reward import completion_text
from rewardlab.rl.reward_requests import label_fields

URL_VARIABLE = "REWARDLAB_REWARD_URL"
TOKEN_VARIABLE = "REWARDLAB_REWARD_TOKEN"


class RewardServiceError(RuntimeError):
    """The service refused or failed a request; the message carries its answer."""


async def post_items(
    url: str, token: str | None, items: list[dict], *, timeout_s: float = 300.0
) -> dict[str, Any]:
    """One ``POST /v1/reward``; raises `RewardServiceError` on any non-200 answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=timeout_s) as client:
        response = await client.post(
            f"{url.rstrip('/')}/v1/reward", json={"items": items}, headers=headers
        )
    if response.status_code != 200:
        raise RewardServiceError(f"{response.status_code} from {url}: {response.text[:500]}")
    return response.json()


class RemoteGRMReward:
    """An async TRL reward function that asks the reward service (see the module docstring)."""

    __name__ = "remote_grm"  # TRL names a reward function's logged metrics after it

    def __init__(self, url: str, token: str | None = None, *, timeout_s: float = 300.0):
        self.url, self.token, self.timeout_s = url, token, timeout_s

    async def __call__(
        self,
        prompts: Sequence[str | list[dict]],
        completions: Sequence[str | list[dict]],
        reference: Sequence[str] | None = None,
        dialogue_id: Sequence[str] | None = None,
        turn_index: Sequence[int | None] | None = None,
        rubric_id: Sequence[str | None] | None = None,
        task_id: Sequence[str] | None = None,
        **_: Any,
    ) -> list[float]:
        items = []
        for row, completion in enumerate(completions):
            item: dict[str, Any] = {"response": completion_text(completion)}
            if task_id is not None:
                item["task_id"] = task_id[row]
            else:
                if reference is None:
                    raise ValueError("RemoteGRMReward needs a 'reference' or 'task_id' column")
                item["reference"] = reference[row]
                if dialogue_id is not None:
                    item["dialogue_id"] = dialogue_id[row]
                else:
                    item["dialogue"] = {"turns": prompt_turns(prompts[row])}
                if turn_index is not None and turn_index[row] is not None:
                    item["turn_index"] = int(turn_index[row])
                if rubric_id is not None and rubric_id[row]:
                    item["rubric_id"] = rubric_id[row]
            items.append(item)
        answer = await post_items(self.url, self.token, items, timeout_s=self.timeout_s)
        return [float(r) for r in answer["rewards"]]


def prompt_turns(prompt: str | list[dict]) -> list[dict]:
    """A prompt as the turns of an inline text dialogue."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    return [{"role": m["role"], "text": completion_text([m])} for m in messages]


async def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: str | dict,
    extra_info: dict | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
    **_: Any,
) -> dict[str, float]:
    """veRL's reward function: ``{"score": reward, "expected_level": E}`` of one response."""
    url = url or os.environ.get(URL_VARIABLE)
    if not url:
        raise ValueError(f"compute_score needs url= (veRL reward_kwargs) or ${URL_VARIABLE}")
    token = token or os.environ.get(TOKEN_VARIABLE)
    item = label_fields(ground_truth) | {"response": solution_str}
    answer = await post_items(url, token, [item])
    judged = answer["items"][0]
    return {"score": judged["reward"], "expected_level": judged["expected_level"]}
