"""New candidates for annotation: a policy checkpoint's replies to a project's prompts.

    rewardlab sample --policy CKPT --project P --out tasks.jsonl [--n-per-prompt 2] [--round 2]

One prompt per (dialogue, turn) among the project's tasks; the first task of each (by id) gives
the reference and the rubric. Each prompt gets ``n_per_prompt`` sampled replies (batched, the
dialogue's audio heard as audio); each reply becomes a task in the import format: the policy
candidate is the reply, its reasoning trace (before the separator) kept apart in
``reasoning``, ``source`` names the checkpoint; the reference is the source task's reference
text (replies are text, so the pair is compared like for like); ``metadata`` holds the round,
the source task and the sampling settings. The file imports as it is (`rewardlab import P
--tasks tasks.jsonl`) and the app queues its tasks.

Ids are ``<dialogue>.t<turn>.<round>.<checkpoint>.<i>``: a run that was interrupted starts
again where it stopped (prompts with all their replies in the file are skipped, a line cut
short by the interruption is dropped) and never writes a task twice. Each batch is written
and flushed as a whole.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from rewardlab.rl.grm_reward import split_reasoning
from rewardlab.rl.policy import load_policy
from rewardlab.rl.prompts import PolicyPromptEncoder, PPOPrompt, collate_prompts, decode_replies
from rewardlab.schema import THINK_END, Task
from rewardlab.store import Store

EMPTY_REPLY = "(empty reply)"  # a candidate needs text; the policy may have said nothing


@dataclass
class SampleSettings:
    n_per_prompt: int = 1
    temperature: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 48
    batch_size: int = 8  # prompts per generation batch (times n_per_prompt rows)
    seed: int = 0
    round: int = 2
    separator: str = THINK_END
    limit: int | None = None  # the first `limit` prompts only
    dialogues: frozenset[str] | None = None  # only these dialogues' prompts (e.g. held out)

    def __post_init__(self) -> None:
        if self.n_per_prompt < 1 or self.batch_size < 1 or self.max_new_tokens < 1:
            raise ValueError("n_per_prompt, batch_size and max_new_tokens must be at least 1")


@dataclass
class SampleReport:
    prompts: int
    skipped: int  # prompts already complete in the file (a resumed run)
    written: int
    seconds: float

    def summary(self, out: Path) -> str:
        rate = self.written / self.seconds if self.seconds else 0.0
        return (
            f"{self.written} tasks written to {out} ({self.prompts} prompts, {self.skipped}"
            f" already done; {rate:.1f} responses/s)"
        )


def project_prompts(store: Store) -> list[tuple[PPOPrompt, Task]]:
    """One prompt per (dialogue, turn) of the project's tasks, with the task that stands for
    it (the first by id)."""
    chosen: dict[tuple[str, int], Task] = {}
    for task in sorted(store.tasks(), key=lambda t: t.id):
        chosen.setdefault((task.dialogue_id, task.turn_index), task)
    out = []
    for (dialogue_id, turn), task in chosen.items():
        rubric = store.rubric(task.rubric_id) if task.rubric_id else None
        dialogue = store.dialogue(dialogue_id)
        prompt = PPOPrompt(f"{dialogue_id}.t{turn}", dialogue, turn, task.reference.text, rubric)
        out.append((prompt, task))
    return out


def checkpoint_tag(policy: Path) -> str:
    """The policy folder's name; a run's ``final`` or ``checkpoint-N`` keeps its run's name
    in front (``ppo-final``), so two runs' samples stay apart."""
    path = Path(policy).resolve()
    name = path.name
    if name == "final" or re.fullmatch(r"checkpoint-\d+", name):
        name = f"{path.parent.name}-{name}"
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "policy"


def done_ids(out: Path) -> set[str]:
    """Task ids already in `out`; a last line cut short by an interruption is removed."""
    if not out.exists():
        return set()
    data = out.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with out.open("r+b") as handle:
            handle.truncate(len(complete))
    return {json.loads(line)["id"] for line in complete.decode().splitlines() if line.strip()}


