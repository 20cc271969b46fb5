#!/usr/bin/env bash
# bash training/gpu_smoke.sh [FAMILY]      (on a machine with one CUDA GPU)
# FAMILY: qwen2_audio (default, Qwen2-Audio-7B sizes), qwen2_5_omni (Qwen2.5-Omni-7B thinker
# sizes) or voxtral (Voxtral-Mini-3B sizes); qwen3_omni_moe and audioflamingo3 run with
# SIZE=tiny only (the tiny builder's 4 experts are not Qwen3-Omni's 128). A real-size backbone
# with random weights, built from its config on the GPU, in bf16
# with LoRA on the language model: one judge batch (both orders), 3 GRM training steps, then 1
# PPO update of a same-sized LoRA policy against that judge. Prints judgments/s, training
# tokens/s, PPO seconds by phase, and peak GPU memory for each.
#
# SIZE=tiny DEVICE=cpu bash training/gpu_smoke.sh qwen2_5_omni   runs the same script on a
# CPU with a tiny config, to check it before a GPU is at hand (the suite runs it so).
# The tokenizer is trained locally (4096 tokens, not the checkpoints' ~152k), and the Omni
# thinker's vision encoder, which audio never runs, is built small.
set -euo pipefail
cd "$(dirname "$0")/.."
FAMILY=${1:-qwen2_audio}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-/tmp/rewardlab-gpu-smoke-$FAMILY}
rm -rf "$OUT" && mkdir -p "$OUT"
HF_HUB_OFFLINE=1 $PY - "$OUT" "$FAMILY" "${SIZE:-real}" "${DEVICE:-cuda}" <<'PYEOF'
import sys, time
from pathlib import Path

import torch
from peft import LoraConfig

from rewardlab.demo import DemoConfig, build_demo_project
from rewardlab.grm.examples import load_examples
from rewardlab.grm.grm_config import GRMConfig
from rewardlab.grm.grm_trainer import GRMTrainer
from rewardlab.grm.judge_format import JudgeFormat
from rewardlab.grm.model import GenerativeRewardModel
from rewardlab.grm.tiny import TinySize, build_tiny_backbone, corpus_texts
from rewardlab.rl.grm_reward import GRMReward
from rewardlab.rl.policy import load_policy
from rewardlab.rl.ppo_config import AudioPPOConfig
from rewardlab.rl.ppo_trainer import AudioPPOTrainer
from rewardlab.rl.prompts import prompts_from_examples
from rewardlab.rl.rewards import GRMPromptReward

out, family, size_name, device = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
SIZES = {
    # Qwen2-Audio-7B: 32 x 4096 decoder (MHA), Whisper-large encoder, 30 s window
    "qwen2_audio": TinySize(vocab_size=4096, hidden_size=4096, layers=32, heads=32,
                            kv_heads=32, intermediate_size=11008, audio_d_model=1280,
                            audio_layers=32, audio_heads=20, audio_ffn=5120, chunk_length=30,
                            hop_length=160, max_positions=8192),
    # Qwen2.5-Omni-7B thinker: 28 x 3584 decoder (GQA, 4 KV heads), Whisper-large-sized tower
    "qwen2_5_omni": TinySize(vocab_size=4096, hidden_size=3584, layers=28, heads=28,
                             kv_heads=4, intermediate_size=18944, audio_d_model=1280,
                             audio_layers=32, audio_heads=20, audio_ffn=5120, chunk_length=30,
                             hop_length=160, max_positions=8192),
    # Voxtral-Mini-3B: 30 x 3072 Llama decoder (8 KV heads, head_dim 128: 24 heads here where
    # the checkpoint has 32, as the tiny builder ties head_dim to hidden / heads), a
    # Whisper-large-v3 tower over whole 30 s windows (375 tokens each)
    "voxtral": TinySize(vocab_size=4096, hidden_size=3072, layers=30, heads=24, kv_heads=8,
                        intermediate_size=8192, audio_d_model=1280, audio_layers=32,
                        audio_heads=20, audio_ffn=5120, chunk_length=30, hop_length=160,
                        max_positions=8192),
}
if size_name == "real" and family not in SIZES:
    sys.exit(f"gpu_smoke.sh: real sizes for {', '.join(SIZES)}; {family} runs with SIZE=tiny")
