"""`ScalarRewardModel`: the baseline to the GRM, a Bradley-Terry reward model on one backbone.

    rm = ScalarRewardModel.load("runs/rm/final", media_root="demo_out/media")
    r = rm.rewards(items)          # (N, 2) reward of the policy reply and of the reference
    dist = rm.judge(items)         # LevelDistribution, as the GRM's: the same metrics apply

The backbone (any that `backbones.load_model` loads, LoRA and the frozen audio tower as for
the GRM) reads the dialogue history, with its audio, and ONE reply, in the same chat template
and history block as the GRM's prompt (`JudgeFormat.reply_text` after it). A linear head on the
final hidden state of the last real token gives the reply's reward r. The decoder runs without
the LM head: a vocabulary-wide projection of every position is the largest cost of a forward
and the reward needs none of it.

`judge` turns d = r_policy - r_reference into a distribution over -K..K with the saved
`OrdinalLink`. A scalar model has no presentation order: both order columns are the same
distribution, so its position consistency is 1.0 by construction.

A saved folder holds the backbone (or its adapter) and processor, ``judge_format.json`` (K and
the prompt layout), ``score_head.safetensors`` (the head, the file that marks a scalar reward
model) and ``ordinal_link.json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from peft import LoraConfig, PeftModel
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from rewardlab.backbones import base_model, load_model, load_processor
from rewardlab.backbones import freeze_audio_tower as freeze_tower
from rewardlab.grm.encoding import AudioMode, JudgeItem, PromptEncoder, collate_full
from rewardlab.grm.judge_format import FORMAT_FILE, JudgeFormat
from rewardlab.grm.model import LevelDistribution, Mode
from rewardlab.grm.ordinal_link import OrdinalLink
from rewardlab.schema import Order

SCORE_HEAD_FILE = "score_head.safetensors"
# the GRM's system text with one reply in place of two: a tiny backbone's tokenizer, trained on
# the GRM's prompts, then spends no extra tokens on it
RM_SYSTEM = (
    "You are a careful judge of spoken dialogue. You judge one candidate reply to the last user "
    "turn, judging what was said earlier, how the user sounded, and the rubric when one is given."
)
RM_MARKER = "Score:"  # the last prompt token, where the head reads the reward
REPLIES = ("policy", "reference")


class ScoreModel(nn.Module):
    """Backbone + linear score head: (B, T) prompts -> (B,) rewards."""

    def __init__(self, backbone: PreTrainedModel | PeftModel):
        super().__init__()
        self.backbone = backbone
        base = base_model(backbone)
        lm_head = base.get_output_embeddings()
        if lm_head.weight is not base.get_input_embeddings().weight:
            lm_head.requires_grad_(False)  # the reward never reads it (unless tied to the input)
        hidden = base.config.get_text_config().hidden_size
        # no bias: it cancels in every difference r_policy - r_reference, so it never learns
        self.head = nn.Linear(hidden, 1, bias=False)

    def forward(self, input_ids, attention_mask, last_index, **audio) -> torch.Tensor:
        # the decoder with the audio merged in (`.model` of the causal LM), no LM head
        decoder = base_model(self.backbone).model
        hidden = decoder(input_ids=input_ids, attention_mask=attention_mask, **audio)
        rows = hidden.last_hidden_state[
            torch.arange(len(last_index), device=last_index.device), last_index
        ]  # (B, H)
        return self.head(rows.to(self.head.weight.dtype)).squeeze(-1)


def reply_batch(
    encoder: PromptEncoder, items: Sequence[JudgeItem], audio: AudioMode = "audio"
) -> dict[str, torch.Tensor]:
    """Both replies of each item, item-major ([policy_0, reference_0, policy_1, ...]): 2B rows,
    right-padded, ``last_index`` the last real token of each."""
    prompts = [encoder.encode(item, Order.POLICY_FIRST, audio=audio, reply=reply)
               for item in items for reply in REPLIES]  # fmt: skip
    batch = collate_full(prompts, encoder.tokenizer.pad_token_id, encoder.feature_mask_key)
    batch["last_index"] = batch.pop("verdict_index")
    del batch["labels"]  # no LM loss
    return batch


class ScalarRewardModel:
    kind = "scalar RM"

    def __init__(
        self,
        net: ScoreModel,
        template: Any,
        fmt: JudgeFormat,
        link: OrdinalLink,
        *,
        media_root: Path | None = None,
        max_tokens: int = 2048,
    ):
        self.net, self.format, self.link = net, fmt, link
        self.encoder = PromptEncoder(template, fmt, media_root=media_root, max_tokens=max_tokens)
        self.tokenizer = self.encoder.tokenizer

    @property
    def model(self) -> PreTrainedModel | PeftModel:
        return self.net.backbone

    @property
    def template(self) -> Any:
        return self.encoder.template

    @property
    def device(self) -> torch.device:
        return self.net.head.weight.device

    @classmethod
    def load(
        cls,
        path: Path | str,
        *,
        k: int | None = None,
        lora: LoraConfig | None = None,
        freeze_audio_tower: bool = True,
        dtype: torch.dtype | None = None,
        media_root: Path | None = None,
        max_tokens: int = 2048,
        seed: int = 0,
    ) -> ScalarRewardModel:
        """A saved scalar RM, or a backbone (a GRM's too) with a fresh head (seeded) and the
        initial link; `k`: the data's K, which a saved RM must have."""
        path = Path(path)
        model = load_model(path, dtype=dtype, lora=lora, adapter_trainable=lora is not None)
        if freeze_audio_tower:
            freeze_tower(model)
        net = ScoreModel(model)
        saved = (path / SCORE_HEAD_FILE).exists()
        fmt = JudgeFormat.load(path) if (path / FORMAT_FILE).exists() else JudgeFormat()
        if saved:
            net.head.load_state_dict(load_file(path / SCORE_HEAD_FILE))
            if k is not None and fmt.k != k:
                raise ValueError(f"{path}: the scalar RM has K={fmt.k} but the data has K={k}")
            link = OrdinalLink.load(path)
        else:  # a backbone: its prompt layout (rubric detail), our system text and K
            fmt = dataclasses.replace(
                fmt, k=fmt.k if k is None else k, system=RM_SYSTEM, verdict_marker=RM_MARKER
            )
            generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                net.head.weight.normal_(0, net.head.in_features**-0.5, generator=generator)
            link = OrdinalLink.initial(fmt.k)
        if dtype is not None:
            net.head.to(dtype)
        template = load_processor(path)
        return cls(net, template, fmt, link, media_root=media_root, max_tokens=max_tokens)

    def save(self, out: Path | str) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out)
        self.template.save_pretrained(out)
        self.format.save(out)
        save_file({k: v.contiguous() for k, v in self.net.head.state_dict().items()},
                  out / SCORE_HEAD_FILE)  # fmt: skip
        self.link.save(out)
        return out

    # -- scoring ---------------------------------------------------------------------------

    @torch.no_grad()
    def rewards(
        self,
        items: Sequence[JudgeItem],
        *,
        audio: AudioMode = "audio",
        batch_size: int = 16,
        progress: bool = False,
    ) -> np.ndarray:
        """(N, 2) rewards: column 0 the policy reply's, column 1 the reference's."""
        was_training = self.net.training
        self.net.eval()
        out = np.zeros((len(items), 2))
        bar = tqdm(total=len(items), desc="scoring (scalar RM)", unit="task", disable=not progress)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = self.to_device(reply_batch(self.encoder, chunk, audio))
            out[start : start + len(chunk)] = self.net(**batch).float().view(-1, 2).cpu().numpy()
            bar.update(len(chunk))
        bar.close()
        self.net.train(was_training)
        return out

    def judge(
        self,
        items: Sequence[JudgeItem],
        *,
        mode: Mode = "direct",
        orders: Sequence[Order] = tuple(Order),
        audio: AudioMode = "audio",
        batch_size: int = 16,
        progress: bool = False,
    ) -> LevelDistribution:
        """The link's distribution of d = r_policy - r_reference, the same in every order."""
        if mode != "direct":
            raise ValueError(f"mode {mode!r}: a scalar reward model writes no critique")
        r = self.rewards(items, audio=audio, batch_size=batch_size, progress=progress)
        probs = self.link.probs(r[:, 0] - r[:, 1])  # (N, 2K+1)
        stacked = np.repeat(probs[:, None, :], len(orders), axis=1)  # (N, O, 2K+1)
        return LevelDistribution([i.task.id for i in items], tuple(orders), stacked)

    def fit_link(self, items: Sequence[JudgeItem], targets: np.ndarray, **kwargs) -> OrdinalLink:
        """Fit the ordinal link to `targets` (N, 2K+1) on these items' differences (`rewards`
        keywords); kept and returned."""
        r = self.rewards(items, **kwargs)
        self.link = OrdinalLink.fit(r[:, 0] - r[:, 1], targets)
        return self.link

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Tensors onto the model's device; floating ones (audio features) in its dtype."""
        dtype = self.net.head.weight.dtype
        return {
            k: v.to(self.device, dtype=dtype if v.is_floating_point() else None)
            for k, v in batch.items()
        }
