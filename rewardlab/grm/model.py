"""`GenerativeRewardModel`: an audio LLM (or text LM) that judges a pair with one token.

    grm = GenerativeRewardModel.load("runs/grm/final", media_root="demo_out/media")
    dist = grm.judge(items)                 # LevelDistribution, both orders, one pass each
    dist.expected_level().mean(axis=1)      # (N,) debiased expected level, policy vs reference

`direct` mode reads the distribution over the 2K+1 verdict tokens at the verdict slot of one
forward pass: no text is parsed, so nothing fails to parse. The history block (system prompt and
dialogue) is run once per group of items that share it (same dialogue, turn and audio: the G
rollouts of one prompt, with any references and rubrics) and its key/value cache reused for
all their candidates in both presentation orders. `reasoning` mode first
generates a critique, then reads the verdict distribution the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from peft import LoraConfig, PeftModel
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from rewardlab.backbones import freeze_audio_tower as freeze_tower
from rewardlab.backbones import load_model, load_processor
from rewardlab.grm.encoding import (
    AudioMode,
    EncodedPrompt,
    JudgeItem,
    PromptEncoder,
    audio_batch,
    collate_full,
    pad_rows,
)
from rewardlab.grm.judge_format import FORMAT_FILE, JudgeFormat
from rewardlab.schema import Order

Mode = Literal["direct", "reasoning"]


@dataclass
class LevelDistribution:
    """Probabilities over levels -K..K per task and order, canonical (policy vs reference).

    ``probs[i, j]`` is task ``task_ids[i]`` judged in order ``orders[j]``; reference-first
    verdicts are already flipped back, so both columns answer "how much better is the policy".
    """

    task_ids: list[str]
    orders: tuple[Order, ...]
    probs: np.ndarray  # (N, O, 2K+1)
    critiques: list[list[str]] | None = None  # reasoning mode: (N, O) generated critiques

    @property
    def k(self) -> int:
        return (self.probs.shape[-1] - 1) // 2

    def expected_level(self) -> np.ndarray:
        """(N, O) expected level under each order's distribution."""
        return self.probs @ np.arange(-self.k, self.k + 1, dtype=np.float64)

    def debiased_level(self) -> np.ndarray:
        """(N,) expected level averaged over the orders, which cancels position bias."""
        return self.expected_level().mean(axis=1)


def verdict_logits(model: Any, batch: dict[str, torch.Tensor], verdict_ids: torch.Tensor):
    """(B, 2K+1) logits of the verdict tokens at each row's verdict slot; also the LM logits.

    One ordinary forward through the (possibly wrapped: PEFT, DDP, DeepSpeed) model.
    """
    inputs = {k: v for k, v in batch.items() if k not in ("verdict_index", "labels", "target")}
    logits = model(**inputs).logits  # (B, T, V)
    rows = logits[torch.arange(logits.shape[0], device=logits.device), batch["verdict_index"]]
    return rows[:, verdict_ids], logits


def history_key(prompt: EncodedPrompt) -> tuple:
    """Equal for prompts whose history blocks are the same tokens and the same audio."""
    clips = tuple(
        hashlib.blake2b(np.ascontiguousarray(f).tobytes(), digest_size=16).digest()
        for f in prompt.features
    )
    return tuple(prompt.history_ids), clips, tuple(prompt.feature_lengths)


