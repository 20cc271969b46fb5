"""`rewardlab serve-reward GRM --project P`: the GRM as a reward service for RL engines.

    rewardlab serve-reward runs/grm/final --project demo_out [--port 8000] [--token T]

The token comes from ``--token`` or the environment (``REWARDLAB_REWARD_TOKEN``); with
neither, a random one is made and printed. The service binds 127.0.0.1 unless ``--host``.
"""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path

from rewardlab.commands.options import Verbs, add_project

TOKEN_VARIABLE = "REWARDLAB_REWARD_TOKEN"


def build_service(grm: Path, project: Path, *, token: str, max_batch: int = 64,
                  max_wait_ms: float = 10.0, batch_size: int = 32):  # fmt: skip
    """The service for a GRM checkpoint and a project (dialogues, tasks, rubrics, media)."""
    from rewardlab.rl.grm_reward import GRMReward
    from rewardlab.rl.reward_requests import ItemResolver, ServiceLimits
    from rewardlab.rl.reward_service import RewardService, ServiceSettings
    from rewardlab.rubrics import load_library
    from rewardlab.store import Store

    with Store(project) as store:
        tasks = {task.id: task for task in store.tasks()}
        rubrics = load_library() | {rubric.id: rubric for rubric in store.rubrics()}
        max_clip_s = store.settings.max_clip_s
    reward = GRMReward.from_checkpoint(grm, project=project, rubrics=rubrics,
                                       batch_size=batch_size)  # fmt: skip
    resolver = ItemResolver(
        reward.dialogues,
        tasks,
        rubrics,
        k=reward.mapper.k,
        limits=ServiceLimits(max_clip_s=max_clip_s),
        pin=reward.grm.encoder.clip_features,
    )
    settings = ServiceSettings(token=token, max_batch=max_batch, max_wait_ms=max_wait_ms)
    return RewardService(reward, resolver, settings)


def describe_mapper(mapper) -> str:
    """The fixed reward function the service applies, in one paragraph."""
    calibration = (
        f"temperature T={mapper.temperature:.3f}"
        if mapper.temperature
        else "isotonic"
        if mapper.isotonic
        else "none"
    )
    std = (mapper.m2 / mapper.count) ** 0.5 if mapper.count else 0.0
    frozen = (
        f"frozen at mean {mapper.mean:.4f}, std {std:.4f} over {mapper.count} rewards"
        if mapper.normalize != "none" and mapper.count
        else "identity (no statistics saved)"
        if mapper.normalize != "none"
        else "none"
    )
    return (
        f"reward = mapper(GRM levels), K={mapper.k}: calibration {calibration};"
        f" normalisation {mapper.normalize}, {frozen}; clip {mapper.clip}."
        " Traffic never updates it."
    )


def run_serve_reward(args: argparse.Namespace) -> None:
    import uvicorn

    from rewardlab.rl.reward_service import build_app

    token = args.token or os.environ.get(TOKEN_VARIABLE)
    if not token:
        token = secrets.token_urlsafe(24)
        print(f"no --token or {TOKEN_VARIABLE} given; this run's token: {token}")
    service = build_service(args.grm, args.project, token=token, max_batch=args.max_batch,
                            max_wait_ms=args.max_wait_ms, batch_size=args.batch_size)  # fmt: skip
    print(describe_mapper(service.reward.mapper))
    print(f"serving rewards on http://{args.host}:{args.port} (POST /v1/reward, /get_reward)",
          flush=True)  # fmt: skip
    uvicorn.run(build_app(service), host=args.host, port=args.port, log_level="warning",
                timeout_keep_alive=args.keep_alive_s)  # fmt: skip


def add_parsers(verbs: Verbs) -> None:
    serve = verbs.add_parser(
        "serve-reward", help="the GRM as an HTTP reward service (veRL, OpenRLHF, TRL)"
    )
    serve.add_argument("grm", type=Path, help="a trained GRM checkpoint (train-grm's final/)")
    add_project(serve, "dialogues, tasks, rubrics and media the requests name")
    serve.add_argument("--host", default="127.0.0.1", help="(default: 127.0.0.1, this machine)")
    serve.add_argument("--port", type=int, default=8000, help="(default: 8000)")
    serve.add_argument("--token", help=f"bearer token (default: ${TOKEN_VARIABLE}, or a new one)")
    serve.add_argument("--max-batch", type=int, default=64, help="items per judge call")
    serve.add_argument(
        "--max-wait-ms", type=float, default=10.0, help="how long a batch waits to fill"
    )
    serve.add_argument("--batch-size", type=int, default=32, help="the judge's forward batch")
    # A server that closes an idle connection at the moment a client's pool reuses it fails that
    # request (ReadError). Clients' pools drop idle connections sooner (httpx 5 s, aiohttp 15 s),
    # so the server's side must outlast them; uvicorn's own default is 5 s, the same as httpx's.
    serve.add_argument(
        "--keep-alive-s", type=int, default=75, help="how long an idle connection stays open"
    )
    serve.set_defaults(run=run_serve_reward)
