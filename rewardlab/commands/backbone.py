"""`rewardlab backbone-info PATH_OR_CONFIG`: a backbone's real size without a GPU.

    rewardlab backbone-info /models/Qwen2.5-Omni-7B              a model folder (config.json)
    rewardlab backbone-info config.json --lora-rank 64 --json    a config file; JSON out

The model is built from its config on the meta device (no weights are read), so a 30B config
is sized in a second on a laptop: parameters per part (audio tower, projector, language model,
routed experts), audio tokens per second of speech, and the memory that bf16 weights plus a
LoRA and its Adam state need per GPU on 1 and on 8 GPUs under ZeRO-3.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rewardlab.commands.options import Verbs


def run_backbone_info(args: argparse.Namespace) -> None:
    from rewardlab.backbones import describe_backbone
    from rewardlab.grm.grm_config import BackboneArguments

    target = args.lora_target or BackboneArguments.lora_target
    info = describe_backbone(
        args.source, lora_rank=args.lora_rank, lora_target=target, gpus=tuple(args.gpus)
    )
    print(json.dumps(info.as_dict(), indent=2) if args.json else info.table())


def add_parsers(verbs: Verbs) -> None:
    info = verbs.add_parser(
        "backbone-info", help="parameters per part, audio tokens/s and memory, from a config"
    )
    info.add_argument("source", type=Path, help="a model folder or its config.json")
    info.add_argument("--lora-rank", type=int, default=16, help="LoRA rank (default 16)")
    info.add_argument(
        "--lora-target", help="regex of the modules LoRA adapts (default: the GRM's, attention)"
    )
    info.add_argument(
        "--gpus", type=int, nargs="+", default=[1, 8], help="GPU counts to size for (ZeRO-3)"
    )
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=run_backbone_info)