class GenerativeRewardModel:
    kind = "GRM"

    def __init__(
        self,
        model: PreTrainedModel | PeftModel,
        template: Any,
        fmt: JudgeFormat,
        *,
        media_root: Path | None = None,
        max_tokens: int = 2048,
    ):
        self.model, self.format = model, fmt
        self.encoder = PromptEncoder(template, fmt, media_root=media_root, max_tokens=max_tokens)
        self.tokenizer = self.encoder.tokenizer
        # checked at load time: every verdict token must be exactly one token
        self.verdict_ids = torch.tensor(fmt.verdict_token_ids(self.tokenizer))

    @property
    def template(self) -> Any:
        return self.encoder.template

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def load(
        cls,
        path: Path | str,
        *,
        fmt: JudgeFormat | None = None,
        lora: LoraConfig | None = None,
        freeze_audio_tower: bool = True,
        dtype: torch.dtype | None = None,
        media_root: Path | None = None,
        max_tokens: int = 2048,
    ) -> GenerativeRewardModel:
        """Load a backbone (or a saved GRM: base + adapter + judge format) from a local path;
        a saved adapter is trainable when `lora` is given."""
        path = Path(path)
        model = load_model(path, dtype=dtype, lora=lora, adapter_trainable=lora is not None)
        fmt = fmt or (JudgeFormat.load(path) if (path / FORMAT_FILE).exists() else JudgeFormat())
        if freeze_audio_tower:
            freeze_tower(model)
        template = load_processor(path)
        return cls(model, template, fmt, media_root=media_root, max_tokens=max_tokens)

    def save(self, out: Path | str) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.template.save_pretrained(out)
        self.format.save(out)
        return out

    # -- scoring ---------------------------------------------------------------------------

    @torch.no_grad()
    def judge(
        self,
        items: Sequence[JudgeItem],
        *,
        mode: Mode = "direct",
        orders: Sequence[Order] = tuple(Order),
        audio: AudioMode = "audio",
        batch_size: int = 16,
        max_new_tokens: int = 64,
        share_history: Literal["group", "item"] = "group",
        progress: bool = False,
    ) -> LevelDistribution:
        """Level distributions for `items` in each of `orders`, canonical orientation.

        `share_history` (direct mode): "group" runs each distinct history once per batch for
        every item that shares it, "item" once per item (both orders still share it). Items
        are batched with their group (a stable sort by dialogue and turn), results returned in
        the order given.
        """
        was_training = self.model.training
        self.model.eval()
        probs = np.zeros((len(items), len(orders), self.format.levels))
        critiques: list[list[str]] = []
        bar = tqdm(total=len(items), desc=f"judging ({mode})", unit="task", disable=not progress)
        batched = list(range(len(items)))  # the order items are batched in
        if mode == "direct" and share_history == "group":
            batched.sort(key=lambda i: (items[i].dialogue.id, items[i].task.turn_index))
        for start in range(0, len(items), batch_size):
            chunk = [items[i] for i in batched[start : start + batch_size]]
            if mode == "direct":
                logits = self._direct(chunk, orders, audio, share_history)  # (B, O, L)
            else:
                logits, texts = self._reasoning(chunk, orders, audio, max_new_tokens)
                critiques.extend(texts)
            chunk_probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
            for j, order in enumerate(orders):  # shown levels back to policy-vs-reference
                chunk_probs[:, j] = Order(order).to_canonical_levels(chunk_probs[:, j])
            probs[batched[start : start + batch_size]] = chunk_probs
            bar.update(len(chunk))
        bar.close()
        self.model.train(was_training)
        return LevelDistribution(
            [item.task.id for item in items],
            tuple(orders),
            probs,
            critiques if mode == "reasoning" else None,
        )

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dtype = next(self.model.parameters()).dtype
        return {
            k: v.to(self.device, dtype=dtype if v.is_floating_point() else None)
            for k, v in batch.items()
        }

    def _direct(
        self,
        items: Sequence[JudgeItem],
        orders: Sequence[Order],
        audio: AudioMode,
        share_history: Literal["group", "item"] = "group",
    ):
        """Shared history: one pass over each distinct history, then every (item, order)
        pair block on its cache."""
        encoded = [[self.encoder.encode(item, o, audio=audio) for o in orders] for item in items]
        if any(len({len(e.history_ids) for e in row}) != 1 for row in encoded):
            # truncation differed between orders: no shared prefix, score the full sequences
            flat = [e for row in encoded for e in row]
            return self._full_forward(flat).view(len(items), len(orders), -1)
        pad = self.tokenizer.pad_token_id
        owner: dict[Any, int] = {}  # history key -> its row in the history batch
        histories: list[EncodedPrompt] = []
        rows_of_items = []
        for index, row in enumerate(encoded):
            key = history_key(row[0]) if share_history == "group" else index
            if key not in owner:
                owner[key] = len(histories)
                histories.append(row[0])
            rows_of_items.append(owner[key])
        history_ids = pad_rows([h.history_ids for h in histories], pad)  # (H, Th)
        history_len = torch.tensor([len(h.history_ids) for h in histories])
        history_mask = (torch.arange(history_ids.shape[1])[None] < history_len[:, None]).long()
        batch = self._to_device(
            {"input_ids": history_ids, "attention_mask": history_mask, **audio_batch(histories)}
        )
        cache = self.model(**batch, use_cache=True).past_key_values
        # each (item, order) row reads its history's cache row
        select = torch.tensor(rows_of_items).repeat_interleave(len(orders))  # (B*O,)
        cache.batch_select_indices(select.to(self.device))
        pairs = [e.pair_ids for row in encoded for e in row]  # (B*O) rows, item-major
        pair_ids = pad_rows(pairs, pad)  # (B*O, Tp)
        pair_len = torch.tensor([len(p) for p in pairs])
        pair_mask = (torch.arange(pair_ids.shape[1])[None] < pair_len[:, None]).long()
        starts = history_len[select]
        position_ids = starts[:, None] + torch.arange(pair_ids.shape[1])[None]  # (B*O, Tp)
        mask = torch.cat([history_mask[select], pair_mask], dim=1)
        step = self._to_device(
            {"input_ids": pair_ids, "attention_mask": mask, "position_ids": position_ids}
        )
        logits = self.model(**step, past_key_values=cache, use_cache=False).logits  # (B*O,Tp,V)
        rows = logits[torch.arange(len(pairs)), (pair_len - 1).to(logits.device)]
        return rows[:, self.verdict_ids.to(rows.device)].view(len(items), len(orders), -1)

    def _full_forward(self, prompts: list[EncodedPrompt]) -> torch.Tensor:
        batch = self._to_device(collate_full(prompts, self.tokenizer.pad_token_id))
        logits, _ = verdict_logits(self.model, batch, self.verdict_ids.to(self.device))
        return logits

    def _reasoning(self, items, orders, audio, max_new_tokens):
        """Generate a critique per (item, order), then read the verdict after it."""
        texts: list[list[str]] = []
        prompts = []
        for item in items:
            row = []
            for order in orders:
                prompt = self.encoder.encode(item, order, audio=audio)
                critique = self._generate_critique(prompt, max_new_tokens)
                row.append(critique)
                prompts.append(self.encoder.encode(item, order, audio=audio, critique=critique))
            texts.append(row)
        return self._full_forward(prompts).view(len(items), len(orders), -1), texts

    def _generate_critique(self, prompt: EncodedPrompt, max_new_tokens: int) -> str:
        # the prompt without its verdict marker: the critique comes before the marker
        marker = len(self.encoder.marker_ids)
        ids = prompt.history_ids + prompt.pair_ids[:-marker]
        batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids))}
        batch = self._to_device({**batch, **audio_batch([prompt])})
        out = self.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        text = self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
        return text.split(self.format.verdict_marker)[0].strip() or "(no critique)"
