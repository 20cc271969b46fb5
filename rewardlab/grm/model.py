"""`GenerativeRewardModel`: an audio LLM (or text LM) that judges a pair with one token.

    grm = GenerativeRewardModel.load("runs/grm/final", media_root="demo_out/media")
    dist = grm.judge(items)                 # LevelDistribution, both orders, one pass each
    dist.expected_level().mean(axis=1)      # (N,) debiased expected level, policy vs reference

`direct` mode reads the distribution over the 2K+1 verdict tokens at the verdict slot of one
forward pass: no text is parsed, so nothing fails to parse. The history block (system prompt and
dialogue) is run once per group of items that share it (same dialogue, turn and audio: the G
rollouts of one prompt, with any references and rubrics) and its key/value cache reused for
all their candidates in both presentation orders. `reasoning` mode first
generates a critique, then reads the verdict distribution the same way. The critiques of a
whole batch (every item in both orders) come from one `generate` that starts on the shared
history cache, the pair blocks left-padded; each verdict is then read by one forward of the few
tokens after its critique (newline, verdict marker) on that generation's own key/value cache,
never a second pass over the prompt (`critique.py` says which tokens, and why the verdict
equals the re-encoded prompt's). `generation="item"` keeps the one-at-a-time path: one
`generate` per item and order, then a full forward.
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

from rewardlab.backbones import base_model, family_of, load_model, load_processor
from rewardlab.backbones import freeze_audio_tower as freeze_tower
from rewardlab.grm.critique import critique_text, left_pad, verdict_step
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


# collated batch entries that the loss reads and the model must not see
TRAINING_KEYS = ("verdict_index", "labels", "target", "reference_first", "partner")


def verdict_logits(model: Any, batch: dict[str, torch.Tensor], verdict_ids: torch.Tensor):
    """(B, 2K+1) logits of the verdict tokens at each row's verdict slot; also the LM logits.

    One ordinary forward through the (possibly wrapped: PEFT, DDP, DeepSpeed) model.
    """
    inputs = {k: v for k, v in batch.items() if k not in TRAINING_KEYS}
    logits = model(**inputs).logits  # (B, T, V)
    rows = logits[torch.arange(logits.shape[0], device=logits.device), batch["verdict_index"]]
    return rows[:, verdict_ids], logits


@dataclass
class Generation:
    """A batch generation that reasoning mode reads its verdicts on."""

    prompt_mask: torch.Tensor  # (B, W): the prompt's mask, padding 0
    tokens: torch.Tensor  # (B, G) generated ids; after a row's EOS, pad
    cache: Any  # the key/value cache of prompt and generated tokens but the last


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
        self.family = family_of(base_model(model))
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
        generation: Literal["batch", "item"] = "batch",
        progress: bool = False,
    ) -> LevelDistribution:
        """Level distributions for `items` in each of `orders`, canonical orientation.

        `share_history` (direct mode): "group" runs each distinct history once per batch for
        every item that shares it, "item" once per item (both orders still share it). Items
        are batched with their group (a stable sort by dialogue and turn), results returned in
        the order given. `generation` (reasoning mode): "batch" writes the critiques of a whole
        batch (every item in every order) in one `generate` and reads the verdicts on its
        cache; "item" runs one `generate` per item and order, then a full forward over the
        prompts with their critiques. Greedy, both give the same critiques and verdicts.
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
                logits, texts = self._reasoning(chunk, orders, audio, max_new_tokens, generation)
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

    def _audio(self, prompts: list[EncodedPrompt]) -> dict[str, torch.Tensor]:
        return audio_batch(prompts, self.encoder.feature_mask_key)

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
        flat = [e for row in encoded for e in row]  # (B*O) rows, item-major
        if any(len({len(e.history_ids) for e in row}) != 1 for row in encoded):
            # truncation differed between orders: no shared prefix, score the full sequences
            return self._full_forward(flat).view(len(items), len(orders), -1)
        keys = [
            history_key(row[0]) if share_history == "group" else i for i, row in enumerate(encoded)
        ]
        cache, history_mask, history_len = self._history_cache(
            flat, [key for key in keys for _ in orders]
        )
        pad = self.tokenizer.pad_token_id
        pairs = [e.pair_ids for e in flat]
        pair_ids = pad_rows(pairs, pad)  # (B*O, Tp)
        pair_len = torch.tensor([len(p) for p in pairs])
        pair_mask = (torch.arange(pair_ids.shape[1])[None] < pair_len[:, None]).long()
        position_ids = history_len[:, None] + torch.arange(pair_ids.shape[1])[None]  # (B*O, Tp)
        mask = torch.cat([history_mask, pair_mask], dim=1)
        step = self._to_device(
            {"input_ids": pair_ids, "attention_mask": mask, "position_ids": position_ids}
        )
        logits = self.model(**step, cache=cache, use_cache=False).logits  # (B*O,Tp,V)
        rows = logits[torch.arange(len(pairs)), (pair_len - 1).to(logits.device)]
        return rows[:, self.verdict_ids.to(rows.device)].view(len(items), len(orders), -1)

    def _history_cache(self, prompts: list[EncodedPrompt], keys: list[Any]):
        """One pass over each distinct history (prompts of equal key share one), its key/value
        cache then given one row per prompt; with each prompt's history mask (N, Th) and
        length (N,), the history right-padded."""
        owner: dict[Any, int] = {}  # history key -> its row in the history batch
        histories: list[EncodedPrompt] = []
        for prompt, key in zip(prompts, keys, strict=True):
            if key not in owner:
                owner[key] = len(histories)
                histories.append(prompt)
        history_ids = pad_rows([h.history_ids for h in histories], self.tokenizer.pad_token_id)
        history_len = torch.tensor([len(h.history_ids) for h in histories])  # (H,)
        history_mask = (torch.arange(history_ids.shape[1])[None] < history_len[:, None]).long()
        batch = self._to_device(
            {"input_ids": history_ids, "attention_mask": history_mask, **self._audio(histories)}
        )
        cache = self.model(**batch, use_cache=True).cache
        select = torch.tensor([owner[key] for key in keys])  # (N,): each prompt's history row
        cache.batch_select_indices(select.to(self.device))
        return cache, history_mask[select], history_len[select]

    def _full_forward(self, prompts: list[EncodedPrompt]) -> torch.Tensor:
        batch = self._to_device(
            collate_full(prompts, self.tokenizer.pad_token_id, self.encoder.feature_mask_key)
        )
        logits, _ = verdict_logits(self.model, batch, self.verdict_ids.to(self.device))
        return logits

    def _reasoning(self, items, orders, audio, max_new_tokens, generation):
        """Generate a critique per (item, order), then read the verdict after it."""
        pairs = [(item, order) for item in items for order in orders]  # item-major
        prompts = [self.encoder.encode(item, order, audio=audio) for item, order in pairs]
        if generation == "batch":
            texts, generated = self._generate_batch(prompts, max_new_tokens)
        else:
            texts = [self._generate_critique(prompt, max_new_tokens) for prompt in prompts]
        judged = [
            self.encoder.encode(item, order, audio=audio, critique=text)
            for (item, order), text in zip(pairs, texts, strict=True)
        ]
        rows = [texts[i : i + len(orders)] for i in range(0, len(texts), len(orders))]
        # a critique can push a long dialogue over max_tokens, which then drops a turn: the
        # generation's cache no longer holds the prompt, so score the full sequences
        if generation == "batch" and all(
            j.history_ids == p.history_ids
            and j.pair_ids[: j.critique_span[0]] == self._before_marker(p)
            for j, p in zip(judged, prompts, strict=True)
        ):
            continuations = [j.pair_ids[j.critique_span[0] :] for j in judged]
            logits = self._verdict_on_cache(generated, continuations)
        else:
            logits = self._full_forward(judged)
        return logits.view(len(items), len(orders), -1), rows

    def _before_marker(self, prompt: EncodedPrompt) -> list[int]:
        """The pair block without its verdict marker: the critique comes before the marker."""
        return prompt.pair_ids[: -len(self.encoder.marker_ids)]

    def _greedy(self, max_new_tokens: int) -> dict[str, Any]:
        return {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }

    def _generate_critique(self, prompt: EncodedPrompt, max_new_tokens: int) -> str:
        ids = prompt.history_ids + self._before_marker(prompt)
        batch = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids))}
        batch = self._to_device({**batch, **self._audio([prompt])})
        out = self.model.generate(**batch, **self._greedy(max_new_tokens))
        text = self.tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)
        return critique_text(text, self.format.verdict_marker)

    def _generate_batch(
        self, prompts: list[EncodedPrompt], max_new_tokens: int
    ) -> tuple[list[str], Generation]:
        """Every prompt's critique from one `generate`; also the generation, for
        `_verdict_on_cache`.

        The generation starts on the shared history cache (each distinct history run once,
        as in direct mode); each row is its history, right-padded, then its pair block
        left-padded, so that every row's critique starts in the same column. Positions follow
        the mask, so the padding in the middle holds none.
        """
        pad = self.tokenizer.pad_token_id
        cache, history_mask, _ = self._history_cache(prompts, [history_key(p) for p in prompts])
        history_ids = pad_rows([p.history_ids for p in prompts], pad)  # (B, Th): cached
        pair_ids, pair_mask = left_pad([self._before_marker(p) for p in prompts], pad)  # (B, Tp)
        ids = torch.cat([history_ids, pair_ids], dim=1)  # (B, Th + Tp)
        mask = torch.cat([history_mask, pair_mask], dim=1)
        self.family.continue_positions(base_model(self.model), len(prompts))
        out = self.model.generate(
            **self._to_device({"input_ids": ids, "attention_mask": mask}),
            cache=cache,
            return_dict_in_generate=True,
            **self._greedy(max_new_tokens),
        )
        new = out.sequences[:, ids.shape[1] :]  # (B, G): after EOS, pad
        decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
        texts = [critique_text(text, self.format.verdict_marker) for text in decoded]
        return texts, Generation(mask, new.cpu(), out.cache)

    def _verdict_on_cache(self, gen: Generation, continuations: list[list[int]]) -> torch.Tensor:
        """(B, 2K+1) verdict logits from one forward of each row's last few tokens on the
        generation's cache (see `critique.verdict_step`)."""
        cache = gen.cache
        # (B, C): the generated tokens whose key/values are cached, all but the last
        cached = gen.tokens[:, : cache.get_seq_length() - gen.prompt_mask.shape[1]]
        step = verdict_step(gen.prompt_mask, cached, continuations, self.tokenizer.pad_token_id)
        read = step.pop("verdict_index")
        step = self._to_device(step)
        logits = self.model(**step, cache=cache, use_cache=False).logits  # (B, T, V)
        rows = logits[torch.arange(len(continuations)), read.to(logits.device)]
        return rows[:, self.verdict_ids.to(rows.device)]