size = SIZES[family] if size_name == "real" else TinySize(vocab_size=1024, hidden_size=64,
                                                          layers=2, heads=4, kv_heads=2)
cuda = device == "cuda"
dtype = torch.bfloat16 if cuda else torch.float32


def peak() -> str:
    if not cuda:
        return "peak n/a (CPU)"
    return f"peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"


def reset() -> None:
    if cuda:
        torch.cuda.reset_peak_memory_stats()


build_demo_project(out / "project", DemoConfig(n=48), progress=False).close()
data = load_examples(out / "project")
examples, media = data.examples, data.media_root
texts = corpus_texts(examples, JudgeFormat(), data.rubrics.values())
with torch.device(device):
    backbone = build_tiny_backbone(out / "backbone", texts, size=size, family=family)
lora = LoraConfig(r=64, lora_alpha=128, target_modules=r".*language_model.*\.(q_proj|v_proj)")
grm = GenerativeRewardModel.load(backbone, lora=lora, dtype=dtype, media_root=media)
grm.model.to(device)
print(f"{family} ({size_name}), {sum(p.numel() for p in grm.model.parameters()) / 1e6:,.1f} M"
      f" parameters, {device}, {dtype}")

items = [e.item for e in examples[:16]]
grm.judge(items[:2])  # warm-up
reset()
start = time.perf_counter()
grm.judge(items, batch_size=16)
print(f"judge: {2 * len(items) / (time.perf_counter() - start):.1f} judgments/s"
      f" (16 tasks x 2 orders, one batch), {peak()}")

args = GRMConfig(output_dir=str(out / "run"), max_steps=3, per_device_train_batch_size=4,
                 bf16=cuda, use_cpu=not cuda, learning_rate=1e-4, logging_steps=1,
                 save_strategy="no", gradient_checkpointing=cuda, fixed_order_share=0.0,
                 disable_tqdm=True)
trainer = GRMTrainer(grm.model, args, grm.encoder, examples)
reset()
start = time.perf_counter()
trainer.train()
train_s = time.perf_counter() - start
seen = examples[: 3 * 4 // 2]  # 3 steps x 4 rows, each task shown in both orders
tokens = 2 * sum(len(grm.encoder.encode(e.item, "policy_first")) for e in seen)
print(f"GRM: 3 steps of 4 rows in {train_s:.1f} s, ~{tokens / train_s:.0f} tokens/s, {peak()}")

policy, template = load_policy(backbone, lora=lora, dtype=dtype)
policy.to(device)
ppo_args = AudioPPOConfig(output_dir=str(out / "ppo"), model_path=str(backbone), max_steps=1,
                          bf16=cuda, use_cpu=not cuda, per_device_train_batch_size=4,
                          gradient_accumulation_steps=2, num_mini_batches=1, num_ppo_epochs=1,
                          response_length=64, learning_rate=1e-5, logging_steps=1,
                          save_strategy="no", gradient_checkpointing=cuda,
                          local_rollout_forward_batch_size=8, disable_tqdm=True)
ppo = AudioPPOTrainer(ppo_args, policy=policy, reward=GRMPromptReward(GRMReward(grm)),
                      train_prompts=prompts_from_examples(examples), processing_class=template,
                      media_root=media)
reset()
ppo.train()
log = ppo.state.log_history[-1]
print(f"PPO: 1 update of 8 rollouts: rollout {log['time/rollout_s']:.2f} s, reward"
      f" {log['time/reward_s']:.2f} s, optimise {log['time/optimize_s']:.2f} s, replies of"
      f" {log['val/response_length']:.0f} tokens, {peak()}")
PYEOF
