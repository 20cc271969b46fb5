"""Reasoning mode's pieces: the critique cut from a generation, and the verdict step that reads
the verdict on the generation's own key/value cache.

In reasoning mode the judge writes a critique after the pair block, then the verdict marker,
then the verdict token. The verdict is defined on the critique *text*: it is read after
``prompt + tokens(critique + "\\n") + tokens(marker)``, the layout `PromptEncoder.encode(...,
critique=...)` builds and training teaches (the critique's LM loss is on those very tokens), so a
verdict can be recomputed from the returned critique alone. A model may generate the same text
as other tokens than re-tokenizing it gives (a byte-level BPE can write "ab" as "a" + "b"), and
may write the newline and the marker itself. So the batched path keeps the generated tokens
only as far as they agree with the re-tokenized ones: `verdict_step` masks the cache from the
first disagreement on and feeds the rest of the re-tokenized continuation, with positions that
go on from the last kept token. Masked key/values are invisible, so the verdict equals one full
forward over the re-encoded prompt, which is what the one-at-a-time path runs.
"""

from __future__ import annotations

import torch

from rewardlab.grm.encoding import pad_rows

NO_CRITIQUE = "(no critique)"  # what an empty generation becomes: the verdict needs some text


def critique_text(generated: str, marker: str) -> str:
    """The critique in a decoded generation: the text before any verdict marker, stripped."""
    return generated.split(marker)[0].strip() or NO_CRITIQUE


def left_pad(rows: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask), both (B, T): rows right-aligned, as generation continues them."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
    return ids, mask


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def verdict_step(
    prompt_mask: torch.Tensor,
    cached: torch.Tensor,
    continuations: list[list[int]],
    pad: int,
) -> dict[str, torch.Tensor]:
    """Inputs of the one forward that reads each row's verdict on the generation's cache.

    `prompt_mask` (B, W) is the generation's left-padded prompt mask; `cached` (B, C) the
    generated ids whose key/values are in the cache (all but the last generated token);
    `continuations[r]` the ids that follow row r's prompt in the re-encoded prompt (critique,
    newline, marker). Row r keeps its first ``keep_r`` cached tokens, as many as agree with
    its continuation (at most all but one: the step needs a token to read at), and is fed the
    rest, right-padded. Returns ``input_ids`` and ``position_ids`` (B, T), ``attention_mask``
    (B, W + C + T) and ``verdict_index`` (B,), each row's last fed token: the verdict slot.
    """
    keep = torch.tensor(
        [
            min(common_prefix(row, cont), len(cont) - 1)
            for row, cont in zip(cached.tolist(), continuations, strict=True)
        ]
    )  # (B,)
    tails = [cont[k:] for cont, k in zip(continuations, keep.tolist(), strict=True)]
    tail_len = torch.tensor([len(t) for t in tails])  # (B,)
    input_ids = pad_rows(tails, pad)  # (B, T)
    width = input_ids.shape[1]
    kept = torch.arange(cached.shape[1])[None] < keep[:, None]  # (B, C)
    fed = torch.arange(width)[None] < tail_len[:, None]  # (B, T)
    mask = torch.cat([prompt_mask, kept.long(), fed.long()], dim=1)
    # positions go on from each row's last kept token: left padding holds no positions
    start = prompt_mask.sum(dim=1) + keep  # (B,)
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "position_ids": start[:, None] + torch.arange(width)[None],
        "verdict_index": tail_len - 1,
    }