def sample_tasks(
    policy_path: Path, project: Path, out: Path, settings: SampleSettings, progress: bool = True
) -> SampleReport:
    """Write the policy's replies as tasks (see the module docstring)."""
    out = Path(out)
    tag = checkpoint_tag(policy_path)
    policy, template = load_policy(policy_path, reference=False)
    policy.eval()
    with Store(project) as store:
        prompts = project_prompts(store)
        if settings.dialogues is not None:
            prompts = [(p, t) for p, t in prompts if p.dialogue.id in settings.dialogues]
        prompts = prompts[: settings.limit]
        encoder = PolicyPromptEncoder(template, media_root=store.media_root)
    tokenizer = encoder.tokenizer
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    pad = eos if pad is None else pad

    def task_id(prompt: PPOPrompt, i: int) -> str:
        return f"{prompt.id}.r{settings.round}.{tag}.{i}"

    done = done_ids(out)
    todo = [
        (p, t)
        for p, t in prompts
        if not all(task_id(p, i) in done for i in range(settings.n_per_prompt))
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    start, written = time.perf_counter(), 0
    bar = tqdm(total=len(todo), desc="sampling", unit="prompt", disable=not progress)
    with out.open("a", encoding="utf-8") as handle:
        for first in range(0, len(todo), settings.batch_size):
            chunk = todo[first : first + settings.batch_size]
            replies = _sample_batch(policy, encoder, [p for p, _ in chunk], settings, eos, pad)
            lines = []
            for row, (prompt, source_task) in enumerate(chunk):
                for i in range(settings.n_per_prompt):
                    if task_id(prompt, i) in done:
                        continue
                    text = replies[row * settings.n_per_prompt + i]
                    record = _task_record(task_id(prompt, i), source_task, text, tag, settings)
                    lines.append(json.dumps(record) + "\n")
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
            written += len(lines)
            bar.update(len(chunk))
    bar.close()
    seconds = time.perf_counter() - start
    return SampleReport(len(prompts), len(prompts) - len(todo), written, seconds)


@torch.no_grad()
def _sample_batch(
    policy, encoder: PolicyPromptEncoder, prompts: list[PPOPrompt], settings: SampleSettings,
    eos: int, pad: int,
) -> list[str]:  # fmt: skip
    """n_per_prompt decoded replies per prompt, prompt after prompt; seeded by the batch's
    first prompt, so a resumed run draws a batch the way it would have."""
    rows = [p for p in prompts for _ in range(settings.n_per_prompt)]
    batch = collate_prompts([encoder.encode(p) for p in rows], pad)
    device = next(policy.parameters()).device
    clips = batch.clips.to(device) if batch.clips is not None else None
    generator = torch.Generator(device=device)
    generator.manual_seed(settings.seed * 1_000_003 + sum(map(ord, prompts[0].id)))
    responses = policy.sample(
        batch.input_ids.to(device),
        batch.attention_mask.to(device),
        policy.encode_audio(clips),
        max_new_tokens=settings.max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
        temperature=settings.temperature,
        top_k=settings.top_k,
        suppress_token_ids=encoder.suppressed_token_ids(),
        generator=generator,
    )
    return decode_replies(encoder.tokenizer, responses, eos, pad)


def _task_record(task_id: str, source: Task, text: str, tag: str, s: SampleSettings) -> dict:
    trace, reply = split_reasoning(text, s.separator)
    return {
        "id": task_id,
        "dialogue_id": source.dialogue_id,
        "turn_index": source.turn_index,
        "rubric_id": source.rubric_id,
        "policy": {"text": reply or EMPTY_REPLY, "reasoning": trace, "source": tag},
        "reference": {"text": source.reference.text, "source": source.reference.source},
        "metadata": {
            "round": s.round,
            "sampled_from": source.id,
            "temperature": s.temperature,
            "top_k": s.top_k,
            "seed": s.seed,
        },
    }
