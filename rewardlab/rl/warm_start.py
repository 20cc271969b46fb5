"""A policy's warm start: supervised next-token training on a project's replies.

    rewardlab tiny-policy --project demo_out --out demo_out/policy-init [--family F]

A fresh (random-init) policy cannot write "trace, separator, reply, EOS", so PPO would have
nothing to reward. `build_tiny_policy` builds a tiny audio LLM of any family that
`rewardlab.grm.tiny` builds (Qwen2-Audio by default) and teaches it that shape on the replies
of the project's training split (the GRM's split: held-out dialogues stay unseen), each after
one of a few short reasoning traces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import set_seed

from rewardlab.grm.tiny import TinySize, build_tiny_backbone
from rewardlab.rl.policy import AudioPolicy, load_policy
from rewardlab.rl.prompt_split import split_like_grm
from rewardlab.rl.prompts import (
    DEFAULT_POLICY_SYSTEM,
    PolicyPromptEncoder,
    PPOPrompt,
    collate_prompts,
    prompts_from_examples,
)
from rewardlab.schema import THINK_END, THINK_START

TRACES = (
    "Listen to how they sound.",
    "Recall what they told me.",
    "Answer the question kindly.",
)


def warm_start_pairs(
    examples: list[Any], separator: str = THINK_END
) -> list[tuple[PPOPrompt, str]]:
    """(prompt, target) pairs: every candidate reply of every task, after a short trace."""
    pairs = []
    prompts = {(p.dialogue.id, p.turn_index): p for p in prompts_from_examples(examples)}
    for number, example in enumerate(sorted(examples, key=lambda e: e.item.task.id)):
        task = example.item.task
        prompt = prompts[(task.dialogue_id, task.turn_index)]
        for side, candidate in enumerate((task.policy, task.reference)):
            trace = TRACES[(number + side) % len(TRACES)]
            pairs.append((prompt, f"{THINK_START}{trace}{separator}{candidate.text}"))
    return pairs


def supervised_warm_start(
    policy: AudioPolicy,
    encoder: PolicyPromptEncoder,
    pairs: list[tuple[PPOPrompt, str]],
    *,
    steps: int,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Teach a fresh policy the shape of a reply (trace, separator, reply, EOS) by
    next-token loss on `pairs`; returns the loss per step."""
    tokenizer = encoder.tokenizer
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 10) * max(0.05, 1 - step / max(steps, 1))
    )
    generator = torch.Generator().manual_seed(seed)
    device = next(policy.parameters()).device
    encoded_prompts: dict[str, Any] = {}
    losses = []
    policy.train()
    for _ in tqdm(range(steps), desc="warm start", disable=not progress):
        rows = torch.randint(len(pairs), (batch_size,), generator=generator).tolist()
        prompts = []
        targets = []
        for row in rows:
            prompt, target = pairs[row]
            if prompt.id not in encoded_prompts:
                encoded_prompts[prompt.id] = encoder.encode(prompt)
            prompts.append(encoded_prompts[prompt.id])
            targets.append([*tokenizer.encode(target, add_special_tokens=False), eos])
        batch = collate_prompts(prompts, pad)
        width = max(len(t) for t in targets)
        target_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        target_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for row, ids in enumerate(targets):
            target_ids[row, : len(ids)] = torch.tensor(ids)
            target_mask[row, : len(ids)] = 1
        input_ids = torch.cat([batch.input_ids, target_ids], dim=1).to(device)
        mask = torch.cat([batch.attention_mask, target_mask], dim=1).to(device)
        clips = batch.clips.to(device) if batch.clips is not None else None
        logits, _, _ = policy(input_ids, mask, policy.encode_audio(clips))
        context = batch.input_ids.shape[1]
        predicted = logits[:, context - 1 : -1].float()
        loss = torch.nn.functional.cross_entropy(
            predicted.reshape(-1, predicted.shape[-1]),
            target_ids.to(device).masked_fill(target_mask.to(device) == 0, -100).reshape(-1),
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    policy.eval()
    return losses


def build_tiny_policy(
    project: Path | str,
    out: Path | str,
    *,
    steps: int = 300,
    grm_path: Path | str | None = None,
    size: Any = None,
    seed: int = 0,
    progress: bool = True,
    family: str = "qwen2_audio",
) -> dict[str, float]:
    """A random-init tiny audio policy of `family` (`rewardlab.grm.tiny`), warm-started on
    the replies of the project's training split (the GRM's split: held-out dialogues stay
    unseen)."""
    split = split_like_grm(project, grm_path=grm_path)
    examples, train, media_root = split.examples, split.train, split.media_root
    pairs = warm_start_pairs(train)
    texts = [DEFAULT_POLICY_SYSTEM, THINK_START, THINK_END, *TRACES]
    texts += [t.text or "" for e in examples for t in e.item.dialogue.turns]
    texts += [target for _, target in pairs]
    out = build_tiny_backbone(
        Path(out), texts, audio=True, size=size or TinySize(), seed=seed, family=family
    )
    set_seed(seed)
    policy, template = load_policy(out, reference=False)
    encoder = PolicyPromptEncoder(template, media_root=media_root)
    losses = supervised_warm_start(
        policy, encoder, pairs, steps=steps, seed=seed, progress=progress
    )
    policy.model.save_pretrained(out)
    tail = losses[-10:] or [float("nan")]
    return {"pairs": len(pairs), "first_loss": losses[0], "last_loss": sum(tail) / len(tail)}
